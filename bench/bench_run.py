"""SPEC section 11: ResumableRun overhead per no-op item, and async wall time.

Overhead rows (issue 15): no-op items run through ``ResumableRun`` on a
``JsonlStore(durability="flush")`` with ``progress=False``, serially, in 8
threads and with ``arun`` at concurrency 100. Each is timed side by side, in
the same process and interleaved, with its baseline on the same kind of store:

- the bare loop: ``store.write_done`` for each item, nothing else (what any
  checkpointing loop must pay); the run's overhead is its time per item
  minus this (targets: at most 8 / 12 / 15 us serial / threads 8 / async 100);
- for ``arun``, also a hand-written ``asyncio.Semaphore(100)`` loop, one task
  per item, writing through the same store (target: at most 1.0x);
- and, since an async item that suspends pays for the event loop's round
  trip whoever runs it, ``arun`` twice more: with no-op items that never
  suspend (``return None``: the run's own overhead over the bare loop, and
  against the same Semaphore loop over those items), and with the items
  that suspend once over a bare async loop that suspends once per item
  (one coroutine: ``await asyncio.sleep(0)``, then ``store.write_done``);
- and the same serial run with every control on (time budget, item
  timeout, stop conditions, cost/token/item budgets, hooks).

Medians over ``--repeats`` rounds, since the machine is shared and noisy.

Async wall time: 2,000 async items of 50 ms at concurrency 100; the ideal
wall time is 1.0 s (target: at most 1.15x).

Run: python bench/bench_run.py [--items N] [--repeats R]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_resume import AgentResume, JsonlStore, MaxTokens, MaxTurns, ResumableRun, RunConfig


def _store(path: Path) -> JsonlStore:
    return JsonlStore(path, durability="flush")


def bare_loop(path: Path, items: list[str]) -> float:
    """The floor: one completion line per item, written by the store, nothing else."""
    with AgentResume(_store(path)).resume_or_start("bench") as session:
        store = session.store
        start = time.perf_counter()
        for item in items:
            store.write_done(item, int(time.time()), None, None)
        return time.perf_counter() - start


def semaphore_loop(
    path: Path, items: list[str], concurrency: int = 100, *, suspend: bool = True
) -> float:
    """A hand-written asyncio loop: a semaphore, one task per item, the same store.

    ``suspend``: whether each item suspends once, as ``arun``'s no-op item does.
    """
    with AgentResume(_store(path)).resume_or_start("bench") as session:
        store = session.store

        async def one(item: str, gate: asyncio.Semaphore) -> None:
            async with gate:
                if suspend:
                    await asyncio.sleep(0)  # the no-op item's one suspension, as in arun's
                store.write_done(item, int(time.time()), None, None)

        async def main() -> None:
            gate = asyncio.Semaphore(concurrency)
            await asyncio.gather(*(one(item, gate) for item in items))

        start = time.perf_counter()
        asyncio.run(main())
        return time.perf_counter() - start


def bare_async_loop(path: Path, items: list[str]) -> float:
    """The floor for async items that suspend once: one coroutine, one suspension and one line per item."""
    with AgentResume(_store(path)).resume_or_start("bench") as session:
        store = session.store

        async def main() -> None:
            for item in items:
                await asyncio.sleep(0)  # the no-op item's one suspension
                store.write_done(item, int(time.time()), None, None)

        start = time.perf_counter()
        asyncio.run(main())
        return time.perf_counter() - start


def _noop(item: str, ctx: object) -> None:
    return None


async def _anoop_plain(item: str, ctx: object) -> None:
    return None


async def _anoop(item: str, ctx: object) -> None:
    await asyncio.sleep(0)


def run_noop(path: Path, items: list[str], concurrency: int = 1) -> float:
    config = RunConfig(job_id="bench", store=_store(path), concurrency=concurrency, progress=False)
    start = time.perf_counter()
    ResumableRun(config).run(_noop, items)
    return time.perf_counter() - start


def arun_noop(
    path: Path, items: list[str], concurrency: int = 100, *, suspend: bool = True
) -> float:
    config = RunConfig(job_id="bench", store=_store(path), concurrency=concurrency, progress=False)
    start = time.perf_counter()
    asyncio.run(ResumableRun(config).arun(_anoop if suspend else _anoop_plain, items))
    return time.perf_counter() - start


def arun_plain(path: Path, items: list[str]) -> float:
    """``arun`` at concurrency 100 over no-op items that never suspend."""
    return arun_noop(path, items, suspend=False)


def run_all_controls(path: Path, items: list[str]) -> float:
    config = RunConfig(
        job_id="bench",
        store=_store(path),
        time_budget=3600,
        item_timeout=60,
        stop=MaxTurns(8) | MaxTokens(40_000),
        max_cost_usd=1_000.0,
        max_tokens=10**12,
        max_items=10**9,
        on_item_done=lambda outcome: None,
        on_usage=lambda item_id, usage: None,
        on_stop=lambda reason: None,
        progress=False,
    )
    start = time.perf_counter()
    ResumableRun(config).run(_noop, items)
    return time.perf_counter() - start


def overhead_rows(n: int, repeats: int) -> None:
    items = [f"item-{i:07d}" for i in range(n)]
    cases: dict[str, Callable[[Path, list[str]], float]] = {
        "bare": bare_loop,
        "semaphore": semaphore_loop,
        "serial": run_noop,
        "threads8": lambda p, i: run_noop(p, i, concurrency=8),
        "async100": arun_noop,
        "controls": run_all_controls,
        "bare_async": bare_async_loop,
        "semaphore_plain": lambda p, i: semaphore_loop(p, i, suspend=False),
        "async100_plain": arun_plain,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name, case in cases.items():  # interleaved: each round sees the same load
                times[name].append(case(Path(tmp, f"{name}-{r}.jsonl"), items) / n * 1e6)
    med: dict[str, Any] = {name: statistics.median(t) for name, t in times.items()}
    bare = med["bare"]
    print(f"overhead rows: {n:,} no-op items, JsonlStore flush, medians of {repeats}")
    print(f"  bare store.write_done loop      {bare:7.2f} us/item (baseline)")
    print(f"  asyncio.Semaphore(100) loop     {med['semaphore']:7.2f} us/item")
    for name, label, target in (
        ("serial", "ResumableRun, serial", 8),
        ("threads8", "ResumableRun, 8 threads", 12),
        ("async100", "arun, concurrency 100", 15),
    ):
        per = med[name]
        print(
            f"  {label:<31} {per:7.2f} us/item ({per / bare:.2f}x the bare loop), "
            f"overhead {per - bare:6.2f} us (target <= {target})"
        )
    ratio = med["async100"] / med["semaphore"]
    print(f"  arun / Semaphore loop           {ratio:7.2f}x (target <= 1.0)")
    plain, bare_async = med["async100_plain"], med["bare_async"]
    print("  arun with no-op items that never suspend (no event-loop round trip per item):")
    print(
        f"    arun, concurrency 100         {plain:7.2f} us/item, overhead over the bare loop "
        f"{plain - bare:6.2f} us (target <= 15)"
    )
    print(
        f"    Semaphore loop, same items    {med['semaphore_plain']:7.2f} us/item; "
        f"arun / it {plain / med['semaphore_plain']:.2f}x (target <= 1.0)"
    )
    print("  arun with the items above (one suspension each), over a loop that suspends as often:")
    print(
        f"    bare async loop               {bare_async:7.2f} us/item "
        f"(one coroutine: sleep(0), then the line)"
    )
    print(
        f"    arun, concurrency 100         overhead over it "
        f"{med['async100'] - bare_async:6.2f} us (target <= 15)"
    )
    controls = med["controls"]
    print(
        f"  serial, every control on        {controls:7.2f} us/item, "
        f"overhead {controls - bare:6.2f} us"
    )


def wall_row(n: int = 2000, latency: float = 0.05, concurrency: int = 100) -> None:
    ideal = n * latency / concurrency

    async def aprocess(item: str, ctx: object) -> None:
        await asyncio.sleep(latency)

    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(3):
            config = RunConfig(
                job_id="bench",
                store=JsonlStore(Path(tmp, f"a-{r}.jsonl")),
                time_budget=3600,
                item_timeout=60,
                max_cost_usd=1_000.0,
                concurrency=concurrency,
                progress=False,
            )
            items = [f"item-{i}" for i in range(n)]
            start = time.perf_counter()
            asyncio.run(ResumableRun(config).arun(aprocess, items))
            walls.append(time.perf_counter() - start)
    best = min(walls)
    print(f"async wall: {n:,} items of {latency * 1000:.0f} ms at concurrency {concurrency}")
    print(f"  ideal {ideal:.3f} s, best {best:.3f} s, median {statistics.median(walls):.3f} s")
    print(f"  ratio {best / ideal:.3f}x (target <= 1.15)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    overhead_rows(args.items, args.repeats)
    wall_row()


if __name__ == "__main__":
    main()
