"""Crash campaign: a job at concurrency 8 SIGKILLed about 30 times; nothing lost or doubled."""

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_resume import ResultJsonlStore

CHILD = str(Path(__file__).with_name("_run_child.py"))
ITEMS = 3000
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]


def spawn(tmp_path, crash_at=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("AGENT_RESUME_CRASH_AT", None)
    if crash_at is not None:
        env["AGENT_RESUME_CRASH_AT"] = str(crash_at)
    args = [
        sys.executable,
        CHILD,
        "crash",
        str(tmp_path / "job.jsonl"),
        f"items={ITEMS}",
        f"side={tmp_path / 'side.txt'}",
        "sleep=0.004",
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def test_sigkill_at_random_moments_loses_and_doubles_nothing(tmp_path):
    rng = random.Random(20260524)
    kills = 0
    for round_ in range(30):
        if round_ % 2:
            # Killed by the Crash trigger inside the job, at a random item.
            proc = spawn(tmp_path, crash_at=rng.randint(1, 40))
            proc.communicate(timeout=60)
        else:
            # Killed from outside at a random moment.
            proc = spawn(tmp_path)
            time.sleep(rng.uniform(0.2, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
    proc = spawn(tmp_path)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert kills >= 25

    records = list(ResultJsonlStore(str(tmp_path / "job.jsonl")).iter_records())
    done = collections.Counter(r["id"] for r in records if "id" in r and "status" not in r)
    assert set(done) == {f"i{k}" for k in range(ITEMS)}
    assert max(done.values()) == 1
    processed = (tmp_path / "side.txt").read_text().split()
    # At least once; re-runs bounded by what was in flight at each kill.
    assert set(processed) == set(done)
    assert len(processed) - ITEMS <= 8 * kills
