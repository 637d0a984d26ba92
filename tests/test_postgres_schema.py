"""PostgresStore schema versions: a version 1 schema is read as it is and migrated on open.

Version 2 (issue 15) keeps each completion's place in the job's order in the
completion row, where version 1 wrote a ``done`` row in ``events`` for it.
The version 1 tables and statements below are the previous release's, frozen.
"""

from __future__ import annotations

import pytest

from agent_resume.stores import PostgresStore

pytestmark = pytest.mark.postgres

V1_TABLES = (
    "CREATE SCHEMA agent_resume",
    "CREATE TABLE agent_resume.meta (key text PRIMARY KEY, value text)",
    """CREATE TABLE agent_resume.items (
        item_id text PRIMARY KEY,
        seq bigserial NOT NULL,
        done boolean NOT NULL DEFAULT false,
        leased_by text,
        leased_until timestamptz,
        attempts integer NOT NULL DEFAULT 0,
        retryable boolean NOT NULL DEFAULT true,
        error text)""",
    "CREATE INDEX items_todo ON agent_resume.items (seq) WHERE NOT done",
    "CREATE INDEX items_leased ON agent_resume.items (leased_by) WHERE leased_by IS NOT NULL",
    """CREATE TABLE agent_resume.completions (
        item_id text PRIMARY KEY,
        ts bigint NOT NULL,
        worker text NOT NULL,
        token text NOT NULL,
        record jsonb NOT NULL,
        result jsonb)""",
    """CREATE TABLE agent_resume.events (
        seq bigserial PRIMARY KEY,
        kind text NOT NULL,
        item_id text,
        ts bigint,
        token text UNIQUE,
        record jsonb)""",
    """CREATE TABLE agent_resume.conversations (
        item_id text NOT NULL,
        seq integer NOT NULL,
        message text NOT NULL,
        PRIMARY KEY (item_id, seq))""",
    "INSERT INTO agent_resume.meta VALUES ('version', '1'), ('job_id', 'job'), ('created', '7')",
)

V1_COMPLETE = """WITH ins AS (
        INSERT INTO agent_resume.completions (item_id, ts, worker, token, record, result)
        VALUES (%(id)s, %(ts)s, 'old', %(tok)s, %(rec)s::jsonb, %(res)s::jsonb)
        ON CONFLICT (item_id) DO NOTHING RETURNING item_id),
    ev AS (
        INSERT INTO agent_resume.events (kind, item_id, ts)
        SELECT 'done', item_id, %(ts)s FROM ins),
    up AS (
        INSERT INTO agent_resume.items AS i (item_id, done) SELECT item_id, true FROM ins
        ON CONFLICT (item_id) DO UPDATE SET done = true, leased_by = NULL, leased_until = NULL)
    SELECT count(*) FROM ins"""

V1_EVENT = """INSERT INTO agent_resume.events (kind, item_id, ts, token, record)
    VALUES (%s, %s, %s, %s, %s::jsonb)"""


def v1_complete(conn: object, item_id: str, ts: int) -> None:
    record = f'{{"id": "{item_id}", "ts": {ts}}}'
    params = {"id": item_id, "ts": ts, "tok": f"t-{item_id}", "rec": record, "res": f'"{item_id}!"'}
    conn.execute(V1_COMPLETE, params)  # type: ignore[attr-defined]


def make_v1_job(dsn: str) -> None:
    """A version 1 job: a run, a done, a failure, a done, in that order; ``c`` leased."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for ddl in V1_TABLES:
            conn.execute(ddl)
        conn.execute("INSERT INTO agent_resume.items (item_id) VALUES ('a'), ('b'), ('c'), ('d')")
        conn.execute(V1_EVENT, ("run", None, 1, "r1", '{"run": "start", "ts": 1}'))
        v1_complete(conn, "a", 2)
        conn.execute("UPDATE agent_resume.items SET attempts = 1, error = 'E' WHERE item_id = 'd'")
        failure = '{"id": "d", "ts": 3, "status": "failed", "error": "E", "attempt": 1}'
        conn.execute(V1_EVENT, ("failed", "d", 3, "f1", failure))
        v1_complete(conn, "b", 4)
        conn.execute(
            "UPDATE agent_resume.items SET leased_by = 'gone:1:x', "
            "leased_until = now() - interval '1 second' WHERE item_id = 'c'"
        )


def query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def kinds(store: PostgresStore) -> list[tuple[str, object]]:
    return [
        (r.get("status", "run" if "run" in r else "done"), r.get("id"))
        for r in store.iter_records()
    ]


V1_ORDER = [("run", None), ("done", "a"), ("failed", "d"), ("done", "b")]


def test_a_version_1_schema_is_read_as_it_is_without_opening_it(pg_dsn: str) -> None:
    make_v1_job(pg_dsn)
    store = PostgresStore(pg_dsn)
    assert kinds(store) == V1_ORDER
    assert [r.get("result") for r in store.iter_records()] == [None, "a!", None, "b!"]
    assert list(store.iter_results()) == [("a", "a!"), ("b", "b!")]
    info = store.describe()
    assert (info.format_version, info.done, info.failed) == (1, 2, 1)
    # Reading changed nothing.
    assert query(pg_dsn, "SELECT value FROM agent_resume.meta WHERE key = 'version'") == [("1",)]


def test_opening_a_version_1_schema_migrates_it_and_keeps_the_order_of_its_records(
    pg_dsn: str,
) -> None:
    make_v1_job(pg_dsn)
    store = PostgresStore(pg_dsn, lease_seconds=5)
    state = store.open("job")
    try:
        assert state.done == {"a", "b"}
        assert set(state.failures) == {"d"}
        assert state.created == 7
        assert store.claim(5, 3) == ["c", "d"]  # the dead worker's lease had run out
        assert store.write_done("c", 5, None, '"c!"')
    finally:
        store.close()
    assert kinds(store) == [*V1_ORDER, ("done", "c")]
    assert list(store.iter_results()) == [("a", "a!"), ("b", "b!"), ("c", "c!")]
    assert query(pg_dsn, "SELECT value FROM agent_resume.meta WHERE key = 'version'") == [("2",)]
    assert query(pg_dsn, "SELECT count(*) FROM agent_resume.events WHERE kind = 'done'") == [(0,)]
    assert query(pg_dsn, "SELECT to_regclass('agent_resume.items_leased')") == [(None,)]
    # Opening again (already version 2) changes nothing.
    again = PostgresStore(pg_dsn)
    assert again.open("job").done == {"a", "b", "c"}
    again.close()
    assert kinds(again) == [*V1_ORDER, ("done", "c")]


def test_a_version_1_worker_still_running_after_the_migration_is_read_once_in_order(
    pg_dsn: str,
) -> None:
    import psycopg

    make_v1_job(pg_dsn)
    store = PostgresStore(pg_dsn)
    store.open("job")
    store.write_done("c", 5, None, None)
    store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        v1_complete(conn, "d", 6)  # a worker of the previous release, opened before
    assert kinds(PostgresStore(pg_dsn)) == [*V1_ORDER, ("done", "c"), ("done", "d")]
    assert PostgresStore(pg_dsn).describe().done == 4


def test_a_new_schema_is_created_at_version_2(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    store.open("job")
    store.close()
    assert query(pg_dsn, "SELECT value FROM agent_resume.meta WHERE key = 'version'") == [("2",)]
    assert store.describe().format_version == 2


def test_workers_opening_a_version_1_schema_at_once_migrate_it_once(pg_dsn: str) -> None:
    import threading

    make_v1_job(pg_dsn)
    gate = threading.Barrier(4)
    states: list[set[str]] = []
    errors: list[BaseException] = []

    def open_job() -> None:
        store = PostgresStore(pg_dsn)
        gate.wait()
        try:
            states.append(set(store.open("job").done))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=open_job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert states == [{"a", "b"}] * 4
    assert kinds(PostgresStore(pg_dsn)) == V1_ORDER


def test_a_read_that_overlaps_the_migration_sees_the_records_of_one_version(
    pg_dsn: str,
) -> None:
    import threading

    make_v1_job(pg_dsn)

    class Racing(PostgresStore):
        """Lets another worker open (and migrate) the job right after the version is read."""

        def _meta(self, conn: object, key: str) -> str | None:
            value = super()._meta(conn, key)  # type: ignore[arg-type]
            if key == "version" and value == "1":
                other = PostgresStore(pg_dsn)
                opener = threading.Thread(target=lambda: (other.open("job"), other.close()))
                opener.start()
                opener.join(30)
            return value

    assert kinds(Racing(pg_dsn)) == V1_ORDER
    assert query(pg_dsn, "SELECT value FROM agent_resume.meta WHERE key = 'version'") == [("2",)]
