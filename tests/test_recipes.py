"""Every recipe runs to completion against the simulated LLM."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = Path(__file__).parent.parent / "recipes"


def run(tmp_path, name, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(var, None)
    return subprocess.run(
        [sys.executable, str(RECIPES / name), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_nightly_sync_stops_at_its_budget_and_resumes(tmp_path):
    first = run(tmp_path, "nightly_sync.py", "--checkpoint", "n.jsonl", "--budget", "0.3")
    assert first.returncode == 0, first.stderr
    assert "time_budget" in first.stdout
    assert "cursor at change 0: 600 changes" in first.stdout
    second = run(tmp_path, "nightly_sync.py", "--checkpoint", "n.jsonl", "--budget", "30")
    assert second.returncode == 0, second.stderr
    assert "completed" in second.stdout
    assert "cursor now at change 600" in second.stdout


def test_nightly_sync_stops_at_its_job_budget_over_nights(tmp_path):
    args = ["--checkpoint", "n.jsonl", "--budget", "30", "--documents", "20"]
    first = run(tmp_path, "nightly_sync.py", "--night", "1", *args, "--job-budget", "1e-9")
    assert first.returncode == 0, first.stderr
    assert "cost_budget" in first.stdout  # reached after the first change's call
    spent = run(tmp_path, "nightly_sync.py", "--night", "1", *args, "--job-budget", "1e-9")
    assert spent.returncode == 0, spent.stderr
    assert "job_max_cost_usd" in spent.stdout and "cursor now at change" in spent.stdout


def test_nightly_sync_reads_only_the_changes_after_its_cursor(tmp_path):
    import json

    from agent_resume import AgentResume, open_store

    args = ["--checkpoint", "n.jsonl", "--budget", "30", "--documents", "40"]
    first = run(tmp_path, "nightly_sync.py", "--night", "1", *args)
    assert first.returncode == 0, first.stderr
    assert "cursor now at change 40" in first.stdout
    second = run(tmp_path, "nightly_sync.py", "--night", "2", *args)
    assert second.returncode == 0, second.stderr
    assert "cursor at change 40: 40 changes to look at" in second.stdout
    assert "cursor now at change 80" in second.stdout
    with AgentResume(open_store(str(tmp_path / "n.jsonl"))).resume_or_start(
        "nightly-sync"
    ) as session:
        assert session.state == {"cursor": 80}
        results = dict(session.results())
    assert len(results) == 80
    assert results["change-000041"]["since"] == 40  # the items saw the cursor through ctx.job_state
    states = [
        r for r in map(json.loads, (tmp_path / "n.jsonl").read_text().splitlines()) if "state" in r
    ]
    assert [r["state"] for r in states] == [{"cursor": 40}, {"cursor": 80}]


def test_token_report_writes_one_row_per_item(tmp_path):
    proc = run(tmp_path, "token_report.py", "--checkpoint", "t.jsonl", "--csv", "t.csv")
    assert proc.returncode == 0, proc.stderr
    with (tmp_path / "t.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows][-1] == "total"
    items = rows[:-1]
    assert len(items) == 25
    assert all(int(r["input"]) > 0 and float(r["cost_usd"]) > 0 for r in items)
    assert sum(float(r["cost_usd"]) for r in items) == pytest.approx(float(rows[-1]["cost_usd"]))


def test_token_report_counts_failed_and_interrupted_attempts(tmp_path):
    import json

    # An interrupted attempt: a call recorded, no outcome (as a killed or cut run leaves it).
    from agent_resume import AgentResume

    with AgentResume(str(tmp_path / "t.jsonl")).resume_or_start("ticket-labels") as session:
        usage = {"in": 50, "out": 5, "calls": 1, "cost": 0.25, "model": "sim-1"}
        session.record_call({"call": "T-0", "a": "killed", "ts": 1, "usage": usage})
    proc = run(tmp_path, "token_report.py", "--checkpoint", "t.jsonl", "--csv", "t.csv",
               "--tickets", "6", "--fail-every", "3", "--no-total")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with (tmp_path / "t.csv").open() as f:
        rows = {r["item_id"]: r for r in csv.DictReader(f)}
    assert "" not in rows  # --no-total
    assert [rows[f"T-{n}"]["status"] for n in range(6)] == ["done", "done", "failed"] * 2
    assert int(rows["T-2"]["calls"]) == 1 and float(rows["T-2"]["cost_usd"]) > 0  # paid, failed
    # T-0's killed attempt counts beside its completion.
    assert int(rows["T-0"]["calls"]) == 2 and int(rows["T-0"]["input"]) > 50
    assert json.loads(json.dumps(rows))  # plain CSV


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_multi_turn_agent_resumes_after_a_crash(tmp_path):
    crashed = run(tmp_path, "multi_turn_agent.py", "--checkpoint", "a.jsonl", "--crash-at", "7")
    assert crashed.returncode != 0
    assert os.listdir(tmp_path / "a.jsonl.conversations")
    proc = run(tmp_path, "multi_turn_agent.py", "--checkpoint", "a.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout
    assert os.listdir(tmp_path / "a.jsonl.conversations") == []


def test_nightly_batch_cancels_before_its_deadline_and_finishes_online(tmp_path):
    from batch_server import BatchServer

    with BatchServer() as server:
        server.polls_to_finish = None  # tonight the batch is slow
        args = ["--checkpoint", "b.jsonl", "--base-url", server.url + "/v1", "--tickets", "10"]
        proc = run(tmp_path, "nightly_batch.py", *args, "--budget", "2", "--margin", "1",
                   "--poll-interval", "0.05")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "completed" in proc.stdout
        assert server.created["openai"] == 1 and len(server.cancelled) == 1
        assert server.online == 5  # half were answered by the batch before the cancel
        again = run(tmp_path, "nightly_batch.py", *args, "--poll-interval", "0.05")
        assert again.returncode == 0, again.stderr
        assert server.created["openai"] == 1 and server.online == 5
