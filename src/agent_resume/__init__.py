"""agent-resume: resumable, budgeted and accounted LLM batch jobs."""

from agent_resume._deadline import Deadline
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
from agent_resume._session import AgentResume, DuplicateItemWarning, Session, SessionStats
from agent_resume._version import __version__
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
    "CheckpointWarning",
    "DuplicateItemWarning",
    "InMemoryStore",
    "JsonlStore",
    "ResultJsonlStore",
    "Session",
    "SessionStats",
    "Store",
    "open_store",
    "AgentResumeError",
    "ArgumentTypeError",
    "ArgumentValueError",
    "CorruptCheckpointError",
    "Deadline",
    "DeadlineExceeded",
    "ItemChangedError",
    "JobLockedError",
    "JobMismatchError",
    "MissingExtraError",
    "StoreClosedError",
    "StoreError",
    "StoreWriteError",
    "UnsupportedFormatError",
    "__version__",
]
