"""One rule tells every record's kind: `kind_of`, used by every reader."""

from __future__ import annotations

import pytest

from agent_resume._records import JobState, kind_of


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        ({"agent_resume": 1, "job_id": "j", "created": 1}, "header"),
        ({"id": "a", "ts": 1}, "done"),
        ({"id": "a", "ts": 1, "status": "done", "result": 3}, "done"),
        ({"id": "a", "ts": 1, "status": "failed", "error": "E: x"}, "failed"),
        ({"id": "a", "ts": 1, "status": "retry"}, "retry"),
        ({"id": "a", "ts": 1, "status": "later-version"}, "unknown"),
        ({"call": "a", "a": "tok", "ts": 1, "usage": {}}, "call"),
        ({"run": "start", "ts": 1}, "run"),
        ({"state": {"cursor": 3}, "ts": 1}, "state"),
        ({"batch": "intent", "key": "k", "ts": 1}, "batch"),
        ({"something": "new", "ts": 1}, "unknown"),
    ],
)
def test_every_record_has_one_kind(record: dict[str, object], kind: str) -> None:
    assert kind_of(record) == kind


def test_job_state_folds_each_kind_and_skips_the_rest() -> None:
    state = JobState(job_id="j")
    for record in [
        {"id": "a", "ts": 1, "status": "failed", "error": "E: x", "attempt": 1},
        {"id": "b", "ts": 1},
        {"id": "a", "ts": 2, "status": "retry"},
        {"id": "c", "ts": 2, "status": "failed", "error": "E: y", "retryable": False},
        {"run": "end", "ts": 3},
        {"state": {"cursor": 3}, "ts": 3},
        {"call": "c", "a": "t", "ts": 3, "usage": {"calls": 1}},
        {"batch": "intent", "key": "k", "ts": 3, "ids": {}},
        {"id": "d", "ts": 4, "status": "later-version"},
    ]:
        state.apply(record)
    assert state.done == {"b"}
    assert set(state.failures) == {"c"} and not state.failures["c"].retryable
    assert [r["run"] for r in state.runs] == ["end"]
    assert state.state == {"cursor": 3}
