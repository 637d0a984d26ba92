"""The JSONL store's file handling under attack (issue 17 items 1, 8, 10, 12, 13, 16).

One file reached through other names (symlinks, hard links), deeply nested
lines, files that are not checkpoints, blank lines, forked children holding
descriptors, and lines far longer than a read block.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from agent_resume import (
    AgentResume,
    ArgumentValueError,
    CheckpointWarning,
    CorruptCheckpointError,
    JobLockedError,
    JobMismatchError,
    JsonlStore,
    NotACheckpointError,
    ResultJsonlStore,
    StoreClosedError,
    StoreError,
    StoreWriteError,
    compact,
    repair,
)
from agent_resume._records import MAX_DEPTH
from agent_resume.stores._jsonl_read import load

HEADER = json.dumps({"agent_resume": 1, "job_id": "job", "created": 1}) + "\n"
DEEP = "[" * 100_000
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def write(path: Path, text: str | bytes) -> None:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)


def cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_resume", *argv],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=120,
    )


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


# -- item 1: one lock per file, whatever its name ----------------------------------------------


@pytest.fixture
def real(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "real.jsonl"
    path.parent.mkdir()
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("first")
    return path


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "dotdot"])
def test_a_second_name_for_the_same_file_is_locked_out(real: Path, kind: str) -> None:
    other = real.parent.parent / "other.jsonl"
    if kind == "symlink":
        other.symlink_to(real)
    elif kind == "hardlink":
        os.link(real, other)
    else:
        other = real.parent / ".." / "data" / "real.jsonl"
    with AgentResume(JsonlStore(real)).resume_or_start("job") as s:
        with pytest.raises(JobLockedError) as info:
            AgentResume(JsonlStore(other)).resume_or_start("job")
        assert info.value.pid == os.getpid()
        s.mark_done("a")
    # and the other way round
    with AgentResume(JsonlStore(other)).resume_or_start("job") as s:
        with pytest.raises(JobLockedError):
            AgentResume(JsonlStore(real)).resume_or_start("job")
        assert s.is_done("a")


def test_a_session_in_another_process_holds_every_name_and_is_named(real: Path) -> None:
    link = real.parent / "current.jsonl"
    link.symlink_to(real.name)
    script = textwrap.dedent(
        f"""
        import time
        from agent_resume import AgentResume, JsonlStore
        s = AgentResume(JsonlStore({str(link)!r})).resume_or_start("job")
        s.mark_done("held")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        for name in (real, link):
            with pytest.raises(JobLockedError) as info:
                AgentResume(JsonlStore(name)).resume_or_start("job")
            assert info.value.pid == child.pid
            assert f"process {child.pid}" in str(info.value)
        before = real.read_bytes()
        with pytest.raises(JobLockedError):
            repair(real)
        with pytest.raises(JobLockedError):
            compact(real)
        assert real.read_bytes() == before
        assert cli("repair", str(real)).returncode == 3
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with AgentResume(JsonlStore(real)).resume_or_start("job") as s:
        assert s.is_done("held")


def test_a_torn_tail_never_lets_a_second_writer_cut_acknowledged_records(real: Path) -> None:
    with open(real, "ab") as f:
        f.write(b'{"id": "torn", "t')
    link = real.parent / "link.jsonl"
    link.symlink_to(real)
    with pytest.warns(CheckpointWarning, match="torn"):
        first = AgentResume(JsonlStore(real)).resume_or_start("job")
    with first:
        first.mark_done("acked-1")  # cuts the torn tail, appends
        with pytest.raises(JobLockedError):
            AgentResume(JsonlStore(link)).resume_or_start("job")
        first.mark_done("acked-2")
    with AgentResume(JsonlStore(link)).resume_or_start("job") as s:
        assert s.is_done("acked-1")
        assert s.is_done("acked-2")


def test_a_writer_that_ignores_the_lock_is_never_cut_away(real: Path) -> None:
    with open(real, "ab") as f:
        f.write(b'{"id": "torn", "t')
    with pytest.warns(CheckpointWarning, match="torn"):
        session = AgentResume(JsonlStore(real)).resume_or_start("job")
    with session:
        # Someone appends behind the lock's back (another tool, an older version).
        with open(real, "ab") as f:
            f.write(b's": 1}\n{"id": "theirs", "ts": 1}\n')
        after = real.read_bytes()
        with pytest.raises(StoreWriteError, match="changed since it was loaded"):
            session.mark_done("mine")
        assert real.read_bytes() == after  # nothing cut, nothing written


def test_repair_through_a_symlink_repairs_the_target_and_keeps_the_link(real: Path) -> None:
    with open(real, "ab") as f:
        f.write(b"garbage\n" + b'{"id": "b", "ts": 1}\n')
    link = real.parent.parent / "current.jsonl"
    link.symlink_to(real)
    report = repair(link)
    assert report.rewritten
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert b"garbage" not in real.read_bytes()
    assert report.backup is not None and Path(report.backup).parent == real.parent
    with open(real, "rb") as f:
        assert load(f, str(real), strict=True).state.done == {"first", "b"}
    report2 = compact(link)
    assert link.is_symlink()
    assert report2.backup is not None and Path(report2.backup).parent == real.parent


def test_repair_and_compact_refuse_while_a_job_holds_the_file_through_another_name(
    real: Path,
) -> None:
    link = real.parent / "current.jsonl"
    link.symlink_to(real)
    hard = real.parent / "hard.jsonl"
    with AgentResume(JsonlStore(link)).resume_or_start("job") as s:
        for name in (real, link):
            with pytest.raises(JobLockedError):
                repair(name, dry_run=True)
            with pytest.raises(JobLockedError):
                compact(name)
        os.link(real, hard)
        with pytest.raises(JobLockedError):
            repair(hard)
        s.mark_done("later")
    with AgentResume(JsonlStore(real)).resume_or_start("job") as s:
        assert s.is_done("later")


def test_repair_refuses_a_file_with_several_hard_links(real: Path) -> None:
    os.link(real, real.parent / "hard.jsonl")
    before = real.read_bytes()
    for action in (repair, compact):
        with pytest.raises(StoreError, match="2 hard links"):
            action(real)
    assert real.read_bytes() == before


def test_a_backup_left_linked_by_a_killed_rewrite_does_not_block_the_next(real: Path) -> None:
    # atomic_write links the old file to its backup name, then renames the new
    # file over it: a kill in between leaves the backup as a second link.
    os.link(real, f"{real}.bak-20261129T000000Z")
    with open(real, "ab") as f:
        f.write(b"garbage\n" + b'{"id": "b", "ts": 1}\n')
    assert repair(real).rewritten
    assert compact(real).backup is not None


def test_repair_of_a_directory_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(StoreError, match="not a checkpoint file"):
        repair(tmp_path / "dir.jsonl")


# -- item 8: deeply nested lines ----------------------------------------------------------------


@pytest.fixture
def deep(tmp_path: Path) -> Path:
    path = tmp_path / "deep.jsonl"
    write(path, HEADER + '{"id": "a", "ts": 1}\n' + DEEP + "\n" + '{"id": "b", "ts": 1}\n')
    return path


def test_a_deeply_nested_line_is_skipped_with_a_warning_naming_it(deep: Path) -> None:
    with pytest.warns(CheckpointWarning, match=rf"{deep}:3: skipped a corrupt line \(nested"):
        s = AgentResume(ResultJsonlStore(deep)).resume_or_start("job")
    with s:
        assert s.is_done("a") and s.is_done("b")
        assert s.stats.bad_lines == 1
        assert dict(s.results()) == {"a": None, "b": None}
    with pytest.raises(CorruptCheckpointError) as info:
        AgentResume(JsonlStore(deep, strict=True)).resume_or_start("job")
    assert info.value.line_number == 3


def test_maintenance_reads_deeply_nested_lines(deep: Path) -> None:
    report = repair(deep, dry_run=True)
    assert [n for n, _ in report.dropped] == [3]
    assert not report.rewritten
    assert compact(deep).dropped_corrupt == 1
    assert b"[[[" not in deep.read_bytes()


def test_a_deep_line_in_the_last_place_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    write(path, HEADER + '{"id": "a", "ts": 1}\n' + DEEP + "\n")
    with pytest.warns(CheckpointWarning, match="torn"):
        s = AgentResume(JsonlStore(path)).resume_or_start("job")
    with s:
        s.mark_done("b")
    with open(path, "rb") as f:
        assert load(f, str(path), strict=True).state.done == {"a", "b"}


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["report"],
        ["export", "-o", "-"],
        ["repair", "--dry-run"],
        ["retry", "--failed"],
        ["compact"],
    ],
)
def test_every_command_reads_a_deeply_nested_checkpoint_without_a_traceback(
    deep: Path, command: list[str]
) -> None:
    proc = cli(command[0], str(deep), *command[1:], cwd=deep.parent)
    assert "Traceback" not in proc.stderr
    assert "RecursionError" not in proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_a_deeply_nested_items_line_is_a_one_line_error(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    write(items, '{"id": "a"}\n' + DEEP + "\n")
    module = tmp_path / "work.py"
    module.write_text("def process(item, ctx):\n    return None\n")
    proc = cli(
        "run", f"{module}:process", "--items", str(items), "--store", str(tmp_path / "j.jsonl")
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{items}:2:" in proc.stderr
    assert "nested too deeply" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_results_nested_past_the_documented_depth_are_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.jsonl"
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        size = path.stat().st_size
        for depth in (MAX_DEPTH + 1, 960, 100_000):
            with pytest.raises(ArgumentValueError, match="`result`") as info:
                s.mark_done("deep", result=nested(depth))
            assert info.value.parameter == "result"
        with pytest.raises(ArgumentValueError, match="`usage`"):
            s.mark_done("deep", usage={"input_tokens": 1, "extra": nested(MAX_DEPTH + 5)})
        assert path.stat().st_size == size
        assert not s.is_done("deep")
        wide = [[i] for i in range(5000)]  # many brackets, shallow: fine
        assert s.mark_done("wide", result=wide)
        assert s.mark_done("ok", result=nested(MAX_DEPTH - 1))
    with AgentResume(ResultJsonlStore(path, strict=True)).resume_or_start("job") as s:
        results = dict(s.results())
        assert results["ok"] == nested(MAX_DEPTH - 1)
        assert results["wide"] == wide


# -- items 10 and 12: files that are not checkpoints; blank lines --------------------------------


RUST = (
    '{"completed_items":[0],"state":{"last":0},"timestamp":1748107200.5,"turn":1}\n'
    '{"completed_items":[0,1],"state":{"last":1},"timestamp":1748107201.5,"turn":2}\n'
)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"id": "a", "text": "hello"}\n{"id": "b", "text": "world"}\n', "items file"),
        (RUST, "Rust agent-resume"),
        ('{"name": "x"}\n', "not a checkpoint record"),
        ("hello world\nsecond line\n", "no line is a checkpoint record"),
        ("just text without a newline", "holds no checkpoint record"),
        ('{"id": "a"}', "items file"),
        ("[1, 2, 3]\n", "holds no checkpoint record"),
    ],
    ids=["items", "rust", "other-json", "text", "text-no-newline", "item-no-newline", "array"],
)
def test_a_file_that_is_not_a_checkpoint_is_refused_and_never_written(
    tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "input.jsonl"
    write(path, content)
    for store in (JsonlStore(path), ResultJsonlStore(path), JsonlStore(path, strict=True)):
        with pytest.raises(NotACheckpointError, match=reason) as info:
            AgentResume(store).resume_or_start("job")
        assert info.value.path == str(path)
        assert str(path) in str(info.value)
        assert path.read_bytes() == content.encode()
    for action in (repair, compact):
        with pytest.raises(NotACheckpointError):
            action(path)
        assert path.read_bytes() == content.encode()
    # the failed open left nothing locked
    for command in (["status"], ["report"], ["repair"], ["compact"]):
        proc = cli(command[0], str(path))
        assert proc.returncode == 3, proc.stderr
        assert "not an agent-resume checkpoint" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert path.read_bytes() == content.encode()


def test_the_original_seed_format_still_loads_and_is_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    write(path, '{"id": "item-001", "ts": 1748107200}\n{"id": "item-002", "ts": 1748107260}\n')
    with AgentResume(JsonlStore(path)).resume_or_start("batch") as s:
        assert list(s.remaining(["item-001", "item-002", "item-003"])) == ["item-003"]
        s.mark_done("item-003")
    assert path.read_text().count("\n") == 3


def test_a_headerless_checkpoint_with_a_damaged_first_line_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    write(path, b'\xff\xfe garbage\n{"id": "item-001", "ts": 1748107200}\n{"id": "x", "ts": 2}\n')
    with pytest.warns(CheckpointWarning, match=":1: skipped"):
        s = AgentResume(JsonlStore(path)).resume_or_start("batch")
    with s:
        assert s.is_done("item-001")


def test_blank_lines_are_skipped_silently_even_in_strict_mode(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    write(path, "\n" + HEADER + '{"id": "a", "ts": 1}\n\n   \n\t\r\n{"id": "b", "ts": 1}\n\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with AgentResume(JsonlStore(path, strict=True)).resume_or_start("job") as s:
            assert s.is_done("a") and s.is_done("b")
            assert s.stats.bad_lines == 0
            s.mark_done("c")
        assert not repair(path).dropped
        with open(path, "rb") as f:
            assert load(f, str(path), strict=True).state.done == {"a", "b", "c"}
    seed = tmp_path / "seed.jsonl"
    write(seed, '\n{"id": "item-001", "ts": 1}\n\n')
    with AgentResume(JsonlStore(seed, strict=True)).resume_or_start("job") as s:
        assert s.is_done("item-001")


# -- item 13: forked children --------------------------------------------------------------------


def _holder_script(path: Path, fork: str) -> str:
    return textwrap.dedent(
        f"""
        import ctypes, multiprocessing, os, sys, time
        from agent_resume import AgentResume, JsonlStore, StoreClosedError
        s = AgentResume(JsonlStore({str(path)!r})).resume_or_start("job")
        s.mark_done("parent")

        def child(session):
            try:
                session.mark_done("from-child")
                print("child wrote", flush=True)
            except StoreClosedError as exc:
                print("child refused:", exc, flush=True)
            time.sleep(60)

        if {fork!r} == "multiprocessing":
            p = multiprocessing.get_context("fork").Process(target=child, args=(s,))
            p.start()
            pid = p.pid
        else:  # a fork that runs no Python at-fork hooks, as a C extension might make
            pid = ctypes.CDLL(None).fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
        time.sleep(0.5)
        print(pid, flush=True)
        time.sleep(60)
        """
    )


def _start_holder(path: Path, fork: str) -> tuple[subprocess.Popen[str], int, list[str]]:
    parent = subprocess.Popen(
        [sys.executable, "-c", _holder_script(path, fork)],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )
    assert parent.stdout is not None
    lines = []
    while True:
        line = parent.stdout.readline().strip()
        assert line, "the holder died"
        if line.isdigit():
            return parent, int(line), lines
        lines.append(line)


def _stop(parent: subprocess.Popen[str], child_pid: int) -> None:
    for pid in (parent.pid, child_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    parent.wait()
    if parent.stdout is not None:
        parent.stdout.close()


def _wait_gone(pid: int) -> None:
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
        except ChildProcessError:
            pass
        time.sleep(0.02)


def test_a_multiprocessing_child_does_not_keep_the_lock_after_its_parent_is_killed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.jsonl"
    parent, child_pid, said = _start_holder(path, "multiprocessing")
    try:
        assert any(line.startswith("child refused:") and "forked child" in line for line in said)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        os.kill(child_pid, 0)  # the child lives on
        with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
            assert s.is_done("parent")
            assert not s.is_done("from-child")
    finally:
        _stop(parent, child_pid)


def test_the_pid_in_the_lock_error_is_the_live_holder_even_a_child(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    parent, child_pid, _ = _start_holder(path, "c-fork")
    try:
        with pytest.raises(JobLockedError) as info:
            AgentResume(JsonlStore(path)).resume_or_start("job")
        assert info.value.pid == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        with pytest.raises(JobLockedError) as info:
            AgentResume(JsonlStore(path)).resume_or_start("job")
        assert info.value.pid == child_pid  # the dead parent is never named
        assert f"process {child_pid}" in str(info.value)
        os.kill(child_pid, signal.SIGKILL)
        _wait_gone(child_pid)
        with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
            assert s.is_done("parent")
    finally:
        _stop(parent, child_pid)


def test_a_program_the_job_starts_never_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    script = textwrap.dedent(
        f"""
        import subprocess, sys, time
        from agent_resume import AgentResume, JsonlStore
        s = AgentResume(JsonlStore({str(path)!r})).resume_or_start("job")
        s.mark_done("parent")
        child = subprocess.Popen(["sleep", "60"], close_fds=False)
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=ENV
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        os.kill(child_pid, 0)  # the program lives on
        with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
            assert s.is_done("parent")
    finally:
        _stop(parent, child_pid)


def test_a_store_used_in_a_forked_child_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    session = AgentResume(JsonlStore(path)).resume_or_start("job")
    read, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            session.mark_done("child")
            os.write(write_end, b"wrote")
        except StoreClosedError:
            os.write(write_end, b"refused")
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read, "rb") as f:
        said = f.read()
    os.waitpid(pid, 0)
    with session:
        assert said == b"refused"
        assert session.mark_done("parent")
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done("parent") and not s.is_done("child")


# -- item 16: one very long line -----------------------------------------------------------------


def test_a_line_far_longer_than_a_block_is_read_in_linear_time(tmp_path: Path) -> None:
    # With 4 KiB blocks, a 64 MiB line is 16,384 blocks: rebuilding `carry + block`
    # for each copies 512 GiB (hours); gathering the pieces copies 64 MiB once.
    path = tmp_path / "long.jsonl"
    big = "x" * (64 << 20)
    with open(path, "w") as f:
        f.write(HEADER + '{"id": "a", "ts": 1}\n')
        f.write('{"id": "big", "ts": 1, "result": "' + big + '"}\n{"id": "b", "ts": 1}\n')
        f.write('{"id": "torn", "ts": 1, "result": "' + big[:100_000])
    del big
    script = textwrap.dedent(
        f"""
        import warnings
        import agent_resume.stores._jsonl_read as r
        r._BLOCK = 4096
        warnings.simplefilter("ignore")
        with open({str(path)!r}, "rb") as f:
            result = r.load(f, "long.jsonl", strict=True)
        assert result.state.done == {{"a", "big", "b"}}, result.state.done
        assert result.torn_tail
        with open({str(path)!r}, "rb") as f:
            records = [rec for _, rec, _ in r.read_records(f, "long.jsonl")]
        assert len(records) == 5 and records[-1] == "torn last line"
        assert len(records[2]["result"]) == 64 << 20
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert proc.stdout.strip() == "ok", proc.stderr


# -- issue 15: resume does not decode what it does not need --------------------------------------


def _counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import agent_resume.stores._jsonl_read as reader

    calls = [0]
    real_loads = json.loads

    def loads(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return real_loads(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reader.json, "loads", loads)
    return calls


def _run_checkpoint(path: Path, n: int, result: bool) -> None:
    usage = '{"in": 1234, "out": 56, "calls": 1, "cost": 0.0012, "model": "gpt-4o-mini \\u00e9"}'
    lines = [HEADER]
    for i in range(n):
        extra = ', "attempt": 2, "stop": "max_turns"' if i % 7 == 0 else ""
        fp = f', "fp": "fp{i}"' if i % 3 == 0 else ""
        tail = ', "result": {"text": "' + "r" * 200 + '", "n": [1, 2]}' if result else ""
        lines.append(f'{{"id": "item-{i}", "ts": 1{extra}{fp}, "usage": {usage}{tail}}}\n')
    write(path, "".join(lines))


@pytest.mark.parametrize("result", [False, True], ids=["usage", "usage+result"])
def test_resume_reads_completions_without_decoding_their_usage_or_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result: bool
) -> None:
    path = tmp_path / "job.jsonl"
    _run_checkpoint(path, 20_000, result)
    calls = _counting_loads(monkeypatch)
    with open(path, "rb") as f:
        state = load(f, str(path)).state
    assert calls[0] <= 1  # the header alone
    assert len(state.done) == 20_000
    assert state.fingerprints == {f"item-{i}": f"fp{i}" for i in range(0, 20_000, 3)}
    # strict mode checks every line in full (and decodes results)
    with open(path, "rb") as f:
        strict_state = load(f, str(path), strict=True).state
    assert strict_state.done == state.done
    assert strict_state.fingerprints == state.fingerprints


def test_a_completion_after_a_failure_clears_it_on_every_path(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    failure = '{"id": "a", "ts": 1, "status": "failed", "error": "E: x", "attempt": 1, "retryable": true}\n'
    for done_line in (
        '{"id": "a", "ts": 2}\n',
        '{"id": "a", "ts": 2, "attempt": 2, "usage": {"in": 1}}\n',
        '{"id": "a", "ts": 2, "attempt": 2, "result": [1]}\n',
    ):
        # the completion in a block of its own, read on the block's fast path
        write(path, HEADER + failure + "\n" * (1 << 20) + done_line * 3)
        for strict in (False, True):
            with open(path, "rb") as f:
                state = load(f, str(path), strict=strict).state
            assert state.done == {"a"}
            assert state.failures == {}


def test_a_status_written_after_the_usage_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    write(
        path,
        HEADER
        + '{"id": "a", "ts": 1, "usage": {"in": 1}, "status": "failed", "error": "x"}\n'
        + '{"id": "b", "ts": 1, "result": {"status": "ok"}}\n',
    )
    with open(path, "rb") as f:
        state = load(f, str(path)).state
    assert state.done == {"b"}
    assert set(state.failures) == {"a"}


def test_damage_inside_a_usage_is_found_by_strict_mode_and_repair(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    write(
        path,
        HEADER + '{"id": "a", "ts": 1, "usage": {"in": 1, oops}}\n' + '{"id": "b", "ts": 1}\n',
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open(path, "rb") as f:
            assert load(f, str(path)).state.done == {"a", "b"}  # read by its prefix
    with pytest.raises(CorruptCheckpointError) as info:
        AgentResume(JsonlStore(path, strict=True)).resume_or_start("job")
    assert info.value.line_number == 2
    assert repair(path, dry_run=True).dropped[0][0] == 2


def test_a_leading_tilde_is_the_home_directory_wherever_a_path_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_resume import PriceTable, ResumableRun, RunConfig

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    (home / "prices.json").write_text(json.dumps({"house-model": {"input": 1, "output": 2}}))

    def process(item: dict[str, str], ctx: object) -> str:
        ctx.save_conversation([{"role": "user", "content": item["id"]}])  # type: ignore[attr-defined]
        raise RuntimeError("kept for a later run")

    items = [{"id": "a"}, {"id": "b"}]
    for store in ("~/ck/job.jsonl", "sqlite:///~/ck/job.db"):
        report = ResumableRun(
            RunConfig(job_id="job", store=store, conversation_dir="~/talks", progress=False)
        ).run(process, items)
        assert report.failed == 2
    assert (home / "ck" / "job.jsonl").is_file()
    assert (home / "ck" / "job.db").is_file()
    assert sorted(p.name for p in (home / "talks").iterdir())  # the saved conversations
    assert repair("~/ck/job.jsonl").lines == compact("~/ck/job.jsonl").lines_before
    assert PriceTable.from_file("~/prices.json", builtin=False, genai_prices=False).lookup(
        "house-model"
    )
    for target in ("~/ck/job.jsonl", "~/ck/job.db", "sqlite:///~/ck/job.db"):
        shown = subprocess.run(
            [sys.executable, "-m", "agent_resume", "status", target],
            capture_output=True,
            text=True,
            env={**ENV, "HOME": str(home)},
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr
        assert "2 failed" in shown.stdout or "failed       2" in shown.stdout, shown.stdout
    assert list(work.iterdir()) == []  # no directory named "~" in the working directory


def test_a_checkpoint_saved_with_a_byte_order_mark_keeps_its_header(tmp_path: Path) -> None:
    # An editor saving "UTF-8 with BOM" put three bytes before the header, which
    # then read as a corrupt line: the job's ID was lost, and another job could
    # append to the file as to an original-format one.
    path = tmp_path / "job.jsonl"
    body = HEADER + '{"id": "a", "ts": 1}\n{"id": "b", "ts": 1, "usage": {"in": 5}}\n'
    write(path, b"\xef\xbb\xbf" + body.encode() + b'{"id": "to')  # and a torn tail
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(JobMismatchError):
            AgentResume(JsonlStore(path)).resume_or_start("another-job")
        with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
            assert list(s.remaining(["a", "b", "c"])) == ["c"]
            s.mark_done("c")
    assert [str(w.message) for w in caught if "corrupt" in str(w.message)] == []
    # The torn tail was cut where it began: the BOM's three bytes count.
    assert (
        path.read_bytes()
        == b"\xef\xbb\xbf"
        + body.encode()
        + b'{"id": "c", "ts": '
        + (path.read_bytes().rsplit(b'"ts": ', 1)[1])
    )
    records = list(JsonlStore(path).iter_records())
    assert [r.get("id") for r in records] == ["a", "b", "c"]
    assert repair(path).dropped == []
    shown = cli("status", str(path))
    assert shown.returncode == 0 and "job          job" in shown.stdout


@pytest.mark.parametrize("kind", ["/dev/null", "fifo"])
@pytest.mark.parametrize("store", [JsonlStore, ResultJsonlStore])
def test_a_path_to_a_device_or_a_fifo_is_refused_and_nothing_is_acknowledged(
    tmp_path: Path, kind: str, store: type[JsonlStore]
) -> None:
    # Through a symlink to /dev/null every completion was acknowledged and none
    # kept (each run did every item again); on a FIFO the open hung reading it.
    path = tmp_path / "ck.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(kind)
    with pytest.raises(NotACheckpointError, match="not a regular file") as info:
        AgentResume(store(path)).resume_or_start("job")
    assert info.value.path == str(path)
    assert not Path(f"{os.path.realpath(path)}.lock").exists()
    assert not Path("/dev/null.lock").exists()
