"""repair and compact: atomic rewrites with a backup."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent_resume import AgentResume, CheckpointWarning, JobLockedError, JsonlStore, StoreError
from agent_resume.stores._jsonl_maint import compact, repair


def header() -> str:
    return json.dumps({"agent_resume": 1, "job_id": "job", "created": 1}) + "\n"


def test_repair_drops_torn_and_corrupt_lines_and_keeps_every_valid_record(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    valid = [header(), '{"id": "a", "ts": 1}\n', '{"id": "b", "ts": 2, "result": [1]}\n']
    path.write_text(valid[0] + valid[1] + "garbage\n" + valid[2] + '{"id": "c", "t')
    report = repair(path)
    assert report.dropped == [(3, report.dropped[0][1]), (5, "torn last line")]
    assert report.kept == 3
    assert report.backup is not None and report.rewritten
    assert path.read_text() == "".join(valid)
    assert Path(report.backup).read_text().endswith('{"id": "c", "t')
    with AgentResume(JsonlStore(path, strict=True)).resume_or_start("job") as s:
        assert s.is_done("a") and s.is_done("b")


def test_repair_dry_run_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    path.write_text(header() + "bad\n" + '{"id": "a", "ts": 1}\n')
    before = path.read_bytes()
    report = repair(path, dry_run=True)
    assert [line for line, _ in report.dropped] == [2]
    assert report.backup is None
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path] or all(
        p.name.endswith(".lock") or p == path for p in tmp_path.iterdir()
    )


def test_repair_of_a_clean_file_rewrites_nothing(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    path.write_text(header() + '{"id": "a", "ts": 1}\n')
    report = repair(path)
    assert report.dropped == []
    assert not report.rewritten


def test_repair_refuses_while_a_session_holds_the_job(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("job"):
        for maintain in (repair, compact):
            with pytest.raises(JobLockedError) as raised:
                maintain(path)
            # No placeholder job name in the message (it said "job '(maintenance)'").
            assert str(raised.value) == (
                f"{path} is held by a live session in process {os.getpid()}: end it first "
                "(the file is rewritten, which needs it closed)"
            )


def test_repair_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such checkpoint"):
        repair(tmp_path / "nope.jsonl")


def test_compact_keeps_the_latest_record_per_item(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=5) as s:
        s.mark_failed("a", "one")
        s.mark_failed("a", "two")
        s.mark_done("a")
        s.mark_failed("b", "one")
        s.mark_failed("b", "two")
        s.mark_failed("c", "one")
        s.retry(["c"])
        s.mark_done("d")
        s.record_run({"run": "end", "ts": 1, "report": {"done": 2}})
    before = len(path.read_text().splitlines())
    report = compact(path)
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert report.lines_before == before
    assert report.lines_after == len(records) == 5
    assert records[0]["job_id"] == "job"
    assert [(r.get("id"), r.get("status")) for r in records[1:]] == [
        ("a", None),
        ("b", "failed"),
        ("d", None),
        (None, None),
    ]
    with AgentResume(JsonlStore(path)).resume_or_start("job", max_attempts=5) as s:
        assert s.is_done("a") and s.is_done("d")
        assert s.attempts("b") == 2
        assert s.attempts("c") == 0
        assert len(s.runs) == 1
        assert list(s.remaining(["a", "b", "c", "d"])) == ["b", "c"]


def test_compact_drops_corrupt_lines(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    path.write_text(header() + '{"id": "a", "ts": 1}\nbad\n{"id": "a", "ts": 2}\n')
    report = compact(path)
    assert report.dropped_corrupt == 1
    assert path.read_text() == header() + '{"id": "a", "ts": 2}\n'
    assert report.backup is not None and Path(report.backup).exists()


def test_a_job_opened_after_repair_has_no_warnings(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    path.write_text(header() + "bad\n" + '{"id": "a", "ts": 1}\n' + '{"id": "b"')
    with pytest.warns(CheckpointWarning):
        AgentResume(JsonlStore(path)).resume_or_start("job").close()
    repair(path)
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.stats.bad_lines == 0
        assert s.is_done("a")


def test_compact_keeps_only_the_latest_job_state(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("job") as session:
        for n in range(5):
            session.mark_done(f"item-{n}")
            session.set_state("high_water", n)
    compact(path)
    states = [r for r in map(json.loads, path.read_text().splitlines()) if "state" in r]
    assert [r["state"] for r in states] == [{"high_water": 4}]
    with AgentResume(JsonlStore(path)).resume_or_start("job") as session:
        assert session.state == {"high_water": 4}
        assert session.is_done("item-4")
