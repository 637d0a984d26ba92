"""agent-resume: resumable, budgeted and accounted LLM batch jobs."""

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
from agent_resume._version import __version__

__all__ = [
    "AgentResumeError",
    "ArgumentTypeError",
    "ArgumentValueError",
    "CorruptCheckpointError",
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
