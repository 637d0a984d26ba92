"""``Store.describe()`` over every store: read-only, and the same answers everywhere."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent_resume import AgentResume
from agent_resume.stores import (
    InMemoryStore,
    JsonlStore,
    PostgresStore,
    ResultJsonlStore,
    SqliteStore,
    Store,
    StoreDescription,
)

MakeStore = Callable[[], Store]

KINDS = [
    "memory",
    "jsonl",
    "result_jsonl",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=KINDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    kind = request.param
    if kind == "memory":
        memory = InMemoryStore()
        return lambda: memory
    if kind == "jsonl":
        return lambda: JsonlStore(tmp_path / "job.jsonl")
    if kind == "result_jsonl":
        return lambda: ResultJsonlStore(tmp_path / "job.jsonl")
    if kind == "sqlite":
        return lambda: SqliteStore(tmp_path / "job.db", lease_seconds=5)
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: PostgresStore(dsn, lease_seconds=5)


def test_a_store_without_a_job_is_described_and_not_created(
    make_store: MakeStore, tmp_path: Path
) -> None:
    info = make_store().describe()
    assert isinstance(info, StoreDescription)
    assert (info.job_id, info.created, info.format_version) == (None, None, None)
    assert (info.done, info.failed, info.quarantined, info.max_attempts) == (0, 0, 0, 3)
    assert os.listdir(tmp_path) == []


def test_describe_counts_done_failed_and_quarantined_while_the_job_is_open(
    make_store: MakeStore,
) -> None:
    with AgentResume(make_store()).resume_or_start("job", max_attempts=2) as s:
        s.record_run({"run": "start", "ts": 1, "max_attempts": 2})
        for item in ["a", "b", "c"]:
            s.mark_done(item, result={"n": 1})
        s.mark_failed("d", "boom")
        s.mark_failed("e", "boom")
        s.mark_failed("e", "boom again")
        s.mark_failed("f", "no", retryable=False)
        info = make_store().describe()  # another store object, the job still open
    assert info.job_id == "job"
    assert isinstance(info.created, int)
    # Issue 15: PostgreSQL's schema is at version 2 (a completion writes no event
    # row), SQLite's at version 3 (a completion is kept in the item's row).
    versions = {SqliteStore: 3, PostgresStore: 2}
    assert info.format_version == versions.get(type(make_store()), 1)
    assert (info.done, info.failed) == (3, 3)
    assert (info.quarantined, info.max_attempts) == (2, 2)  # e (2 attempts) and f
    wider = make_store().describe(max_attempts=5)
    assert (wider.quarantined, wider.max_attempts) == (1, 5)


def test_capabilities_say_what_the_store_does(make_store: MakeStore) -> None:
    store = make_store()
    caps = store.describe().capabilities
    assert ("results" in caps) == store.keeps_results
    assert ("shared" in caps) == isinstance(store, (SqliteStore, PostgresStore))
    assert ("conversations" in caps) != ("conversation_files" in caps)


def test_describe_refuses_a_sqlite_file_that_is_not_a_store(tmp_path: Path) -> None:
    from agent_resume import StoreError

    path = tmp_path / "other.db"
    path.write_bytes(b"not a database at all, just text" * 100)
    with pytest.raises(StoreError, match="not an agent-resume SQLite store"):
        SqliteStore(path).describe()
