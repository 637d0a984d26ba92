"""SqliteStore schema version 3: completions in the item's row, older files upgraded.

Version 1 wrote a ``'done'`` event row with every completion; version 2
wrote a ``completions`` row placed by ``after_seq`` and no event; version 3
writes the completion into the item's own row (issue 15: fewer pages per
completion). ``tests/data/sqlite_v1.sql`` and ``sqlite_v2.sql`` are the same
job written by the two previous schemas of the library.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agent_resume import AgentResume
from agent_resume.stores import SqliteStore

DATA = Path(__file__).parent / "data"
OLD = [1, 2]

# What a worker of version 2 runs to record a completion (its INSERT_DONE).
V2_INSERT_DONE = """
INSERT INTO completions (item_id, ts, worker, record, result, after_seq)
SELECT ?1, ?2, ?3, ?4, ?5, (SELECT coalesce(max(seq), 0) FROM events)
WHERE NOT EXISTS (SELECT 1 FROM items WHERE item_id = ?1 AND done = 1)
ON CONFLICT DO NOTHING"""


def _old_file(path: Path, version: int) -> Path:
    conn = sqlite3.connect(path)
    try:
        conn.executescript((DATA / f"sqlite_v{version}.sql").read_text(encoding="utf-8"))
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    return path


def _v1_file(path: Path) -> Path:
    return _old_file(path, 1)


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
    """The version, the columns of ``completions`` and ``items`` (as ``table.column``), indexes and triggers."""
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        columns = {
            f"{table}.{row[1]}"
            for table in ("completions", "items")
            for row in conn.execute(f"PRAGMA table_info({table})")
        }
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')"
            )
        }
    finally:
        conn.close()
    return str(version), columns, indexes


def _check_d_e_b_done_after_the_old_records(path: Path) -> None:
    """The job of the dumps, then d, e and b done in that order, whichever worker wrote them."""
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
        assert reopened.describe().done == 5
    finally:
        reopened.close()


@pytest.mark.parametrize("version", OLD)
def test_an_old_file_is_read_without_being_changed(tmp_path: Path, version: int) -> None:
    path = _old_file(tmp_path / "old.db", version)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    store = SqliteStore(path)
    assert _strip(list(store.iter_records())) == V1_RECORDS
    assert list(store.iter_results()) == [("a", {"answer": 1}), ("c", [1, 2])]
    description = store.describe()
    assert (description.format_version, description.done) == (version, 2)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    version_read, columns, indexes = _schema(path)
    assert version_read == str(version)
    assert "items.record" not in columns
    assert "items_done" not in indexes


@pytest.mark.parametrize("version", OLD)
def test_opening_an_old_file_upgrades_it_and_keeps_the_job(tmp_path: Path, version: int) -> None:
    path = _old_file(tmp_path / "old.db", version)
    with AgentResume(SqliteStore(path)).resume_or_start("job") as session:
        assert session.is_done("a") and session.is_done("c")
        assert not session.is_done("b")
        assert session.state == {"cursor": 7}
        assert list(session.remaining(["a", "b", "c", "d", "e"])) == ["b", "d", "e"]
    version_read, columns, indexes = _schema(path)
    assert version_read == "3"
    assert {"completions.after_seq", "items.record", "items.after_seq", "items.done_at"} <= columns
    assert "items_leased" not in indexes
    assert {
        "items_todo",
        "items_seq",
        "completions_done",
        "items_done",
        "items_done_new",
    } <= indexes
    store = SqliteStore(path)
    assert _strip(list(store.iter_records())) == V1_RECORDS
    assert store.load_conversation("d") == ['{"role":"user","content":"hi"}']
    assert store.describe().done == 2


@pytest.mark.parametrize("version", OLD)
def test_new_records_follow_the_old_ones_in_the_order_written(tmp_path: Path, version: int) -> None:
    path = _old_file(tmp_path / "old.db", version)
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
    assert done_events == ((2,) if version == 1 else (0,))  # new completions write no event
    assert SqliteStore(path).describe().done == 5


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
    _check_d_e_b_done_after_the_old_records(path)


def test_a_version_2_worker_still_attached_after_the_upgrade_is_read_in_its_place(
    tmp_path: Path,
) -> None:
    """A worker of the previous version writes ``completions`` rows; the flag stops double records."""
    path = _old_file(tmp_path / "v2.db", 2)
    store = SqliteStore(path)
    old = sqlite3.connect(path, isolation_level=None)  # the version 2 worker, already attached
    try:
        with AgentResume(store).resume_or_start("job") as session:
            assert list(session.remaining(["b", "d", "e"])) == ["b", "d", "e"]
            assert session.mark_done("d", result="D")
            store.save_conversation("e", ['{"role":"user","content":"e"}'])
            time.sleep(0.002)  # SQLite's clock counts milliseconds: "e" is done after "d"
            inserted = old.execute(
                V2_INSERT_DONE, ("e", 1, "old", '{"id": "e", "ts": 1}', '"E"')
            ).rowcount
            assert inserted == 1
            assert store.load_conversation("e") is None  # the completion deleted it
            again = old.execute(V2_INSERT_DONE, ("d", 1, "old", '{"id": "d", "ts": 1}', "null"))
            assert again.rowcount == 0  # done by this version: not recorded twice
            assert not session.mark_done("e")  # done by the old worker: late here
            assert session.mark_done("b", result="B")
    finally:
        old.close()
    _check_d_e_b_done_after_the_old_records(path)


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


@pytest.mark.parametrize("made_by", [*OLD, 3])
def test_an_item_is_recorded_once_whatever_the_file(tmp_path: Path, made_by: int) -> None:
    """The item's flag keeps the first completion (a file made by version 2 or 3 has no key for it)."""
    path = tmp_path / "job.db"
    if made_by in OLD:
        _old_file(path, made_by)
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
            "SELECT item_id, count(*) FROM (SELECT item_id FROM completions UNION ALL "
            "SELECT item_id FROM items WHERE record IS NOT NULL) "
            "WHERE item_id IN ('x', 'y') GROUP BY item_id"
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
