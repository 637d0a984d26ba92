"""SqliteStore under attack: foreign files, a write lock held too long, killed workers, NUL IDs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent_resume import AgentResume
from agent_resume._errors import ArgumentValueError, StoreError
from agent_resume.stores import SqliteStore
from agent_resume.stores._sql import holder_is_dead, new_worker_id

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL and /proc")


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    "make",
    ["other_tables", "meta_without_job", "text", "truncated"],
)
def test_a_database_that_is_not_a_store_is_refused_and_left_unchanged(
    tmp_path: Path, make: str
) -> None:
    path = tmp_path / "app.db"
    if make == "text":
        path.write_bytes(b"id,name\n1,alice\n" * 200)
    else:
        conn = sqlite3.connect(path)
        if make == "meta_without_job":
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute("INSERT INTO meta VALUES ('version', '1')")
        else:
            conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
            conn.executemany("INSERT INTO users (name) VALUES (?)", [("a",), ("b",)])
        conn.commit()
        conn.close()
        if make == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2 + 7])
    before = _snapshot(tmp_path)
    for attempt in (
        lambda: SqliteStore(path).open("job"),
        lambda: AgentResume(SqliteStore(path)).resume_or_start("job"),
        lambda: SqliteStore(path).describe(),
        lambda: list(SqliteStore(path).iter_records()),
    ):
        with pytest.raises(StoreError, match="not an agent-resume SQLite store"):
            attempt()
    assert _snapshot(tmp_path) == before  # same bytes, and no -wal or -shm beside it


def test_an_empty_database_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    path.touch()
    with AgentResume(SqliteStore(path)).resume_or_start("job") as s:
        s.mark_done("a")
    assert SqliteStore(path).describe().done == 1


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _hold_write_lock(path: Path) -> subprocess.Popen[str]:
    """Another process takes the database's write lock and keeps it until killed."""
    code = textwrap.dedent(
        f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_an_item_whose_completion_failed_is_not_leased_for_ever(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    store = SqliteStore(path, lease_seconds=1.0, heartbeat_seconds=0.1, busy_timeout=0.2)
    other = SqliteStore(path, lease_seconds=1.0)
    with AgentResume(store).resume_or_start("job") as s:
        items = iter(s.remaining(["x", "y"]))
        assert next(items) == "x"
        blocker = _hold_write_lock(path)
        try:
            with pytest.raises(StoreError, match="busy_timeout"):
                s.mark_done("x")
        finally:
            _stop(blocker)
        # The database answers again and this worker lives on (its heartbeat
        # beats); the item it could not record must come back to the queue.
        other.open("job")
        try:
            taken: list[str] = []
            deadline = time.monotonic() + 30
            while "x" not in taken and time.monotonic() < deadline:
                taken += other.claim(10, 3)
                time.sleep(0.1)
            assert "x" in taken
            assert other.write_done("x", 1, None, None) is True
        finally:
            other.close()


def test_a_failure_that_could_not_be_recorded_gives_the_lease_up_too(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    store = SqliteStore(path, lease_seconds=1.0, heartbeat_seconds=0.1, busy_timeout=0.2)
    store.open("job")
    try:
        store.enqueue(["x"])
        assert store.claim(1, 3) == ["x"]
        blocker = _hold_write_lock(path)
        try:
            with pytest.raises(StoreError):
                store.write_failed("x", 1, "boom", 1, True, None)
        finally:
            _stop(blocker)
        deadline = time.monotonic() + 30
        while not (taken := store.claim(1, 3)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert taken == ["x"]
    finally:
        store.close()


def _claiming_child(path: Path) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import time
        from agent_resume import AgentResume
        from agent_resume.stores import SqliteStore
        store = SqliteStore({str(path)!r}, lease_seconds=3600, batch_size=3)
        with AgentResume(store).resume_or_start("job") as s:
            for item in s.remaining([f"item-{{n}}" for n in range(6)]):
                print("got", item, flush=True)
                time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "got item-0"
    return proc


def test_a_restarted_process_takes_back_at_once_what_its_killed_predecessor_held(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.db"
    child = _claiming_child(path)
    child.send_signal(signal.SIGKILL)
    _stop(child)
    store = SqliteStore(path, lease_seconds=3600)
    with AgentResume(store).resume_or_start("job") as s:
        # A one-hour lease, but its holder is provably dead: no wait at all.
        assert store.claim(10, 3) == [f"item-{n}" for n in range(6)]
        store.release([f"item-{n}" for n in range(6)])
        assert list(s.remaining([f"item-{n}" for n in range(6)])) == [f"item-{n}" for n in range(6)]


def test_the_leases_of_a_live_process_are_not_taken(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    child = _claiming_child(path)
    try:
        store = SqliteStore(path, lease_seconds=3600)
        store.open("job")
        try:
            assert store.claim(10, 3) == ["item-3", "item-4", "item-5"]
        finally:
            store.close()
    finally:
        _stop(child)


def test_only_a_worker_of_this_host_and_pid_namespace_can_be_judged_dead() -> None:
    mine = new_worker_id()
    host, pid, token, *namespace = mine.split(":")
    assert int(pid) == os.getpid() and not holder_is_dead(mine)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert holder_is_dead(f"{host}:{dead.pid}:{token}:{namespace[0]}")
    assert not holder_is_dead(f"another-{host}:{dead.pid}:{token}:{namespace[0]}")
    assert not holder_is_dead(f"{host}:{dead.pid}:{token}:1")  # another container
    assert not holder_is_dead(f"{host}:{dead.pid}:{token}")  # an older ID: unknown
    assert not holder_is_dead("garbage")


@pytest.mark.parametrize(("durability", "level"), [("flush", 1), ("fsync", 2), ("group", 2)])
def test_durability_sets_the_synchronous_level(tmp_path: Path, durability: str, level: int) -> None:
    store = SqliteStore(tmp_path / "job.db", durability=durability)  # type: ignore[arg-type]
    store.open("job")
    try:
        assert store._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0], "x") == level
    finally:
        store.close()


@pytest.mark.parametrize("durability", ["FSYNC", "always", None])
def test_an_unsupported_durability_is_refused(tmp_path: Path, durability: object) -> None:
    with pytest.raises(ArgumentValueError, match="durability"):
        SqliteStore(tmp_path / "job.db", durability=durability)  # type: ignore[arg-type]


def test_group_durability_commits_queued_completions_together(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    items = [f"item-{n:03d}" for n in range(300)]
    with AgentResume(SqliteStore(path, durability="group")).resume_or_start("job") as s:
        for item in s.remaining(items):
            assert s.mark_done(item, result={"item": item}) is True
        s.flush()
        assert SqliteStore(path).describe().done == 300
    assert sorted(dict(SqliteStore(path).iter_results())) == items


def test_a_group_commit_that_fails_refuses_further_writes(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    store = SqliteStore(path, durability="group", busy_timeout=0.2, lease_seconds=1.0)
    store.open("job")
    store.enqueue(["x", "y"])
    assert store.claim(2, 3) == ["x", "y"]
    blocker = _hold_write_lock(path)
    try:
        store.write_done("x", 1, None, None)  # acknowledged, queued; its commit will fail
        with pytest.raises(StoreError, match="busy_timeout"):
            store.flush()
        with pytest.raises(StoreError, match="refuses further writes"):
            store.write_done("y", 1, None, None)
    finally:
        _stop(blocker)
    with pytest.raises(StoreError):
        store.close()
    assert SqliteStore(path).describe().done == 0
