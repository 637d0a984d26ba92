"""SqliteStore completions: a big job against an empty one, and against LangGraph's SqliteSaver.

Issue 15, the SQLite row: a completion on a job with 100,000 items done
must cost at most 1.2x one on an empty job, and no more than LangGraph's
``SqliteSaver.put`` at the same ``synchronous`` setting.

Each completion goes through a session, as a run records it: the item is
claimed by ``remaining()`` (a ``SqliteStore`` is shared), then
``session.mark_done(item, result=..., usage=..., turns=1, seconds=...)``;
only the ``mark_done`` calls are timed, by the wall clock and by the
thread's CPU time (the CPU figure is steadier on a shared machine; the wall
one is what the target is about, and at ``synchronous=FULL`` it includes the
wait for the disk).

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


def _complete(path: Path, tag: str, n: int, durability: str) -> tuple[float, float]:
    """Seconds per ``mark_done`` of ``n`` new items of the job at ``path``, claimed first.

    Returns:
        Wall-clock and CPU (this thread's) seconds per completion.
    """
    from agent_resume import AgentResume
    from agent_resume.stores import SqliteStore

    store = SqliteStore(path, durability=durability, batch_size=256)  # type: ignore[arg-type]
    items = [f"{tag}-{k:06d}" for k in range(n)]
    spent = cpu = 0.0
    clock, cpu_clock = time.perf_counter, time.thread_time
    with AgentResume(store).resume_or_start("bench") as session:
        for k, item in enumerate(session.remaining(items)):
            start, start_cpu = clock(), cpu_clock()
            session.mark_done(
                item, result={"n": k, "text": "ok"}, usage=USAGE, turns=1, seconds=0.5
            )
            spent += clock() - start
            cpu += cpu_clock() - start_cpu
    return spent / n, cpu / n


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


def bench_size(tmp: Path) -> None:
    big = tmp / "big.db"
    start = time.perf_counter()
    _build_big(big)
    print(
        f"SqliteStore completion, {N_DONE:,} items done vs an empty job "
        f'(durability="flush"; {N_TIMED} timed per round, {ROUNDS} rounds in turns, medians; '
        f"built in {time.perf_counter() - start:.0f} s):"
    )
    empty_runs: list[tuple[float, float]] = []
    big_runs: list[tuple[float, float]] = []
    for k in range(ROUNDS):
        empty_runs.append(_complete(tmp / f"empty-{k}.db", "new", N_TIMED, "flush"))
        big_runs.append(_complete(big, f"new{k}", N_TIMED, "flush"))
        print(
            f"  round {k + 1}: empty {empty_runs[-1][0] * 1e6:6.1f} us, "
            f"{N_DONE:,} done {big_runs[-1][0] * 1e6:6.1f} us",
            flush=True,
        )
    for n, what in enumerate(("wall", "CPU")):
        empty = median(r[n] for r in empty_runs)
        full = median(r[n] for r in big_runs)
        ratio = full / empty
        verdict = "ok" if ratio <= 1.2 else "ABOVE TARGET"
        print(
            f"  {what:4}: empty job {empty * 1e6:6.1f} us, {N_DONE:,} done {full * 1e6:6.1f} us "
            f"per completion: {ratio:.2f}x (target <= 1.2x: {verdict})"
        )


def _langgraph_put(path: Path, synchronous: str, n: int) -> tuple[float, float]:
    """Seconds per ``SqliteSaver.put``, one small checkpoint per item, one thread per item.

    Returns:
        Wall-clock and CPU (this thread's) seconds per put.
    """
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()  # WAL, as SqliteSaver sets it
        conn.execute(f"PRAGMA synchronous={synchronous}")
        spent = cpu = 0.0
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
            spent += clock() - start
            cpu += cpu_clock() - start_cpu
        return spent / n, cpu / n
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
    cases: dict[str, Callable[[Path], tuple[float, float]]] = {
        "lg NORMAL": lambda p: _langgraph_put(p, "NORMAL", N_TIMED),
        "ar flush": lambda p: _complete(p, "new", N_TIMED, "flush"),
        "lg FULL": lambda p: _langgraph_put(p, "FULL", N_TIMED),
        "ar fsync": lambda p: _complete(p, "new", N_TIMED, "fsync"),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    print(
        f"SqliteStore completion against LangGraph SqliteSaver.put ({N_TIMED} per round, "
        f"{ROUNDS} rounds in turns, a fresh database each, medians):"
    )
    for k in range(ROUNDS):
        for name, case in cases.items():
            runs[name].append(case(tmp / f"{name.replace(' ', '-')}-{k}.db"))
        print(
            f"  round {k + 1}: "
            + ", ".join(f"{n} {r[-1][0] * 1e6:.1f} us" for n, r in runs.items()),
            flush=True,
        )
    for ours, theirs, level in (
        ("ar flush", "lg NORMAL", "NORMAL"),
        ("ar fsync", "lg FULL", "FULL"),
    ):
        for n, what in enumerate(("wall", "CPU")):
            mine = median(r[n] for r in runs[ours])
            peer = median(r[n] for r in runs[theirs])
            ratio = mine / peer
            verdict = "ok" if ratio <= 1.0 else "ABOVE TARGET"
            print(
                f"  synchronous={level:6} {what:4}: SqliteStore {mine * 1e6:7.1f} us, "
                f"SqliteSaver.put {peer * 1e6:7.1f} us: {ratio:.2f}x (target <= 1.0x: {verdict})"
            )


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
