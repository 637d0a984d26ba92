"""Fault injection: file size limit (EFBIG), full disk (ENOSPC), fsync errors (EIO), read-only files.

Each fault must raise at the call that met it, leave no half-written record,
report nothing unrecorded as done, and keep every acknowledged record.
ENOSPC and read-only files need a small tmpfs mounted for the test (CI runs
as root): where mounting fails the tests skip, except in CI (``CI=true``),
where they fail.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _torture_harness as harness
import pytest

from agent_resume import (
    AgentResume,
    CheckpointWarning,
    JsonlStore,
    ResultJsonlStore,
    StoreError,
    StoreWriteError,
)
from agent_resume.stores._jsonl_maint import compact, repair
from agent_resume.stores._jsonl_read import load

FAULTS_CHILD = str(Path(__file__).with_name("_torture_faults_child.py"))

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="rlimits, tmpfs and chattr")


def strict_state(path: Path) -> Any:
    """Load a checkpoint in strict mode, failing on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open(path, "rb") as f:
            return load(f, str(path), strict=True).state


def completions_in_order(path: Path) -> list[str]:
    out = []
    for line in path.read_bytes().split(b"\n")[1:]:
        if line:
            record = json.loads(line)
            if "id" in record and "status" not in record:
                out.append(record["id"])
    return out


# -- EFBIG: a sweep of file size limits ---------------------------------------------------------

HEADER = len(json.dumps({"agent_resume": 1, "job_id": "job", "created": int(time.time())})) + 1
LIMITS = [
    1,
    40,
    HEADER - 1,
    HEADER,
    HEADER + 1,
    80,
    99,
    100,
    128,
    200,
    255,
    256,
    257,
    333,
    512,
    777,
    1000,
    1023,
    1024,
    1025,
]
LIMITS += [2000, 2047, 2048, 2049, 4095, 4096, 4097, 6000, 8191, 8192, 8193, 12345, 65536]
EFBIG_CASES = [
    [limit, durability, kind]
    for durability in ("flush", "group", "fsync")
    for kind in ("ids", "results")
    for limit in LIMITS
    if durability != "fsync" or limit <= 4097
]


@pytest.fixture(scope="module")
def efbig_reports(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("efbig")
    proc = subprocess.run(
        [sys.executable, FAULTS_CHILD, str(directory), json.dumps(EFBIG_CASES)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(reports) == len(EFBIG_CASES)
    return reports


def test_the_efbig_sweep_covers_every_mode_and_many_limits() -> None:
    assert len(EFBIG_CASES) >= 150


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(EFBIG_CASES)))
def test_a_write_past_the_file_size_limit_raises_and_leaves_whole_records(
    efbig_reports: list[dict[str, Any]], case: int
) -> None:
    report = efbig_reports[case]
    limit = report["limit"]
    path = Path(report["path"])
    if limit < HEADER:
        # Too small for the lock file's PID or the header: the open fails, leaves
        # no partial header, and the same process opens the job once the limit is gone.
        assert report["open_error"] is not None
        assert "cut back" in report["open_error"] or "lock file" in report["open_error"]
        assert report["size_at_failure"] == 0
        assert strict_state(path).done == {"after-limit-lifted"}
        return
    else:
        # The kernel writes what fits and returns a short count, or fails with EFBIG.
        assert report["errno"] == errno.EFBIG or "short write" in report["error"]
        assert "cut back to its last whole record" in report["error"]
    assert report["size_at_failure"] <= limit
    assert report["while_full"] == "refused"
    state = strict_state(path)
    # Exactly the acknowledged completions, in order, then the one after the limit was lifted.
    assert completions_in_order(path) == [*report["acked"], "after-limit-lifted"]
    assert report.get("unacked") not in state.done
    assert set(report["failed"]) == set(state.failures)
    prefix = path.read_bytes()[: report["size_at_failure"]]
    assert prefix == b"" or prefix.endswith(b"\n")


# -- ENOSPC: a 64 KiB tmpfs ------------------------------------------------------------------


def mount_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"mounting a tmpfs is required in CI: {reason}")
    pytest.skip(f"cannot mount a tmpfs here: {reason}")


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "64k") -> Iterator[Path]:
    where.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        mount_unavailable(proc.stderr.strip() or f"mount exited {proc.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system but ``leave`` bytes; removing the returned filler frees the space."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 512):
                pass
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


PAGE = 4096  # a tmpfs allocates whole pages: one is left for the lock file's PID


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small") as where:
        yield where


@pytest.mark.parametrize("durability", ["flush", "group", "fsync"])
@pytest.mark.parametrize("store_type", [JsonlStore, ResultJsonlStore])
def test_a_full_disk_raises_keeps_whole_records_and_recovers_when_space_returns(
    small_fs: Path, durability: str, store_type: type[JsonlStore]
) -> None:
    path = small_fs / "job.jsonl"
    reserve = small_fs / "reserve"
    reserve.write_bytes(b"\0" * 8192)
    acked: list[str] = []
    with AgentResume(store_type(path, durability=durability)).resume_or_start("job") as s:
        with pytest.raises(StoreWriteError, match="cut back") as info:
            for i in range(100_000):
                s.mark_done(f"item-{i}", result={"text": "y" * (i % 300)})
                acked.append(f"item-{i}")
        cause = info.value.__cause__
        assert isinstance(cause, OSError)
        assert cause.errno == errno.ENOSPC or "short write" in str(cause)
        assert path.read_bytes().endswith(b"\n")
        assert completions_in_order(path) == acked
        with pytest.raises(StoreWriteError):
            s.mark_done("while-full-" + "x" * 400)
        reserve.unlink()
        assert s.mark_done("after-space-returned")
    assert completions_in_order(path) == [*acked, "after-space-returned"]
    assert strict_state(path).done == {*acked, "after-space-returned"}


def test_opening_a_new_checkpoint_on_a_full_disk_fails_at_open_and_leaves_no_header(
    small_fs: Path,
) -> None:
    path = small_fs / "job.jsonl"
    filler = fill(small_fs, leave=PAGE)
    with pytest.raises(StoreWriteError, match="cut back"):
        AgentResume(JsonlStore(path, durability="fsync")).resume_or_start("job")
    assert path.read_bytes() == b""
    filler.unlink()
    with AgentResume(JsonlStore(path, durability="fsync")).resume_or_start("job") as s:
        s.mark_done("a")
    assert strict_state(path).done == {"a"}


def test_an_open_that_fails_on_a_full_disk_releases_the_job_lock(small_fs: Path) -> None:
    path = small_fs / "job.jsonl"
    filler = fill(small_fs, leave=PAGE)
    with pytest.raises(StoreWriteError):
        AgentResume(JsonlStore(path)).resume_or_start("job")
    filler.unlink()
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:  # same process, space back
        s.mark_done("a")


def test_an_open_that_cannot_write_the_lock_file_releases_it(small_fs: Path) -> None:
    path = small_fs / "job.jsonl"
    filler = fill(small_fs)
    with pytest.raises(OSError, match="No space left"):
        AgentResume(JsonlStore(path)).resume_or_start("job")
    filler.unlink()
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a")


@pytest.mark.parametrize("operation", [compact, repair])
def test_maintenance_on_a_full_disk_fails_and_leaves_the_old_file(
    small_fs: Path, operation: Any
) -> None:
    path = small_fs / "job.jsonl"
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        for i in range(40):
            s.mark_failed(f"item-{i}", "boom")
            s.mark_done(f"item-{i}", result="z" * 200)
    with open(path, "ab") as f:
        f.write(b"not json, for repair to drop\n")
    with open(path, "ab") as f:
        f.write(b'{"id": "item-0", "ts": 1}\n')
    before = path.read_bytes()
    filler = fill(small_fs, leave=PAGE)
    with pytest.raises(OSError, match="No space left") as info:
        operation(path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler", "job.jsonl", "job.jsonl.lock"]
    filler.unlink()
    with pytest.warns(CheckpointWarning, match=":82: skipped a corrupt line"):
        session = AgentResume(ResultJsonlStore(path)).resume_or_start("job")  # lock released
    with session:
        assert session.is_done("item-39")


def test_sqlite_on_a_full_disk_raises_a_store_error_and_keeps_what_was_acknowledged(
    tmp_path: Path,
) -> None:
    from agent_resume.stores import SqliteStore

    acked: list[str] = []
    with tmpfs(tmp_path / "small", "1m") as where:
        path = where / "job.db"
        with AgentResume(SqliteStore(path)).resume_or_start("job") as s:
            items = s.remaining([f"item-{i}" for i in range(3000)])
            first = next(items)
            s.mark_done(first, result="r")
            acked.append(first)
            filler = fill(where)
            with pytest.raises(StoreError, match=r"job\.db"):
                for item in items:
                    s.mark_done(item, result="r" * 2000)
                    acked.append(item)
            filler.unlink()  # closing releases leases: a write
        observed = harness.read_sqlite(str(path))
    assert acked
    assert set(acked) <= set(observed.done)
    assert max(observed.done.values()) == 1


# -- EIO from fsync -----------------------------------------------------------------------------


def writes() -> dict[str, Any]:
    """One call of each kind of write; fresh IDs, since a repeated mark_done writes nothing."""
    fresh = itertools.count()
    return {
        "mark_done": lambda s: s.mark_done(f"next-{next(fresh)}", result=[1]),
        "mark_failed": lambda s: s.mark_failed(f"next-{next(fresh)}", "boom"),
        "release": lambda s: s.retry([f"failed-before-{next(fresh)}"]),
        "record_run": lambda s: s.record_run({"run": "note"}),
    }


WRITES = list(writes())


@pytest.mark.parametrize("durability", ["fsync", "group"])
@pytest.mark.parametrize("first", WRITES)
def test_an_fsync_error_makes_the_store_refuse_every_later_write(
    tmp_path: Path, durability: str, first: str
) -> None:
    path = tmp_path / "job.jsonl"
    store = ResultJsonlStore(path, durability=durability)  # type: ignore[arg-type]
    calls: list[int] = []
    write = writes()

    def eio(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    with AgentResume(store).resume_or_start("job") as s:
        s.mark_done("acked-before", result=1)
        for n in range(10):
            s.mark_failed(f"failed-before-{n}", "boom")
        s.flush()
        store._fsync = eio
        if durability == "fsync":
            with pytest.raises(StoreWriteError, match="refuses further writes"):
                write[first](s)
        else:
            write[first](s)  # reaches the OS; the background sync fails
            wait_for(lambda: refused(s))
        frozen = path.read_bytes()
        for name, call in write.items():
            with pytest.raises(StoreWriteError, match="refuses writes"):
                call(s)
            assert path.read_bytes() == frozen, name
        assert len(calls) == 1  # an fsync is never retried
    assert path.read_bytes() == frozen  # closing does not sync again
    with AgentResume(ResultJsonlStore(path)).resume_or_start("job") as s:
        assert s.is_done("acked-before")
        assert s.mark_done("after-reopen")


def test_flush_after_a_failed_group_sync_raises(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "job.jsonl", durability="group")
    calls: list[int] = []

    def eio(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    with AgentResume(store).resume_or_start("job") as s:
        store._fsync = eio
        s.mark_done("a")
        wait_for(lambda: calls)
        with pytest.raises(StoreWriteError):
            s.flush()  # "a" was never synced: flush must not report success


def refused(s: Any) -> bool:
    try:
        s.record_run({"run": "probe"})
    except StoreWriteError:
        return True
    return False


def wait_for(condition: Any) -> None:
    """Poll until ``condition()`` holds (the group syncer runs within ~10 ms)."""
    for _ in range(2000):
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError("the condition never held")


# -- read-only files and directories -------------------------------------------------------------


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro", "1m") as where:
        with AgentResume(ResultJsonlStore(where / "job.jsonl")).resume_or_start("job") as s:
            s.mark_done("a", result=1)
        remount(where, "ro")
        try:
            yield where
        finally:
            remount(where, "rw")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "relative", ["job.jsonl", "new.jsonl", "missing/dir/new.jsonl", "job.db", "new.db"]
)
def test_a_read_only_file_system_fails_at_open_naming_the_path(
    read_only_fs: Path, relative: str
) -> None:
    from agent_resume.stores import SqliteStore

    path = read_only_fs / relative
    before = snapshot(read_only_fs)
    store = SqliteStore(path) if relative.endswith(".db") else ResultJsonlStore(path)
    with pytest.raises(OSError if relative.endswith(".jsonl") else StoreError) as info:
        AgentResume(store).resume_or_start("job")
    message = str(info.value)
    if relative.endswith(".jsonl"):
        assert "Read-only file system" in message
    first_missing = path if relative.count("/") == 0 else read_only_fs / relative.split("/")[0]
    assert str(first_missing) in message
    assert snapshot(read_only_fs) == before


@pytest.mark.parametrize("operation", [compact, repair])
def test_maintenance_of_a_read_only_checkpoint_fails_and_changes_nothing(
    read_only_fs: Path, operation: Any
) -> None:
    before = snapshot(read_only_fs)
    with pytest.raises(OSError, match="Read-only file system"):
        operation(read_only_fs / "job.jsonl")
    assert snapshot(read_only_fs) == before


def test_maintenance_on_a_read_only_file_system_is_a_store_error_and_a_dry_run_reads(
    read_only_fs: Path,
) -> None:
    # The lock file's creation was a bare OSError (the command line's exit 70),
    # and `repair --dry-run`, which writes nothing, could not run at all.
    before = snapshot(read_only_fs)
    for operation in (compact, repair):
        with pytest.raises(StoreWriteError, match=r"lock file .*job\.jsonl\.lock"):
            operation(read_only_fs / "job.jsonl")
    report = repair(read_only_fs / "job.jsonl", dry_run=True)
    assert (report.kept, report.dropped, report.backup) == (2, [], None)
    assert snapshot(read_only_fs) == before


def test_an_immutable_checkpoint_fails_at_open_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:
        s.mark_done("a")
    if not shutil.which("chattr"):
        pytest.skip("chattr is not installed")
    proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {proc.stderr.strip()}")
    try:
        before = path.read_bytes()
        with pytest.raises(PermissionError) as info:
            AgentResume(JsonlStore(path)).resume_or_start("job")
        assert str(path) in str(info.value)
        assert path.read_bytes() == before
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    with AgentResume(JsonlStore(path)).resume_or_start("job") as s:  # the lock was released
        assert s.is_done("a")


def test_a_checkpoint_that_is_a_directory_fails_at_open(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    path.mkdir()
    with pytest.raises(IsADirectoryError, match=str(path)):
        AgentResume(JsonlStore(path)).resume_or_start("job")
    with pytest.raises(IsADirectoryError, match=str(path)):  # not left locked
        AgentResume(JsonlStore(path)).resume_or_start("job")
