"""The exceptions agent-resume raises, all under one root.

```
AgentResumeError
├── ArgumentTypeError (TypeError)        a parameter of the wrong type
├── ArgumentValueError (ValueError)      a parameter out of range or malformed
├── CallTimeout (TimeoutError)           one ctx.call took longer than call_timeout (retried)
├── DeadlineExceeded                     a deadline passed (not a TimeoutError, on purpose)
├── ItemChangedError                     on_change="error" and an item's content changed
├── MissingExtraError (ImportError)      an optional extra is not installed
└── StoreError                           anything a store cannot do
    ├── CorruptCheckpointError (ValueError)  a bad line, in strict mode
    ├── UnsupportedFormatError           a checkpoint written by a newer version
    ├── NotACheckpointError              a file that is not an agent-resume checkpoint
    ├── JobMismatchError                 the store holds another job
    ├── JobLockedError                   another live session holds the job
    ├── StoreClosedError                 the session or store was closed
    └── StoreWriteError (OSError)        a write or sync failed; the store may refuse more
```

Every error carries its context as attributes, and its message names the
parameter, the rule and the value given.

The warnings share one base, so ``warnings.simplefilter("error",
AgentResumeWarning)`` (or ``"ignore"``) covers them all::

    AgentResumeWarning (UserWarning)
    ├── CheckpointWarning                a checkpoint line was skipped or a torn tail ignored
    ├── DuplicateItemWarning             an input gave the same item ID more than once
    ├── InconsistentUsageWarning         a response's token counts contradicted each other
    ├── PriceSourceWarning               a price source failed; the next one priced the call
    └── UnknownModelWarning              a model has no price: its cost is None
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "AgentResumeError",
    "AgentResumeWarning",
    "ArgumentTypeError",
    "ArgumentValueError",
    "BudgetExhausted",
    "CallTimeout",
    "CheckpointWarning",
    "CorruptCheckpointError",
    "DeadlineExceeded",
    "DuplicateItemWarning",
    "InconsistentUsageWarning",
    "ItemChangedError",
    "JobLockedError",
    "JobMismatchError",
    "MissingExtraError",
    "NotACheckpointError",
    "PriceSourceWarning",
    "StoreClosedError",
    "StoreError",
    "StoreWriteError",
    "UnknownModelWarning",
    "UnsupportedFormatError",
]


class AgentResumeError(Exception):
    """The root of every exception raised by agent-resume.

    Errors pickle with their attributes: each keeps the arguments it was
    built with, for ``__reduce__``.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), getattr(self, "_args", self.args))


class _ArgumentError(AgentResumeError):
    """A bad argument: carries the parameter's name and the value given."""

    def __init__(self, parameter: str, value: object, message: str) -> None:
        self._args = (parameter, value, message)
        super().__init__(message)
        self.parameter = parameter
        self.value = value


class ArgumentTypeError(_ArgumentError, TypeError):
    """A parameter was given a value of the wrong type.

    Attributes:
        parameter: The name of the parameter.
        value: The value that was given.
    """


class ArgumentValueError(_ArgumentError, ValueError):
    """A parameter was given a value out of range or malformed.

    Attributes:
        parameter: The name of the parameter.
        value: The value that was given.
    """


class DeadlineExceeded(AgentResumeError):
    """A deadline passed.

    Deliberately not a ``TimeoutError`` (nor an ``OSError``), as in
    agent-deadline: on Python 3.11+ ``asyncio.TimeoutError`` is
    ``TimeoutError``, so a handler meant for one call's timeout
    (``except asyncio.TimeoutError: continue``) would otherwise swallow the
    whole job's deadline. Catch it by name, or as ``AgentResumeError``.

    Attributes:
        deadline: The deadline that passed.
        elapsed_seconds: Seconds from the deadline's creation to the check.
        why: What would have run past it, when that was known before it
            passed (a rate-limit wait), or ``""``.
    """

    def __init__(self, deadline: Any, elapsed_seconds: float, why: str = "") -> None:
        self._args = (deadline, elapsed_seconds, why)
        message = f"deadline exceeded after {elapsed_seconds:.3f}s"
        super().__init__(f"{message}: {why}" if why else message)
        self.deadline = deadline
        self.elapsed_seconds = elapsed_seconds
        self.why = why


class CallTimeout(AgentResumeError, TimeoutError):
    """One call made with ``ctx.call``/``ctx.acall`` took longer than its ``call_timeout``.

    A ``TimeoutError``, unlike `DeadlineExceeded`: it is transient, so the
    call is retried (per the run's ``Retry``); it reaches ``process`` only
    when no try is left.

    Attributes:
        seconds: The timeout the call was given.
    """

    def __init__(self, seconds: float) -> None:
        self._args = (seconds,)
        super().__init__(f"the call took longer than its {seconds:.3f}s timeout")
        self.seconds = seconds


class BudgetExhausted(AgentResumeError):
    """A job budget is spent (or a call could not be priced under a cost budget).

    Raised by ``ctx.call``/``ctx.acall`` before a new call once the run has
    stopped for ``job_max_cost_usd``, ``job_max_tokens`` or an unknown
    price (``on_unknown_price="stop"``). The run records the item as
    *interrupted*: no attempt used, its usage kept, run again next time.

    Attributes:
        reason: The stop reason's name (``"job_max_cost"``,
            ``"job_max_tokens"`` or ``"unknown_price"``).
        detail: The stop reason's message.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self._args = (reason, detail)
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ItemChangedError(AgentResumeError):
    """An item done earlier has new content, and the policy is ``on_change="error"``.

    Attributes:
        item_id: The item's ID.
        old_fingerprint: The fingerprint recorded with its completion.
        new_fingerprint: The fingerprint of the item given now.
    """

    def __init__(self, item_id: str, old_fingerprint: str, new_fingerprint: str) -> None:
        self._args = (item_id, old_fingerprint, new_fingerprint)
        super().__init__(
            f"item {item_id!r} changed since it was done (fingerprint {old_fingerprint} "
            f"is now {new_fingerprint}); pass on_change='rerun' or 'keep' to go on"
        )
        self.item_id = item_id
        self.old_fingerprint = old_fingerprint
        self.new_fingerprint = new_fingerprint


class MissingExtraError(AgentResumeError, ImportError):
    """An optional dependency is missing; the message names the extra to install.

    Attributes:
        extra: The name of the extra, as in ``pip install "agent-resume[extra]"``.
    """

    def __init__(self, extra: str, feature: str) -> None:
        self._args = (extra, feature)
        super().__init__(
            f'{feature} needs the {extra!r} extra: pip install "agent-resume[{extra}]"'
        )
        self.extra = extra


class StoreError(AgentResumeError):
    """A store could not do what was asked."""


class CorruptCheckpointError(StoreError, ValueError):
    """A checkpoint line could not be read, and the store is in strict mode.

    Attributes:
        path: The checkpoint file.
        line_number: The 1-based number of the bad line.
    """

    def __init__(self, path: str | os.PathLike[str], line_number: int, reason: str) -> None:
        self._args = (path, line_number, reason)
        super().__init__(f"{os.fspath(path)}:{line_number}: corrupt checkpoint line ({reason})")
        self.path = os.fspath(path)
        self.line_number = line_number
        self.reason = reason


class UnsupportedFormatError(StoreError):
    """The checkpoint was written in a newer format than this version reads.

    Attributes:
        path: Where the checkpoint is.
        version: The format version found.
    """

    def __init__(self, path: str, version: object, supported: int) -> None:
        self._args = (path, version, supported)
        super().__init__(
            f"{path}: checkpoint format version {version!r} is newer than the "
            f"supported version {supported}; upgrade agent-resume to read it"
        )
        self.path = path
        self.version = version


class NotACheckpointError(StoreError):
    """The file is not an agent-resume checkpoint: it was refused, and nothing was written to it.

    Raised for a headerless file whose first record is not a checkpoint record
    (an items file passed as the store, a checkpoint of the Rust agent-resume,
    any other JSON or text file).

    Attributes:
        path: The file.
        reason: Why it is not a checkpoint.
    """

    def __init__(self, path: str, reason: str) -> None:
        self._args = (path, reason)
        super().__init__(
            f"{path} is not an agent-resume checkpoint ({reason}); it was left untouched"
        )
        self.path = path
        self.reason = reason


class JobMismatchError(StoreError):
    """The store holds a different job from the one asked for.

    Attributes:
        expected: The job ID asked for.
        found: The job ID the store holds.
    """

    def __init__(self, expected: str, found: str, where: str) -> None:
        self._args = (expected, found, where)
        super().__init__(
            f"{where} holds job {found!r}, not {expected!r}; use a separate checkpoint for each job"
        )
        self.expected = expected
        self.found = found


class JobLockedError(StoreError):
    """Another live session holds the job.

    Attributes:
        job_id: The job; ``""`` when the file was locked for maintenance
            (``repair``, ``compact``), before its job was read.
        pid: The process ID of the holder, or ``None`` when unknown.
    """

    def __init__(self, job_id: str, pid: int | None, where: str) -> None:
        self._args = (job_id, pid, where)
        holder = f"process {pid}" if pid is not None else "another process"
        if job_id:
            message = (
                f"job {job_id!r} in {where} is held by a live session in {holder}; "
                "one session per file-backed job"
            )
        else:
            message = (
                f"{where} is held by a live session in {holder}: end it first "
                "(the file is rewritten, which needs it closed)"
            )
        super().__init__(message)
        self.job_id = job_id
        self.pid = pid


class StoreClosedError(StoreError):
    """The session or store was used after it was closed."""


class StoreWriteError(StoreError, OSError):
    """A write or sync failed; nothing partial was left behind.

    After a failed fsync the store refuses every later write, since the
    kernel may have dropped the unsynced data; reopen it to go on.
    """


class AgentResumeWarning(UserWarning):
    """The base of every warning agent-resume gives."""


class CheckpointWarning(AgentResumeWarning):
    """A checkpoint line was skipped or a torn tail ignored while loading."""


class DuplicateItemWarning(AgentResumeWarning):
    """An input gave the same item ID more than once; the item was yielded once."""


class InconsistentUsageWarning(AgentResumeWarning):
    """A response's counts contradicted each other and were corrected; once per kind and model."""


class PriceSourceWarning(AgentResumeWarning):
    """A price source (genai-prices) failed on a response; the next source priced it."""


class UnknownModelWarning(AgentResumeWarning):
    """A model has no price, so its cost is ``None``; warned once per model per table."""


def add_note(error: BaseException, note: str) -> None:
    """Add ``note`` to ``error``'s notes (shown under its traceback); Python 3.10 has none."""
    add = getattr(error, "add_note", None)
    if add is not None:
        add(note)
