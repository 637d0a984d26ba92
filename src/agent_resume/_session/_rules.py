"""The rules of ``Session.remaining()``, written once, and the interface of its strategies.

Which items of an input are still to do:

- an item done (in this session or an earlier one) is skipped, unless it was
  fingerprinted and its content changed and ``on_change="rerun"``;
- a repeated ID is yielded once; the repeat is counted and warned about once.
  A repeat counts when the pass had already found the ID still to do (it
  yielded it, or skipped it as quarantined), even if the caller marked the
  item done meanwhile. An ID done before the pass reached it is skipped each
  time it appears and is not counted;
- a quarantined item (failed ``max_attempts`` times, or for good) is skipped;
- an item yielded by a fingerprinting session has its fingerprint kept until
  its completion is recorded.

:class:`ItemRules` holds the session's state these rules read and the counts
they keep; each :class:`Strategy` walks an input with them in its own way:
one item at a time (``_remaining.OneByOne``), a list in batches done in C
(``_remaining.Batched``), or claiming batches from a shared store
(``_claiming.Claiming``). ``Session`` picks one per call of ``remaining()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import Any, Generic, Literal, TypeVar

from agent_resume._caller import warn_at_caller
from agent_resume._errors import DuplicateItemWarning, ItemChangedError, StoreClosedError
from agent_resume._fingerprint import Fingerprinter
from agent_resume._records import JobState
from agent_resume._session._items import KeyFunc, normalized_ids

__all__ = ["ItemRules", "OnChange", "Strategy"]

T = TypeVar("T")
OnChange = Literal["rerun", "keep", "error"]


class ItemRules:
    """The state and counts behind ``remaining()``, shared by a session and its strategies.

    The session changes it only under its lock (:meth:`completed`); the
    strategies read it, and count duplicates and changes through it.

    Attributes:
        done: The IDs done (the session's set, updated as items are marked).
        done_order: The same IDs in the order they were read or marked
            (:attr:`JobState.done_order`).
        sorted_upto: How many of the first IDs of ``done_order`` a pass of
            ``remaining()`` found in increasing order (it only grows).
        failures: The failed attempts of the items not done.
        max_attempts: Failed attempts after which an item is quarantined.
        rerun: Items done earlier whose content changed, to run again.
        watchers: Maps that every ID marked done is added to (as a key, to
            ``True``; one per batched pass in progress, which asks them
            through ``dict.get``, the cheapest membership test C offers).
        duplicates: Repeats counted so far.
        changed: Done items found changed so far.
        closed: Whether the session was closed.
    """

    __slots__ = (
        "_fingerprinter",
        "_fingerprints",
        "_on_change",
        "_pending_fp",
        "_warned",
        "changed",
        "closed",
        "done",
        "done_order",
        "duplicates",
        "failures",
        "job_id",
        "max_attempts",
        "rerun",
        "sorted_upto",
        "watchers",
    )

    def __init__(
        self,
        state: JobState,
        max_attempts: int,
        fingerprinter: Fingerprinter | None,
        on_change: OnChange,
    ) -> None:
        self.job_id = state.job_id
        self.done = state.done
        self.done_order = state.done_order
        self.failures = state.failures
        self.max_attempts = max_attempts
        self._fingerprints = state.fingerprints
        self._fingerprinter = fingerprinter
        self._on_change = on_change
        self._pending_fp: dict[str, str] = {}
        self._warned = False
        self.rerun: set[str] = set()
        self.watchers: list[dict[str, bool]] = []
        self.sorted_upto = 0
        self.duplicates = 0
        self.changed = 0
        self.closed = False

    @property
    def fingerprinting(self) -> bool:
        """Whether items are fingerprinted."""
        return self._fingerprinter is not None

    def check_open(self) -> None:
        """Raise when the session is closed.

        Raises:
            StoreClosedError: The session is closed.
        """
        if self.closed:
            raise StoreClosedError(f"the session for job {self.job_id!r} is closed")

    def is_quarantined(self, item_id: str) -> bool:
        """Whether the item failed too often, or for good."""
        failure = self.failures.get(item_id)
        return failure is not None and (
            not failure.retryable or failure.attempts >= self.max_attempts
        )

    def is_done(self, item_id: str) -> bool:
        """Whether the item is done and not to be run again."""
        return item_id in self.done and item_id not in self.rerun

    def skip_done(self, item: Any, item_id: str) -> bool:
        """Whether ``item`` is done and stays done: not changed, or changed but kept.

        Called once per pass for each ID found done. With fingerprints, a done
        item whose content changed is counted in :attr:`changed` and, with
        ``on_change="rerun"``, put in :attr:`rerun` (so it is to do again).

        Raises:
            ItemChangedError: The item changed and ``on_change="error"``.
        """
        if item_id not in self.done:
            return False
        if self._fingerprinter is None or item_id in self.rerun:
            return item_id not in self.rerun
        old = self._fingerprints.get(item_id)
        if old is None:
            return True
        new = self._fingerprinter(item)
        if new == old:
            return True
        self.changed += 1
        if self._on_change == "error":
            raise ItemChangedError(item_id, old, new)
        if self._on_change == "keep":
            return True
        self.rerun.add(item_id)
        return False

    def duplicate(self, item_id: str) -> None:
        """Count a repeated ID; warn the first time (at the caller's loop)."""
        self.duplicates += 1
        if not self._warned:
            self._warned = True
            warn_at_caller(
                f"item ID {item_id!r:.80} appears more than once in the input of job "
                f"{self.job_id!r}; each ID is yielded once (see session.stats.duplicates)",
                DuplicateItemWarning,
            )

    def handing_out(self, item: Any, item_id: str) -> None:
        """Note that ``item`` is about to be yielded (keeps its fingerprint)."""
        if self._fingerprinter is not None:
            self._pending_fp[item_id] = self._fingerprinter(item)

    def take_fingerprint(self, item_id: str) -> str | None:
        """The fingerprint of a yielded item, removed (for its completion record)."""
        return self._pending_fp.pop(item_id, None)

    def completed(self, item_id: str) -> None:
        """Note that the item is done (under the session's lock, once its record is written)."""
        self.done.add(item_id)
        self.done_order.append(item_id)
        for watcher in self.watchers:
            watcher[item_id] = True
        if self.rerun:
            self.rerun.discard(item_id)
        if self.failures:
            self.failures.pop(item_id, None)

    def count_left(self, items: Iterable[Any], key: KeyFunc | None) -> int:
        """Count the distinct IDs of ``items`` still to do, changing nothing.

        An item is to do when it is not done (or done but to be rerun) and not
        quarantined. No fingerprint is computed: a done item whose content
        changed is counted only once a pass has found it changed.
        """
        seen: set[str] = set()
        for _, item_id in normalized_ids(items, key):
            seen.add(item_id)
        return sum(
            1 for item_id in seen if not self.is_done(item_id) and not self.is_quarantined(item_id)
        )


class Strategy(ABC, Generic[T]):
    """One pass of ``remaining()`` over an input, applying :class:`ItemRules`.

    Args:
        rules: The session's rules.
        items: The input.
        key: How to read an item's ID.
    """

    def __init__(self, rules: ItemRules, items: Iterable[T], key: KeyFunc | None) -> None:
        self.rules = rules
        self.items = items
        self.key = key

    @abstractmethod
    def iterate(self) -> Iterator[T]:
        """Yield the items still to do, in input order, lazily."""

    async def aiterate(self) -> AsyncGenerator[T, None]:
        """The same for an event loop: waiting never blocks the loop.

        The default walks :meth:`iterate`, which never waits; strategies that
        wait (for other workers) override it.
        """
        it = self.iterate()
        try:
            for item in it:
                yield item
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
