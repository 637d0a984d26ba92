"""The store protocol: what a session asks of the place where checkpoints live.

A store holds one job. A session drives it in this order: :meth:`Store.open`
once (which loads the job and takes whatever lock or lease the store needs),
then any number of ``write_*`` calls, :meth:`Store.flush` whenever it likes,
and :meth:`Store.close` once. Shared stores (several workers on one job) add
the :class:`SharedStore` methods, through which a worker enqueues the job's
items and claims batches of them under a lease.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from agent_resume._records import JobState

__all__ = ["Durability", "SharedStore", "Store"]

Durability = Literal["flush", "group", "fsync"]
"""How far a record has travelled when a write returns.

- ``"flush"``: handed to the operating system; survives a crash or kill of the process.
- ``"group"``: also synced to disk by a background thread within about 10 ms
  (plus the time of one fsync), or at once after 256 records.
- ``"fsync"``: synced to disk before the write returns.
"""


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
            extra: Optional fields (``attempt``, ``stop``, ``fp``, ``usage``), JSON-able.
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
    ) -> None:
        """Record a failed attempt."""
        ...

    def write_release(self, item_ids: Sequence[str], ts: int) -> None:
        """Forget the failures of these items, so that they run again."""
        ...

    def write_run(self, record: dict[str, Any]) -> None:
        """Record a run record (``{"run": "start" | "end", "ts": ..., ...}``)."""
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

    def unclaim(self, item_ids: Sequence[str]) -> None:
        """Give back leases on items this worker will not process."""
        ...
