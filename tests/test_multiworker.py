"""Several real worker processes share one job on PostgreSQL and on SQLite.

Workers are separate Python processes (``tests/_shared_worker.py``); one is
SIGKILLed while it holds leases, one is frozen with SIGSTOP until its leases
expire (a zombie), and database connections are cut under the workers' feet.
Every item must end done exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from _sqlite_rows import completion_rows

WORKER = str(Path(__file__).with_name("_shared_worker.py"))
LEASE = 1.0


def start(url: str, n_items: int, pause: float, durability: str = "flush") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, url, str(n_items), str(LEASE), str(pause), durability],
        stdout=subprocess.PIPE,
        text=True,
    )


def read_until_got(proc: subprocess.Popen[str], count: int) -> tuple[list[str], list[str]]:
    """Read the worker's lines until it has been handed ``count`` items.

    Returns:
        The IDs handed out, and every line read.
    """
    assert proc.stdout is not None
    got: list[str] = []
    lines: list[str] = []
    while len(got) < count:
        line = proc.stdout.readline()
        assert line, "the worker ended before it was handed enough items"
        lines.append(line.rstrip("\n"))
        if line.startswith("got "):
            got.append(line.split()[1])
    return got, lines


def finish(proc: subprocess.Popen[str]) -> tuple[list[str], list[str], dict[str, Any]]:
    """Wait for a worker; return the IDs it recorded, those it found late, and its stats."""
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    recorded = [
        ln.split()[1] for ln in out.splitlines() if ln.startswith("done ") and ln.endswith(" True")
    ]
    late = [
        ln.split()[1] for ln in out.splitlines() if ln.startswith("done ") and ln.endswith(" False")
    ]
    stats = json.loads(next(ln[6:] for ln in out.splitlines() if ln.startswith("stats ")))
    return recorded, late, stats


def pg_completions(dsn: str) -> list[tuple[str, str]]:
    import psycopg

    from agent_resume.stores import PostgresStore

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT item_id, worker FROM agent_resume.completions").fetchall()
    # Each completion is read back once, as a record of the job.
    done = [r["id"] for r in PostgresStore(dsn).iter_records() if "id" in r and "status" not in r]
    assert sorted(done) == sorted(r[0] for r in rows)
    return [(r[0], r[1]) for r in rows]


def sqlite_completions(path: Path) -> list[tuple[str, str]]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return completion_rows(conn)  # each with one place among the records
    finally:
        conn.close()


def check_killed_worker_run(url: str, completions: Any, n_workers: int, n_items: int) -> None:
    # The victim dwells on each item long enough for the kill to land mid-item.
    victim = start(url, n_items, pause=0.5)
    held, lines = read_until_got(victim, 3)
    others = [start(url, n_items, pause=0.005) for _ in range(n_workers - 1)]
    victim.send_signal(signal.SIGKILL)
    victim_out, _ = victim.communicate()
    lines += victim_out.splitlines()
    victim_done = {ln.split()[1] for ln in lines if ln.startswith("done ") and ln.endswith(" True")}
    recorded: list[str] = []
    for proc in others:
        ids, late, _ = finish(proc)
        recorded += ids
        assert late == []
    expected = {f"item-{n:04d}" for n in range(n_items)}
    rows = completions()
    assert sorted(i for i, _ in rows) == sorted(expected)
    # The victim may be killed between its commit and its "done" line.
    victim_rows = {i for i, w in rows if w.split(":")[1] == str(victim.pid)}
    assert victim_done <= victim_rows
    # Each completion was recorded by exactly one process.
    assert sorted(recorded + sorted(victim_rows)) == sorted(expected)
    # The items the victim held when it died were finished by the others.
    unfinished = set(held) - victim_rows
    assert unfinished
    assert unfinished <= set(recorded)


@pytest.mark.postgres
@pytest.mark.slow
def test_four_postgres_workers_one_killed_finish_every_item_once(pg_dsn: str) -> None:
    check_killed_worker_run(pg_dsn, lambda: pg_completions(pg_dsn), 4, 300)


@pytest.mark.slow
def test_two_sqlite_workers_one_killed_finish_every_item_once(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    check_killed_worker_run(f"sqlite:///{path}", lambda: sqlite_completions(path), 2, 150)


def check_zombie(url: str, completions: Any, n_items: int) -> None:
    zombie = start(url, n_items, pause=0.5)
    (held,), _ = read_until_got(zombie, 1)
    zombie.send_signal(signal.SIGSTOP)
    try:
        rescuer = start(url, n_items, pause=0.0)
        recorded, late, _ = finish(rescuer)
    finally:
        zombie.send_signal(signal.SIGCONT)
    zombie_recorded, zombie_late, stats = finish(zombie)
    assert held in recorded
    assert held in zombie_late
    assert stats["late"] == len(zombie_late) >= 1
    assert late == []
    assert sorted(recorded + zombie_recorded) == sorted(i for i, _ in completions())
    assert len(completions()) == n_items


@pytest.mark.postgres
@pytest.mark.slow
def test_a_zombie_postgres_workers_late_completion_is_ignored_and_counted(pg_dsn: str) -> None:
    check_zombie(pg_dsn, lambda: pg_completions(pg_dsn), 40)


@pytest.mark.slow
def test_a_zombie_sqlite_workers_late_completion_is_ignored_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    check_zombie(f"sqlite:///{path}", lambda: sqlite_completions(path), 40)


@pytest.mark.postgres
@pytest.mark.slow
def test_lost_connections_are_retried_without_losing_or_doubling(pg_dsn: str) -> None:
    import psycopg

    n_items = 300
    workers = [start(pg_dsn, n_items, pause=0.01) for _ in range(2)]
    read_until_got(workers[0], 1)
    terminated = 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for _ in range(6):
            time.sleep(0.15)
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'agent-resume %' AND pid <> pg_backend_pid()"
            ).fetchall()
            terminated += len(rows)
    results = [finish(proc) for proc in workers]
    assert terminated > 0
    assert sum(stats["reconnects"] for _, _, stats in results) > 0
    recorded = [i for ids, _, _ in results for i in ids]
    expected = sorted(f"item-{n:04d}" for n in range(n_items))
    assert sorted(recorded) == expected
    assert sorted(i for i, _ in pg_completions(pg_dsn)) == expected


def test_worker_script_is_importable_without_running() -> None:
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path({WORKER!r})"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout == ""


@pytest.mark.postgres
def test_the_postgres_workers_recipe_shares_a_job(pg_dsn: str) -> None:
    recipe = Path(__file__).parents[1] / "recipes" / "postgres_workers.py"
    command = [sys.executable, str(recipe), "--dsn", pg_dsn, "--items", "60", "--lease", "2"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    done = sum(int(out.split("done ")[1].split(",")[0]) for out in outs)
    assert done == 60
    assert len(pg_completions(pg_dsn)) == 60


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_group_durability_workers_one_killed_finish_every_item_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """At least once, never twice: a killed worker's queued completions run again elsewhere."""
    n_items = 400
    if kind == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        url, completions = dsn, lambda: pg_completions(dsn)
    else:
        path = tmp_path / "job.db"
        url, completions = f"sqlite:///{path}", lambda: sqlite_completions(path)
    victim = start(url, n_items, pause=0.0, durability="group")
    _, lines = read_until_got(victim, 60)
    others = [start(url, n_items, pause=0.001, durability="group") for _ in range(2)]
    victim.send_signal(signal.SIGKILL)
    victim_out, _ = victim.communicate()
    lines += victim_out.splitlines()
    victim_acked = {ln.split()[1] for ln in lines if ln.startswith("done ")}
    recorded: list[str] = []
    for proc in others:
        ids, _, _ = finish(proc)
        recorded += ids
    rows = completions()  # also checks one 'done' event per completion
    expected = {f"item-{n:04d}" for n in range(n_items)}
    assert sorted(i for i, _ in rows) == sorted(expected)  # every item, once
    victim_rows = {i for i, w in rows if w.split(":")[1] == str(victim.pid)}
    assert victim_rows <= victim_acked  # nothing recorded that was not acknowledged
    # Acknowledged by the victim but queued when it died: run again by the others.
    assert victim_acked - victim_rows <= set(recorded)
