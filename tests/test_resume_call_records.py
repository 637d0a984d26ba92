"""Resuming a checkpoint full of ``call`` records (issue 15): read fast, and still counted.

A run writes one ``call`` record per LLM call made through ``ctx.call``. The
job's state has no use for them, so the resume recognises them by their
pattern without decoding them; a budget still counts their usage, read from
the records when a run opens.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent_resume import (
    AgentResume,
    CheckpointWarning,
    CorruptCheckpointError,
    JsonlStore,
    NotACheckpointError,
    ResumableRun,
    RunConfig,
)
from agent_resume._records import JobState
from agent_resume.stores import _jsonl_read
from agent_resume.stores._jsonl_read import load, parse_line

HEADER = json.dumps({"agent_resume": 1, "job_id": "job", "created": 1}) + "\n"
USAGE = {"in": 1234, "out": 56, "calls": 1, "cost": 0.25, "model": "gpt-4o-mini", "s": 0.5}


def call_line(item: str, token: str = "k1", **usage: Any) -> str:
    return json.dumps({"call": item, "a": token, "ts": 1, "usage": {**USAGE, **usage}}) + "\n"


def done_line(item: str, **extra: Any) -> str:
    return json.dumps({"id": item, "ts": 2, **extra, "usage": {**USAGE, "calls": 2}}) + "\n"


def reference(path: Path) -> JobState:
    """The state folded from every line decoded in full, as a reader of the format would."""
    state = JobState(job_id="job")
    for raw in path.read_bytes().split(b"\n")[1:]:
        record = parse_line(raw) if raw.strip() else None
        if isinstance(record, dict):
            state.apply(record)
    return state


def loaded(path: Path, strict: bool = False) -> JobState:
    with open(path, "rb") as f:
        return load(f, str(path), strict=strict).state


def test_a_runs_call_records_are_recognised_without_decoding_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_llm(**_: Any) -> Any:
        usage = SimpleNamespace(prompt_tokens=1234, completion_tokens=56, total_tokens=1290)
        return SimpleNamespace(model="gpt-4o-mini", usage=usage, choices=[])

    def work(item: str, ctx: Any) -> None:
        ctx.call(fake_llm, model="gpt-4o-mini")
        ctx.call(fake_llm, model="gpt-4o-mini")

    path = tmp_path / "ck.jsonl"
    items = [f"item-{n:05d}" for n in range(3000)]
    report = ResumableRun(RunConfig(job_id="job", store=path, progress=False)).run(work, items)
    assert report.done == 3000
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert sum(1 for r in records if "call" in r) == 6000
    others = [r for r in records if "call" not in r and "id" not in r]  # header, run records

    decoded: list[bytes] = []

    def counting(raw: bytes) -> dict[str, Any] | str:
        decoded.append(raw)
        return parse_line(raw)

    monkeypatch.setattr(_jsonl_read, "parse_line", counting)
    state = loaded(path)
    assert state.done == set(items)
    # Only the header and the run records were decoded: no call record, no completion.
    assert len(decoded) <= len(others)
    assert not [raw for raw in decoded if raw.startswith((b'{"call"', b'{"id"'))]


def test_call_records_in_any_mix_load_as_if_every_line_were_decoded(tmp_path: Path) -> None:
    rng = random.Random(15)
    lines = [HEADER]
    for n in range(20_000):
        item = f"it-{rng.randrange(6000)}"
        roll = rng.random()
        if roll < 0.5:
            lines.append(call_line(item, f"k{n}"))
        elif roll < 0.8:
            lines.append(done_line(item, turns=2, seconds=0.5))
        elif roll < 0.85:
            lines.append(done_line(item, fp="abc"))
        elif roll < 0.9:
            failed = {"id": item, "ts": 3, "status": "failed", "error": "E: x", "attempt": 1}
            lines.append(json.dumps(failed) + "\n")
        elif roll < 0.93:
            lines.append(json.dumps({"id": item, "ts": 4, "status": "retry"}) + "\n")
        elif roll < 0.96:
            # A model named like a key, an ID with escapes: recognised or read in full.
            lines.append(call_line(item + '"\u00e9', f"k{n}", model="id"))
        else:
            lines.append(json.dumps({"run": "start", "ts": 5}) + "\n")
    path = tmp_path / "mix.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    want = reference(path)
    for strict in (False, True):
        state = loaded(path, strict)
        assert state.done == want.done
        assert state.fingerprints == want.fingerprints
        assert state.failures == want.failures
        assert len(state.runs) == len(want.runs)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("careful_block", [False, True])
def test_a_call_line_that_also_names_an_id_is_read_as_the_completion_it_is(
    tmp_path: Path, strict: bool, careful_block: bool
) -> None:
    # json.loads reads this line as a completion of "hidden" (a record with an "id"):
    # the resume must not skip it as a call record, whichever path reads its block.
    lines = [HEADER] + [call_line(f"c{n}") for n in range(2000)]
    lines.insert(1000, '{"call": "x", "a": "t", "ts": 1, "usage": {"in": 1}, "id": "hidden"}\n')
    if careful_block:
        lines.append(json.dumps({"id": "f", "ts": 1, "status": "failed", "error": "e"}) + "\n")
    path = tmp_path / "hidden.jsonl"
    path.write_text("".join(lines))
    assert loaded(path, strict).done == {"hidden"} == reference(path).done


def test_a_corrupt_call_line_is_refused_in_strict_mode_and_skipped_unread_otherwise(
    tmp_path: Path,
) -> None:
    path = tmp_path / "corrupt.jsonl"
    body = [call_line(f"c{n}") for n in range(50)]
    body.insert(20, '{"call": "x", "a": "t", "ts": 1, "usage": {"in": 1,, }}\n')
    path.write_text(HEADER + "".join(body) + done_line("a"))
    with pytest.raises(CorruptCheckpointError) as caught:
        loaded(path, strict=True)
    assert caught.value.line_number == 22  # type: ignore[attr-defined]
    # The default mode does not decode call records (as it does not decode a
    # completion's usage): their readers (report, status, budgets) skip a bad one.
    state = loaded(path)
    assert state.done == {"a"} and state.bad_lines == 0


def test_a_headerless_file_that_begins_with_a_call_record_is_not_a_checkpoint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(call_line(f"c{n}") for n in range(3)) + done_line("a"))
    with pytest.raises(NotACheckpointError):
        AgentResume(JsonlStore(path)).resume_or_start("job")


def _write_job(path: Path, items: int) -> float:
    """A checkpoint as a run writes it, through the store's own write API, plus one
    attempt killed after two calls (call records and no outcome). Returns the cost
    of the completed items."""
    store = JsonlStore(path)
    store.open("job")
    try:
        for n in range(items):
            for _ in range(2):
                store.write_run({"call": f"i{n}", "a": f"t{n}", "ts": 1, "usage": dict(USAGE)})
            usage = {**USAGE, "calls": 2, "cost": 0.5, "a": f"t{n}"}
            store.write_done(f"i{n}", 2, {"turns": 2, "seconds": 1.0, "usage": usage}, None)
        for _ in range(2):
            store.write_run({"call": "killed", "a": "tk", "ts": 3, "usage": dict(USAGE)})
    finally:
        store.close()
    return items * 0.5


def test_a_job_budget_on_resume_counts_the_call_records_of_a_killed_attempt(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.jsonl"
    completed = _write_job(path, 3000)  # over a block of lines: read on the fast path
    killed = 2 * USAGE["cost"]
    ran: list[str] = []

    def work(item: str, ctx: Any) -> None:
        ran.append(item)

    items = [f"i{n}" for n in range(3000)] + ["killed", "new"]
    # Without the killed attempt's calls the job would be under its cap.
    cap = completed + killed / 2
    config = RunConfig(job_id="job", store=path, progress=False, job_max_cost_usd=cap)
    report = ResumableRun(config).run(work, items)
    assert (report.stop_reason, report.done, ran) == ("cost_budget", 0, [])
    assert report.already_done == 3000

    config = RunConfig(job_id="job", store=path, progress=False, job_max_cost_usd=cap + killed)
    report = ResumableRun(config).run(work, items)
    assert (report.stop_reason, report.done, ran) == ("completed", 2, ["killed", "new"])


def test_a_block_of_call_records_only_marks_nothing_done(tmp_path: Path) -> None:
    # A run of lines with no completion among them (a long item's calls) adds no
    # ID at all to the done set, not even an empty one.
    path = tmp_path / "calls.jsonl"
    calls = "".join(call_line(f"c{n % 7}", f"k{n}") for n in range(20_000))
    path.write_text(HEADER + done_line("a") + calls + done_line("b") + calls)
    assert loaded(path).done == {"a", "b"} == reference(path).done
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.stats.already_done == 2


def test_failures_among_calls_and_completions_are_read_alone_the_rest_by_pattern(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run with retries writes a failure every so often among its calls and
    # completions: only those lines are read one by one, in their place.
    path = tmp_path / "retries.jsonl"
    lines = [HEADER]
    for n in range(6000):
        lines += [call_line(f"i{n}", f"a{n}"), call_line(f"i{n}", f"a{n}")]
        if n % 10 == 0:
            failed = {"id": f"i{n}", "ts": 3, "status": "failed", "error": "E: x", "attempt": 1}
            lines.append(json.dumps(failed) + "\n")
        if n % 20 != 0:  # every other failed item stays failed
            lines.append(done_line(f"i{n}", turns=2, seconds=0.5))
    path.write_text("".join(lines))
    read_alone: list[bytes] = []
    real_line = _jsonl_read._Loader.line

    def line(loader: Any, raw: bytes) -> None:
        read_alone.append(raw)
        real_line(loader, raw)

    monkeypatch.setattr(_jsonl_read._Loader, "line", line)
    state = loaded(path)
    want = reference(path)
    assert (state.done, state.failures) == (want.done, want.failures)
    assert len(state.failures) == 300
    failures = [raw for raw in read_alone if b'"status": "failed"' in raw]
    others = [raw for raw in read_alone if b'"status": "failed"' not in raw]
    assert len(failures) == 600
    # Besides the header, only a line cut by the boundary of a 1 MiB read.
    blocks = path.stat().st_size // (1 << 20) + 1
    assert others[0].startswith(b'{"agent_resume"') and len(others) <= 1 + blocks


def test_a_corrupt_line_among_calls_is_named_by_its_own_line_number(tmp_path: Path) -> None:
    # The runs of lines around it are read by pattern: the count must still be exact.
    body = [call_line(f"c{n}", f"k{n}") if n % 3 else done_line(f"d{n}") for n in range(3000)]
    body.insert(1234, "{garbage\n")
    path = tmp_path / "bad.jsonl"
    path.write_text(HEADER + "".join(body))
    with pytest.warns(CheckpointWarning, match=r"bad\.jsonl:1236: skipped a corrupt line"):
        with open(path, "rb") as f:
            result = load(f, str(path))
    assert result.state.bad_lines == 1 and result.lines == 3002
    assert result.state.done == reference(path).done
