"""Conversations kept by the store itself (SQLite, PostgreSQL, memory): another process resumes them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_resume._codec import CorruptConversationError
from agent_resume._errors import ArgumentValueError
from agent_resume._run._conversations import StoreConversations
from agent_resume.stores import (
    ConversationDirStore,
    ConversationStore,
    InMemoryStore,
    JsonlStore,
    PostgresStore,
    SqliteStore,
    Store,
)

CHILD = str(Path(__file__).with_name("_run_child.py"))
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=KINDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    if request.param == "memory":
        memory = InMemoryStore()
        return lambda: memory
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "job.db")
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: PostgresStore(dsn)


def test_a_conversation_store_saves_loads_and_deletes_with_the_completion(
    make_store: Callable[[], Any],
) -> None:
    store = make_store()
    assert isinstance(store, ConversationStore)
    assert "conversations" in store.describe().capabilities
    store.open("job")
    try:
        assert store.load_conversation("a") is None
        store.save_conversation("a", [])
        store.save_conversation("a", ['{"role":"user"}', '{"role":"assistant"}'])
        store.save_conversation("a", ['{"role":"tool"}'], start=2)  # appended
        store.save_conversation("b", ['{"k":"\\u0000"}'])
        assert store.load_conversation("a") == [
            '{"role":"user"}',
            '{"role":"assistant"}',
            '{"role":"tool"}',
        ]
        store.save_conversation("a", ['{"role":"system"}'], start=1)  # the rest replaced
        assert store.load_conversation("a") == ['{"role":"user"}', '{"role":"system"}']
        with pytest.raises(ArgumentValueError, match="start"):
            store.save_conversation("a", [], start=-1)
        assert store.load_conversation("b") == ['{"k":"\\u0000"}']
        store.write_done("a", 1, None, None)  # a completion takes its conversation along
        assert store.load_conversation("a") is None
        store.delete_conversation("b")
        store.delete_conversation("b")
        assert store.load_conversation("b") is None
    finally:
        store.close()


def test_file_stores_keep_conversations_in_files_beside_them(tmp_path: Path) -> None:
    store: Store = JsonlStore(tmp_path / "job.jsonl")
    assert isinstance(store, ConversationDirStore)
    assert not isinstance(store, ConversationStore)
    assert store.conversation_dir() == str(tmp_path / "job.jsonl.conversations")


def _spawn(target: str, *opts: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, CHILD, "agent", target, *opts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _killed_at_turn_3(target: str) -> list[dict[str, Any]]:
    proc = _spawn(target, "hang_at=3")
    assert proc.stdout is not None and proc.stderr is not None
    saved = None
    for line in proc.stdout:
        if line.startswith("SAVED 3 "):
            saved = json.loads(line.split(" ", 2)[2])
            break
    assert saved is not None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return saved


def _resumed(target: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    proc = _spawn(target)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    resumed = json.loads(lines[0].split(" ", 1)[1])
    report = json.loads(next(x for x in lines if x.startswith("REPORT")).split(" ", 1)[1])
    return resumed, report


@pytest.mark.slow
def test_a_killed_sqlite_workers_conversation_is_resumed_by_another_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.db"
    saved = _killed_at_turn_3(f"sqlite:///{path}")
    assert sorted(os.listdir(tmp_path)) == ["job.db", "job.db-shm", "job.db-wal"]  # no files
    assert [json.loads(x) for x in SqliteStore(path).load_conversation("task-1") or []] == saved
    resumed, report = _resumed(f"sqlite:///{path}")
    assert resumed == saved
    assert report["done"] == 1
    assert SqliteStore(path).load_conversation("task-1") is None


@pytest.mark.slow
@pytest.mark.postgres
def test_a_killed_postgres_workers_conversation_is_resumed_by_another_process(
    pg_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    saved = _killed_at_turn_3(pg_dsn)
    assert [json.loads(x) for x in PostgresStore(pg_dsn).load_conversation("task-1") or []] == saved
    # The dead worker's lease runs out (by the database clock) rather than in 30 s.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE agent_resume.items SET leased_until = now() - interval '1 second'")
    resumed, report = _resumed(pg_dsn)
    assert resumed == saved
    assert sum(1 for m in resumed if m["role"] == "assistant") == 3
    assert report["done"] == 1
    assert PostgresStore(pg_dsn).load_conversation("task-1") is None
    assert os.listdir(tmp_path) == []


def _count_writes_sqlite(path: Path) -> Callable[[], int]:
    """Count the rows written to the conversations table, with triggers in the file."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE writes (n INTEGER)")
        for op in ("INSERT", "UPDATE", "DELETE"):
            conn.execute(
                f"CREATE TRIGGER count_{op.lower()} AFTER {op} ON conversations "
                "BEGIN INSERT INTO writes VALUES (1); END"
            )
    conn.close()

    def count() -> int:
        with sqlite3.connect(path) as c:
            n = int(c.execute("SELECT count(*) FROM writes").fetchone()[0])
        c.close()
        return n

    return count


def _count_writes_postgres(dsn: str) -> Callable[[], int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE agent_resume.writes (n integer)")
        conn.execute(
            "CREATE FUNCTION agent_resume.count_write() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO agent_resume.writes VALUES (1); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER count_writes AFTER INSERT OR UPDATE OR DELETE "
            "ON agent_resume.conversations FOR EACH ROW EXECUTE FUNCTION agent_resume.count_write()"
        )

    def count() -> int:
        with psycopg.connect(dsn, autocommit=True) as c:
            row = c.execute("SELECT count(*) FROM agent_resume.writes").fetchone()
        assert row is not None
        return int(row[0])

    return count


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_saving_message_500_writes_one_row_not_500(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store: SqliteStore | PostgresStore
    if kind == "sqlite":
        store = SqliteStore(tmp_path / "job.db")
    else:
        store = PostgresStore(request.getfixturevalue("pg_dsn"))
    store.open("job")
    try:
        count = (
            _count_writes_sqlite(tmp_path / "job.db")
            if isinstance(store, SqliteStore)
            else _count_writes_postgres(request.getfixturevalue("pg_dsn"))
        )
        conversations = StoreConversations(store)
        messages: list[Any] = []
        written: dict[int, int] = {}
        for n in range(1, 501):
            messages.append({"role": "user" if n % 2 else "assistant", "content": f"turn {n}"})
            before = count()
            conversations.save("a", messages)
            written[n] = count() - before
        assert written[1] == written[10] == written[500] == 1
        assert sum(written.values()) == 500  # every save appended one row
        # A new process (a fresh reader) gets them all back, in order.
        assert StoreConversations(store).load("a") == messages
        # An edited history replaces the rows, in one save.
        before = count()
        conversations.save("a", [{"role": "system", "content": "summary"}, *messages[-2:]])
        assert count() - before == 500 + 3  # 500 deleted, 3 inserted
        assert StoreConversations(store).load("a") == [
            {"role": "system", "content": "summary"},
            *messages[-2:],
        ]
        # Unchanged messages write nothing.
        before = count()
        conversations.save("a", [{"role": "system", "content": "summary"}, *messages[-2:]])
        assert count() - before == 0
        store.write_done("a", 1, None, None)
        assert store.load_conversation("a") is None
    finally:
        store.close()


def test_a_save_replaces_a_stored_conversation_with_an_unreadable_row(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "job.db")
    store.open("job")
    try:
        store.save_conversation("a", ['{"role":"user"}', "not json"])
        with pytest.raises(CorruptConversationError):
            StoreConversations(store).load("a")
        StoreConversations(store).save("a", [{"role": "user"}, {"role": "assistant"}])
        assert store.load_conversation("a") == ['{"role":"user"}', '{"role":"assistant"}']
    finally:
        store.close()
