"""Shared stores: PostgreSQL scaling with workers, and SQLite mark_done.

SPEC section 11, row 8, and issue 15: PostgreSQL, 1, 2, 4 and 8 worker
processes claim and complete the same items, with per-item commits
(``durability="flush"``) and with ``durability="group"``; in the same run a
hand-written ``SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1`` queue (claim and
complete one item per transaction, the usual pattern) is the baseline. The
workers of a row start, set up (open the job, enqueue the items), then all
begin claiming at one moment, so the figures are the steady state. Each
row prints items/s, the duplicates (completions recorded twice: must be 0),
the ratio to its own 1-worker rate and, for per-item commits, the ratio of
time per item to the queue's with as many workers. Two more rows give the
machine's floor: each worker inserts its share of the completion rows, one
autocommit INSERT each, with no claim (``bare commit``), and the same without
waiting for the disk (``synchronous_commit=off``); no design that commits
each item can scale with workers better than a bare commit does on the same
machine. Then SqliteStore's
mark_done against the original JSONL approach.

Run it against a server with ``fsync=on`` (what users run; the test
server's ``fsync=off`` hides the cost of a commit):

    export AGENT_RESUME_PG_STATE=/tmp/bench-pg.state AGENT_RESUME_PG_FSYNC=on
    eval "$(bash .ci/postgres.sh start)"
    python bench/bench_shared.py --postgres   # the PostgreSQL table only
    python bench/bench_shared.py              # all of it
    bash .ci/postgres.sh stop
    python bench/bench_shared.py --sqlite-size   # SQLite completion cost, 100k done vs empty

``BENCH_PG_ITEMS`` (default 4,000) sets the items of a per-item or queue run;
group runs take five times as many.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median

N_ITEMS = int(os.environ.get("BENCH_PG_ITEMS", "4000"))
REPEATS = int(os.environ.get("BENCH_PG_REPEATS", "3"))
WORKERS = (1, 2, 4, 8)
N_SQLITE = 5_000
N_DONE = 100_000
N_TIMED = 3_000
HAND_WRITTEN = ("queue", "bare", "bare-nowait")


def _wait_for(go: float) -> None:
    """Start at the same moment as the other workers (after imports and set-up)."""
    time.sleep(max(0.0, go - time.time()))


def worker(dsn: str, n_items: int, durability: str, go: float = 0.0) -> None:
    from agent_resume import AgentResume
    from agent_resume.stores import PostgresStore

    store = PostgresStore(dsn, batch_size=200, durability=durability)  # type: ignore[arg-type]
    items = [f"item-{n:06d}" for n in range(n_items)]
    # When this worker's last completion was committed: at its mark_done
    # (per-item commits), or when the next pending() returned (it commits the
    # queued completions first). After that the worker only waits, a poll
    # interval at a time, for the others' leases to end.
    last_done = committed = 0.0
    pending = store.pending

    def timed_pending(max_attempts: int, exclude: Sequence[str] = ()) -> int:
        nonlocal committed
        count = pending(max_attempts, exclude)
        committed = committed or time.time()
        return count

    store.pending = timed_pending  # type: ignore[method-assign]
    with AgentResume(store).resume_or_start("bench") as session:
        store.enqueue(items)  # remaining() enqueues again: one digest lookup per 5,000, timed
        _wait_for(go)
        started = time.time()
        recorded = 0
        for item in session.remaining(items):
            recorded += session.mark_done(item)
            last_done, committed = time.time(), 0.0
        ended = time.time()
    done = last_done if durability != "group" else (committed or ended)
    report = {"started": started, "done": max(done, started), "ended": ended, "recorded": recorded}
    print(json.dumps(report))


def queue_worker(dsn: str, schema: str, n_items: int, go: float = 0.0) -> None:
    """The baseline: a hand-written queue, one transaction per item (claim, record, delete)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {schema}.queue (item_id) SELECT 'item-' || lpad(n::text, 6, '0') "
            f"FROM generate_series(0, %s) AS n ORDER BY n ON CONFLICT DO NOTHING",
            (n_items - 1,),
        )
        conn.autocommit = False
        recorded = 0
        _wait_for(go)
        started = time.time()
        while True:
            with conn.transaction():
                row = conn.execute(
                    f"SELECT item_id FROM {schema}.queue ORDER BY seq "
                    "FOR UPDATE SKIP LOCKED LIMIT 1"
                ).fetchone()
                if row is None:
                    break
                done = json.dumps({"id": row[0], "ts": int(time.time())})
                cur = conn.execute(
                    f"INSERT INTO {schema}.done (item_id, record) VALUES (%s, %s::jsonb) "
                    "ON CONFLICT DO NOTHING",
                    (row[0], done),
                )
                recorded += cur.rowcount
                conn.execute(f"DELETE FROM {schema}.queue WHERE item_id = %s", (row[0],))
        ended = time.time()
    print(json.dumps({"started": started, "done": ended, "ended": ended, "recorded": recorded}))


def bare_worker(dsn: str, schema: str, n_items: int, part: str, go: float = 0.0) -> None:
    """The floor: insert this worker's share of the completions, one commit each, no claim.

    ``part`` is ``"index/workers"`` (``"index/workers/nowait"``: with
    ``synchronous_commit=off``, so that a commit does not wait for the disk).
    What no per-item design can beat on this machine: a completion costs at
    least one durable commit, and this is nothing but that commit.
    """
    import psycopg

    index, n_workers, *nowait = part.split("/")
    mine = range(int(index), n_items, int(n_workers))
    with psycopg.connect(dsn, autocommit=True) as conn:
        if nowait:
            conn.execute("SET synchronous_commit = off")
        recorded = 0
        _wait_for(go)
        started = time.time()
        for n in mine:
            item_id = f"item-{n:06d}"
            done = json.dumps({"id": item_id, "ts": int(time.time())})
            cur = conn.execute(
                f"INSERT INTO {schema}.done (item_id, record) VALUES (%s, %s::jsonb) "
                "ON CONFLICT DO NOTHING",
                (item_id, done),
            )
            recorded += cur.rowcount
        ended = time.time()
    print(json.dumps({"started": started, "done": ended, "ended": ended, "recorded": recorded}))


def run_workers(
    dsn: str, schema: str, n_workers: int, durability: str, n_items: int
) -> tuple[float, float]:
    """Run ``n_workers`` processes over ``n_items`` (exits on a duplicate).

    Returns:
        Items/s until the last completion was committed (the job is done),
        and items/s until the last worker exited.
    """
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if durability in HAND_WRITTEN:
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(
                f"CREATE TABLE {schema}.done (item_id text PRIMARY KEY, record jsonb NOT NULL)"
            )
        if durability == "queue":
            conn.execute(
                f"CREATE TABLE {schema}.queue (item_id text PRIMARY KEY, seq bigserial NOT NULL)"
            )
            conn.execute(f"CREATE INDEX ON {schema}.queue (seq)")
    url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    # All workers start claiming at one moment, once started and set up.
    go = str(time.time() + 3.0 + 0.5 * n_workers)

    def args(index: int) -> list[str]:
        if durability == "queue":
            return ["--queue-worker", dsn, schema, str(n_items), go]
        if durability.startswith("bare"):
            part = f"{index}/{n_workers}" + ("/nowait" if durability == "bare-nowait" else "")
            return ["--bare-worker", dsn, schema, str(n_items), part, go]
        return ["--worker", url, str(n_items), durability, go]

    procs = [
        subprocess.Popen([sys.executable, __file__, *args(index)], stdout=subprocess.PIPE)
        for index in range(n_workers)
    ]
    reports = [json.loads(p.communicate()[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    recorded = sum(r["recorded"] for r in reports)
    table = "done" if durability in HAND_WRITTEN else "completions"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT count(*), count(DISTINCT item_id) FROM {schema}.{table}"
        ).fetchone()
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    assert row is not None
    duplicates = recorded - n_items
    if row != (n_items, n_items) or duplicates:
        raise SystemExit(f"FAIL: {row} completions, {recorded} recorded by workers")
    start = min(r["started"] for r in reports)
    done = max(r["done"] for r in reports) - start
    exited = max(r["ended"] for r in reports) - start
    return n_items / done, n_items / exited


def bench_postgres() -> None:
    dsn = os.environ.get("AGENT_RESUME_PG_DSN")
    if not dsn:
        print("PostgreSQL: skipped (AGENT_RESUME_PG_DSN is not set)")
        return
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("fsync", "synchronous_commit")
        }
    print(
        f"PostgreSQL, claim + complete, fsync={settings['fsync']}, "
        f"synchronous_commit={settings['synchronous_commit']}; "
        f"{N_ITEMS} items (group: {5 * N_ITEMS}); medians of {REPEATS} rounds; "
        "0 duplicates in every row (checked):"
    )
    kinds = ("bare-nowait", "bare", "queue", "flush", "group")
    runs: dict[str, dict[int, list[tuple[float, float]]]] = {
        k: {n: [] for n in WORKERS} for k in kinds
    }
    for _ in range(REPEATS):
        for n in WORKERS:  # interleaved, so that the machine's noise falls on all three alike
            for kind in kinds:
                size = 5 * N_ITEMS if kind == "group" else N_ITEMS
                runs[kind][n].append(
                    run_workers(dsn, f"bench_{kind.replace('-', '_')}_{n}", n, kind, size)
                )
    rates = {k: {n: median(r[0] for r in runs[k][n]) for n in WORKERS} for k in kinds}
    exits = {k: {n: median(r[1] for r in runs[k][n]) for n in WORKERS} for k in kinds}
    names = {
        "bare-nowait": "bare, no disk wait",
        "bare": "bare commit (floor)",
        "queue": "SKIP LOCKED queue",
        "flush": "per-item commit",
        "group": 'durability="group"',
    }
    print(
        f"  {'':20}" + "".join(f"{n:>9} w" for n in WORKERS) + "   (items/s until the job is done)"
    )
    for kind, row in rates.items():
        print(f"  {names[kind]:20}" + "".join(f"{row[n]:11.0f}" for n in WORKERS))
    print("  until the last worker exited (a waiting worker polls once per poll interval):")
    for kind, row in exits.items():
        print(f"  {names[kind]:20}" + "".join(f"{row[n]:11.0f}" for n in WORKERS))
    for kind in kinds:
        spread = ", ".join(
            f"{n} w {min(r[0] for r in runs[kind][n]):.0f}-{max(r[0] for r in runs[kind][n]):.0f}"
            for n in WORKERS
        )
        print(f"  {names[kind]:20} range: {spread}")
    for kind, row in rates.items():
        print(
            f"  {names[kind]:20} scaling vs 1 worker: "
            + ", ".join(f"{n} w {row[n] / row[1]:.2f}x" for n in WORKERS[1:])
        )
    print(
        "  per-item commit, time per item / queue's: "
        + ", ".join(f"{n} w {rates['queue'][n] / rates['flush'][n]:.2f}x" for n in WORKERS)
        + " (below 1: faster)"
    )
    print(
        "  group / per-item commit: "
        + ", ".join(f"{n} w {rates['group'][n] / rates['flush'][n]:.1f}x" for n in WORKERS)
    )
    verdict = "ok" if rates["group"][4] >= 8000 else "BELOW TARGET"
    print(f"  group, 4 workers: {rates['group'][4]:.0f} items/s; target >= 8000: {verdict}")
    two = rates["flush"][4] / rates["flush"][1]
    faster = rates["flush"][4] >= rates["queue"][4]
    print(
        f"  per-item, 4 workers: {two:.2f}x its 1-worker rate (target >= 2x: "
        f"{'ok' if two >= 2 else 'BELOW TARGET'}); "
        f"{'faster' if faster else 'SLOWER'} per item than the queue with 4 workers"
    )
    floor = rates["bare"][4] / rates["bare"][1]
    print(
        f"  the floor (a bare INSERT per commit, no claim) with 4 workers: {floor:.2f}x its "
        f"1-worker rate ({rates['bare-nowait'][4] / rates['bare-nowait'][1]:.2f}x without "
        "the disk wait); per-item commit's scaling / the floor's: "
        f"{two / floor:.2f}x"
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
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--queue-worker":
        queue_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-worker":
        bare_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], float(sys.argv[6]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--postgres":
        bench_postgres()
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--sqlite-size":
        bench_sqlite_job_size()
        return
    bench_postgres()
    bench_sqlite()
    bench_sqlite_job_size()


if __name__ == "__main__":
    main()
