"""The store protocol: what a session asks of the place where checkpoints live.

A store holds one job. A session drives it in this order: :meth:`Store.open`
once (which loads the job and takes whatever lock or lease the store needs),
then any number of ``write_*`` calls, :meth:`Store.flush` whenever it likes,
and :meth:`Store.close` once. Shared stores (several workers on one job) add
the :class:`SharedStore` methods, through which a worker enqueues the job's
items and claims batches of them under a lease.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, runtime_checkable

from agent_resume._errors import ArgumentValueError
from agent_resume._records import JobState

__all__ = [
    "CAPABILITIES",
    "ConversationDirStore",
    "ConversationStore",
    "Durability",
    "OnePassStore",
    "SharedStore",
    "Store",
    "StoreDescription",
    "check_start",
    "default_max_attempts",
]

CAPABILITIES: Final = frozenset({"results", "shared", "conversations", "conversation_files"})
"""The capabilities a :class:`StoreDescription` may list.

- ``"results"``: completions keep their result (:attr:`Store.keeps_results`).
- ``"shared"``: several workers may share the job (:class:`SharedStore`).
- ``"conversations"``: the store keeps the items' saved conversations itself
  (:class:`ConversationStore`), so they outlive the process and reach other machines.
- ``"conversation_files"``: saved conversations go to files in a directory
  beside the store (:class:`ConversationDirStore`).
"""

Durability = Literal["flush", "group", "fsync"]
"""How far a record has travelled when a write returns.

- ``"flush"``: handed to the operating system; survives a crash or kill of the process.
- ``"group"``: also synced to disk by a background thread within about 10 ms
  (plus the time of one fsync), or at once after 256 records.
- ``"fsync"``: synced to disk before the write returns.
"""


@dataclass(frozen=True)
class StoreDescription:
    """What a store holds, read without opening the job (no lock, lease or write).

    Attributes:
        location: Where the store is, for people (a path, or ``host:port/db schema``).
        job_id: The job the store holds, or ``None`` when it holds none yet
            (or a headerless checkpoint of the original format).
        created: When the job was created (Unix seconds), if known.
        format_version: The version of the store's format or schema, if it
            holds a job.
        done: How many items are done.
        failed: How many items not done have failed at least once.
        quarantined: How many of those a session with ``max_attempts`` skips.
        max_attempts: The ``max_attempts`` the quarantine count was judged by.
        capabilities: What the store can do; see :data:`CAPABILITIES`.
        bad_lines: Records that could not be read and were skipped (the
            corrupt lines of a JSONL file); 0 for the SQL stores.
        torn_tail: Whether a JSONL file ends with a torn line (a write cut
            short; the next session cuts it off).
    """

    location: str
    job_id: str | None
    created: int | None
    format_version: int | None
    done: int
    failed: int
    quarantined: int
    max_attempts: int
    capabilities: frozenset[str]
    bad_lines: int = 0
    torn_tail: bool = False

    @classmethod
    def from_state(
        cls,
        state: JobState,
        *,
        location: str,
        format_version: int | None,
        max_attempts: int | None,
        capabilities: frozenset[str],
    ) -> StoreDescription:
        """Describe a job from its folded state (for stores that read every record).

        Args:
            state: The job's state; an empty ``job_id`` means no job.
            location: Where the store is.
            format_version: The version of the store's format.
            max_attempts: The quarantine limit, or ``None`` for the one the
                latest run recorded (3 when none did).
            capabilities: The store's capabilities.
        """
        limit = default_max_attempts(state.runs) if max_attempts is None else max_attempts
        quarantined = sum(
            1 for info in state.failures.values() if not info.retryable or info.attempts >= limit
        )
        return cls(
            location=location,
            job_id=state.job_id or None,
            created=state.created,
            format_version=format_version if state.job_id else None,
            done=len(state.done),
            failed=len(state.failures),
            quarantined=quarantined,
            max_attempts=limit,
            capabilities=capabilities,
        )


def default_max_attempts(runs: Sequence[dict[str, Any]]) -> int:
    """The ``max_attempts`` the latest run recorded in its start record, else 3."""
    for record in reversed(runs):
        value = record.get("max_attempts")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 3


@runtime_checkable
class Store(Protocol):
    """Where a job's checkpoint lives.

    Every ``write_*`` method records its record before it returns (as far as
    the store's durability promises) or raises and records nothing: a store
    never leaves half a record behind. The session that drives a store
    serialises its calls (one at a time, from any thread), so a store needs
    no lock of its own around them.
    """

    keeps_results: bool
    """Whether completions keep their ``result`` (and :meth:`iter_results` yields them)."""

    def open(self, job_id: str) -> JobState:
        """Open the job, creating it when the store is empty, and load its state.

        Raises:
            JobMismatchError: The store holds another job.
            JobLockedError: Another live session holds the job (file-backed stores).
            UnsupportedFormatError: The store was written by a newer version.
        """
        ...

    def write_done(
        self,
        item_id: str,
        ts: int,
        extra: dict[str, Any] | None,
        result_json: str | None,
    ) -> bool:
        """Record a completion.

        Args:
            item_id: The normalised item ID.
            ts: Unix seconds.
            extra: Optional fields (``attempt``, ``stop``, ``turns``, ``seconds``,
                ``fp``, ``usage``, in that order), JSON-able.
            result_json: The result, already encoded as JSON, or ``None`` for none.

        Returns:
            ``True`` if this call recorded the completion, ``False`` if the store
            already had one (shared stores: another worker finished it first, or
            this worker's lease had expired).
        """
        ...

    def write_failed(
        self,
        item_id: str,
        ts: int,
        error: str,
        attempt: int,
        retryable: bool,
        usage: dict[str, Any] | None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Record a failed attempt.

        Args:
            item_id: The normalised item ID.
            ts: Unix seconds.
            error: The error, as ``"Type: message"``.
            attempt: The attempt's number as the session counts it.
            retryable: Whether the item may be tried again.
            usage: The attempt's usage in compact form, or ``None``.
            extra: The attempt's optional fields (``turns``, ``seconds``),
                JSON-able, kept in the record as they are; the session passes
                it only when there are any, so a store written before it
                existed still works for callers that give none.
        """
        ...

    def write_retry(self, item_ids: Sequence[str], ts: int) -> None:
        """Forget the failures of these items, so that they run again."""
        ...

    def write_run(self, record: dict[str, Any]) -> None:
        """Record a job-level record: a run record (``{"run": "start" | "end", "ts": ...}``).

        The same method records the job's other records without an item:
        a call's usage (``{"call": ...}``) and the job's state map
        (``{"state": {...}, "ts": ...}``, folded into ``JobState.state`` on
        open, the latest winning).
        """
        ...

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Yield every valid record of the job, oldest first, header excluded.

        Usable on a store that is not open (read-only), for reports and the CLI.
        """
        ...

    def iter_results(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(item_id, result)`` for each item done, latest completion per item."""
        ...

    def flush(self) -> None:
        """Make every record written so far as durable as the store can."""
        ...

    def close(self) -> None:
        """Flush, release locks and leases, and close. Closing twice is harmless."""
        ...

    def describe(self, max_attempts: int | None = None) -> StoreDescription:
        """Describe the job the store holds, read-only.

        Usable on a store that is not open, while another process runs the
        job: it takes no lock or lease and writes nothing (a store that does
        not exist yet is described as holding no job, and is not created).

        Args:
            max_attempts: The limit to count quarantined items by; ``None``
                for the one the latest run recorded (3 when none did).

        Raises:
            StoreError: The store cannot be read, or is not an agent-resume store.
            UnsupportedFormatError: The store was written by a newer version.
        """
        ...


@runtime_checkable
class SharedStore(Store, Protocol):
    """A store that several workers, in several processes or on several machines, share.

    Every worker gives the same item list; :meth:`enqueue` adds the IDs
    idempotently and :meth:`claim` hands each worker a batch of items under a
    lease that the store renews while the worker lives. Leases are judged by
    the database's clock. A completion is recorded once: when another worker
    finished the item first, :meth:`Store.write_done` returns ``False`` and
    counts it in :attr:`late_completions`. :meth:`Store.write_failed` also
    gives the lease back, so that another worker may try the item again.
    """

    batch_size: int
    """How many items one :meth:`claim` takes."""

    poll_seconds: float
    """How long a worker waits before claiming again while others hold the rest."""

    late_completions: int
    """Completions this store object reported that another worker had recorded first."""

    def enqueue(self, item_ids: Sequence[str]) -> None:
        """Add these items to the job's queue; items already known are left as they are."""
        ...

    def claim(self, limit: int, max_attempts: int, exclude: Sequence[str] = ()) -> list[str]:
        """Lease up to ``limit`` items that are neither done, leased nor quarantined.

        Args:
            limit: The most items to lease.
            max_attempts: Failed attempts after which an item is quarantined.
            exclude: Items not to claim (those this worker already tried in
                this pass of ``remaining()``).

        Returns:
            The claimed IDs, oldest enqueued first; empty when nothing is left
            to claim right now.
        """
        ...

    def pending(self, max_attempts: int, exclude: Sequence[str] = ()) -> int:
        """Count the items not done, not quarantined and not excluded, leased or not."""
        ...

    def release(self, item_ids: Sequence[str]) -> None:
        """Give back leases on items this worker will not process."""
        ...


@runtime_checkable
class OnePassStore(Protocol):
    """A store that can describe its job and hand over its records in one read.

    Readers that need both (``agent-resume status`` and ``report``) use it
    where a store has it, and else :meth:`Store.describe` then
    :meth:`Store.iter_records`. The JSONL stores have it (one read of the
    file instead of two); the SQL stores answer a description from indexes.
    """

    def describe_records(
        self, consume: Callable[[dict[str, Any]], object], max_attempts: int | None = None
    ) -> StoreDescription:
        """Describe the job as :meth:`Store.describe` does, in the read that gives the records.

        ``consume`` is called with every record :meth:`Store.iter_records`
        would yield, in the same order; an error it raises ends the read.
        """
        ...


@runtime_checkable
class SkimmingStore(Protocol):
    """A store that can hand over its records without decoding its completions' bodies.

    For readers that need each item's failures and calls, and only the fact
    that an item was done (a run's per-item ``stop`` conditions, which count
    an item's spending since its last completion). The JSONL stores have it:
    their completions are most of the file and most of the time a full read
    takes. Other stores are read with :meth:`Store.iter_records`.
    """

    def skim_records(self) -> Iterator[dict[str, Any]]:
        """Yield the records :meth:`Store.iter_records` yields, a completion perhaps as its ID alone.

        In the same order; a completion may come as ``{"id": ...}``, without
        its other fields.
        """
        ...


@runtime_checkable
class ConversationStore(Protocol):
    """A store that keeps its items' saved conversations itself (capability ``"conversations"``).

    ``ctx.save_conversation`` in a run goes here unless ``RunConfig.conversation_dir``
    is set, so a conversation saved by a worker that dies is resumed by any
    other worker, on any machine that reaches the store. Each method is one
    atomic write or read; a conversation belongs to the store's open job. A
    completion (:meth:`Store.write_done`) deletes the item's conversation in
    the same transaction. The methods are called from the items' threads,
    beside the session's calls, so they must be thread-safe.
    """

    def load_conversation(self, item_id: str) -> list[str] | None:
        """The item's saved messages, one ``encode_line`` text each, in order; or ``None``."""
        ...

    def save_conversation(self, item_id: str, lines: Sequence[str], *, start: int = 0) -> None:
        """Keep the first ``start`` saved messages and store ``lines`` after them, atomically.

        Messages saved after the first ``start`` are dropped in the same
        transaction: ``start=0`` replaces the conversation, ``start`` equal to
        the number saved appends (writing only the new messages).

        Raises:
            ArgumentValueError: ``start`` is not an int >= 0.
        """
        ...

    def delete_conversation(self, item_id: str) -> None:
        """Forget the item's saved conversation (it is done); none is harmless."""
        ...


@runtime_checkable
class ConversationDirStore(Protocol):
    """A store whose conversations go to files beside it (capability ``"conversation_files"``)."""

    def conversation_dir(self) -> str:
        """The directory for the items' saved conversations (it need not exist yet)."""
        ...


def check_start(start: object) -> int:
    """Check a ``save_conversation`` ``start``: an int >= 0 (not a bool).

    Raises:
        ArgumentValueError: It is not.
    """
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ArgumentValueError("start", start, f"`start` must be an int >= 0 (got {start!r})")
    return start
