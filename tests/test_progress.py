import logging

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
        "1,500/2,000 done, 3 failed, 12.5 items/s, ETA 40s, 123,456 tokens, unknown"
    )
