"""A fault child: writes to JSONL checkpoints under a file size limit (``RLIMIT_FSIZE``).

Usage: ``python _torture_faults_child.py DIR CASES_JSON``, each case ``[limit,
durability, kind]``. For each case it opens a fresh checkpoint, lowers the soft
limit to ``limit`` bytes (before the open when the limit is smaller than a
header, and then the same process reopens it once the limit is lifted), writes a mix of records until a write
fails, checks that the next write fails too, lifts the limit and writes once
more. One JSON line per case.
Python ignores SIGXFSZ, so a write past the limit fails with EFBIG.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

from agent_resume import AgentResume, JsonlStore, ResultJsonlStore, StoreWriteError

UNLIMITED = resource.RLIM_INFINITY


def limit_to(n: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (n, UNLIMITED))


def one(directory: str, number: int, limit: int, durability: str, kind: str) -> dict[str, Any]:
    path = os.path.join(directory, f"efbig-{number}.jsonl")
    store_type = ResultJsonlStore if kind == "results" else JsonlStore
    report: dict[str, Any] = {"path": path, "limit": limit, "acked": [], "failed": []}
    if limit < 100:
        # Small limits apply from the open: a header that does not fit fails it.
        limit_to(limit)
        try:
            AgentResume(store_type(path, durability=durability)).resume_or_start("job").close()
            report["open_error"] = None
        except StoreWriteError as exc:
            report["open_error"] = str(exc)
            report["size_at_failure"] = os.path.getsize(path) if os.path.exists(path) else 0
            limit_to(UNLIMITED)
            # The failed open released the job's lock: this process opens it again.
            with AgentResume(store_type(path, durability=durability)).resume_or_start("job") as s:
                s.mark_done("after-limit-lifted")
            return report
        limit_to(UNLIMITED)
    with AgentResume(store_type(path, durability=durability)).resume_or_start("job") as s:
        limit_to(limit)
        for i in range(100_000):
            item = f"item-{i}"
            try:
                if i % 7 == 3:
                    s.mark_failed(item, ValueError("x" * (i % 50)))
                    report["failed"].append(item)
                elif i % 11 == 5:
                    s.record_run({"run": "note", "i": i})
                else:
                    s.mark_done(item, result={"text": "é" * (i % 61)})
                    report["acked"].append(item)
            except StoreWriteError as exc:
                report["error"] = str(exc)
                report["errno"] = getattr(exc.__cause__, "errno", None)
                report["size_at_failure"] = os.path.getsize(path)
                report["unacked"] = item
                break
        try:
            s.mark_done("while-full-" + "x" * 250)  # longer than any record that failed
            report["while_full"] = "accepted"
        except StoreWriteError:
            report["while_full"] = "refused"
        limit_to(UNLIMITED)
        s.mark_done("after-limit-lifted")
    return report


def main() -> None:
    directory, cases = sys.argv[1], json.loads(sys.argv[2])
    for number, (limit, durability, kind) in enumerate(cases):
        print(json.dumps(one(directory, number, limit, durability, kind)), flush=True)


if __name__ == "__main__":
    main()
