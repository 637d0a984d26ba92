"""agent-resume: resumable, budgeted and accounted LLM batch jobs.

Everything public is importable from here; the modules behind it are private.
The stores are also in :mod:`agent_resume.stores`, the test helpers in
:mod:`agent_resume.testing`. The run layer, usage accounting and the
conversation codec load on first use, so that ``import agent_resume`` stays
light for a job that only needs a session (it does not import asyncio).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agent_resume._deadline import (
    Deadline,
    SupportsRemainingSeconds,
    as_deadline,
    remaining_of,
)
from agent_resume._errors import (
    AgentResumeError,
    AgentResumeWarning,
    ArgumentTypeError,
    ArgumentValueError,
    BudgetExhausted,
    CallTimeout,
    CheckpointWarning,
    CorruptCheckpointError,
    DeadlineExceeded,
    DuplicateItemWarning,
    InconsistentUsageWarning,
    ItemChangedError,
    JobLockedError,
    JobMismatchError,
    MissingExtraError,
    NotACheckpointError,
    PriceSourceWarning,
    StoreClosedError,
    StoreError,
    StoreWriteError,
    UnknownModelWarning,
    UnsupportedFormatError,
)
from agent_resume._session._agent import (
    AgentResume,
)
from agent_resume._session._session import (
    Session,
    SessionStats,
)
from agent_resume._stop import (
    AllOf,
    AnyOf,
    ConsecutiveErrors,
    Custom,
    LoopState,
    MaxCost,
    MaxItems,
    MaxSeconds,
    MaxTokens,
    MaxTurns,
    NoProgress,
    Not,
    Renamed,
    RepeatedOutput,
    RepeatedToolCall,
    StopCondition,
    StopPhrase,
    StopReason,
    ToolCall,
)
from agent_resume._version import (
    __version__,
)
from agent_resume.stores import (
    InMemoryStore,
    JsonlStore,
    ResultJsonlStore,
    Store,
    open_store,
)
from agent_resume.stores._jsonl_maint import (
    CompactReport,
    RepairReport,
    compact,
    repair,
)

if TYPE_CHECKING:
    from agent_resume._accounting._ledger import (
        ItemUsage,
        Ledger,
    )
    from agent_resume._accounting._prices import (
        ModelPrice,
        PriceTable,
        default_prices,
    )
    from agent_resume._accounting._responses import (
        usage_from,
    )
    from agent_resume._accounting._usage import (
        Usage,
    )
    from agent_resume._codec import (
        ConversationCodec,
        ConversationLog,
        CorruptConversationError,
        decode_line,
        encode_line,
        load_conversation,
        save_conversation,
    )
    from agent_resume._limits import (
        RateLimit,
    )
    from agent_resume._retry import (
        Retry,
    )
    from agent_resume._run._config import (
        RunConfig,
    )
    from agent_resume._run._context import (
        ItemContext,
    )
    from agent_resume._run._otel import (
        with_otel,
    )
    from agent_resume._run._report import (
        ItemOutcome,
        RunReport,
    )
    from agent_resume._run._runner import (
        ResumableRun,
    )
    from agent_resume._run._tracing import call_span
    from agent_resume.stores._postgres import PostgresStore
    from agent_resume.stores._sqlite import SqliteStore

__all__ = [
    "AgentResume",
    "AgentResumeError",
    "AgentResumeWarning",
    "AllOf",
    "AnyOf",
    "ArgumentTypeError",
    "ArgumentValueError",
    "BudgetExhausted",
    "CallTimeout",
    "CheckpointWarning",
    "CompactReport",
    "ConsecutiveErrors",
    "ConversationCodec",
    "ConversationLog",
    "CorruptCheckpointError",
    "CorruptConversationError",
    "Custom",
    "Deadline",
    "DeadlineExceeded",
    "DuplicateItemWarning",
    "InMemoryStore",
    "InconsistentUsageWarning",
    "ItemChangedError",
    "ItemContext",
    "ItemOutcome",
    "ItemUsage",
    "JobLockedError",
    "JobMismatchError",
    "JsonlStore",
    "Ledger",
    "LoopState",
    "MaxCost",
    "MaxItems",
    "MaxSeconds",
    "MaxTokens",
    "MaxTurns",
    "MissingExtraError",
    "ModelPrice",
    "NoProgress",
    "Not",
    "NotACheckpointError",
    "PostgresStore",
    "PriceSourceWarning",
    "PriceTable",
    "RateLimit",
    "Renamed",
    "RepairReport",
    "RepeatedOutput",
    "RepeatedToolCall",
    "ResultJsonlStore",
    "ResumableRun",
    "Retry",
    "RunConfig",
    "RunReport",
    "Session",
    "SessionStats",
    "SqliteStore",
    "StopCondition",
    "StopPhrase",
    "StopReason",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreWriteError",
    "SupportsRemainingSeconds",
    "ToolCall",
    "UnknownModelWarning",
    "UnsupportedFormatError",
    "Usage",
    "__version__",
    "as_deadline",
    "call_span",
    "compact",
    "decode_line",
    "default_prices",
    "encode_line",
    "load_conversation",
    "open_store",
    "remaining_of",
    "repair",
    "save_conversation",
    "usage_from",
    "with_otel",
]

_LAZY = {
    "ConversationCodec": "agent_resume._codec",
    "ConversationLog": "agent_resume._codec",
    "decode_line": "agent_resume._codec",
    "encode_line": "agent_resume._codec",
    "CorruptConversationError": "agent_resume._codec",
    "load_conversation": "agent_resume._codec",
    "save_conversation": "agent_resume._codec",
    "RunConfig": "agent_resume._run._config",
    "ItemContext": "agent_resume._run._context",
    "ItemUsage": "agent_resume._accounting._ledger",
    "Ledger": "agent_resume._accounting._ledger",
    "with_otel": "agent_resume._run._otel",
    "ModelPrice": "agent_resume._accounting._prices",
    "PriceTable": "agent_resume._accounting._prices",
    "default_prices": "agent_resume._accounting._prices",
    "ItemOutcome": "agent_resume._run._report",
    "RunReport": "agent_resume._run._report",
    "RateLimit": "agent_resume._limits",
    "Retry": "agent_resume._retry",
    "ResumableRun": "agent_resume._run._runner",
    "call_span": "agent_resume._run._tracing",
    "PostgresStore": "agent_resume.stores._postgres",
    "SqliteStore": "agent_resume.stores._sqlite",
    "Usage": "agent_resume._accounting._usage",
    "usage_from": "agent_resume._accounting._responses",
}


def _rehome(obj: Any) -> None:
    # Tracebacks and reprs say agent_resume.X, not agent_resume._module.X.
    if (isinstance(obj, type) or callable(obj)) and getattr(obj, "__module__", "").startswith(
        ("agent_resume._", "agent_resume.stores._")
    ):
        obj.__module__ = __name__


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    _rehome(value)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


for _name in __all__:
    if _name not in _LAZY:
        _rehome(globals()[_name])
del _name
