"""PostgresStore: schema, leases by the database clock, reconnection, idempotent writes."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from agent_resume import AgentResume
from agent_resume._errors import (
    ArgumentValueError,
    MissingExtraError,
    StoreError,
    UnsupportedFormatError,
)
from agent_resume.stores import PostgresStore, SharedStore, open_store

pytestmark = pytest.mark.postgres


def opened(dsn: str, lease: float = 5.0, **options: object) -> PostgresStore:
    store = PostgresStore(dsn, lease_seconds=lease, **options)  # type: ignore[arg-type]
    store.open("job")
    return store


def query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def test_open_store_builds_a_postgres_store_and_a_url_may_name_the_schema(pg_dsn: str) -> None:
    store = open_store(pg_dsn + "?schema=nightly")
    assert isinstance(store, PostgresStore)
    assert isinstance(store, SharedStore)
    assert store.schema == "nightly"
    with AgentResume(store).resume_or_start("job") as s:
        s.mark_done("a", result=[1])
    assert query(pg_dsn, "SELECT item_id, result FROM nightly.completions") == [("a", [1])]


def test_a_schema_name_that_is_not_an_identifier_is_refused(pg_dsn: str) -> None:
    with pytest.raises(ArgumentValueError, match="`schema`"):
        PostgresStore(pg_dsn, schema="x; DROP TABLE y")


def test_repr_names_the_database_and_not_the_password() -> None:
    store = PostgresStore("postgresql://u:secret@db.example:5433/jobs")
    assert "secret" not in repr(store)
    assert "db.example:5433/jobs" in repr(store)


def test_without_psycopg_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from agent_resume.stores import PostgresStore\n"
        "from agent_resume._errors import MissingExtraError\n"
        "try:\n    PostgresStore('postgresql://x/y')\n"
        "except MissingExtraError as e:\n    print(e.extra, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("postgres ")
    assert 'pip install "agent-resume[postgres]"' in out.stdout
    assert issubclass(MissingExtraError, ImportError)


def test_a_newer_schema_version_is_refused(pg_dsn: str) -> None:
    opened(pg_dsn).close()
    query(pg_dsn, "UPDATE agent_resume.meta SET value = '7' WHERE key = 'version'")
    with pytest.raises(UnsupportedFormatError, match="version 7"):
        PostgresStore(pg_dsn).open("job")


def test_workers_opening_at_once_create_the_schema_once(pg_dsn: str) -> None:
    code = (
        "import sys\nfrom agent_resume.stores import PostgresStore\n"
        "s = PostgresStore(sys.argv[1]); s.open('job'); s.close()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_dsn]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    assert query(pg_dsn, "SELECT value FROM agent_resume.meta WHERE key = 'job_id'") == [("job",)]


def test_claims_skip_leased_items_and_respect_exclusions(pg_dsn: str) -> None:
    a, b = opened(pg_dsn), opened(pg_dsn)
    try:
        a.enqueue([str(n) for n in range(6)])
        b.enqueue([str(n) for n in range(6)])
        assert a.claim(2, 3) == ["0", "1"]
        assert b.claim(2, 3, exclude=["2"]) == ["3", "4"]
        assert a.pending(3) == 6
        assert a.pending(3, exclude=["0", "1"]) == 4
        a.release(["1"])
        assert b.claim(5, 3) == ["1", "2", "5"]
        assert a.claim(5, 3) == []
    finally:
        a.close()
        b.close()


def test_an_expired_lease_is_claimed_again_and_the_late_completion_counted(pg_dsn: str) -> None:
    slow, fast = opened(pg_dsn, lease=0.3), opened(pg_dsn, lease=0.3)
    try:
        slow.enqueue(["x"])
        assert slow.claim(1, 3) == ["x"]
        slow._held.clear()  # this worker stalls: its heartbeat has nothing to renew
        deadline = time.monotonic() + 5
        while not (taken := fast.claim(1, 3)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert taken == ["x"]
        assert fast.write_done("x", 1, {"usage": {"input_tokens": 4}}, '{"by": "fast"}')
        assert slow.write_done("x", 2, None, '{"by": "slow"}') is False
        assert slow.late_completions == 1
        assert fast.late_completions == 0
        assert list(fast.iter_results()) == [("x", {"by": "fast"})]
    finally:
        slow.close()
        fast.close()
    assert query(pg_dsn, "SELECT record->'usage' FROM agent_resume.completions") == [
        ({"input_tokens": 4},)
    ]


def test_leases_are_judged_by_the_database_clock(pg_dsn: str) -> None:
    store = opened(pg_dsn, lease=30)
    try:
        store.enqueue(["x"])
        store.claim(1, 3)
        ((seconds,),) = query(
            pg_dsn, "SELECT extract(epoch FROM leased_until - now()) FROM agent_resume.items"
        )
        assert 25 < float(seconds) <= 30  # type: ignore[arg-type]
    finally:
        store.close()


def test_the_heartbeat_keeps_a_live_workers_leases(pg_dsn: str) -> None:
    live = opened(pg_dsn, lease=0.6, heartbeat_seconds=0.05)
    other = opened(pg_dsn)
    try:
        live.enqueue(["x"])
        assert live.claim(1, 3) == ["x"]
        for _ in range(18):  # three lease lengths
            time.sleep(0.1)
            assert other.claim(1, 3) == []
    finally:
        live.close()
        other.close()


def test_a_completion_retried_with_its_token_is_recorded_once(pg_dsn: str) -> None:
    store = opened(pg_dsn)
    try:
        assert store.write_done("x", 1, None, '"r"', token="t-1") is True
        assert store.write_done("x", 1, None, '"r"', token="t-1") is True
        assert store.write_done("x", 1, None, '"r"', token="t-2") is False
        assert store.late_completions == 1
    finally:
        store.close()
    assert query(pg_dsn, "SELECT count(*) FROM agent_resume.completions") == [(1,)]
    assert [r["id"] for r in PostgresStore(pg_dsn).iter_records()] == ["x"]


def test_a_lost_connection_is_reconnected_and_the_write_goes_through(pg_dsn: str) -> None:
    store = opened(pg_dsn)
    try:
        store.enqueue(["x", "y"])
        query(
            pg_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'agent-resume %'",
        )
        assert store.write_done("x", 1, None, None) is True
        assert store.reconnects >= 1
        assert store.claim(5, 3) == ["y"]
    finally:
        store.close()


def test_an_unreachable_server_raises_a_store_error() -> None:
    store = PostgresStore("postgresql://nobody@127.0.0.1:1/none", connect_timeout=1)
    with pytest.raises(StoreError, match="opening the job failed"):
        store.open("job")


def test_failures_are_counted_across_workers_and_release_resets_them(pg_dsn: str) -> None:
    a, b = opened(pg_dsn), opened(pg_dsn)
    try:
        a.enqueue(["x"])
        a.write_failed("x", 1, "E: one", 1, True, None)
        b.write_failed("x", 2, "E: two", 1, True, {"input_tokens": 3})
        assert a.claim(5, 2) == []
        assert a.pending(2) == 0
        b.write_retry(["x"], 3)
        assert a.claim(5, 2) == ["x"]
    finally:
        a.close()
        b.close()
    records = list(PostgresStore(pg_dsn).iter_records())
    assert [(r.get("attempt"), r.get("status")) for r in records] == [
        (1, "failed"),
        (2, "failed"),
        (None, "retry"),
    ]
    assert records[1]["usage"] == {"input_tokens": 3}


def test_a_claim_finds_its_rows_by_key_not_by_scanning_the_whole_job(pg_dsn: str) -> None:
    # Issue 15: `item_id IN (subquery)` was planned as a hash join over a scan
    # of every item, so each claim cost grew with the job.
    import json

    import psycopg

    from agent_resume.stores._postgres_sql import CLAIM

    store = opened(pg_dsn)
    try:
        store.enqueue([f"item-{n:05d}" for n in range(20_000)])
        store.claim(200, 3)  # as a worker would, before any ANALYZE
        params = {"w": "x", "lease": 30, "max": 3, "exclude": [], "limit": 64}
        with psycopg.connect(pg_dsn) as conn:
            (plan,) = conn.execute(
                "EXPLAIN (FORMAT JSON) " + CLAIM.replace("{s}", "agent_resume"), params
            ).fetchone()  # type: ignore[misc]
            conn.rollback()
    finally:
        store.close()
    text = json.dumps(plan if isinstance(plan, list) else json.loads(plan))
    update = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    assert update["Node Type"] == "ModifyTable"
    scan = update["Plans"][-1]
    assert scan["Node Type"] != "Hash Join", text
    assert scan["Node Type"] != "Seq Scan", text


def test_a_group_worker_claims_its_next_batch_ahead_and_gives_it_all_back_on_close(
    pg_dsn: str,
) -> None:
    # Issue 15: a group worker's claim waited for its queued completions and
    # then for its own commit; now the next batch is claimed while one runs.
    store = opened(pg_dsn, durability="group", batch_size=2)
    leased = "SELECT item_id FROM agent_resume.items WHERE leased_by IS NOT NULL ORDER BY 1"
    try:
        store.enqueue(["a", "b", "c", "d", "e"])
        assert store.claim(2, 3) == ["a", "b"]
        store.write_done("a", 1, None, None)  # queued, not committed yet
        # "c" was tried meanwhile (the caller excludes it): given back, not handed out.
        assert store.claim(2, 3, exclude=["b", "c"]) == ["d"]
        deadline = time.monotonic() + 10
        while query(pg_dsn, leased) != [("b",), ("d",), ("e",)] and time.monotonic() < deadline:
            time.sleep(0.05)  # "e" is claimed ahead, in the background
        assert query(pg_dsn, leased) == [("b",), ("d",), ("e",)]
    finally:
        store.close()
    assert query(pg_dsn, leased) == []
    assert query(pg_dsn, "SELECT item_id FROM agent_resume.completions") == [("a",)]


def psycopg_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def claim_plan(dsn: str, *, planned: bool) -> str:
    """The claim's plan as JSON text, with or without the claim's planner settings."""
    import json

    import psycopg

    from agent_resume.stores._postgres_sql import CLAIM, CLAIM_PLAN

    params = {"w": "x", "lease": 30, "max": 3, "exclude": [], "limit": 64}
    with psycopg.connect(dsn) as conn:
        if planned:
            conn.execute(CLAIM_PLAN)
        (plan,) = conn.execute(
            "EXPLAIN (FORMAT JSON) " + CLAIM.replace("{s}", "agent_resume"), params
        ).fetchone()  # type: ignore[misc]
        conn.rollback()
    return json.dumps(plan)


def test_a_claim_walks_the_queue_in_order_instead_of_sorting_every_pending_row(
    pg_dsn: str,
) -> None:
    # Issue 15: with statistics taken while most items were leased (as
    # autovacuum takes them mid-run), the claim read every pending row and
    # sorted them, on every claim.
    store = opened(pg_dsn)
    try:
        store.enqueue([f"item-{n:05d}" for n in range(20_000)])
        query(pg_dsn, "UPDATE agent_resume.items SET leased_until = now() + interval '1 hour'")
        query(pg_dsn, "ANALYZE agent_resume.items")
        query(pg_dsn, "UPDATE agent_resume.items SET leased_until = NULL WHERE seq > 2")
        assert '"Sort"' in claim_plan(pg_dsn, planned=False)  # what the planner picks alone
        plan = claim_plan(pg_dsn, planned=True)
        assert '"Sort"' not in plan and '"Seq Scan"' not in plan, plan
        assert '"Index Name": "items_todo"' in plan, plan
        assert store.claim(3, 3) == ["item-00002", "item-00003", "item-00004"]
    finally:
        store.close()


def test_a_claim_does_not_wait_for_the_disk_but_a_completion_does(pg_dsn: str) -> None:
    from agent_resume.stores._postgres import _with_claim_settings

    def show(link: object) -> tuple[str, str]:
        sql = "SELECT current_setting('synchronous_commit'), current_setting('enable_sort')"
        row = link.run(lambda c: c.execute(sql).fetchone(), "showing")  # type: ignore[attr-defined]
        return row[0], row[1]

    for durability in ("flush", "group"):
        store = opened(pg_dsn, durability=durability, schema=f"sync_{durability}")
        try:
            store.enqueue(["a", "b"])
            assert store.claim(1, 3) == ["a"]
            assert store.write_done("a", 1, None, None)
            store.flush()
            # The claim's settings stay in its transaction: completions wait for
            # the disk (the server's synchronous_commit) and are planned as usual,
            # and no setting stays on a connection a pooler could hand on.
            assert show(store._link) == ("on", "on")
            assert show(store._claim_link) == ("on", "on")
        finally:
            store.close()
    with psycopg_connect(pg_dsn) as conn:
        sql = "SELECT current_setting('synchronous_commit'), current_setting('enable_sort')"
        assert _with_claim_settings(conn, sql, {}) == [("off", "off")]
        assert conn.execute(sql).fetchone() == ("on", "on")


def test_a_batch_already_enqueued_is_skipped_by_its_digest(pg_dsn: str) -> None:
    # Issue 15: every worker inserted the whole item list at its start.
    ids = [f"i{n:05d}" for n in range(12_000)]  # batches of 5,000, 5,000 and 2,000
    first, second = opened(pg_dsn), opened(pg_dsn)
    try:
        first.enqueue(ids)
        assert query(pg_dsn, "SELECT count(*) FROM agent_resume.enqueued") == [(3,)]
        # A row removed behind the store's back shows that the second worker
        # inserted nothing: its batches were known by their digests.
        query(pg_dsn, "DELETE FROM agent_resume.items WHERE item_id = 'i00001'")
        second.enqueue(ids)
        assert query(pg_dsn, "SELECT count(*) FROM agent_resume.items") == [(11_999,)]
        # A list that grew has a new last batch: its new items are added.
        second.enqueue([*ids, "i99999"])
        assert query(pg_dsn, "SELECT count(*) FROM agent_resume.items") == [(12_000,)]
        assert second.claim(3, 3) == ["i00000", "i00002", "i00003"]
    finally:
        first.close()
        second.close()


def test_workers_enqueueing_the_same_items_at_once_add_each_once_in_order(pg_dsn: str) -> None:
    import threading

    ids = [f"i{(n * 7919) % 10_007:05d}" for n in range(10_007)]  # not in sorted order
    stores = [opened(pg_dsn) for _ in range(4)]
    gate = threading.Barrier(4)

    def enqueue(store: PostgresStore) -> None:
        gate.wait()
        store.enqueue(ids)

    threads = [threading.Thread(target=enqueue, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in stores:
            s.close()
    rows = query(pg_dsn, "SELECT item_id FROM agent_resume.items ORDER BY seq")
    assert [r[0] for r in rows] == ids


def test_a_group_commit_retried_after_an_unknown_commit_finds_its_own_completions(
    pg_dsn: str,
) -> None:
    import psycopg

    from agent_resume.stores._postgres_sql import COMPLETE_MANY

    opened(pg_dsn).close()
    sql = COMPLETE_MANY.replace("{s}", "agent_resume")
    params = {
        "ids": ["a", "b"],
        "ts": [1, 1],
        "toks": ["t-a", "t-b"],
        "recs": ['{"id": "a", "ts": 1}', '{"id": "b", "ts": 1}'],
        "res": [None, None],
        "w": "w",
    }
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        first = conn.execute(sql, {**params, "again": False}).fetchall()
        assert sorted(first) == [("a",), ("b",)]
        # The same batch again: a retry whose first try committed, or not a retry.
        assert sorted(conn.execute(sql, {**params, "again": True}).fetchall()) == sorted(first)
        assert conn.execute(sql, {**params, "again": False}).fetchall() == []


def test_closing_gives_back_the_leases_of_the_items_not_done(pg_dsn: str) -> None:
    for durability in ("flush", "group"):
        schema = f"close_{durability}"
        leaving = opened(pg_dsn, lease=30, durability=durability, schema=schema)
        other = opened(pg_dsn, lease=30, schema=schema)
        try:
            leaving.enqueue(["a", "b", "c", "d"])
            assert leaving.claim(3, 3) == ["a", "b", "c"]
            leaving.write_done("b", 1, None, None)
            leaving.close()
            assert other.claim(5, 3) == ["a", "c", "d"]  # at once, not after 30 s
        finally:
            leaving.close()
            other.close()
