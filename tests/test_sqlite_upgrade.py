"""SqliteStore schema version 2: completions placed among the events, version 1 files upgraded.

Version 1 wrote a ``'done'`` event row with every completion; version 2
places the completion by ``after_seq`` and writes no event (issue 15: fewer
pages per completion). ``tests/data/sqlite_v1.sql`` is a job written by the
previous version of the library.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent_resume import AgentResume
from agent_resume.stores import SqliteStore

V1_DUMP = Path(__file__).parent / "data" / "sqlite_v1.sql"


def _v1_file(path: Path) -> Path:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(V1_DUMP.read_text(encoding="utf-8"))
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    return path


def _strip(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What identifies a record: its ID (or its state), its status, its result."""
    return [
        (r.get("id", r.get("state")), r.get("status", "done"), r.get("result")) for r in records
    ]


V1_RECORDS = [
    ("a", "done", {"answer": 1}),
    ("b", "failed", None),
    ("c", "done", [1, 2]),
    ("b", "retry", None),
    ({"cursor": 7}, "done", None),
]


def _schema(path: Path) -> tuple[str, set[str], set[str]]:
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(completions)")}
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')"
            )
        }
    finally:
        conn.close()
    return str(version), columns, indexes


def test_a_version_1_file_is_read_without_being_changed(tmp_path: Path) -> None:
    path = _v1_file(tmp_path / "v1.db")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    store = SqliteStore(path)
    assert _strip(list(store.iter_records())) == V1_RECORDS
    assert list(store.iter_results()) == [("a", {"answer": 1}), ("c", [1, 2])]
    description = store.describe()
    assert (description.format_version, description.done) == (1, 2)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert _schema(path)[0] == "1"
    assert "completions_done" not in _schema(path)[2]


def test_opening_a_version_1_file_upgrades_it_and_keeps_the_job(tmp_path: Path) -> None:
    path = _v1_file(tmp_path / "v1.db")
    with AgentResume(SqliteStore(path)).resume_or_start("job") as session:
        assert session.is_done("a") and session.is_done("c")
        assert not session.is_done("b")
        assert session.state == {"cursor": 7}
        assert list(session.remaining(["a", "b", "c", "d", "e"])) == ["b", "d", "e"]
    version, columns, indexes = _schema(path)
    assert version == "2"
    assert "after_seq" in columns
    assert "items_leased" not in indexes
    assert {"items_todo", "items_seq", "completions_done"} <= indexes
    store = SqliteStore(path)
    assert _strip(list(store.iter_records())) == V1_RECORDS
    assert store.load_conversation("d") == ['{"role":"user","content":"hi"}']


def test_new_records_follow_the_old_ones_in_the_order_written(tmp_path: Path) -> None:
    path = _v1_file(tmp_path / "v1.db")
    store = SqliteStore(path)
    with AgentResume(store).resume_or_start("job") as session:
        assert list(session.remaining(["b", "d", "e"])) == ["b", "d", "e"]
        assert session.mark_done("d", result="D")
        assert store.load_conversation("d") is None  # a completion deletes it, as before
        session.mark_failed("e", "no")
        assert session.mark_done("b", result="B")
        session.set_state("cursor", 8)
        assert session.mark_done("e", result="E")
    assert _strip(list(SqliteStore(path).iter_records())) == [
        *V1_RECORDS,
        ("d", "done", "D"),
        ("e", "failed", None),
        ("b", "done", "B"),
        ({"cursor": 8}, "done", None),
        ("e", "done", "E"),
    ]
    assert [i for i, _ in SqliteStore(path).iter_results()] == ["a", "c", "d", "b", "e"]
    conn = sqlite3.connect(path)
    try:
        done_events = conn.execute("SELECT count(*) FROM events WHERE kind = 'done'").fetchone()
    finally:
        conn.close()
    assert done_events == (2,)  # the version 1 ones; new completions write no event


def test_a_completion_written_the_version_1_way_after_the_upgrade_is_read_in_its_place(
    tmp_path: Path,
) -> None:
    """A worker of the previous version still attached writes a 'done' event and no after_seq."""
    path = _v1_file(tmp_path / "v1.db")
    store = SqliteStore(path)
    with AgentResume(store).resume_or_start("job") as session:
        assert session.mark_done("d", result="D")
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO completions (item_id, ts, worker, record, result) "
                "VALUES ('e', 1, 'old', '{\"id\": \"e\", \"ts\": 1}', '\"E\"')"
            )
            conn.execute("INSERT INTO events (kind, item_id, ts) VALUES ('done', 'e', 1)")
            conn.execute("UPDATE items SET done = 1 WHERE item_id = 'e'")
            conn.execute("COMMIT")
        finally:
            conn.close()
        assert session.mark_done("b", result="B")
        assert not session.mark_done("d")
    assert _strip(list(SqliteStore(path).iter_records())) == [
        *V1_RECORDS,
        ("d", "done", "D"),
        ("e", "done", "E"),
        ("b", "done", "B"),
    ]
    reopened = SqliteStore(path)
    state = reopened.open("job")
    try:
        assert state.done == {"a", "b", "c", "d", "e"}
    finally:
        reopened.close()


@pytest.mark.parametrize("durability", ["flush", "group"])
def test_records_come_back_in_the_order_written(tmp_path: Path, durability: str) -> None:
    """Completions between events, several after the same event (a group commits many at once)."""
    path = tmp_path / "job.db"
    store = SqliteStore(path, durability=durability)  # type: ignore[arg-type]
    expected: list[tuple[Any, ...]] = []
    with AgentResume(store).resume_or_start("job") as session:
        for n in range(30):
            item = f"i{n:02d}"
            if n % 7 == 3:
                session.mark_failed(item, "x")
                expected.append((item, "failed", None))
            if n % 10 == 5:
                session.set_state("n", n)
                expected.append(({"n": n}, "done", None))
            assert session.mark_done(item, result=n)
            expected.append((item, "done", n))
    assert _strip(list(SqliteStore(path).iter_records())) == expected
    assert [r for _, _, r in expected if isinstance(r, int)] == [
        r for _, r in SqliteStore(path).iter_results()
    ]


@pytest.mark.parametrize("made_by", ["version 1", "version 2"])
def test_an_item_is_recorded_once_whatever_the_file(tmp_path: Path, made_by: str) -> None:
    """A file made by version 2 has no key on completions: the item's flag keeps the first."""
    path = _v1_file(tmp_path / "job.db") if made_by == "version 1" else tmp_path / "job.db"
    first, second = SqliteStore(path), SqliteStore(path, durability="group")
    first.open("job")
    second.open("job")
    try:
        assert first.write_done("x", 1, None, '"first"')
        assert not first.write_done("x", 2, None, '"again"')
        assert second.write_done("x", 3, None, '"queued"')  # acknowledged once committed ...
        assert second.write_done("y", 3, None, '"y1"')
        assert second.write_done("y", 4, None, '"y2"')  # ... twice in one batch
        second.flush()
        assert second.late_completions == 2
        assert first.late_completions == 1
    finally:
        second.close()
        first.close()
    results = dict(SqliteStore(path).iter_results())
    assert (results["x"], results["y"]) == ("first", "y1")
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT item_id, count(*) FROM completions WHERE item_id IN ('x', 'y') GROUP BY item_id"
        ).fetchall()
    finally:
        conn.close()
    assert sorted(rows) == [("x", 1), ("y", 1)]


def test_reading_a_new_file_finds_version_1_completions_by_index(tmp_path: Path) -> None:
    """The join for 'done' events must not scan ``completions`` (a file made by version 2 has no key).

    The statements that ``iter_records`` and ``iter_results`` run are traced
    and explained.
    """
    store = SqliteStore(tmp_path / "job.db")
    with AgentResume(store).resume_or_start("job") as session:
        session.mark_done("a", result=1)
        session.mark_failed("b", "no")
        conn = store._conn
        assert conn is not None
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            assert len(list(store.iter_records())) == 2
            assert list(store.iter_results()) == [("a", 1)]
        finally:
            conn.set_trace_callback(None)
        joins = [s for s in statements if "JOIN" in s]
        assert len(joins) == 2, statements
        plans = [row[-1] for sql in joins for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    assert sum("completions_v1" in p for p in plans) == 2, plans
    assert not [p for p in plans if p.startswith("SCAN c")], plans
