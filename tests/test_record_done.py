"""``Session.record_done``: the run's ``mark_done``, from values it made itself.

It must write exactly what ``mark_done`` writes for the same facts (the
loader's fast path reads the writer's key order), add the attempt number and
the fingerprint itself, and keep ``mark_done``'s refusals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_resume import (
    AgentResume,
    ArgumentTypeError,
    ArgumentValueError,
    JsonlStore,
    ResultJsonlStore,
    StoreClosedError,
    Usage,
)


def _lines(path: Path) -> list[dict[str, Any]]:
    """The item records of a checkpoint, without their time stamps, in file order."""
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines()[1:]]
    return [{k: v for k, v in r.items() if k != "ts"} for r in records if "id" in r]


def _raw_lines(path: Path) -> list[str]:
    """The item lines of a checkpoint with the time stamp blanked: the bytes the writer chose."""
    out = []
    for line in path.read_text("utf-8").splitlines()[1:]:
        if line.startswith('{"id": '):
            head, _, rest = line.partition(', "ts": ')
            out.append(
                head + ', "ts": 0' + rest[rest.index(",") if "," in rest else rest.index("}") :]
            )
    return out


USAGE = Usage(input_tokens=120, output_tokens=40, calls=1, cost_usd=0.00123, model="gpt-é")


@pytest.mark.parametrize("fingerprint", [False, True])
def test_record_done_writes_what_mark_done_writes(tmp_path: Path, fingerprint: bool) -> None:
    items = [{"id": f"item-{i}", "text": f"t{i}"} for i in range(4)]
    cases: list[dict[str, Any]] = [
        {},
        {"turns": 0, "seconds": 0.0},
        {"stop": "max_turns", "turns": 3, "seconds": 1.25},
        {"turns": 1, "seconds": 0.5, "usage": USAGE},
    ]
    paths = {}
    for how in ("mark_done", "record_done"):
        path = paths[how] = tmp_path / f"{how}.jsonl"
        with AgentResume(JsonlStore(path)).resume_or_start("job", fingerprint=fingerprint) as s:
            s.mark_failed("item-2", RuntimeError("boom"))  # its completion names attempt 2
            for item, facts in zip(s.remaining(items), cases, strict=True):
                if how == "mark_done":
                    s.mark_done(item["id"], {"n": 1}, **facts)
                else:
                    made = dict(facts)
                    if "usage" in made:
                        made["usage"] = {
                            "in": 120,
                            "out": 40,
                            "calls": 1,
                            "cost": 0.00123,
                            "model": "gpt-é",
                        }
                    assert s.record_done(item["id"], {"n": 1}, made) is True
    assert _raw_lines(paths["record_done"]) == _raw_lines(paths["mark_done"])
    written = _lines(paths["record_done"])
    done = [r for r in written if r.get("status") is None]
    assert [r["id"] for r in done] == ["item-0", "item-1", "item-2", "item-3"]
    assert done[2]["attempt"] == 2 and list(done[2])[:2] == ["id", "attempt"]
    assert ("fp" in done[0]) is fingerprint
    if fingerprint:
        assert list(done[3]).index("fp") < list(done[3]).index("usage")


def test_record_done_keeps_results_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        assert s.record_done("a", {"answer": "é"}, {"turns": 2, "seconds": 0.25}) is True
        assert s.record_done("a", {"answer": "again"}, {"turns": 2, "seconds": 0.25}) is False
        assert s.stats.done == 1
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done("a")
        assert dict(s.results()) == {"a": {"answer": "é"}}
    assert len(_lines(path)) == 1


@pytest.mark.parametrize(
    ("result", "error"),
    [(object(), ArgumentTypeError), ({"x": float("nan")}, ArgumentValueError)],
)
def test_record_done_refuses_a_result_it_cannot_store_and_writes_nothing(
    tmp_path: Path, result: Any, error: type[Exception]
) -> None:
    path = tmp_path / "job.jsonl"
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        with pytest.raises(error, match="result"):
            s.record_done("a", result, {"turns": 0, "seconds": 0.0})
        assert not s.is_done("a")
        assert s.record_done("a", None, {}) is True
    assert _lines(path) == [{"id": "a"}]


def test_record_done_on_a_closed_session_raises_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    s = AgentResume(JsonlStore(path)).resume_or_start("job")
    s.close()
    with pytest.raises(StoreClosedError, match="closed"):
        s.record_done("a", None, {"turns": 0, "seconds": 0.0})
    assert _lines(path) == []
