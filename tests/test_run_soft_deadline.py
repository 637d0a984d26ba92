"""The soft time budget, in real processes: stop admitting, let in-flight items finish, cut late.

When ``time_budget`` (or ``finish_by``) passes, the run admits nothing more;
items in flight may go on for ``grace_period``; those still running then are
cut and recorded as *interrupted*: their usage is kept, no attempt is used,
and they run again next time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_resume import AgentResume, Ledger, ResultJsonlStore

CHILD = str(Path(__file__).with_name("_run_child.py"))
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


def run_child(tmp_path, mode, **opts):
    args = [sys.executable, CHILD, mode, str(tmp_path / "job.jsonl")]
    args += [f"{k}={v}" for k, v in opts.items()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("REPORT"))
    starts = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("START")]
    return json.loads(line.split(" ", 1)[1]), starts


def records(tmp_path):
    return list(ResultJsonlStore(str(tmp_path / "job.jsonl")).iter_records())


@pytest.mark.parametrize("mode", ["threads", "async"])
def test_items_in_flight_at_the_deadline_finish_within_the_grace_period(tmp_path, mode):
    # Short items keep the estimate low, so long ones are in flight at the deadline.
    report, starts = run_child(
        tmp_path, mode, concurrency=2, sleeps="0.05,0.05,1.2", budget=1.0, grace=10, items=200
    )
    assert report["stop_reason"] == "time_budget"
    assert (report["failed"], report["interrupted"], report["abandoned"]) == (0, 0, 0)
    assert not [r for r in records(tmp_path) if r.get("status") == "failed"]
    # Every item started was finished and recorded, the long ones after the deadline.
    done = [r["id"] for r in records(tmp_path) if "id" in r and r.get("status") is None]
    assert sorted(done) == sorted(starts) and report["done"] == len(starts)
    assert any(int(item[1:]) % 3 == 2 for item in starts)  # a long item was in flight
    assert report["remaining"] == 200 - len(starts)


@pytest.mark.parametrize(("mode", "extra"), [("async", {}), ("threads", {"cooperative": 1})])
def test_items_still_running_at_the_end_of_the_grace_period_are_interrupted(tmp_path, mode, extra):
    report, starts = run_child(
        tmp_path, mode, concurrency=2, sleep=30, budget=0.3, grace=0.4, usage=1, **extra
    )
    assert len(starts) == 2
    assert report["stop_reason"] == "time_budget"
    assert (report["done"], report["failed"], report["interrupted"]) == (0, 0, 2)
    assert report["remaining"] == 50
    # No attempt used, no failure recorded; the usage they spent is kept.
    assert not [r for r in records(tmp_path) if r.get("status") == "failed"]
    ledger = Ledger.from_records(records(tmp_path))
    for item in starts:
        usage = ledger.item(item)
        assert usage is not None and usage.status == "interrupted"
        assert (usage.usage.input_tokens, usage.usage.cost_usd) == (100, 0.01)
    assert ledger.total.input_tokens == report["usage"]["input_tokens"] == 200
    with AgentResume(str(tmp_path / "job.jsonl")).resume_or_start("child") as session:
        assert [session.attempts(item) for item in starts] == [0, 0]
        assert session.stats.done == 0


@pytest.mark.parametrize(
    ("mode", "extra"),
    [("async", {}), ("sync", {"cooperative": 1}), ("threads", {"cooperative": 1})],
)
def test_a_run_whose_every_item_was_admitted_but_cut_at_the_deadline_is_not_completed(
    tmp_path, mode, extra
):
    # With every item admitted before the deadline (here the only one), nothing
    # named the stop: the report said "completed" with the item cut and remaining.
    report, starts = run_child(tmp_path, mode, sleep=30, budget=0.3, grace=0.4, items=1, **extra)
    assert starts == ["i0"]
    assert (report["stop_reason"], report["interrupted"], report["remaining"]) == (
        "time_budget",
        1,
        1,
    )
    assert "1 item(s) still running" in report["stop_message"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["threads", "async"])
def test_a_5s_budget_with_2s_items_finishes_what_it_starts_and_fails_none(tmp_path, mode):
    # Issue 12's case: items of 2 s under a 5 s budget, the default-like grace period.
    report, starts = run_child(
        tmp_path, mode, concurrency=2, sleep=2, budget=5, grace=30, usage=1, items=20
    )
    assert report["stop_reason"] == "time_budget"
    # Every item started was finished and recorded as done: none cut, none failed.
    assert (report["failed"], report["interrupted"], report["abandoned"]) == (0, 0, 0)
    assert not [r for r in records(tmp_path) if r.get("status") == "failed"]
    done = [r["id"] for r in records(tmp_path) if "id" in r and r.get("status") is None]
    assert sorted(done) == sorted(starts) and report["done"] == len(starts) > 0
    assert report["remaining"] == 20 - len(starts)
    # Every paid call is in the ledger with its item's completion.
    ledger = Ledger.from_records(records(tmp_path))
    assert ledger.total.calls == len(starts) and not ledger.lower_bound


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["threads", "async"])
def test_interrupted_items_are_first_in_line_next_run(tmp_path, mode):
    extra = {"cooperative": 1} if mode == "threads" else {}
    first, starts = run_child(
        tmp_path, mode, concurrency=2, sleeps="0.05,0.05,30", budget=1.0, grace=0.3,
        usage=1, items=30, **extra,
    )  # fmt: skip
    assert first["interrupted"] >= 1
    ledger = Ledger.from_records(records(tmp_path))
    cut = [
        i
        for i in (f"i{k}" for k in range(30))
        if (u := ledger.item(i)) and u.status == "interrupted"
    ]
    assert len(cut) == first["interrupted"] and cut[0] != "i0"
    # Tonight the feed comes newest first: the cut items still go first.
    second, again = run_child(tmp_path, mode, concurrency=1, sleep=0.01, items=30, reverse=1)
    assert second["stop_reason"] == "completed"
    assert again[: len(cut)] == cut[::-1]  # in (tonight's) input order, before everything else
    assert again[len(cut)] == "i29"
    assert sorted(again) == sorted(set(f"i{k}" for k in range(30)) - set(starts) | set(cut))
