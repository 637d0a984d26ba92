"""SPEC section 11, rows 6 and 7: ResumableRun overhead per item, and async wall time.

Row 6: a no-op item run through ResumableRun with every control on (time
budget, item timeout, stop conditions, cost/token/item budgets, hooks,
signals), against the same session loop written by hand (``remaining`` +
``mark_done``) on the same kind of store, in the same process. The
difference per item is the orchestrator's overhead (target: at most 25 us).

Row 7: 2,000 async items of 50 ms at concurrency 100; the ideal wall time is
1.0 s (target: at most 1.15x).

Run: python bench/bench_run.py [--items N]
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from agent_resume import AgentResume, JsonlStore, MaxTokens, MaxTurns, ResumableRun, RunConfig


def bare_loop(path: Path, items: list[str]) -> float:
    start = time.perf_counter()
    with AgentResume(JsonlStore(path)).resume_or_start("bench") as session:
        for item in session.remaining(items):
            session.mark_done(item)
    return time.perf_counter() - start


def orchestrated(path: Path, items: list[str], concurrency: int = 1) -> float:
    config = RunConfig(
        job_id="bench",
        store=JsonlStore(path),
        time_budget=3600,
        item_timeout=60,
        stop=MaxTurns(8) | MaxTokens(40_000),
        max_cost_usd=1_000.0,
        max_tokens=10**12,
        max_items=10**9,
        concurrency=concurrency,
        on_item_done=lambda outcome: None,
        on_usage=lambda item_id, usage: None,
        on_stop=lambda reason: None,
        progress=False,
    )

    def process(item: str, ctx: object) -> None:
        return None

    start = time.perf_counter()
    ResumableRun(config).run(process, items)
    return time.perf_counter() - start


def row6(n: int, repeats: int = 5) -> None:
    items = [f"item-{i:07d}" for i in range(n)]
    bare, orch, threaded = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            bare.append(bare_loop(Path(tmp, f"bare-{r}.jsonl"), items))
            orch.append(orchestrated(Path(tmp, f"run-{r}.jsonl"), items))
            threaded.append(orchestrated(Path(tmp, f"thr-{r}.jsonl"), items, concurrency=8))
    b, o, t = min(bare), min(orch), min(threaded)
    per_bare = b / n * 1e6
    per_orch = o / n * 1e6
    per_thr = t / n * 1e6
    print(f"row 6: {n:,} no-op items, best of {repeats}")
    print(f"  bare session loop          {per_bare:7.2f} us/item")
    print(f"  ResumableRun, all controls {per_orch:7.2f} us/item ({o / b:.2f}x)")
    print(f"  overhead                   {per_orch - per_bare:7.2f} us/item (target <= 25)")
    print(
        f"  same at concurrency 8      {per_thr:7.2f} us/item (overhead {per_thr - per_bare:.2f})"
    )


def row7(n: int = 2000, latency: float = 0.05, concurrency: int = 100) -> None:
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
    print(f"row 7: {n:,} async items of {latency * 1000:.0f} ms at concurrency {concurrency}")
    print(f"  ideal {ideal:.3f} s, best {best:.3f} s, median {statistics.median(walls):.3f} s")
    print(f"  ratio {best / ideal:.3f}x (target <= 1.15)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=50_000)
    args = parser.parse_args()
    row6(args.items)
    row7()


if __name__ == "__main__":
    main()
