"""SqliteStore: schema versioning, claims and leases, busy databases, URLs."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agent_resume import AgentResume
from agent_resume._errors import (
    ArgumentTypeError,
    ArgumentValueError,
    StoreError,
    UnsupportedFormatError,
)
from agent_resume._records import dumps
from agent_resume.stores import SharedStore, SqliteStore, open_store


def opened(path: Path, lease: float = 5.0) -> SqliteStore:
    store = SqliteStore(path, lease_seconds=lease)
    store.open("job")
    return store


def test_open_store_builds_a_sqlite_store_from_a_url(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/sub/job.db")
    assert isinstance(store, SqliteStore)
    assert isinstance(store, SharedStore)
    assert store.path == f"{tmp_path}/sub/job.db"
    with AgentResume(store).resume_or_start("job") as s:
        s.mark_done("a")
    assert (tmp_path / "sub" / "job.db").exists()


def test_a_url_without_a_path_is_refused() -> None:
    with pytest.raises(ArgumentValueError, match=re.escape("sqlite:///path.db")):
        SqliteStore.from_url("sqlite:///")


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"lease_seconds": 2, "heartbeat_seconds": 2}, "heartbeat_seconds"),
        ({"batch_size": 0}, "batch_size"),
        ({"busy_timeout": -1}, "busy_timeout"),
    ],
)
def test_settings_out_of_range_name_the_parameter(
    tmp_path: Path, options: dict[str, float], parameter: str
) -> None:
    with pytest.raises(ArgumentValueError, match=f"`{parameter}`") as info:
        SqliteStore(tmp_path / "job.db", **options)  # type: ignore[arg-type]
    assert info.value.parameter == parameter


def test_a_lease_given_as_text_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(ArgumentTypeError, match="lease_seconds"):
        SqliteStore(tmp_path / "job.db", lease_seconds="5")  # type: ignore[arg-type]


def test_the_database_is_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    opened(tmp_path / "job.db").close()
    conn = sqlite3.connect(tmp_path / "job.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == ("3",)
    finally:
        conn.close()


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    opened(tmp_path / "job.db").close()
    conn = sqlite3.connect(tmp_path / "job.db")
    with conn:
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'version'")
    conn.close()
    with pytest.raises(UnsupportedFormatError, match="version 4"):
        SqliteStore(tmp_path / "job.db").open("job")


def test_workers_opening_a_new_file_at_the_same_moment_all_open_it(tmp_path: Path) -> None:
    # All ask SQLite to switch the new file to WAL; it answered "database is
    # locked" at once (no busy wait) to some: 4 of 600 opens failed.
    import threading

    failures: list[BaseException] = []
    for n in range(250):
        path = tmp_path / f"job-{n}.db"
        barrier = threading.Barrier(6)

        def open_job(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                with AgentResume(SqliteStore(path)).resume_or_start("job"):
                    pass
            except BaseException as exc:
                failures.append(exc)

        openers = [threading.Thread(target=open_job) for _ in range(6)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
    assert failures == []


def test_a_busy_database_raises_a_clear_store_error(tmp_path: Path) -> None:
    store = opened(tmp_path / "job.db")
    store.close()
    blocker = sqlite3.connect(tmp_path / "job.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        busy = SqliteStore(tmp_path / "job.db", busy_timeout=0.05)
        with pytest.raises(StoreError, match=re.escape("busy_timeout=0.05")):
            busy.open("job")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_claims_lease_items_to_one_worker_at_a_time(tmp_path: Path) -> None:
    a, b = opened(tmp_path / "job.db"), opened(tmp_path / "job.db")
    try:
        a.enqueue(["1", "2", "3"])
        b.enqueue(["3", "4"])
        assert a.claim(2, 3) == ["1", "2"]
        assert b.claim(10, 3) == ["3", "4"]
        assert a.claim(10, 3) == []
        assert a.pending(3) == 4
        assert b.pending(3, exclude=["3", "4"]) == 2
        a.release(["2"])
        assert b.claim(10, 3) == ["2"]
    finally:
        a.close()
        b.close()


def test_an_expired_lease_is_claimed_again_and_the_late_completion_counted(
    tmp_path: Path,
) -> None:
    slow, fast = opened(tmp_path / "job.db", lease=0.3), opened(tmp_path / "job.db", lease=0.3)
    try:
        slow.enqueue(["x"])
        assert slow.claim(1, 3) == ["x"]
        slow._held.clear()  # this worker stalls: its heartbeat has nothing to renew
        deadline = time.monotonic() + 5
        while not (taken := fast.claim(1, 3)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert taken == ["x"]
        assert fast.write_done("x", 1, None, '"fast"') is True
        assert slow.write_done("x", 2, None, '"slow"') is False
        assert slow.late_completions == 1
        assert list(fast.iter_results()) == [("x", "fast")]
    finally:
        slow.close()
        fast.close()


def test_the_heartbeat_keeps_a_live_workers_leases(tmp_path: Path) -> None:
    live = SqliteStore(tmp_path / "job.db", lease_seconds=0.6, heartbeat_seconds=0.05)
    live.open("job")
    other = opened(tmp_path / "job.db")
    try:
        live.enqueue(["x"])
        assert live.claim(1, 3) == ["x"]
        for _ in range(18):  # three lease lengths
            time.sleep(0.1)
            assert other.claim(1, 3) == []
    finally:
        live.close()
        other.close()


def test_closing_gives_leases_back(tmp_path: Path) -> None:
    a, b = opened(tmp_path / "job.db"), opened(tmp_path / "job.db")
    a.enqueue(["x", "y"])
    assert a.claim(5, 3) == ["x", "y"]
    a.close()
    try:
        assert b.claim(5, 3) == ["x", "y"]
    finally:
        b.close()


def test_failures_are_counted_across_workers(tmp_path: Path) -> None:
    a, b = opened(tmp_path / "job.db"), opened(tmp_path / "job.db")
    try:
        a.enqueue(["x"])
        a.write_failed("x", 1, "E: one", 1, True, None)
        b.write_failed("x", 2, "E: two", 1, True, {"input_tokens": 3})
        assert a.claim(5, 2) == []
        assert a.pending(2) == 0
        assert a.claim(5, 3) == ["x"]
    finally:
        a.close()
        b.close()
    failed = [r for r in SqliteStore(tmp_path / "job.db").iter_records() if "error" in r]
    assert [(r["attempt"], r["error"]) for r in failed] == [(1, "E: one"), (2, "E: two")]
    assert failed[1]["usage"] == {"input_tokens": 3}


def test_a_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = opened(tmp_path / "job.db")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.write_done("x", 1, None, None)


def test_reading_a_missing_database_yields_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "none.db")
    assert list(store.iter_records()) == []
    assert list(store.iter_results()) == []
    assert not (tmp_path / "none.db").exists()


def _statements_of(store: SqliteStore, action: Any) -> list[str]:
    """The SQL statements (values bound) that ``action()`` runs on the store's connection."""
    statements: list[str] = []
    conn = store._conn
    assert conn is not None
    conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    return statements


def test_recording_a_completion_reads_no_more_than_an_index_path(tmp_path: Path) -> None:
    """Issue 15: ``write_done`` numbered new rows with a full scan of ``items`` (quadratic jobs).

    A completion is one statement, an ``INSERT`` into ``items`` run as a
    transaction of its own (it was six: ``BEGIN``, four writes, ``COMMIT``);
    the ``INSERT`` and the statements of the triggers it fires are explained,
    for an item claimed first and for one never enqueued: none may scan a
    table.
    """
    store = opened(tmp_path / "job.db")
    try:
        store.enqueue(["a", "b"])
        assert store.claim(1, 3) == ["a"]
        statements = _statements_of(store, lambda: store.write_done("a", 1, {"n": 1}, "[1]"))
        statements += _statements_of(store, lambda: store.write_done("new", 1, None, None))
        # The trace repeats the top statement once per statement of the trigger it fires.
        sent = [s for n, s in enumerate(statements) if n == 0 or s != statements[n - 1]]
        assert [s.split()[0] for s in sent] == ["INSERT", "INSERT"], sent
        triggers = store._run(
            lambda c: c.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                "AND name IN ('items_done', 'items_done_new')"
            ).fetchall(),
            "reading the triggers",
            write=False,
        )
        bodies = [sql[sql.index(" BEGIN") + 6 : sql.rindex("END")] for (sql,) in triggers]
        queries = [
            *sent,
            *[q.replace("NEW.item_id", "'x'") for b in bodies for q in b.split(";") if q.strip()],
        ]
        plans = store._run(
            lambda c: [
                (sql, row[-1])
                for sql in queries
                for row in c.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            ],
            "explaining",
            write=False,
        )
    finally:
        store.close()
    assert len(queries) == 4, queries
    assert not [p for p in plans if p[1].startswith("SCAN")], plans
    assert any("items_seq" in p[1] for p in plans), plans
    assert any("sqlite_autoindex_conversations_1 (item_id=?)" in p[1] for p in plans), plans
    conn = sqlite3.connect(tmp_path / "job.db")
    try:
        rows = conn.execute(
            "SELECT item_id, done, leased_by, record IS NOT NULL FROM items ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("a", 1, None, 1), ("b", 0, None, 0), ("new", 1, None, 1)]


def _pages_per_commit(wal: bytes, page_size: int = 4096) -> list[int]:
    """How many frames each commit added to a write-ahead log (its header and frames parsed)."""
    counts, frames, offset = [], 0, 32  # the log's own header
    while offset + 24 + page_size <= len(wal):
        frames += 1
        if int.from_bytes(wal[offset + 4 : offset + 8], "big"):  # a commit's last frame
            counts.append(frames)
            frames = 0
        offset += 24 + page_size
    return counts


def test_a_completion_writes_two_pages(tmp_path: Path) -> None:
    """Issue 15: a completion wrote seven B-tree pages (schema version 1), then three (version 2).

    Counted from the write-ahead log (checkpoints off): the frames of each
    commit, over completions of claimed items. A completion writes the
    item's row (which now holds the completion) and its entry in
    ``items_todo``. When a row that grew no longer fits its page, SQLite
    spreads the rows of that page over its neighbours, which writes three to
    five more pages in a few commits (about 2.4 pages per completion over
    400; version 2 wrote 3.06).
    """
    path = tmp_path / "job.db"
    store = opened(path)
    try:
        items = [f"item-{n:04d}" for n in range(400)]
        store.enqueue(items)
        claimed = store.claim(400, 3)
        assert claimed == items
        conn = store._conn
        assert conn is not None
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for n, item in enumerate(claimed):
            assert store.write_done(item, 1, {"usage": {"calls": 1}}, f'{{"n": {n}}}')
        pages = _pages_per_commit(Path(f"{path}-wal").read_bytes())
    finally:
        store.close()
    assert len(pages) == len(claimed)
    assert min(pages) == 2
    assert pages.count(2) >= 0.75 * len(pages), sorted(pages)
    assert sum(pages) / len(pages) < 2.75, sorted(pages)


def test_a_completion_record_is_written_as_dumps_writes_it(tmp_path: Path) -> None:
    """The store encodes records with a C encoder built once; the text must not change."""
    extra: dict[str, Any] = {
        "attempt": 2,
        "stop": "max_turns",
        "turns": 3,
        "seconds": 0.25,
        "fp": "sha256:ab",
        "usage": {"input_tokens": 10, "cost_usd": 1e-07, "model": "gpt-ü", "calls": 1},
        "note": 'quote " and \\ and \n and é and 😀',
    }
    store = opened(tmp_path / "job.db")
    try:
        assert store.write_done("ïd", 7, extra, None)
    finally:
        store.close()
    conn = sqlite3.connect(tmp_path / "job.db")
    try:
        (record,) = conn.execute("SELECT record FROM items WHERE item_id = 'ïd'").fetchone()
    finally:
        conn.close()
    assert record == dumps({"id": "ïd", "ts": 7, **extra}, "extra")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ArgumentValueError),
        (float("inf"), ArgumentValueError),
        (object(), ArgumentTypeError),
        ({1j: 1}, ArgumentTypeError),
    ],
)
def test_an_extra_that_is_not_json_is_a_typed_error_and_records_nothing(
    tmp_path: Path, value: Any, error: type[Exception]
) -> None:
    store = opened(tmp_path / "job.db")
    try:
        with pytest.raises(error, match="extra"):
            store.write_done("a", 1, {"bad": value}, None)
        cyclic: dict[str, Any] = {}
        cyclic["self"] = cyclic
        with pytest.raises(ArgumentValueError, match="extra"):
            store.write_done("a", 1, {"bad": cyclic}, None)
        assert store.write_done("a", 1, {"good": 1}, None)
    finally:
        store.close()
    assert [r["id"] for r in SqliteStore(tmp_path / "job.db").iter_records()] == ["a"]
