"""Benchmark for issue 15: summing the usage of a big checkpoint (``status``, ``report``).

Builds a 200,000-record checkpoint as a ``ResumableRun`` writes it (a run
start, then one completion with usage per item, a failed attempt before
every tenth one) and times, against a ``json.loads``-per-line loop over the
same file in the same process:

- ``Ledger.from_records`` over the records, already decoded;
- the ``agent-resume status`` command, in a child process (with its peak of
  traced memory);
- the ``agent-resume report --format json`` command, likewise.

    python bench/bench_ledger.py            # 200,000 records
    python bench/bench_ledger.py --quick    # 20,000 records

Figures are medians of three, printed as ratios to the loop.
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
from typing import Any

MODELS = ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash")


def make(path: Path, items: int) -> int:
    """Write the checkpoint; returns its number of records."""
    lines = [json.dumps({"agent_resume": 1, "job_id": "bench", "created": 1})]
    lines.append(json.dumps({"run": "start", "ts": 1748107200.0, "max_attempts": 3}))
    for i in range(items):
        model = MODELS[i % 3]
        usage = {"in": 1000 + i % 977, "out": 200 + i % 311, "calls": 1, "cost": 0.00123 + i * 1e-9}
        usage["model"] = model
        if i % 10 == 0:
            failed = {"id": f"item-{i:07d}", "status": "failed", "ts": 1748107200.5}
            failed.update(error="Timeout: slow", retryable=True, attempt=1, usage=usage)
            lines.append(json.dumps(failed))
        lines.append(json.dumps({"id": f"item-{i:07d}", "ts": 1748107201.0, "usage": usage}))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


def naive(path: Path) -> float:
    start = time.perf_counter()
    done: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if "id" in record:
                done.add(record["id"])
    return time.perf_counter() - start


def ledger(records: list[dict[str, Any]]) -> float:
    from agent_resume import Ledger

    start = time.perf_counter()
    total = Ledger.from_records(records).total
    elapsed = time.perf_counter() - start
    assert total.calls > 0
    return elapsed


CHILD = textwrap.dedent(
    """
    import contextlib, io, runpy, sys, time, tracemalloc
    import agent_resume
    path, mode, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    traced = mode == "traced"
    if traced:
        tracemalloc.start()
    out = io.StringIO()
    sys.argv = ["agent-resume", *argv, path]
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        try:  # python -m agent_resume, in this process (the library already imported)
            runpy.run_module("agent_resume", run_name="__main__")
            code = 0
        except SystemExit as exit:
            code = exit.code
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    assert code == 0, (code, out.getvalue()[-500:])
    print(elapsed, peak)
    """
)


def command(path: Path, args: list[str], traced: bool = False) -> tuple[float, int]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), "traced" if traced else "timed", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed, peak = proc.stdout.split()
    return float(elapsed), int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 items instead of 200,000")
    args = parser.parse_args()
    items = 20_000 if args.quick else 181_819  # 200,001 records with the failed attempts
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        count = make(path, items)
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        print(f"{count:,} records, {path.stat().st_size / 1e6:.1f} MB")
        rows = {
            "Ledger.from_records": lambda: ledger(records),
            "status": lambda: command(path, ["status"])[0],
            "report --format json": lambda: command(path, ["report", "--format", "json"])[0],
        }
        for name, run in rows.items():
            ratios, ours, base = [], [], []
            for _ in range(3):
                b = naive(path)
                o = run()
                ratios.append(o / b)
                ours.append(o)
                base.append(b)
            print(
                f"{name:22} {statistics.median(ratios):6.3f}x the json.loads loop "
                f"({statistics.median(ours):.2f} s against {statistics.median(base):.2f} s)"
            )
        for name, argv in (("status", ["status"]), ("report", ["report", "--format", "json"])):
            peak = command(path, argv, traced=True)[1]
            print(f"{name:22} peak {peak / 1e6:.1f} MB traced")


if __name__ == "__main__":
    main()
