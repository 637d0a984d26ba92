"""A multi-turn item killed after turn 3 resumes with the conversation of turn 3."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = str(Path(__file__).with_name("_run_child.py"))
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def spawn(tmp_path, *opts):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, CHILD, "agent", str(tmp_path / "job.jsonl"), *opts]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_killed_item_resumes_with_the_conversation_of_turn_3(tmp_path):
    proc = spawn(tmp_path, "hang_at=3")
    saved = None
    for line in proc.stdout:
        if line.startswith("SAVED 3 "):
            saved = json.loads(line.split(" ", 2)[2])
            break
    assert saved is not None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    conv_dir = tmp_path / "job.jsonl.conversations"
    assert len(os.listdir(conv_dir)) == 1

    proc = spawn(tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    resumed = json.loads(lines[0].split(" ", 1)[1])
    assert resumed == saved
    assert sum(1 for m in resumed if m["role"] == "assistant") == 3
    turns = [int(line.split()[1]) for line in lines if line.startswith("SAVED")]
    assert turns == [4, 5]
    report = json.loads(next(line for line in lines if line.startswith("REPORT")).split(" ", 1)[1])
    assert report["done"] == 1
    assert os.listdir(conv_dir) == []
