"""Shared stores: PostgreSQL throughput with 4 workers against 1, and SQLite mark_done.

SPEC section 11, row 8: PostgreSQL, 4 worker processes, 20,000 items, claim +
complete at least 3,000 items/s with zero duplicates. The 1-worker run is the
baseline in the same process. Then SqliteStore's mark_done against the
original JSONL approach (open in append mode, json.dumps, write, close per
record).

    eval "$(bash .ci/postgres.sh start)"
    python bench/bench_shared.py            # AGENT_RESUME_PG_DSN names the database
    python bench/bench_shared.py --sqlite-size   # SQLite completion cost, 100k done vs empty
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_ITEMS = 20_000
N_SQLITE = 5_000
N_DONE = 100_000
N_TIMED = 3_000


def worker(dsn: str, n_items: int, durability: str) -> None:
    from agent_resume import AgentResume
    from agent_resume.stores import PostgresStore

    store = PostgresStore(dsn, batch_size=200, durability=durability)  # type: ignore[arg-type]
    items = [f"item-{n:06d}" for n in range(n_items)]
    with AgentResume(store).resume_or_start("bench") as session:
        started = time.time()
        recorded = sum(session.mark_done(item) for item in session.remaining(items))
        ended = time.time()
    print(json.dumps({"started": started, "ended": ended, "recorded": recorded}))


def run_workers(dsn: str, schema: str, n_workers: int, durability: str = "flush") -> float:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", url, str(N_ITEMS), durability],
            stdout=subprocess.PIPE,
        )
        for _ in range(n_workers)
    ]
    reports = [json.loads(p.communicate()[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    recorded = sum(r["recorded"] for r in reports)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f"SELECT count(*), count(DISTINCT item_id) FROM {schema}.completions"
        ).fetchone()
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.commit()
    assert row is not None
    duplicates = recorded - N_ITEMS
    if row != (N_ITEMS, N_ITEMS) or duplicates:
        raise SystemExit(f"FAIL: {row} completions, {recorded} recorded by workers")
    seconds = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
    rate = N_ITEMS / seconds
    print(
        f"  {durability:5} {n_workers} worker(s): {rate:8.0f} items/s ({seconds:.2f} s), "
        "0 duplicates"
    )
    return rate


def bench_postgres() -> None:
    dsn = os.environ.get("AGENT_RESUME_PG_DSN")
    if not dsn:
        print("PostgreSQL: skipped (AGENT_RESUME_PG_DSN is not set)")
        return
    print(f"PostgreSQL, {N_ITEMS} items, claim + complete:")
    one = run_workers(dsn, "bench_one", 1)
    four = run_workers(dsn, "bench_four", 4)
    verdict = "ok" if four >= 3000 else "BELOW TARGET"
    print(f"  4 workers / 1 worker: {four / one:.2f}x; target >= 3000 items/s: {verdict}")
    group = {n: run_workers(dsn, f"bench_group_{n}", n, "group") for n in (1, 2, 4)}
    verdict = "ok" if group[4] >= 8000 else "BELOW TARGET"
    print(
        f"  group, 4 workers: {group[4] / four:.2f}x per-item commits; "
        f"target >= 8000 items/s: {verdict}"
    )


def bench_sqlite() -> None:
    from agent_resume import AgentResume
    from agent_resume.stores import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        baseline_path = Path(tmp) / "baseline.jsonl"
        start = time.perf_counter()
        for n in range(N_SQLITE):
            with open(baseline_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"id": f"item-{n:06d}", "ts": int(time.time())}) + "\n")
        baseline = (time.perf_counter() - start) / N_SQLITE
        store = SqliteStore(Path(tmp) / "bench.db")
        with AgentResume(store).resume_or_start("bench") as session:
            start = time.perf_counter()
            for n in range(N_SQLITE):
                session.mark_done(f"item-{n:06d}")
            per_item = (time.perf_counter() - start) / N_SQLITE
    print(f"SQLite mark_done, {N_SQLITE} items:")
    print(f"  baseline (open, append, close): {baseline * 1e6:7.1f} us/item")
    print(f"  SqliteStore.mark_done:          {per_item * 1e6:7.1f} us/item")
    print(f"  ratio: {per_item / baseline:.2f}x the baseline")


def _mark_done_cost(path: Path, tag: str) -> float:
    """Seconds per mark_done (with a small result) for N_TIMED new items of the job at ``path``."""
    from agent_resume import AgentResume
    from agent_resume.stores import SqliteStore

    with AgentResume(SqliteStore(path)).resume_or_start("bench") as session:
        start = time.perf_counter()
        for n in range(N_TIMED):
            session.mark_done(f"{tag}-{n:06d}", result={"n": n})
        return (time.perf_counter() - start) / N_TIMED


def bench_sqlite_job_size() -> None:
    """Issue 15: a completion must cost the same on a big job as on an empty one.

    The big job is built first (N_DONE completions through the store), then
    five rounds alternate between a fresh empty job and new items of the big one;
    the medians are compared.
    """
    from statistics import median

    from agent_resume import AgentResume
    from agent_resume.stores import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.db"
        with AgentResume(SqliteStore(big)).resume_or_start("bench") as session:
            for n in range(N_DONE):
                session.mark_done(f"old-{n:06d}")
        empty_runs, big_runs = [], []
        for k in range(5):
            empty_runs.append(_mark_done_cost(Path(tmp) / f"empty-{k}.db", "new"))
            big_runs.append(_mark_done_cost(big, f"new{k}"))
    empty, full = median(empty_runs), median(big_runs)
    ratio = full / empty
    verdict = "ok" if ratio <= 1.2 else "ABOVE TARGET"
    print(f"SQLite mark_done, {N_DONE} items done vs an empty job ({N_TIMED} timed, medians of 5):")
    print(f"  empty job:      {empty * 1e6:7.1f} us/item")
    print(f"  {N_DONE} done:    {full * 1e6:7.1f} us/item")
    print(f"  ratio: {ratio:.2f}x; target <= 1.2x: {verdict}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--sqlite-size":
        bench_sqlite_job_size()
        return
    bench_postgres()
    bench_sqlite()
    bench_sqlite_job_size()


if __name__ == "__main__":
    main()
