"""Kill -9 campaign: a child runs a real job and is SIGKILLed at random moments.

After every kill the parent reopens the checkpoint and checks that every ID
the child reported done is recorded, that no ID is recorded twice, and that
the file reopens. 240 kills in all, across the stores and durability modes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from agent_resume import AgentResume, CheckpointWarning, JsonlStore, ResultJsonlStore

CHILD = textwrap.dedent(
    """
    import sys
    from agent_resume import AgentResume, JsonlStore, ResultJsonlStore
    path, kind, durability, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store_type = ResultJsonlStore if kind == "results" else JsonlStore
    items = [f"item-{i:05d}" for i in range(n)]
    out = sys.stdout
    with AgentResume(store_type(path, durability=durability)).resume_or_start("crash-job") as s:
        print("start", flush=True)
        for item in s.remaining(items):
            if s.mark_done(item, result={"n": item, "pad": "x" * (len(item) * 3)}):
                out.write(item + "\\n")
                out.flush()
    print("finished", flush=True)
    """
)

KILLS_PER_MODE = 60
ITEMS = 4000


def reopen_and_check(path: Path, kind: str, acked: set[str]) -> int:
    store_type = ResultJsonlStore if kind == "results" else JsonlStore
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        with AgentResume(store_type(path)).resume_or_start("crash-job") as s:
            missing = [i for i in acked if not s.is_done(i)]
            assert not missing, f"acknowledged then lost: {missing[:5]}"
            assert s.stats.bad_lines == 0
    records = []
    for line in path.read_bytes().split(b"\n")[1:]:
        if line:
            with contextlib.suppress(ValueError):  # a torn tail, cut at the next open
                records.append(json.loads(line))
    counts = Counter(r["id"] for r in records if "id" in r)
    doubled = [i for i, c in counts.items() if c > 1]
    assert not doubled, f"recorded twice: {doubled[:5]}"
    return len(counts)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "durability"),
    [("ids", "flush"), ("ids", "group"), ("ids", "fsync"), ("results", "flush")],
)
def test_sigkill_at_random_moments_loses_and_doubles_nothing(
    tmp_path: Path, kind: str, durability: str
) -> None:
    rng = random.Random(f"{kind}-{durability}")
    path = tmp_path / "crash.jsonl"
    acked: set[str] = set()
    kills = 0
    rounds = 0
    while kills < KILLS_PER_MODE:
        rounds += 1
        assert rounds < KILLS_PER_MODE * 3, "children kept finishing before the kill"
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), kind, durability, str(ITEMS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        try:
            first = child.stdout.readline()
            assert first.strip() == "start", first
            wanted = rng.randrange(0, 40)
            for _ in range(wanted):
                line = child.stdout.readline().strip()
                if not line or line == "finished":
                    break
                acked.add(line)
            time.sleep(rng.random() * 0.002)
            os.kill(child.pid, signal.SIGKILL)
            # IDs the child printed before it died were acknowledged too.
            for line in child.stdout:
                if line.strip() and line.strip() != "finished":
                    acked.add(line.strip())
        finally:
            child.wait()
            child.stdout.close()
        if child.returncode == -signal.SIGKILL:
            kills += 1
        done = reopen_and_check(path, kind, acked)
        if done >= ITEMS:
            path.unlink()
            acked.clear()
    assert kills == KILLS_PER_MODE
