"""The error tree: typed, carrying their context, and picklable with it."""

from __future__ import annotations

import pickle

import pytest

from agent_resume import (
    AgentResumeError,
    ArgumentTypeError,
    ArgumentValueError,
    CorruptCheckpointError,
    CorruptConversationError,
    Deadline,
    DeadlineExceeded,
    ItemChangedError,
    JobLockedError,
    JobMismatchError,
    MissingExtraError,
    NotACheckpointError,
    StoreClosedError,
    StoreWriteError,
    UnsupportedFormatError,
)

ERRORS = [
    (ArgumentTypeError("n", 1.5, "`n` must be an int (got float 1.5)"), ["parameter", "value"]),
    (ArgumentValueError("n", 0, "`n` must be at least 1 (got 0)"), ["parameter", "value"]),
    (CorruptCheckpointError("job.jsonl", 7, "not JSON"), ["path", "line_number", "reason"]),
    (CorruptConversationError("c.json", "not JSON"), ["path"]),
    (DeadlineExceeded(Deadline.never(), 1.5), ["elapsed_seconds"]),
    (ItemChangedError("a", "f1", "f2"), ["item_id", "old_fingerprint", "new_fingerprint"]),
    (JobLockedError("job", 4242, "job.jsonl"), ["job_id", "pid"]),
    (JobMismatchError("b", "a", "job.jsonl"), ["expected", "found"]),
    (MissingExtraError("postgres", "PostgresStore"), ["extra"]),
    (NotACheckpointError("items.jsonl", "no ts"), ["path", "reason"]),
    (StoreClosedError("closed"), []),
    (StoreWriteError("writing failed"), []),
    (UnsupportedFormatError("job.jsonl", 2, 1), ["path", "version"]),
]


@pytest.mark.parametrize(("error", "attributes"), ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_message_and_attributes(
    error: AgentResumeError, attributes: list[str]
) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    for name in attributes:
        assert getattr(copy, name) == getattr(error, name), name
    assert isinstance(copy, AgentResumeError)


def test_messages_name_the_context() -> None:
    assert "job.jsonl:7" in str(CorruptCheckpointError("job.jsonl", 7, "not JSON"))
    assert "4242" in str(JobLockedError("job", 4242, "job.jsonl"))
    message = str(JobMismatchError("b", "a", "job.jsonl"))
    assert "'a'" in message and "'b'" in message
    assert 'pip install "agent-resume[postgres]"' in str(MissingExtraError("postgres", "X"))
    assert "1.500s" in str(DeadlineExceeded(Deadline.never(), 1.5))


def test_builtin_bases_match_the_meaning() -> None:
    assert isinstance(ArgumentTypeError("p", 1, "m"), TypeError)
    assert isinstance(ArgumentValueError("p", 1, "m"), ValueError)
    assert not isinstance(DeadlineExceeded(Deadline.never(), 0.0), (TimeoutError, OSError))
    assert isinstance(CorruptCheckpointError("p", 1, "r"), ValueError)
    assert isinstance(StoreWriteError("m"), OSError)
    assert isinstance(MissingExtraError("x", "y"), ImportError)


def test_every_warning_has_one_base() -> None:
    import agent_resume

    warnings_ = [
        getattr(agent_resume, n)
        for n in agent_resume.__all__
        if n.endswith("Warning") and n != "AgentResumeWarning"
    ]
    assert {w.__name__ for w in warnings_} == {
        "CheckpointWarning",
        "DuplicateItemWarning",
        "InconsistentUsageWarning",
        "PriceSourceWarning",
        "UnknownModelWarning",
    }
    for warning in warnings_:
        assert issubclass(warning, agent_resume.AgentResumeWarning)
        assert issubclass(warning, UserWarning)
