"""The old names of renamed methods still work, and say what they are now called."""

from __future__ import annotations

import time

import pytest

from agent_resume import AgentResume, InMemoryStore, RunReport, StopReason


def test_session_release_is_retry_with_a_deprecation_warning() -> None:
    with AgentResume(InMemoryStore()).resume_or_start("j") as s:
        s.mark_failed("a", "E: x")
        with pytest.warns(DeprecationWarning, match=r"Session\.retry"):
            assert s.release(["a", "b"]) == ["a"]
        assert s.attempts("a") == 0


def test_stop_reason_as_dict_is_to_dict() -> None:
    reason = StopReason("max_turns", "8 turns")
    with pytest.warns(DeprecationWarning, match="to_dict"):
        assert reason.as_dict() == reason.to_dict() == {"name": "max_turns", "message": "8 turns"}


def test_run_report_rows_is_summary() -> None:
    now = time.time()
    report = RunReport(job_id="j", started_at=now, ended_at=now + 1)
    with pytest.warns(DeprecationWarning, match="summary"):
        assert report.rows() == report.summary()
    assert ("job", "j") in report.summary()
