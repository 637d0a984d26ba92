"""Run faults (issue 17 items 2 and 3): exceptions where the run did not expect them.

Each round runs one job in a child process with one fault, at a random item,
mode and concurrency: ``on_item_done`` raising, ``process`` raising
``KeyboardInterrupt`` or ``SystemExit``, or the checkpoint hitting a file size
limit (EFBIG, a full disk as the store sees it) under ``run``, threaded
``run`` or ``arun``. The fault must reach the caller (``silent`` counts the
rounds where the run reported instead), the child must end within its
timeout (``hung``), never print "Task exception was never retrieved" or
die with a traceback (``crashed``), and every item its hook saw done must be
in the checkpoint (``lost``). A clean run then finishes the job: every item
done exactly once (``doubled``, ``lost``).

Run by ``tools/torture.py`` (``--run-faults N``) and, smaller, by
``test_run_faults.py``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agent_resume import ResultJsonlStore, ResumableRun, RunConfig

CHILD = str(Path(__file__).with_name("_torture_run_child.py"))
COLUMNS = ["attempts", "raised", "silent", "hung", "lost", "doubled", "crashed"]
FAULTS = ("hook", "interrupt", "exit", "efbig")
EXPECTED = {"hook": "RuntimeError", "interrupt": "KeyboardInterrupt", "exit": "SystemExit"}
TIMEOUT = 60.0


@dataclass
class Tally:
    """The counts of the campaign."""

    name: str = "run-faults"
    attempts: int = 0
    raised: int = 0  # rounds where the fault reached the caller, as it must
    silent: int = 0  # a fault fired and the run reported instead of raising
    hung: int = 0  # the child did not end within its timeout
    lost: int = 0  # items reported done and missing from the checkpoint
    doubled: int = 0  # items recorded done more than once
    crashed: int = 0  # a traceback, a task exception never retrieved, a bad exit
    problems: list[str] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        """The counts as a table row."""
        return {"campaign": self.name, **{c: getattr(self, c) for c in COLUMNS}}

    def problem(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.problems) < 20:
            self.problems.append(f"{kind}: {text}")


def _done_counts(path: Path) -> Counter[str]:
    records = ResultJsonlStore(str(path)).iter_records()
    return Counter(str(r["id"]) for r in records if "id" in r and r.get("status") is None)


def one_round(tally: Tally, where: Path, rng: random.Random) -> None:
    """One job, one fault; then a clean run that must finish the job exactly."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / "job.jsonl"
    mode = rng.choice(("sync", "threads", "async"))
    n = rng.randint(5, 60)
    spec = {
        "mode": mode,
        "concurrency": 1 if mode == "sync" else rng.randint(2, 8),
        "items": n,
        "fault": rng.choice(FAULTS),
        "at": rng.randint(1, n - 1),
        "fsize": rng.randint(300, 4000),
    }
    label = json.dumps(spec)
    tally.attempts += 1
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        proc = subprocess.run(
            [sys.executable, CHILD, str(path), label],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        tally.problem("hung", label)
        return
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or "never retrieved" in proc.stderr or "Traceback" in proc.stderr:
        tally.problem("crashed", f"{label}: exit {proc.returncode}: {proc.stderr[-300:]}")
        return
    raised = [line.split()[1] for line in lines if line.startswith("RAISED")]
    reported = [line for line in lines if line.startswith("REPORT")]
    fault = spec["fault"]
    # An EFBIG limit larger than the whole job never fires; the others always do.
    if raised and (
        (fault == "efbig" and raised[0] == "StoreWriteError") or raised[0] == EXPECTED.get(fault)
    ):
        tally.raised += 1
    elif reported and fault == "efbig":
        pass
    else:
        tally.problem("silent", f"{label}: {lines[-1:] or proc.stderr[-200:]}")
    acknowledged = {line.split()[1] for line in lines if line.startswith("DONE")}
    counts = _done_counts(path)
    for item in sorted(acknowledged - set(counts)):
        tally.problem("lost", f"{label}: {item} reported done, not recorded")
    # The clean run finishes the job; every item done exactly once.
    config = RunConfig(job_id="faults", store=str(path), progress=False, handle_signals=False)
    items = [f"item-{k:03d}" for k in range(n)]
    ResumableRun(config).run(lambda item, ctx: {"item": item}, items)
    counts = _done_counts(path)
    for item in items:
        if counts[item] == 0:
            tally.problem("lost", f"{label}: {item} never done after the clean run")
        elif counts[item] > 1:
            tally.problem("doubled", f"{label}: {item} recorded done {counts[item]} times")


def run_faults(n: int, root: Path, rng: random.Random) -> Tally:
    """``n`` rounds of the campaign under ``root``."""
    tally = Tally()
    for i in range(n):
        one_round(tally, root / f"r{i}", rng)
    return tally
