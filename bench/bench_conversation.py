"""Benchmark: saving a growing conversation, at message 10 and at message 500.

An agent loop saves its whole conversation after every turn with
``ctx.save_conversation(messages)``. When the list only grew, agent-resume
appends the new messages, so a save should cost the same late in a long
conversation as early on. The figure is the ratio of the median save at messages 491 to 500 of a
500-message conversation to the median save at messages 6 to 15 (target at
most 1.5). Each save ends in an fsync, whose cost on a shared machine swings
with everyone else's disk traffic, so the two are measured interleaved: one
save of the short conversation, one of the long, and again, with
``ConversationLog``, the class ``ctx.save_conversation`` saves through. Also
printed: the same ratio without the fsync (the CPU work alone), the ratio
measured inside a real ``ResumableRun`` (every save of 500-message items in
order, so its two ends are seconds apart), and, for comparison, the ratio of
``save_conversation``, which rewrites the whole file each time (the format
before this change). The same run ratio is printed for a SQLite store and, when
``AGENT_RESUME_PG_DSN`` is set, a PostgreSQL store (in a schema of its own,
dropped afterwards): their saves append one row per new message.

    python bench/bench_conversation.py            # 300 interleaved pairs, 3 items in a run
    python bench/bench_conversation.py --quick    # 100 pairs, 1 item
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent_resume import ConversationLog, ResumableRun, RunConfig, save_conversation
from agent_resume.stores import PostgresStore

TARGET = 1.5
LENGTH = 500
EARLY = range(5, 16)  # saves around message 10
LATE = range(LENGTH - 11, LENGTH)  # saves around message 500


def message(n: int) -> dict[str, Any]:
    # About 400 bytes, the size of a short chat turn with some metadata.
    role = "assistant" if n % 2 else "user"
    return {"role": role, "content": f"turn {n}: " + "lorem ipsum dolor sit amet " * 12, "n": n}


def in_a_run(tmp: Path, items: int, store: Any = None) -> list[list[float]]:
    timings: list[list[float]] = []

    def process(item: str, ctx: Any) -> None:
        messages: list[dict[str, Any]] = []
        times = []
        for n in range(LENGTH):
            messages.append(message(n))
            start = time.perf_counter()
            ctx.save_conversation(messages)
            times.append(time.perf_counter() - start)
        timings.append(times)

    where = str(tmp / "job.jsonl") if store is None else store
    config = RunConfig(job_id="bench", store=where, progress=False)
    ResumableRun(config).run(process, [f"item-{i}" for i in range(items)])
    return timings


def whole_rewrites(tmp: Path, items: int) -> list[list[float]]:
    timings = []
    for i in range(items):
        path = tmp / f"whole-{i}.json"
        messages: list[dict[str, Any]] = []
        times = []
        for n in range(LENGTH):
            messages.append(message(n))
            start = time.perf_counter()
            save_conversation(path, messages)
            times.append(time.perf_counter() - start)
        timings.append(times)
    return timings


def interleaved(tmp: Path, pairs: int) -> tuple[float, float, float]:
    """Alternate saves at message ~10 and at message ~500; return their medians and ratio."""
    short_times: list[float] = []
    long_times: list[float] = []
    cycle = 0

    def fresh(prefix: int) -> tuple[ConversationLog, list[dict[str, Any]]]:
        nonlocal cycle
        cycle += 1
        log = ConversationLog(tmp / f"interleaved-{cycle}.jsonl")
        messages = [message(n) for n in range(prefix)]
        log.save(messages)  # untimed: brings the conversation to its starting length
        return log, messages

    short, short_messages = fresh(EARLY.start)
    long, long_messages = fresh(LATE.start)
    for _ in range(pairs):
        for log, messages, times in (
            (short, short_messages, short_times),
            (long, long_messages, long_times),
        ):
            messages.append(message(len(messages)))
            start = time.perf_counter()
            log.save(messages)
            times.append(time.perf_counter() - start)
        if len(short_messages) >= EARLY.stop:
            short, short_messages = fresh(EARLY.start)
        if len(long_messages) >= LATE.stop + 1:
            long, long_messages = fresh(LATE.start)
    early, late = statistics.median(short_times), statistics.median(long_times)
    return early, late, late / early


def without_fsync(tmp: Path, pairs: int) -> tuple[float, float, float]:
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        return interleaved(tmp, pairs)
    finally:
        os.fsync = real


def ratio(timings: list[list[float]]) -> tuple[float, float, float]:
    early = statistics.median(t[n - 1] for t in timings for n in EARLY)
    late = statistics.median(t[n] for t in timings for n in LATE)
    return early, late, late / early


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer items, for a smoke test")
    args = parser.parse_args()
    pairs, items = (100, 1) if args.quick else (300, 3)
    print(f"Python {sys.version.split()[0]}; conversations of {LENGTH} messages")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as name:
        tmp = Path(name)
        rows = [
            (f"interleaved ({pairs} pairs)", interleaved(tmp, pairs)),
            ("  the same without fsync", without_fsync(tmp, pairs)),
            (f"in a ResumableRun ({items} items)", ratio(in_a_run(tmp, items))),
            ("whole-file rewrite (before)", ratio(whole_rewrites(tmp, items))),
            ("SQLite store, in a run", ratio(in_a_run(tmp, items, f"sqlite:///{tmp}/job.db"))),
        ]
        dsn = os.environ.get("AGENT_RESUME_PG_DSN")
        if dsn:  # a schema of its own, dropped afterwards
            schema = f"bench_conversation_{os.getpid()}"
            try:
                pg = ratio(in_a_run(tmp, items, PostgresStore(dsn, schema=schema)))
                rows.append(("PostgreSQL store, in a run", pg))
            finally:
                import psycopg

                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    for label, (early, late, figure) in rows:
        print(
            f"{label:<34} message ~10 {early * 1e3:7.3f} ms, "
            f"message ~500 {late * 1e3:7.3f} ms, ratio {figure:5.2f}"
        )
    ours = rows[0][1][2]
    print(f"target (interleaved ratio <= {TARGET}): {'met' if ours <= TARGET else 'missed'}")
    return 0 if ours <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
