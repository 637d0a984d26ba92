"""Row 6 in instructions: what a no-op item costs the CPU, without the clock's noise.

On a shared machine the clock-based overhead of ``bench_run.py`` moves by
half from one minute to the next. The number of machine instructions an
item executes does not (within about 0.5%), so this bench counts them with
``valgrind --tool=callgrind`` (needs valgrind; nothing else is installed for
it): each case of ``bench_run.py`` (the bare ``store.write_done`` loop, the
serial run, 8 threads, ``arun`` at concurrency 100) runs in a child process
over a small and a large number of items, and the difference divided by the
difference in items is the cost of one item, start-up and imports excluded.
Prints instructions per item, and each run's overhead over the bare loop.
Each case takes a minute or two under valgrind. The cases: ``serial``,
``threads``, ``arun`` (no-op items that suspend once), ``arun_plain``
(no-op items that never suspend) and ``bare_async`` (one coroutine that
suspends once per item, then writes its line); with both ``arun`` and
``bare_async``, ``arun``'s overhead over ``bare_async`` is printed too.

Run: python bench/bench_run_instructions.py [--small N] [--large N] [--cases serial,threads,arun]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

_VALGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
_CHILD = """
import sys, tempfile
from pathlib import Path
sys.path.insert(0, {bench!r})
import bench_run as b
case, n = sys.argv[1], int(sys.argv[2])
items = [f"item-{{i:07d}}" for i in range(n)]
runs = {{"bare": b.bare_loop, "serial": b.run_noop, "arun": b.arun_noop,
         "threads": lambda p, i: b.run_noop(p, i, 8), "arun_plain": b.arun_plain,
         "bare_async": b.bare_async_loop}}
with tempfile.TemporaryDirectory() as tmp:
    runs[case](Path(tmp, "x.jsonl"), items)
"""


def instructions(case: str, items: int) -> int:
    """Instructions the child executes for ``case`` over ``items`` items (callgrind's total)."""
    code = _CHILD.format(bench=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [*_VALGRIND, sys.executable, "-c", code, case, str(items)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_item(case: str, small: int, large: int) -> float:
    """Instructions per item for ``case``: the cost of ``large - small`` more items."""
    return (instructions(case, large) - instructions(case, small)) / (large - small)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--large", type=int, default=12_000)
    parser.add_argument("--cases", default="serial,threads,arun")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: this bench counts instructions with it")
    bare = per_item("bare", args.small, args.large)
    print(f"instructions per no-op item ({args.large - args.small:,} items counted)")
    print(f"  bare store.write_done loop  {bare:9,.0f} (baseline)")
    costs: dict[str, float] = {}
    for case in args.cases.split(","):
        cost = costs[case] = per_item(case, args.small, args.large)
        print(
            f"  {case:26s}  {cost:9,.0f}  overhead {cost - bare:9,.0f} ({cost / bare:.2f}x the bare loop)"
        )
    if "arun" in costs and "bare_async" in costs:
        print(f"  arun over bare_async        {costs['arun'] - costs['bare_async']:9,.0f}")


if __name__ == "__main__":
    main()
