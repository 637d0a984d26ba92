"""The JSONL checkpoint format (SPEC section 5): header, torn tails, corrupt lines, durability, locks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent_resume import (
    AgentResume,
    CheckpointWarning,
    CorruptCheckpointError,
    JobLockedError,
    JsonlStore,
    ResultJsonlStore,
    StoreWriteError,
    UnsupportedFormatError,
)
from agent_resume.stores._jsonl_read import _DONE_LINE, _LAZY_LINE, load


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)


def header(job: str = "job") -> str:
    return json.dumps({"agent_resume": 1, "job_id": job, "created": 1}) + "\n"


def done_ids(path: Path, job: str = "job") -> set[str]:
    with AgentResume(JsonlStore(path)).resume_or_start(job) as s:
        return {
            i for i in [f"item-{n:03d}" for n in range(50)] + ["a", "b", "c", "d"] if s.is_done(i)
        }


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "a" / "b" / "job.jsonl"


def test_missing_parent_directories_are_created(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a")
    assert path.exists()


def test_the_original_headerless_format_loads(path: Path) -> None:
    write(path, '{"id": "item-001", "ts": 1748107200}\n{"id": "item-002", "ts": 1748107201}\n')
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job-42") as s:
        assert list(s.remaining(["item-001", "item-002", "item-003"])) == ["item-003"]
        s.mark_done("item-003")
    text = path.read_text()
    assert text.startswith('{"id": "item-001", "ts": 1748107200}\n')
    assert text.endswith(
        '{"id": "item-003", "ts": ' + str(json.loads(text.splitlines()[-1])["ts"]) + "}\n"
    )


def test_original_files_with_int_ids_load_as_strings(path: Path) -> None:
    write(path, '{"id": 7, "ts": 1}\n')
    with AgentResume(JsonlStore(path)).resume_or_start("j") as s:
        assert s.is_done("7")
        assert s.is_done(7)


def test_a_newer_major_version_is_refused(path: Path) -> None:
    write(path, json.dumps({"agent_resume": 2, "job_id": "job"}) + "\n")
    with pytest.raises(UnsupportedFormatError, match="version 2") as info:
        AgentResume(JsonlStore(path)).resume_or_start("job")
    assert info.value.path == str(path)
    # the lock was released: a later open with an older file works
    write(path, header())
    AgentResume(JsonlStore(path)).resume_or_start("job").close()


def test_unknown_fields_and_record_kinds_are_ignored(path: Path) -> None:
    write(
        path,
        header()
        + '{"id": "a", "ts": 1, "future_field": [1, 2]}\n'
        + '{"kind": "something-new", "x": 1}\n'
        + '{"id": "b", "ts": 1, "status": "archived"}\n'
        + '{"run": "end", "ts": 5, "report": {"done": 1}}\n',
    )
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done("a")
        assert not s.is_done("b")
        assert s.runs == [{"run": "end", "ts": 5, "report": {"done": 1}}]
        assert s.stats.bad_lines == 0


def test_lines_are_split_on_newline_only(path: Path) -> None:
    tricky = "a\u2028b\u2029c\x85d\x0ce\x1cf\rg"
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done(tricky)
        s.mark_done("after")
    raw = path.read_bytes()
    assert raw.count(b"\n") == 3
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done(tricky)
        assert s.is_done("after")
        assert s.stats.bad_lines == 0


# -- torn tails -------------------------------------------------------------------------------


def test_a_torn_tail_is_ignored_with_a_warning_and_cut_before_the_next_append(path: Path) -> None:
    write(path, header() + '{"id": "a", "ts": 1}\n{"id": "b", "t')
    with pytest.warns(CheckpointWarning, match="torn last line"):
        s = AgentResume(JsonlStore(path)).resume_or_start("job")
    with s:
        assert not s.is_done("b")
        assert path.read_bytes().endswith(b'{"id": "b", "t')  # untouched until a write
        s.mark_done("c")
    assert path.read_text().splitlines()[1:] == [
        '{"id": "a", "ts": 1}',
        path.read_text().splitlines()[-1],
    ]
    assert json.loads(path.read_text().splitlines()[-1])["id"] == "c"


def test_a_last_line_that_does_not_parse_is_a_torn_tail(path: Path) -> None:
    write(path, header() + '{"id": "a", "ts": 1}\n{"id": "b", "ts"\n')
    with pytest.warns(CheckpointWarning, match="torn"):
        s = AgentResume(JsonlStore(path)).resume_or_start("job")
    with s:
        assert s.stats.bad_lines == 0
        s.mark_done("c")
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r.get("id") for r in records] == [None, "a", "c"]


def test_a_zero_filled_tail_is_cut(path: Path) -> None:
    write(path, header().encode() + b'{"id": "a", "ts": 1}\n' + b"\0" * 4096)
    with pytest.warns(CheckpointWarning, match="torn"):
        s = AgentResume(JsonlStore(path)).resume_or_start("job")
    with s:
        s.mark_done("b")
    assert b"\0" not in path.read_bytes()
    assert done_ids(path) == {"a", "b"}


def test_a_torn_header_on_a_new_file_is_rewritten(path: Path) -> None:
    write(path, '{"agent_resume": 1, "job_')
    with pytest.warns(CheckpointWarning):
        s = AgentResume(JsonlStore(path)).resume_or_start("job")
    with s:
        s.mark_done("a")
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert records[0]["job_id"] == "job"
    assert records[1]["id"] == "a"


# -- corrupt middle lines ------------------------------------------------------------------------


def test_corrupt_middle_lines_are_skipped_counted_and_named(path: Path) -> None:
    write(
        path,
        header()
        + '{"id": "a", "ts": 1}\n'
        + "garbage here\n"
        + '["a list"]\n'
        + '{"id": "", "ts": 1}\n'
        + b"\xff\xfe not utf8\n".decode("latin-1")
        + '{"id": "b", "ts": 1}\n',
    )
    with pytest.warns(CheckpointWarning) as record:
        s = AgentResume(JsonlStore(path)).resume_or_start("job")
    messages = [str(w.message) for w in record]
    assert any(f"{path}:3:" in m for m in messages)
    assert any(f"{path}:4:" in m for m in messages)
    assert any(f"{path}:5:" in m for m in messages)
    with s:
        assert s.stats.bad_lines == 4
        assert s.is_done("a")
        assert s.is_done("b")


def test_non_utf8_bytes_name_their_line(path: Path) -> None:
    write(
        path,
        header().encode()
        + b'{"id": "a", "ts": 1}\n{"id": "\xff", "ts": 1}\n{"id": "b", "ts": 1}\n',
    )
    with pytest.warns(CheckpointWarning, match=r":3: .*UTF-8"):
        AgentResume(JsonlStore(path)).resume_or_start("job").close()


def test_strict_mode_raises_with_path_and_line_number(path: Path) -> None:
    write(path, header() + '{"id": "a", "ts": 1}\n{not json}\n{"id": "b", "ts": 1}\n')
    with pytest.raises(CorruptCheckpointError) as info:
        AgentResume(JsonlStore(path, strict=True)).resume_or_start("job")
    assert info.value.path == str(path)
    assert info.value.line_number == 3
    assert f"{path}:3" in str(info.value)
    assert isinstance(info.value, ValueError)
    # strict failure released the lock and changed nothing
    with pytest.warns(CheckpointWarning):
        AgentResume(JsonlStore(path)).resume_or_start("job").close()


def test_many_bad_lines_warn_a_bounded_number_of_times(path: Path) -> None:
    write(path, header() + "bad\n" * 50 + '{"id": "a", "ts": 1}\n')
    with pytest.warns(CheckpointWarning) as record:
        s = AgentResume(JsonlStore(path)).resume_or_start("job")
    s.close()
    assert len(record) == 11
    assert "50 corrupt lines" in str(record[-1].message)


def test_the_fast_path_and_the_careful_path_agree(tmp_path: Path) -> None:
    lines = [header()]
    expected = set()
    for i in range(30_000):
        item = f"id-{i}"
        if i % 997 == 0:
            lines.append(
                json.dumps(
                    {
                        "id": item,
                        "ts": 1,
                        "status": "failed",
                        "error": "x",
                        "attempt": 1,
                        "retryable": True,
                    }
                )
                + "\n"
            )
        elif i % 1013 == 0:
            lines.append(json.dumps({"id": item + '\u00e9"', "ts": 1}, ensure_ascii=False) + "\n")
            expected.add(item + '\u00e9"')
        else:
            lines.append(f'{{"id": "{item}", "ts": {i}}}\n')
            expected.add(item)
    path = tmp_path / "big.jsonl"
    write(path, "".join(lines))
    with open(path, "rb") as f:
        result = load(f, str(path))
    assert result.state.done == expected
    assert len(result.state.failures) == len([i for i in range(30_000) if i % 997 == 0])
    assert result.lines == 30_001
    assert result.good_length == path.stat().st_size


# -- durability ----------------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["flush", "group", "fsync"])
def test_every_durability_mode_records_every_completion(path: Path, durability: str) -> None:
    with AgentResume(JsonlStore(path, durability=durability)).resume_or_start("job") as s:  # type: ignore[arg-type]
        for i in range(300):
            s.mark_done(f"item-{i}")
    text = path.read_text().splitlines()
    assert len(text) == 301


def test_fsync_mode_syncs_every_record(path: Path) -> None:
    store = JsonlStore(path, durability="fsync")
    calls: list[int] = []
    store._fsync = lambda fd: calls.append(fd)
    with AgentResume(store).resume_or_start("job") as s:
        s.mark_done("a")
        s.mark_done("b")
    assert len(calls) >= 3  # header, a, b (and the final flush)


def test_group_mode_syncs_soon_after_a_record(path: Path) -> None:
    store = JsonlStore(path, durability="group")
    calls: list[float] = []
    store._fsync = lambda fd: calls.append(time.monotonic())
    with AgentResume(store).resume_or_start("job") as s:
        s.mark_done("a")
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.001)
        assert calls, "group mode never synced a lone record"


def test_group_mode_syncs_at_most_once_per_256_records_in_a_burst(path: Path) -> None:
    store = JsonlStore(path, durability="group")
    calls: list[int] = []
    store._fsync = lambda fd: calls.append(fd)
    with AgentResume(store).resume_or_start("job") as s:
        for i in range(2000):
            s.mark_done(f"i{i}")
    assert 1 <= len(calls) <= 2000 // 2


@pytest.mark.parametrize("durability", ["fsync", "group"])
def test_after_an_fsync_error_the_store_refuses_writes(path: Path, durability: str) -> None:
    store = JsonlStore(path, durability=durability)  # type: ignore[arg-type]
    with AgentResume(store).resume_or_start("job") as s:
        s.mark_done("a")
        s.flush()
        attempts: list[int] = []

        def failing(fd: int) -> None:
            attempts.append(fd)
            raise OSError(errno.EIO, "Input/output error")

        store._fsync = failing
        if durability == "fsync":
            with pytest.raises(StoreWriteError, match="refuses further writes"):
                s.mark_done("b")
        else:
            s.mark_done("b")
            with pytest.raises(StoreWriteError):
                s.flush()
        with pytest.raises(StoreWriteError, match="refuses writes"):
            s.mark_done("c")
        with pytest.raises(StoreWriteError):
            s.mark_failed("d", "x")
        assert len(attempts) == 1  # never retried
        assert not s.is_done("c")
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done("a")
        assert not s.is_done("c")


def test_an_unknown_durability_is_refused() -> None:
    from agent_resume import ArgumentValueError

    with pytest.raises(ArgumentValueError, match="durability") as info:
        JsonlStore("x.jsonl", durability="sometimes")  # type: ignore[arg-type]
    assert "sometimes" in str(info.value)


# -- writes that fail part-way -------------------------------------------------------------------

EFBIG_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys
    from agent_resume import AgentResume, ResultJsonlStore, StoreWriteError
    path, limit = sys.argv[1], int(sys.argv[2])
    store = ResultJsonlStore(path)
    acked = []
    with AgentResume(store).resume_or_start("job") as s:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        for i in range(10_000):
            try:
                s.mark_done(f"item-{i}", result="x" * (i % 97))
            except StoreWriteError as exc:
                print(json.dumps({"acked": acked, "error": str(exc), "errno": exc.__cause__.errno if exc.__cause__ and hasattr(exc.__cause__, "errno") else None}))
                break
            acked.append(f"item-{i}")
        try:
            s.mark_done("after-failure")
            print("UNEXPECTED")
        except StoreWriteError:
            pass
    """
)


@pytest.mark.parametrize("limit", [300, 1000, 4096, 7777])
def test_a_write_past_the_file_size_limit_is_cut_back(path: Path, limit: int) -> None:
    path.parent.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-c", EFBIG_CHILD, str(path), str(limit)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "UNEXPECTED" not in proc.stdout
    report = json.loads(proc.stdout.splitlines()[0])
    assert "cut back" in report["error"]
    data = path.read_bytes()
    assert data.endswith(b"\n")
    assert len(data) <= limit
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        assert s.stats.bad_lines == 0
        for item in report["acked"]:
            assert s.is_done(item)
        done_in_file = [json.loads(x)["id"] for x in data.decode().splitlines()[1:]]
        assert done_in_file == report["acked"]


# -- the per-job lock ----------------------------------------------------------------------------


def test_a_second_session_in_the_same_process_is_refused(path: Path) -> None:
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        with pytest.raises(JobLockedError) as info:
            AgentResume(JsonlStore(path)).resume_or_start("job")
        assert info.value.pid == os.getpid()
        assert str(os.getpid()) in str(info.value)
        s.mark_done("a")
    AgentResume(JsonlStore(path)).resume_or_start("job").close()


def test_a_session_in_another_process_is_refused_and_the_lock_dies_with_it(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from agent_resume import AgentResume, JsonlStore
        s = AgentResume(JsonlStore({str(path)!r})).resume_or_start("job")
        s.mark_done("held")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(JobLockedError) as info:
            AgentResume(JsonlStore(path)).resume_or_start("job")
        assert info.value.pid == child.pid
        assert f"process {child.pid}" in str(info.value)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done("held")


def test_a_store_object_cannot_be_opened_twice(path: Path) -> None:
    from agent_resume import StoreError

    store = JsonlStore(path)
    with AgentResume(store).resume_or_start("job"):
        with pytest.raises(StoreError, match="already open"):
            store.open("job")


def test_a_checkpoint_path_under_a_file_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="file"):
        AgentResume(JsonlStore(blocker / "job.jsonl")).resume_or_start("job")


def test_result_store_records_results_as_json(path: Path) -> None:
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a", result={"summary": "ok", "n": [1, 2]})
    assert json.loads(path.read_text().splitlines()[1])["result"] == {"summary": "ok", "n": [1, 2]}


def test_a_completion_with_turns_and_seconds_stays_on_the_fast_path(path: Path) -> None:
    # A run records each attempt's turns and seconds: its completions must still be
    # read by the resume's pattern (ID and fingerprint only), not decoded in full.
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_failed("a", "boom", turns=2, seconds=0.5)
        s.mark_done("a", usage={"input_tokens": 9}, stop="max_turns", turns=3, seconds=1.25)
        s.mark_done("b", turns=0, seconds=1e-05)
    lines = path.read_text().splitlines()
    done = [line.encode() for line in lines if '"status"' not in line and '"id"' in line]
    assert done[0].startswith(b'{"id": "a", "ts": ') and b'"turns": 3, "seconds": 1.25' in done[0]
    assert all(_DONE_LINE.fullmatch(line) for line in done)
    assert _LAZY_LINE.fullmatch(done[0])


def test_a_line_decodes_as_json_loads_decodes_it() -> None:
    # parse_line calls the decoder's scanner itself and json.loads for anything else:
    # the record, or the error's message, must be what json.loads gives, for any line.
    import random

    from agent_resume.stores._jsonl_read import parse_line

    rng = random.Random(3)
    valid = [
        '{"x": 1, "usage": {"in": 5, "cost": 0.25, "model": "m"}}',
        '{"x": [1, 2.5e3, true, null], "s": "t\\u00e9\\n"}',
        '{"x": {"y": {"z": []}}}',
        '{"x": NaN, "y": -Infinity}',
        "{}",
    ]
    noise = [" ", "\t", "\r", "x", "}", "{", ",", '"', "1", "[", "]", ":"]
    lines = [*valid, "", " ", "[1]", '"s"', "3", "null"]
    for _ in range(2000):
        line = list(rng.choice(valid))
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(line))
            if rng.random() < 0.5 and line:
                del line[min(at, len(line) - 1)]
            else:
                line.insert(at, rng.choice(noise))
        lines.append("".join(line))
    outcomes = {"record": 0, "error": 0}
    for text in lines:
        found = parse_line(text.encode("utf-8"))
        error = None
        try:
            expected = json.loads(text)
        except ValueError as exc:
            error = f"not JSON: {exc}"
        if error is not None:
            assert found == error, text
            outcomes["error"] += 1
        elif isinstance(expected, dict):
            assert found == expected, text
            outcomes["record"] += 1
        else:
            assert found == f"not a JSON object but {type(expected).__name__}", text
    assert outcomes["record"] > 100 and outcomes["error"] > 100
