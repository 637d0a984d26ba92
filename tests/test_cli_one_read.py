"""``status`` and ``report`` read a JSONL checkpoint once (issue 15), and see what two reads saw.

``JsonlStore.describe_records`` describes the job and hands every record to
the command's folds in one pass over the file; these tests check it gives
exactly ``describe()`` and ``iter_records()`` on files of every shape, and
that the commands no longer read the file a second time.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from agent_resume import (
    AgentResume,
    JsonlStore,
    NotACheckpointError,
    ResultJsonlStore,
    UnsupportedFormatError,
    Usage,
)
from agent_resume._cli._main import main
from agent_resume.stores import OnePassStore, _jsonl, _jsonl_read

HEADER = json.dumps({"agent_resume": 1, "job_id": "job", "created": 7}) + "\n"


def _files() -> dict[str, str]:
    done = [
        json.dumps({"id": f"i{n}", "ts": 1, "usage": {"in": n, "calls": 1}}) + "\n"
        for n in range(30)
    ]
    failed = (
        json.dumps({"id": "f", "ts": 2, "status": "failed", "error": "E: x", "attempt": 1}) + "\n"
    )
    call = json.dumps({"call": "f", "a": "k", "ts": 2, "usage": {"in": 3, "calls": 1}}) + "\n"
    run = json.dumps({"run": "start", "ts": 1, "max_attempts": 2}) + "\n"
    long = json.dumps({"id": "long", "ts": 3, "result": "x" * (3 << 20)}) + "\n"
    return {
        "plain": HEADER + run + "".join(done) + call + failed,
        "corrupt middle": HEADER
        + "".join(done[:10])
        + "{not json\n"
        + "\n  \n"
        + "".join(done[10:]),
        "torn tail": HEADER + "".join(done) + '{"id": "half", "ts"',
        "bad last line": HEADER + "".join(done) + "{garbage}\n",
        "bad line then blank": HEADER + "".join(done) + "{garbage}\n\n",
        "headerless": "".join(done) + failed,
        "header out of place": HEADER + "".join(done[:3]) + HEADER + "".join(done[3:]),
        "long line": HEADER + "".join(done[:5]) + long + "".join(done[5:]),
        "blank first": "\n" + HEADER + "".join(done),
        "empty": "",
    }


@pytest.mark.parametrize("store_type", [JsonlStore, ResultJsonlStore])
@pytest.mark.parametrize("name", list(_files()))
def test_one_read_gives_what_describe_and_iter_records_give(
    tmp_path: Path, name: str, store_type: type[JsonlStore]
) -> None:
    path = tmp_path / "ck.jsonl"
    path.write_text(_files()[name], encoding="utf-8")
    store = store_type(path)
    assert isinstance(store, OnePassStore)
    seen: list[dict[str, Any]] = []
    with warnings.catch_warnings(record=True) as first:
        warnings.simplefilter("always")
        one = store.describe_records(seen.append, max_attempts=2)
    with warnings.catch_warnings(record=True) as second:
        warnings.simplefilter("always")
        two = store.describe(max_attempts=2)
    assert one == two
    assert [str(w.message) for w in first] == [str(w.message) for w in second]
    assert seen == list(store.iter_records())


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"id": "a"}\n{"id": "b"}\n', NotACheckpointError),  # an items file
        (json.dumps({"agent_resume": 99, "job_id": "j"}) + "\n", UnsupportedFormatError),
    ],
)
def test_one_read_refuses_what_describe_refuses(
    tmp_path: Path, text: str, error: type[Exception]
) -> None:
    path = tmp_path / "ck.jsonl"
    path.write_text(text)
    seen: list[dict[str, Any]] = []
    with pytest.raises(error):
        JsonlStore(path).describe_records(seen.append)
    with pytest.raises(error):
        JsonlStore(path).describe()
    assert seen == []


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["report", "--format", "json"]])
def test_status_and_report_read_a_jsonl_checkpoint_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    path = tmp_path / "ck.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        for n in range(50):
            s.mark_failed(f"i{n}", "boom", usage=Usage(input_tokens=5, calls=1))
            s.mark_done(f"i{n}", usage=Usage(input_tokens=n, calls=1, cost_usd=0.01))
    reads: list[str] = []
    real_load, real_records = _jsonl.load, _jsonl.read_records

    def load(*args: Any, **kwargs: Any) -> Any:
        reads.append("load")
        return real_load(*args, **kwargs)

    def read_records(*args: Any, **kwargs: Any) -> Any:
        reads.append("read_records")
        return real_records(*args, **kwargs)

    monkeypatch.setattr(_jsonl, "load", load)
    monkeypatch.setattr(_jsonl, "read_records", read_records)
    assert main([*argv, str(path)]) == 0
    assert reads == ["load"]
    out = capsys.readouterr().out
    if argv == ["status", "--json"]:
        info = json.loads(out)
        assert (info["done"], info["failed"], info["job_id"]) == (50, 0, "job")
        assert info["total"]["calls"] == 100
    if argv[0] == "report":
        document = json.loads(out)
        assert len(document["items"]) == 50 and document["total"]["calls"] == 100
    assert _jsonl_read.load is real_load  # the reader itself is untouched
