"""Benchmark: paid calls thrown away at a run's time budget, soft versus hard.

A job of agent items (every third makes 12 calls of 0.1 s, the others one;
each call recorded with ``ctx.record_usage``, so that the median item is
short and long ones are in flight at the deadline) runs with a 1 s time
budget and 4 tasks at once. The figure is the *waste*: calls made by items
the run cut before they finished (their results never recorded), as a
fraction of all calls made. With the
soft budget (``grace_period`` long enough) items in flight at the deadline
finish, and the waste is 0 (target: 0); ``grace_period=0`` is the hard cut
of before, shown beside it. Each is run with items that call
``ctx.should_stop()`` before each call, as the docs advise (it also stops an
item whose next call would not fit), and with a naive loop that does not.

    python bench/bench_soft_deadline.py            # 5 runs of each
    python bench/bench_soft_deadline.py --quick    # 2 runs of each
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from agent_resume import Ledger, ResultJsonlStore, ResumableRun, RunConfig, Usage

CALLS = 12
CALL_SECONDS = 0.1
BUDGET = 1.0
CONCURRENCY = 4


async def one_run(path: Path, grace: float, check: bool) -> tuple[int, int]:
    """One run; returns (calls made, calls of items cut)."""
    config = RunConfig(
        job_id="bench",
        store=str(path),
        time_budget=BUDGET,
        grace_period=grace,
        concurrency=CONCURRENCY,
        progress=False,
        handle_signals=False,
    )

    async def agent(item: str, ctx: object) -> int:
        for _ in range(CALLS if int(item[1:]) % 3 == 2 else 1):
            if check and ctx.should_stop() is not None:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(CALL_SECONDS)
            ctx.record_usage(Usage(input_tokens=100, output_tokens=10))  # type: ignore[attr-defined]
        return ctx.turns  # type: ignore[attr-defined]

    report = await ResumableRun(config).arun(agent, [f"i{k}" for k in range(200)])
    ledger = Ledger.from_records(ResultJsonlStore(str(path)).iter_records())
    cut = sum(u.usage.calls for u in ledger.items() if u.status != "done")
    return report.usage.calls, cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = 2 if args.quick else 5
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, grace, check in (
            ("soft, should_stop", 10.0, True),
            ("soft, naive loop", 10.0, False),
            ("hard, should_stop", 0.0, True),
            ("hard, naive loop", 0.0, False),
        ):
            wastes = []
            for i in range(runs):
                path = Path(tmp) / f"{grace}-{check}-{i}.jsonl"
                calls, cut = asyncio.run(one_run(path, grace, check))
                wastes.append(cut / calls if calls else 0.0)
            rows.append((label, statistics.median(wastes), min(wastes), max(wastes)))
    print(f"{'budget, items':<22} {'waste (median)':>15} {'min':>7} {'max':>7}")
    for label, median, low, high in rows:
        print(f"{label:<22} {median:>15.1%} {low:>7.1%} {high:>7.1%}")
    print(f"target for the soft budget: 0 (got {max(rows[0][3], rows[1][3]):.1%} at most)")


if __name__ == "__main__":
    main()
