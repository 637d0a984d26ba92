"""Runs on shared stores (SQLite, PostgreSQL): counting what is left, and ``arun`` with many workers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from _sqlite_rows import completion_rows
from agent_resume import AgentResume, ItemContext, ResumableRun, RunConfig
from agent_resume.stores import PostgresStore, SqliteStore

R = TypeVar("R")
ARUN_WORKER = str(Path(__file__).with_name("_arun_worker.py"))


class CountingSqliteStore(SqliteStore):
    """A real SQLite store that remembers every batch it claimed."""

    claims: list[list[str]]

    def claim(self, limit: int, max_attempts: int, exclude: Sequence[str] = ()) -> list[str]:
        ids = super().claim(limit, max_attempts, exclude)
        self.claims.append(ids)
        return ids


class CountingPostgresStore(PostgresStore):
    """A real PostgreSQL store that remembers every batch it claimed."""

    claims: list[list[str]]

    def claim(self, limit: int, max_attempts: int, exclude: Sequence[str] = ()) -> list[str]:
        ids = super().claim(limit, max_attempts, exclude)
        self.claims.append(ids)
        return ids


StoreFactory = Callable[[int], Any]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Make counting stores over one shared job (a SQLite file, or a fresh PostgreSQL DB)."""
    if request.param == "sqlite":
        path = tmp_path / "job.db"

        def make_sqlite(batch: int) -> Any:
            store = CountingSqliteStore(path, batch_size=batch)
            store.claims = []
            return store

        return make_sqlite
    dsn = request.getfixturevalue("pg_dsn")

    def make_pg(batch: int) -> Any:
        store = CountingPostgresStore(dsn, batch_size=batch)
        store.claims = []
        return store

    return make_pg


ITEMS = [f"item-{n:05d}" for n in range(5000)]


def noop(item: str, ctx: ItemContext) -> str:
    return item


def run_in_thread(fn: Callable[[], R], timeout: float) -> R:
    """Run ``fn`` in a daemon thread; fail the test if it does not return in time."""
    box: list[R] = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"did not return within {timeout} s"
    assert box, "raised"
    return box[0]


def test_a_run_stopped_early_leases_only_the_batch_it_claimed(shared: StoreFactory) -> None:
    store = shared(64)
    config = RunConfig(job_id="left", store=store, max_items=3, progress=False)
    report = run_in_thread(lambda: ResumableRun(config).run(noop, ITEMS), 60)
    assert report.done == 3
    assert report.stop_reason != "completed"
    assert report.remaining == 4997
    assert [len(batch) for batch in store.claims] == [64]


def test_a_run_stopped_early_returns_while_another_worker_holds_a_batch(
    shared: StoreFactory,
) -> None:
    other = shared(10)
    with AgentResume(other).resume_or_start("left") as holder:
        held = holder.remaining(ITEMS)
        first = next(held)  # the other worker now leases a batch of 10, and lives
        store = shared(64)
        config = RunConfig(job_id="left", store=store, max_items=3, progress=False)
        report = run_in_thread(lambda: ResumableRun(config).run(noop, ITEMS), 60)
        assert report.done == 3
        # Counted without claiming: the other worker's 10 items are still to do.
        assert report.remaining == 4997
        assert [len(batch) for batch in store.claims] == [64]
        assert holder.mark_done(first)
        held.close()


async def anoop(item: str, ctx: ItemContext) -> str:
    return item


def test_an_async_run_stopped_early_returns_while_another_worker_holds_a_batch(
    shared: StoreFactory,
) -> None:
    other = shared(10)
    with AgentResume(other).resume_or_start("left") as holder:
        held = holder.remaining(ITEMS)
        next(held)
        store = shared(64)
        config = RunConfig(job_id="left", store=store, max_items=3, concurrency=4, progress=False)
        report = run_in_thread(lambda: asyncio.run(ResumableRun(config).arun(anoop, ITEMS)), 60)
        assert report.done == 3
        assert report.remaining == 4997
        assert [len(batch) for batch in store.claims] == [64]
        held.close()


def test_a_threaded_run_stopped_early_counts_without_claiming(shared: StoreFactory) -> None:
    store = shared(16)
    config = RunConfig(job_id="left", store=store, max_items=5, concurrency=3, progress=False)
    report = run_in_thread(lambda: ResumableRun(config).run(noop, ITEMS), 60)
    assert report.done == 5
    assert report.remaining == 4995
    assert sum(len(batch) for batch in store.claims) <= 16 * 2


def arun_workers(url: str, n_workers: int, n_items: int) -> list[dict[str, Any]]:
    """Start ``n_workers`` processes running ``arun`` on one job; return their reports."""
    procs = [
        subprocess.Popen(
            [sys.executable, ARUN_WORKER, url, str(n_items), "4", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n_workers)
    ]
    reports = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            line = next(ln for ln in out.splitlines() if ln.startswith("report "))
            reports.append(json.loads(line[len("report ") :]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    return reports


def check_arun_workers(url: str, n_workers: int, done_ids: Callable[[], list[str]]) -> None:
    reports = arun_workers(url, n_workers, 60)
    assert sum(r["done"] for r in reports) == 60
    assert all(r["stop_reason"] == "completed" for r in reports)
    assert sorted(done_ids()) == [f"item-{n:03d}" for n in range(60)]


@pytest.mark.parametrize("n_workers", [2, 3])
def test_arun_on_a_shared_sqlite_file_with_several_workers_does_not_deadlock(
    tmp_path: Path, n_workers: int
) -> None:
    import sqlite3

    path = tmp_path / "job.db"

    def done_ids() -> list[str]:
        conn = sqlite3.connect(path)
        try:
            return [item_id for item_id, _ in completion_rows(conn)]
        finally:
            conn.close()

    check_arun_workers(f"sqlite:///{path}", n_workers, done_ids)


@pytest.mark.postgres
def test_arun_on_postgres_with_three_workers_does_not_deadlock(pg_dsn: str) -> None:
    import psycopg

    def done_ids() -> list[str]:
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute("SELECT item_id FROM agent_resume.completions").fetchall()
        return [r[0] for r in rows]

    check_arun_workers(pg_dsn, 3, done_ids)


def test_aremaining_waits_for_other_workers_without_blocking_the_loop(tmp_path: Path) -> None:
    # Worker A holds a batch; worker B's aremaining() must wait for it while
    # the loop runs B's other tasks, here a ticker and the task that lets A
    # finish. A blocking wait would never let that task run.
    path = tmp_path / "job.db"
    items = [f"item-{n}" for n in range(8)]
    with (
        AgentResume(SqliteStore(path, batch_size=4, lease_seconds=30)).resume_or_start("j") as a,
        AgentResume(SqliteStore(path, batch_size=8, lease_seconds=30)).resume_or_start("j") as b,
    ):
        held_by_a = a.remaining(items)
        first = next(held_by_a)
        a_batch = [first, *(next(held_by_a) for _ in range(3))]

        async def main() -> tuple[list[str], int]:
            ticks = 0
            got: list[str] = []

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            async def release_a() -> None:
                while len(got) < 4:  # B took the free half first
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)  # B now waits for A's batch
                for item in a_batch:
                    a.mark_done(item)

            tick_task = asyncio.create_task(ticker())
            release_task = asyncio.create_task(release_a())
            async for item in b.aremaining(items):
                got.append(item)
                b.mark_done(item)
            await release_task
            tick_task.cancel()
            return got, ticks

        got, ticks = run_in_thread(lambda: asyncio.run(main()), 30)
        assert sorted(got) == sorted(set(items) - set(a_batch))
        assert ticks >= 10  # the loop kept running while B waited
        held_by_a.close()


@pytest.mark.parametrize("mode", ["serial", "threaded", "async"])
def test_a_run_does_not_wait_past_its_budget_for_items_another_worker_holds(
    shared: StoreFactory, mode: str
) -> None:
    items = ITEMS[:20]
    other = shared(20)
    with AgentResume(other).resume_or_start("left") as holder:
        held = holder.remaining(items)
        next(held)  # the other worker, alive, holds every item
        config = RunConfig(
            job_id="left",
            store=shared(8),
            time_budget=1.0,
            concurrency=1 if mode == "serial" else 3,
            progress=False,
        )
        run = ResumableRun(config)
        if mode == "async":
            report = run_in_thread(lambda: asyncio.run(run.arun(anoop, items)), 60)
        else:
            report = run_in_thread(lambda: run.run(noop, items), 60)
        assert (report.done, report.stop_reason, report.remaining) == (0, "time_budget", 20)
        held.close()
