"""Benchmark for issue 17 item 16: reopening a checkpoint that holds one very long line.

The loader reads 1 MB blocks; a line longer than a block used to be rebuilt
as ``carry + block`` for every block (quadratic: 4.1 s for 100 MB, 17.3 s for
200 MB). It is now gathered in pieces and joined once. The figure is a ratio
against a ``json.loads``-per-line loader reading the same file in the same
process, for two sizes: a linear loader keeps the same ratio at twice the size.

    python bench/bench_long_line.py            # 100 MB and 200 MB lines
    python bench/bench_long_line.py --quick    # 20 MB and 40 MB
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from agent_resume import AgentResume, ResultJsonlStore

TARGET = 1.5  # ours / the naive loader, at every size


def make(path: Path, megabytes: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"agent_resume": 1, "job_id": "bench", "created": 1}) + "\n")
        f.write('{"id": "a", "ts": 1}\n')
        f.write('{"id": "big", "ts": 1, "result": "' + "x" * (megabytes << 20) + '"}\n')
        f.write('{"id": "b", "ts": 1}\n')


def naive(path: Path) -> float:
    start = time.perf_counter()
    done = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if "id" in record:
                done.add(record["id"])
    assert "big" in done
    return time.perf_counter() - start


def ours(path: Path) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = AgentResume(ResultJsonlStore(path)).resume_or_start("bench")
    with session:
        assert session.is_done("big")
    return time.perf_counter() - start


def main() -> int:
    """Print the ratio at two sizes; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = (20, 40) if args.quick else (100, 200)
    missed = False
    with tempfile.TemporaryDirectory() as tmp:
        for megabytes in sizes:
            path = Path(tmp) / f"long-{megabytes}.jsonl"
            make(path, megabytes)
            base = statistics.median(naive(path) for _ in range(args.repeats))
            mine = statistics.median(ours(path) for _ in range(args.repeats))
            ratio = mine / base
            missed |= ratio > TARGET
            print(
                f"reopen with one {megabytes} MB line: {mine:.3f} s, json.loads per line "
                f"{base:.3f} s, ratio {ratio:.2f} (target <= {TARGET})"
            )
            path.unlink()
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
