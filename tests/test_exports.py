"""The public surface: pinned, so that adding or dropping a name is a deliberate change."""

from __future__ import annotations

import agent_resume
import agent_resume.stores
import agent_resume.testing

PUBLIC = {
    "AgentResume", "AgentResumeError", "AgentResumeWarning", "AllOf", "AnyOf", "ArgumentTypeError", "ArgumentValueError",
    "BudgetExhausted", "CallTimeout", "CheckpointWarning", "CompactReport", "ConsecutiveErrors", "ConversationCodec", "ConversationLog",
    "CorruptCheckpointError", "CorruptConversationError", "Custom", "Deadline", "DeadlineExceeded",
    "DuplicateItemWarning", "InMemoryStore", "InconsistentUsageWarning", "ItemChangedError", "ItemContext", "ItemOutcome",
    "ItemUsage", "JobLockedError", "JobMismatchError", "JsonlStore", "Ledger", "LoopState",
    "MaxCost", "MaxItems", "MaxSeconds", "MaxTokens", "MaxTurns", "MissingExtraError",
    "ModelPrice", "NoProgress", "Not", "NotACheckpointError", "PostgresStore", "PriceSourceWarning", "PriceTable", "RateLimit", "Renamed",
    "RepairReport", "RepeatedOutput", "RepeatedToolCall",
    "ResultJsonlStore", "ResumableRun", "Retry", "RunConfig", "RunReport", "Session", "SessionStats", "SqliteStore",
    "StopCondition", "StopPhrase", "StopReason", "Store", "StoreClosedError", "StoreError",
    "StoreWriteError", "SupportsRemainingSeconds", "ToolCall", "UnknownModelWarning",
    "UnsupportedFormatError", "Usage", "__version__", "as_deadline", "call_span", "compact", "decode_line",
    "default_prices", "encode_line",
    "load_conversation", "open_store", "remaining_of", "repair", "save_conversation", "usage_from", "with_otel",
}  # fmt: skip


def test_all_is_pinned_and_sorted() -> None:
    assert set(agent_resume.__all__) == PUBLIC
    assert list(agent_resume.__all__) == sorted(agent_resume.__all__)


def test_every_public_name_is_importable_and_says_it_lives_in_agent_resume() -> None:
    for name in agent_resume.__all__:
        obj = getattr(agent_resume, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ in {"agent_resume", "agent_resume.stores"}, name


def test_the_stores_and_testing_subpackages() -> None:
    assert set(agent_resume.stores.__all__) == {
        "CheckpointWarning", "ConversationDirStore", "ConversationStore", "Durability",
        "InMemoryStore", "JsonlStore", "OnePassStore", "PostgresStore", "ResultJsonlStore", "SharedStore",
        "SkimmingStore",
        "SqliteStore", "Store", "StoreDescription", "open_store",
    }  # fmt: skip
    for name in agent_resume.stores.__all__:
        assert getattr(agent_resume.stores, name) is not None
    assert set(agent_resume.testing.__all__) == {
        "Crash", "MockClock", "SimulatedError", "SimulatedLLM", "reply_text",
    }  # fmt: skip


def test_every_error_has_one_root() -> None:
    errors = [
        getattr(agent_resume, n)
        for n in agent_resume.__all__
        if isinstance(getattr(agent_resume, n), type)
        and issubclass(getattr(agent_resume, n), BaseException)
        and not issubclass(getattr(agent_resume, n), Warning)
    ]
    assert len(errors) >= 14
    for error in errors:
        assert issubclass(error, agent_resume.AgentResumeError), error
    assert not issubclass(agent_resume.DeadlineExceeded, TimeoutError)
    assert issubclass(agent_resume.ArgumentValueError, ValueError)
    assert issubclass(agent_resume.ArgumentTypeError, TypeError)


def test_version_is_a_non_empty_string() -> None:
    assert isinstance(agent_resume.__version__, str)
    assert agent_resume.__version__


def test_importing_the_package_imports_no_third_party_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, agent_resume; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'psycopg', 'rich', 'openai', 'anthropic', 'genai_prices', 'opentelemetry', 'sqlite3'}]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
