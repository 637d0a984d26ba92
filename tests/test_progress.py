import logging
import sys

import pytest

from agent_resume._accounting._usage import Usage
from agent_resume._run._config import RunConfig
from agent_resume._run._progress import ProgressSnapshot, _mode
from agent_resume._run._runner import ResumableRun


def run_with(tmp_path, progress, items=20, **kwargs):
    cfg = RunConfig(job_id="p", store=str(tmp_path / "p.jsonl"), progress=progress, **kwargs)

    def process(item, ctx):
        ctx.record_usage(Usage(input_tokens=10, output_tokens=5, cost_usd=0.001))

    return ResumableRun(cfg).run(process, [f"i{n}" for n in range(items)])


def test_log_lines_count_earlier_runs(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent_resume.progress")
    run_with(tmp_path, "log", items=5)
    caplog.clear()
    run_with(tmp_path, "log", items=8, progress_interval=0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "agent_resume.progress"]
    assert lines
    assert lines[-1].startswith("p: 8/8 done, 0 failed")
    assert "45 tokens" in lines[-1]
    assert "$0.003" in lines[-1]


def test_nothing_is_shown_when_progress_is_off(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    run_with(tmp_path, False)
    assert not [r for r in caplog.records if r.name == "agent_resume.progress"]
    assert capsys.readouterr().err == ""


def test_rich_display_draws_done_over_total(tmp_path, capsys):
    run_with(tmp_path, "rich", items=7)
    err = capsys.readouterr().err
    assert "7/7" in err
    assert "$0.007" in err


def test_auto_mode_uses_log_lines_off_a_terminal():
    assert _mode(True) == "log"  # pytest's stderr is not a terminal
    assert _mode("auto") == "log"
    assert _mode(False) is None
    assert _mode("rich") == "rich"


def test_snapshot_line_reads_like_a_status():
    snap = ProgressSnapshot(
        done=1500, total=2000, failed=3, rate=12.5, eta_seconds=40.0, tokens=123456, cost_usd=None
    )
    assert snap.line() == (
        "1,500/2,000 done, 3 failed, 12.5 items/s, ETA 40s, 123,456 tokens, unknown, 0 in flight"
    )


_CHILD = """
import os, signal, sys, threading, time
from agent_resume import ResumableRun, RunConfig

mode = sys.argv[2]
config = RunConfig(
    job_id="p", store=sys.argv[1], concurrency=3, progress=True, progress_interval=30,
    max_items=4 if mode == "budget" else None, grace_period=30,
)

started = []
lock = threading.Lock()

def process(item, ctx):
    print("START", item, flush=True)
    with lock:
        started.append(item)
        if mode == "signal" and len(started) == 3:
            # Ctrl-C once three items are in flight, from inside the job: the
            # moment does not depend on how fast the test reads our output.
            os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.3 if mode == "budget" else 1.5)
    return item

report = ResumableRun(config).run(process, [f"i{k}" for k in range(12)])
print("REPORT", report.stop_reason, report.done, flush=True)
"""


def _child(tmp_path, mode, configure_logging=""):
    import os
    import subprocess
    import sys

    code = configure_logging + _CHILD
    args = [sys.executable, "-c", code, str(tmp_path / "p.jsonl"), mode]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_progress_off_a_terminal_reaches_stderr_with_no_logging_configured(tmp_path):
    proc = _child(tmp_path, "budget")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "REPORT item_budget 4" in out
    lines = [line for line in err.splitlines() if line.startswith("agent-resume: p: ")]
    # The final line, and a line as soon as the budget stopped admission.
    assert any("4/12 done" in line for line in lines), err
    assert any("stopped admitting (item_budget" in line for line in lines), err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_application_that_configured_logging_keeps_control(tmp_path):
    quiet = "import logging; logging.basicConfig(level=logging.WARNING)\n"
    proc = _child(tmp_path, "budget", quiet)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "REPORT item_budget 4" in out
    assert "done" not in err  # its WARNING level hides the INFO lines: no handler of ours


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_signal_draining_the_run_says_so_with_the_items_in_flight(tmp_path):
    proc = _child(tmp_path, "signal")  # it sends itself SIGINT once three items started
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.count("START") == 3, out
    assert "REPORT signal 3" in out
    assert "stopping: 3 in flight, Ctrl-C again to abort" in err, err
