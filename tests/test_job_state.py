"""The job's state survives a kill: what ``set_state`` acknowledged is there on resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import agent_resume
from agent_resume import AgentResume, open_store

CHILD = textwrap.dedent(
    """
    import sys
    from agent_resume import AgentResume, open_store

    target = sys.argv[1]
    with AgentResume(open_store(target)).resume_or_start("job") as session:
        n = session.state.get("n", -1)
        while True:
            n += 1
            session.mark_done(f"item-{n}")
            session.update_state({"n": n, "cursor": f"item-{n}"})
            print(n, flush=True)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
@pytest.mark.parametrize("target", ["job.jsonl", "sqlite:///job.db"])
def test_a_killed_job_keeps_every_acknowledged_state_change(tmp_path: Path, target: str) -> None:
    src = os.path.dirname(os.path.dirname(os.path.abspath(agent_resume.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    rng = random.Random(14)
    last_acked = -1
    for _ in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, target], stdout=subprocess.PIPE, cwd=tmp_path, env=env
        )
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first == f"{last_acked + 1}\n".encode(), "the child did not resume from the state"
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.stdout.close()
        assert child.wait() == -signal.SIGKILL
        last_acked = [int(first), *(int(line) for line in rest.split())][-1]
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            with AgentResume(open_store(target)).resume_or_start("job") as session:
                state = session.state
                # The last acknowledged change, or the one in flight when killed.
                assert state["n"] in (last_acked, last_acked + 1)
                assert state == {"n": state["n"], "cursor": f"item-{state['n']}"}
                assert session.is_done(f"item-{state['n']}")
                last_acked = state["n"]
        finally:
            os.chdir(cwd)
