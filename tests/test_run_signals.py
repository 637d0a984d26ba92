"""Real SIGINT and SIGTERM sent to a child process running a job."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_resume import ResultJsonlStore

CHILD = str(Path(__file__).with_name("_run_child.py"))
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start(tmp_path, mode, **opts):
    args = [sys.executable, CHILD, mode, str(tmp_path / "job.jsonl")]
    args += [f"{k}={v}" for k, v in opts.items()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_for_starts(proc, count):
    started = []
    while len(started) < count:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        if line.startswith("START"):
            started.append(line.split()[1])
    return started


def finish(proc):
    out, err = proc.communicate(timeout=30)
    return out, err


def report_of(out):
    line = next(line for line in out.splitlines() if line.startswith("REPORT"))
    return json.loads(line.split(" ", 1)[1])


def done_ids(tmp_path):
    recs = ResultJsonlStore(str(tmp_path / "job.jsonl")).iter_records()
    return [r["id"] for r in recs if "id" in r and r.get("status") is None]


def end_reports(tmp_path):
    recs = ResultJsonlStore(str(tmp_path / "job.jsonl")).iter_records()
    return [r["report"] for r in recs if r.get("run") == "end"]


@pytest.mark.parametrize(
    ("mode", "sig", "concurrency"),
    [
        ("sync", signal.SIGINT, 1),
        ("sync", signal.SIGTERM, 1),
        ("threads", signal.SIGTERM, 3),
        ("threads", signal.SIGINT, 3),
        ("async", signal.SIGINT, 3),
        ("async", signal.SIGTERM, 3),
    ],
)
def test_first_signal_finishes_in_flight_items_and_records_the_report(
    tmp_path, mode, sig, concurrency
):
    proc = start(tmp_path, mode, concurrency=concurrency, sleep=0.3)
    started = wait_for_starts(proc, concurrency)
    proc.send_signal(sig)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    report = report_of(out)
    assert report["stop_reason"] == "signal"
    assert signal.Signals(sig).name in report["stop_message"]
    assert report["abandoned"] == 0
    starts = started + [line.split()[1] for line in out.splitlines() if line.startswith("START")]
    assert sorted(done_ids(tmp_path)) == sorted(starts)
    assert report["done"] == len(starts)
    assert end_reports(tmp_path)[-1] == report


@pytest.mark.parametrize("mode", ["threads", "async"])
def test_in_flight_items_past_the_grace_period_are_abandoned(tmp_path, mode):
    proc = start(tmp_path, mode, concurrency=2, sleep=60, grace=0.2)
    wait_for_starts(proc, 2)
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    report = report_of(out)
    assert (report["stop_reason"], report["done"], report["abandoned"]) == ("signal", 0, 2)
    # The input was not read to its end: all 50 are left (the threaded run said 2).
    assert report["remaining"] == 50
    assert done_ids(tmp_path) == []
    assert end_reports(tmp_path) == [report]


def test_threads_all_inside_long_items_still_stop_at_the_runs_deadline(tmp_path):
    # No worker asks for a next item, so none noticed the deadline: the run waited
    # for the 60-second items. The main thread notices it, and abandons them after
    # the grace period.
    proc = start(tmp_path, "threads", concurrency=2, sleep=60, grace=0.2, budget=0.5)
    wait_for_starts(proc, 2)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    report = report_of(out)
    assert (report["stop_reason"], report["done"], report["abandoned"]) == ("time_budget", 0, 2)
    assert report["remaining"] == 50


@pytest.mark.parametrize(
    ("mode", "sig", "code"),
    [
        ("sync", signal.SIGINT, -signal.SIGINT),  # KeyboardInterrupt, re-raised by Python
        ("threads", signal.SIGINT, -signal.SIGINT),
        ("async", signal.SIGINT, -signal.SIGINT),
        ("sync", signal.SIGTERM, -signal.SIGTERM),
        ("async", signal.SIGTERM, -signal.SIGTERM),
    ],
)
def test_a_second_signal_aborts_at_once(tmp_path, mode, sig, code):
    proc = start(tmp_path, mode, concurrency=1 if mode == "sync" else 2, sleep=60, grace=60)
    wait_for_starts(proc, 1)
    proc.send_signal(sig)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = finish(proc)
    assert proc.returncode == code, err
    assert "REPORT" not in out
    assert done_ids(tmp_path) == []
    assert end_reports(tmp_path) == []  # an abort records nothing more, not even its end
    if sig == signal.SIGINT:
        # One line, not a traceback; the process still ends by SIGINT, as a shell expects.
        assert err.splitlines() == [
            f"agent-resume: SIGINT again: run aborted, {1 if mode == 'sync' else 2} "
            "item(s) in flight not recorded"
        ], err
    else:
        assert err == ""


def test_a_signal_while_workers_rest_after_quick_items_records_every_started_item(tmp_path):
    # Nine quick items in ten: the workers rest after them (issue 15) and are
    # woken for the slow ones; the signal must still drain and record every
    # item that started, and leave none in flight.
    proc = start(tmp_path, "threads", concurrency=4, sleeps="0,0,0,0,0,0,0,0,0,0.5", items=2000)
    started = wait_for_starts(proc, 60)
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    report = report_of(out)
    assert (report["stop_reason"], report["abandoned"]) == ("signal", 0), (report, err)
    starts = started + [line.split()[1] for line in out.splitlines() if line.startswith("START")]
    assert sorted(done_ids(tmp_path)) == sorted(starts), (report, err)
    assert (report["done"], report["remaining"]) == (len(starts), 2000 - len(starts)), report
