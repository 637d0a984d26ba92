"""agent-resume: resumable, budgeted and accounted LLM batch jobs.

Everything public is importable from here; the modules behind it are private.
The stores are also in :mod:`agent_resume.stores`, the test helpers in
:mod:`agent_resume.testing`.
"""

from agent_resume._codec import (
    ConversationCodec,
    CorruptConversationError,
    load_conversation,
    save_conversation,
)
from agent_resume._config import (
    RunConfig,
)
from agent_resume._context import (
    ItemContext,
)
from agent_resume._deadline import (
    Deadline,
    SupportsRemainingSeconds,
    as_deadline,
    remaining_of,
)
from agent_resume._errors import (
    AgentResumeError,
    ArgumentTypeError,
    ArgumentValueError,
    CorruptCheckpointError,
    DeadlineExceeded,
    ItemChangedError,
    JobLockedError,
    JobMismatchError,
    MissingExtraError,
    StoreClosedError,
    StoreError,
    StoreWriteError,
    UnsupportedFormatError,
)
from agent_resume._ledger import (
    ItemUsage,
    Ledger,
)
from agent_resume._maintenance import (
    CompactReport,
    RepairReport,
    compact,
    repair,
)
from agent_resume._prices import (
    ModelPrice,
    PriceTable,
    UnknownModelWarning,
    default_prices,
)
from agent_resume._report import (
    ItemOutcome,
    RunReport,
)
from agent_resume._run import (
    ResumableRun,
)
from agent_resume._session import (
    AgentResume,
    DuplicateItemWarning,
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
    RepeatedToolCall,
    StopCondition,
    StopPhrase,
    StopReason,
    ToolCall,
)
from agent_resume._usage import (
    Usage,
    usage_from,
)
from agent_resume._version import (
    __version__,
)
from agent_resume.stores import (
    CheckpointWarning,
    InMemoryStore,
    JsonlStore,
    ResultJsonlStore,
    Store,
    open_store,
)

__all__ = [
    "AgentResume",
    "AgentResumeError",
    "AllOf",
    "AnyOf",
    "ArgumentTypeError",
    "ArgumentValueError",
    "CheckpointWarning",
    "CompactReport",
    "ConsecutiveErrors",
    "ConversationCodec",
    "CorruptCheckpointError",
    "CorruptConversationError",
    "Custom",
    "Deadline",
    "DeadlineExceeded",
    "DuplicateItemWarning",
    "InMemoryStore",
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
    "PriceTable",
    "RepairReport",
    "RepeatedToolCall",
    "ResultJsonlStore",
    "ResumableRun",
    "RunConfig",
    "RunReport",
    "Session",
    "SessionStats",
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
    "compact",
    "default_prices",
    "load_conversation",
    "open_store",
    "remaining_of",
    "repair",
    "save_conversation",
    "usage_from",
]


def _rehome() -> None:
    # Tracebacks and reprs say agent_resume.X, not agent_resume._module.X.
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) or callable(obj):
            module = getattr(obj, "__module__", "")
            if module.startswith(("agent_resume._", "agent_resume.stores._")):
                obj.__module__ = __name__


_rehome()
del _rehome
