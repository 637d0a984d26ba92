"""PostgresStore when the network fails: a silent server, a server that goes away.

The store talks to PostgreSQL through a TCP proxy on 127.0.0.1 that can hold
traffic (the link goes silent, the connection stays open) or go down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from _tcp_proxy import TcpProxy
from agent_resume import AgentResume
from agent_resume._errors import ArgumentValueError, StoreError
from agent_resume.stores import PostgresStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy(pg_dsn: str) -> Iterator[TcpProxy]:
    parts = urlsplit(pg_dsn)
    if not pg_dsn.startswith(("postgresql://", "postgres://")) or parts.port is None:
        pytest.skip("the proxy tests need a postgresql:// URL with a port")
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port) as p:
        yield p


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.slow
def test_a_silent_server_does_not_hold_mark_done_for_the_whole_outage(
    pg_dsn: str, proxy: TcpProxy
) -> None:
    store = PostgresStore(
        proxy.dsn(pg_dsn), statement_timeout=1, connect_timeout=1, lease_seconds=20
    )
    with AgentResume(store).resume_or_start("job") as s:
        assert next(iter(s.remaining(["x", "y"]))) == "x"
        proxy.hold()  # the link goes silent, and stays so until the test says
        try:
            thread, outcome = _in_thread(lambda: s.mark_done("x"))
            thread.join(60)
            finished_during_outage = not thread.is_alive()
        finally:
            proxy.release()
        thread.join(60)
        assert finished_during_outage
        assert isinstance(outcome.get("error"), StoreError), outcome
        assert store._link.timeouts >= 1
        assert not s.is_done("x")
    # The held statement reached the server once the link came back, so the
    # completion may have been committed after all: at least once, never twice.
    records = [r for r in PostgresStore(pg_dsn).iter_records() if r.get("id") == "x"]
    assert len(records) <= 1


@pytest.mark.slow
def test_a_short_silence_is_ridden_out_by_reconnecting(pg_dsn: str, proxy: TcpProxy) -> None:
    store = PostgresStore(proxy.dsn(pg_dsn), statement_timeout=8, connect_timeout=1)
    with AgentResume(store).resume_or_start("job") as s:
        assert next(iter(s.remaining(["x"]))) == "x"
        proxy.hold()
        thread, outcome = _in_thread(lambda: s.mark_done("x", result={"n": 1}))
        time.sleep(2.5)  # longer than the watchdog's first cut (statement_timeout / ...)
        proxy.release()
        thread.join(60)
        assert not thread.is_alive()
        assert outcome == {"value": True}
    with AgentResume(PostgresStore(pg_dsn)).resume_or_start("job") as s:
        assert s.is_done("x")


@pytest.mark.slow
def test_an_item_whose_completion_failed_while_the_server_was_down_is_not_leased_for_ever(
    pg_dsn: str, proxy: TcpProxy
) -> None:
    store = PostgresStore(
        proxy.dsn(pg_dsn),
        statement_timeout=1,
        connect_timeout=1,
        lease_seconds=2,
        heartbeat_seconds=0.2,
    )
    with AgentResume(store).resume_or_start("job") as s:
        assert next(iter(s.remaining(["x", "y"]))) == "x"
        proxy.down()
        with pytest.raises(StoreError):
            s.mark_done("x")
        proxy.up()  # the server is back; this worker lives on, its heartbeat beating
        other = PostgresStore(pg_dsn, lease_seconds=2)
        other.open("job")
        try:
            taken: list[str] = []
            deadline = time.monotonic() + 30
            while "x" not in taken and time.monotonic() < deadline:
                taken += other.claim(10, 3)
                time.sleep(0.2)
            assert "x" in taken
            assert other.write_done("x", 1, None, None) is True
        finally:
            other.close()


def test_settings_of_the_timeouts_are_checked(pg_dsn: str) -> None:
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ArgumentValueError, match="statement_timeout"):
            PostgresStore(pg_dsn, statement_timeout=bad)
        with pytest.raises(ArgumentValueError, match="connect_timeout"):
            PostgresStore(pg_dsn, connect_timeout=bad)


def test_the_connection_carries_keepalives_and_the_statement_timeout(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, statement_timeout=7)
    store.open("job")
    try:
        timeout = store._run(lambda c: c.execute("SHOW statement_timeout").fetchone()[0], "x")
        assert timeout == "7s"
        info = store._run(lambda c: c.info.get_parameters(), "x")
        assert isinstance(info, dict)
        params = store._run(lambda c: c.pgconn.info, "x")
        given = {p.keyword.decode(): p.val for p in params if p.val is not None}
        assert given["keepalives"] == b"1"
        assert given["tcp_user_timeout"] == b"7000"
        # A SET, not a startup option: poolers such as PgBouncer refuse those.
        assert b"statement_timeout" not in given.get("options", b"")
    finally:
        store.close()


def test_group_durability_commits_queued_completions_together(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, durability="group")
    items = [f"item-{n:03d}" for n in range(300)]
    with AgentResume(store).resume_or_start("job") as s:
        for item in s.remaining(items):
            assert s.mark_done(item, result={"item": item}) is True
        s.flush()
        assert PostgresStore(pg_dsn).describe().done == 300
    records = [r for r in PostgresStore(pg_dsn).iter_records() if "id" in r]
    assert sorted(r["id"] for r in records) == items
    assert dict(PostgresStore(pg_dsn).iter_results())["item-007"] == {"item": "item-007"}


def test_group_durability_counts_a_completion_another_worker_recorded_first(
    pg_dsn: str,
) -> None:
    first, second = PostgresStore(pg_dsn), PostgresStore(pg_dsn, durability="group")
    first.open("job")
    second.open("job")
    try:
        assert first.write_done("x", 1, None, '"first"') is True
        assert second.write_done("x", 2, None, '"second"') is True  # queued: not known yet
        second.flush()
        assert second.late_completions == 1
        assert dict(first.iter_results()) == {"x": "first"}
    finally:
        first.close()
        second.close()


@pytest.mark.slow
def test_a_group_commit_that_fails_refuses_further_writes_and_gives_the_leases_up(
    pg_dsn: str, proxy: TcpProxy
) -> None:
    store = PostgresStore(
        proxy.dsn(pg_dsn),
        durability="group",
        statement_timeout=1,
        connect_timeout=1,
        lease_seconds=2,
        heartbeat_seconds=0.2,
    )
    store.open("job")
    store.enqueue(["x", "y"])
    assert store.claim(2, 3) == ["x", "y"]
    proxy.down()
    store.write_done("x", 1, None, None)  # acknowledged, queued; its commit will fail
    with pytest.raises(StoreError):
        store.flush()
    with pytest.raises(StoreError, match="refuses further writes"):
        store.write_done("y", 1, None, None)
    proxy.up()
    with pytest.raises(StoreError):
        store.close()
    other = PostgresStore(pg_dsn, lease_seconds=2)
    other.open("job")
    try:
        taken: list[str] = []
        deadline = time.monotonic() + 30
        while len(taken) < 2 and time.monotonic() < deadline:
            taken += other.claim(10, 3)
            time.sleep(0.2)
        assert sorted(taken) == ["x", "y"]  # x was acknowledged but lost: it runs again
    finally:
        other.close()
