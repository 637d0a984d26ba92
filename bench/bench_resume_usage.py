"""Benchmark for issue 15's first rows: resuming the checkpoints real jobs write.

Every item a ``ResumableRun`` records carries usage (``JsonlStore``), and a
``ResultJsonlStore`` also keeps a result. Each row is a ratio against a
``json.loads``-per-line loader over the same file, in the same process:

    python bench/bench_resume_usage.py            # 1,000,000 lines (a few minutes)
    python bench/bench_resume_usage.py --quick    # 100,000 lines
    python bench/bench_resume_usage.py --only calls   # one row

The ``calls`` row holds what a run that makes two LLM calls per item writes:
per item, two ``call`` records (``ctx.call``'s usage, as each call returns)
and then its completion with the attempt's usage, turns and seconds, all
written through the store's own write API (``write_run`` for the call
records, as ``Session.record_call`` does, ``write_done`` for completions):
1,000,000 items, 3,000,000 lines.

The ``open`` row (no target) times a run's open over the usage row's file,
every item done, in a child process: plain, with per-item ``stop``
conditions (which read each item's failures and calls, and skim the
completions: ``JsonlStore.skim_records``), and with a job budget (which sums
every record's usage, as ``agent-resume report`` does).

The resume reads a completion's ID and fingerprint without decoding its
usage (the line is still checked to be valid JSON); a line with a result is
decoded in full and its result dropped at once, so results are never held.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TARGETS = {"usage": 0.35, "usage_mb": 110.0, "results": 0.35, "calls": 0.5}
KINDS = ("usage", "results", "calls", "open")
CALLS_PER_ITEM = 2

USAGE = {"in": 1234, "out": 567, "calls": 1, "cost": 0.00123, "model": "gpt-4o-mini"}


def make(path: Path, lines: int, result: bool) -> None:
    usage = json.dumps(USAGE, ensure_ascii=False)
    tail = ', "result": ' + json.dumps({"text": "r" * 180}) if result else ""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"agent_resume": 1, "job_id": "bench", "created": 1}) + "\n")
        chunk = []
        for i in range(lines):
            chunk.append(f'{{"id": "item-{i:07d}", "ts": 1748107200, "usage": {usage}{tail}}}\n')
            if len(chunk) == 10_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))


def make_calls(path: Path, items: int) -> int:
    """Write a checkpoint as a run making two calls per item writes it; returns its lines."""
    from agent_resume import JsonlStore, Usage

    store = JsonlStore(path)
    store.open("bench")
    ts = 1748107200
    priced = {
        "model": "gpt-4o-mini",
        "priced_as": "gpt-4o-mini",
        "price_source": "genai-prices 0.2.3",
    }
    try:
        for i in range(items):
            item_id, token = f"item-{i:07d}", f"{i:08x}"
            spent = Usage()
            for n in range(CALLS_PER_ITEM):
                call = Usage(
                    input_tokens=1234 + i % 97,
                    output_tokens=56 + n,
                    calls=1,
                    cost_usd=0.0002187,
                    **priced,
                )
                spent = spent + call
                usage = {**call.to_dict(), "s": round(0.4 + n * 0.51, 3)}
                store.write_run({"call": item_id, "a": token, "ts": ts, "usage": usage})
            extra = {
                "turns": CALLS_PER_ITEM,
                "seconds": 0.916,
                "usage": {**spent.to_dict(), "a": token},
            }
            store.write_done(item_id, ts, extra, None)
    finally:
        store.close()
    return items * (CALLS_PER_ITEM + 1)


def naive(path: Path) -> float:
    start = time.perf_counter()
    done: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if "id" in record:
                done.add(record["id"])
    return time.perf_counter() - start


CHILD = textwrap.dedent(
    """
    import sys, time, tracemalloc
    from agent_resume import AgentResume, JsonlStore, ResultJsonlStore
    store = (ResultJsonlStore if sys.argv[2] == "results" else JsonlStore)(sys.argv[1])
    traced = sys.argv[3] == "traced"
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    with AgentResume(store).resume_or_start("bench") as s:
        elapsed = time.perf_counter() - start
        n = s.stats.already_done
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
    print(n, elapsed, peak)
    """
)


# A run's open over the same job, every item done: the resume, and the read of
# what was spent where the run needs it (per-item `stop` conditions; a job budget).
RUN_CHILD = textwrap.dedent(
    """
    import sys, time
    from agent_resume import JsonlStore, MaxTurns, ResumableRun, RunConfig
    lines, how = int(sys.argv[2]), sys.argv[3]
    items = [f"item-{i:07d}" for i in range(lines)]
    extra = {"stop": {"stop": MaxTurns(8)}, "budget": {"job_max_cost_usd": 1e9}}.get(how, {})
    config = RunConfig(job_id="bench", store=JsonlStore(sys.argv[1]), progress=False, **extra)
    start = time.perf_counter()
    report = ResumableRun(config).run(lambda item, ctx: None, items)
    print(report.already_done, time.perf_counter() - start)
    """
)
OPENS = ("plain", "stop", "budget")


def run_open(path: Path, lines: int, how: str) -> tuple[int, float]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_CHILD, str(path), str(lines), how],
        capture_output=True,
        text=True,
        check=True,
    )
    n, elapsed = proc.stdout.split()
    return int(n), float(elapsed)


def ours(path: Path, kind: str, traced: bool = False) -> tuple[int, float, int]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), kind, "traced" if traced else "timed"],
        capture_output=True,
        text=True,
        check=True,
    )
    n, elapsed, peak = proc.stdout.split()
    return int(n), float(elapsed), int(peak)


def main() -> int:
    """Print each row; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=KINDS, help="run one row")
    args = parser.parse_args()
    lines = 100_000 if args.quick else 1_000_000
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in (args.only,) if args.only else KINDS:
            path = Path(tmp) / f"{kind}.jsonl"
            if kind == "calls":
                size = make_calls(path, lines)
            else:
                make(path, lines, result=kind == "results")  # "open": the usage row's file
                size = lines
            base = statistics.median(naive(path) for _ in range(args.repeats))
            if kind == "open":
                for how in OPENS:
                    opens = [run_open(path, lines, how) for _ in range(args.repeats)]
                    assert all(n == lines for n, _ in opens)
                    took = statistics.median(t for _, t in opens)
                    print(
                        f"a run's open over {lines:,} done items with usage ({how}): {took:.3f} s, "
                        f"json.loads loader {base:.3f} s, ratio {took / base:.3f} (no target)"
                    )
                path.unlink()
                continue
            runs = [ours(path, kind) for _ in range(args.repeats)]
            assert all(n == lines for n, _, _ in runs)
            mine = statistics.median(t for _, t, _ in runs)
            ratio = mine / base
            if ratio > TARGETS[kind]:
                missed.append(kind)
            print(
                f"resume {lines:,} items ({size:,} lines) with {kind}: {mine:.3f} s, json.loads loader "
                f"{base:.3f} s, ratio {ratio:.3f} (target <= {TARGETS[kind]})"
            )
            if kind == "usage":
                peak_mb = ours(path, kind, traced=True)[2] / 2**20
                if peak_mb > TARGETS["usage_mb"]:
                    missed.append("usage_mb")
                print(
                    f"resume peak memory: {peak_mb:.1f} MB allocated by the resume "
                    f"(target <= {TARGETS['usage_mb']:.0f} MB)"
                )
            path.unlink()
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
