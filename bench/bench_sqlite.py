"""SqliteStore completions: a big job against an empty one, and against LangGraph's SqliteSaver.

Issue 15, the SQLite row: a completion on a job with 100,000 items done
must cost at most 1.2x one on an empty job, and no more than LangGraph's
``SqliteSaver.put`` at the same ``synchronous`` setting.

Each completion goes through a session, as a run records it: the item is
claimed by ``remaining()`` (a ``SqliteStore`` is shared), then
``session.mark_done(item, result=..., usage=..., turns=1, seconds=...)``;
only the ``mark_done`` calls are timed. Each round gives three measures: the
mean wall-clock time per call (what the target is about; at
``synchronous=FULL`` it includes the wait for the disk), the mean CPU time
of the calling thread, and the median wall-clock time of one call. On a
shared machine the mean wall time is ruled by a few calls the scheduler
held up for milliseconds (the slowest 1 % of calls can be 40 % of the
time, on either side); the CPU time and the median call say what the code
costs.

1. Job size (``durability="flush"``, the default): the big job is built
   first (100,000 completions through the store), then rounds alternate
   between a fresh job and new items of the big one; medians of the rounds.
2. Peers: one ``SqliteSaver.put`` per item (a small checkpoint such as a
   graph of one step writes: the item, its result, a short message list, the
   channel versions; one thread per item), on a database of its own, with
   ``PRAGMA synchronous=NORMAL`` and ``FULL``, against ``SqliteStore`` with
   ``durability="flush"`` (``synchronous=NORMAL``) and ``"fsync"``
   (``synchronous=FULL``). The four are interleaved round by round, each on a
   fresh file; medians. The LangGraph rows are skipped, with a message, when
   ``langgraph-checkpoint-sqlite`` is not installed; it is a benchmark peer
   only, never a dependency of the library:

       pip install -e '.[bench]'     # or: pip install langgraph-checkpoint-sqlite

Run:

    python bench/bench_sqlite.py            # both parts (about two minutes)
    python bench/bench_sqlite.py --size     # part 1 only
    python bench/bench_sqlite.py --peers    # part 2 only
    python bench/bench_sqlite.py --quick    # smaller, less stable

``BENCH_DIR=/some/dir`` puts the databases on another file system (both
sides share it, so the ratios compare like with like).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

QUICK = "--quick" in sys.argv
N_DONE = 20_000 if QUICK else 100_000
N_TIMED = 500 if QUICK else 2_000
ROUNDS = 3 if QUICK else 7
USAGE = {"input_tokens": 1200, "output_tokens": 300, "calls": 1, "cost_usd": 0.0012}


MEASURES = ("mean wall", "mean CPU", "median call")


def _measures(walls: list[float], cpu: float) -> tuple[float, float, float]:
    """Mean wall-clock, mean CPU and median wall-clock seconds of the timed calls."""
    return sum(walls) / len(walls), cpu / len(walls), median(walls)


def _complete(path: Path, tag: str, n: int, durability: str) -> tuple[float, float, float]:
    """Time ``mark_done`` for ``n`` new items of the job at ``path``, claimed first (see MEASURES)."""
    from agent_resume import AgentResume
    from agent_resume.stores import SqliteStore

    store = SqliteStore(path, durability=durability, batch_size=256)  # type: ignore[arg-type]
    items = [f"{tag}-{k:06d}" for k in range(n)]
    walls: list[float] = []
    cpu = 0.0
    clock, cpu_clock = time.perf_counter, time.thread_time
    with AgentResume(store).resume_or_start("bench") as session:
        for k, item in enumerate(session.remaining(items)):
            start, start_cpu = clock(), cpu_clock()
            session.mark_done(
                item, result={"n": k, "text": "ok"}, usage=USAGE, turns=1, seconds=0.5
            )
            walls.append(clock() - start)
            cpu += cpu_clock() - start_cpu
    return _measures(walls, cpu)


def _build_big(path: Path) -> None:
    """A job with N_DONE items done, written by the store itself (group commits, for speed)."""
    from agent_resume import AgentResume
    from agent_resume.stores import SqliteStore

    items = [f"old-{k:06d}" for k in range(N_DONE)]
    store = SqliteStore(path, durability="group", batch_size=1024)
    with AgentResume(store).resume_or_start("bench") as session:
        for k, item in enumerate(session.remaining(items)):
            session.mark_done(
                item, result={"n": k, "text": "ok"}, usage=USAGE, turns=1, seconds=0.5
            )


def _verdicts(
    runs: dict[str, list[tuple[float, float, float]]], ours: str, theirs: str, target: float
) -> None:
    for n, what in enumerate(MEASURES):
        mine = median(r[n] for r in runs[ours])
        base = median(r[n] for r in runs[theirs])
        ratio = mine / base
        verdict = "ok" if ratio <= target else "ABOVE TARGET"
        print(
            f"    {what:11}: {ours} {mine * 1e6:7.1f} us, {theirs} {base * 1e6:7.1f} us: "
            f"{ratio:.2f}x (target <= {target}x: {verdict})"
        )


def bench_size(tmp: Path) -> None:
    big = tmp / "big.db"
    start = time.perf_counter()
    _build_big(big)
    print(
        f"SqliteStore completion, {N_DONE:,} items done vs an empty job "
        f'(durability="flush"; {N_TIMED} timed per round, {ROUNDS} rounds in turns, medians; '
        f"built in {time.perf_counter() - start:.0f} s):"
    )
    runs: dict[str, list[tuple[float, float, float]]] = {"empty": [], f"{N_DONE // 1000}k done": []}
    for k in range(ROUNDS):
        runs["empty"].append(_complete(tmp / f"empty-{k}.db", "new", N_TIMED, "flush"))
        runs[f"{N_DONE // 1000}k done"].append(_complete(big, f"new{k}", N_TIMED, "flush"))
        print(
            f"  round {k + 1}: "
            + ", ".join(f"{name} {r[-1][0] * 1e6:6.1f} us" for name, r in runs.items()),
            flush=True,
        )
    _verdicts(runs, f"{N_DONE // 1000}k done", "empty", 1.2)


def _langgraph_put(path: Path, synchronous: str, n: int) -> tuple[float, float, float]:
    """Time ``SqliteSaver.put``, one small checkpoint per item, one thread per item (see MEASURES)."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()  # WAL, as SqliteSaver sets it
        conn.execute(f"PRAGMA synchronous={synchronous}")
        walls: list[float] = []
        cpu = 0.0
        clock, cpu_clock = time.perf_counter, time.thread_time
        for k in range(n):
            item = f"new-{k:06d}"
            checkpoint = empty_checkpoint()
            checkpoint["id"] = str(uuid.uuid4())
            checkpoint["channel_values"] = {
                "item": item,
                "messages": [
                    {"role": "user", "content": f"do {item}"},
                    {"role": "assistant", "content": "ok"},
                ],
                "result": {"n": k, "text": "ok"},
            }
            checkpoint["channel_versions"] = {"item": 1, "messages": 1, "result": 1}
            config: Any = {"configurable": {"thread_id": item, "checkpoint_ns": ""}}
            metadata: Any = {"source": "loop", "step": 1, "parents": {}, "usage": USAGE}
            start, start_cpu = clock(), cpu_clock()
            saver.put(config, checkpoint, metadata, {"item": 1, "messages": 1, "result": 1})
            walls.append(clock() - start)
            cpu += cpu_clock() - start_cpu
        return _measures(walls, cpu)
    finally:
        conn.close()


def bench_peers(tmp: Path) -> None:
    try:
        import langgraph.checkpoint.sqlite  # noqa: F401
    except ImportError:
        print(
            "LangGraph SqliteSaver: skipped (langgraph-checkpoint-sqlite is not installed; "
            "pip install -e '.[bench]' to compare)"
        )
        return
    cases: dict[str, Callable[[Path], tuple[float, float, float]]] = {
        "SqliteSaver NORMAL": lambda p: _langgraph_put(p, "NORMAL", N_TIMED),
        "SqliteStore flush": lambda p: _complete(p, "new", N_TIMED, "flush"),
        "SqliteSaver FULL": lambda p: _langgraph_put(p, "FULL", N_TIMED),
        "SqliteStore fsync": lambda p: _complete(p, "new", N_TIMED, "fsync"),
    }
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
    print(
        f"SqliteStore completion against LangGraph SqliteSaver.put ({N_TIMED} per round, "
        f"{ROUNDS} rounds in turns, a fresh database each, medians of the rounds):"
    )
    for k in range(ROUNDS):
        for name, case in cases.items():
            runs[name].append(case(tmp / f"{name.replace(' ', '-')}-{k}.db"))
        print(
            f"  round {k + 1} (mean wall): "
            + ", ".join(f"{n} {r[-1][0] * 1e6:.1f} us" for n, r in runs.items()),
            flush=True,
        )
    print("  synchronous=NORMAL:")
    _verdicts(runs, "SqliteStore flush", "SqliteSaver NORMAL", 1.0)
    print("  synchronous=FULL:")
    _verdicts(runs, "SqliteStore fsync", "SqliteSaver FULL", 1.0)


def main() -> None:
    parts = {"--size": bench_size, "--peers": bench_peers}
    chosen = [fn for flag, fn in parts.items() if flag in sys.argv] or list(parts.values())
    print(
        f"CPython {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, load {os.getloadavg()}"
    )
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        for part in chosen:
            part(Path(tmp))
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
