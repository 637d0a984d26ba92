"""Retrying failed items within the run: back of the queue, after a backoff.

An item whose attempt failed with a transient error (a provider error that
outlived the call's own retries, a call timeout, a connection error) goes to
the back of the queue and is tried again once the input is
exhausted, after a backoff (the provider's ``retry-after`` when the error
carries one), while the run's budgets and time allow and the item has
attempts left (``max_attempts`` over the job's life). Permanent errors (HTTP
400, 401, 403, 404, 422, ...), items that ran out of their own deadline
(``DeadlineExceeded``: another try would likely take as long again) and
errors of the caller's own code are not retried in the run; all but the
first are retried by a later run, as before.

Shared stores (SQLite, PostgreSQL) hand a failed item back to the job's
queue, where any worker claims it again, so the run does not keep its own.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from agent_resume._errors import DeadlineExceeded
from agent_resume._retry import Retry, classify_error, error_wait

if TYPE_CHECKING:
    from agent_resume._run._context import ItemContext
    from agent_resume._run._state import RunState

__all__ = ["WAIT", "Requeue", "Wait"]

T = TypeVar("T")


class Wait:
    """What `Requeue.feed` yields when no item is ready yet: wait `Requeue.delay` seconds."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WAIT"


WAIT = Wait()

_POLL = 0.1


class Requeue(Generic[T]):
    """The run's queue of items to try again, and the items in flight that may join it.

    Args:
        state: The run's state (clock, stop flags, items in flight).
        retry: The backoff policy (the run's ``retry``).
        enabled: Whether failed items are retried in this run at all.
    """

    def __init__(self, state: RunState, retry: Retry, enabled: bool) -> None:
        self._state = state
        self._retry = retry
        self._enabled = enabled
        self._max_attempts = state.config.max_attempts
        # Backoffs are real waits (time.sleep), so they are timed by the real
        # clock even when a test injects a MockClock for deadlines.
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self._in_flight: dict[str, T] = {}
        self._queue: list[tuple[float, int, str, T]] = []
        self._order = itertools.count()
        self._failed: set[str] = set()
        self.requeued = 0
        """Failed attempts sent back to the queue."""
        self.retried = 0
        """Items done in this run after a failed attempt in this run."""
        self.input_done = False
        """Whether `feed` has gone through the whole input (it may still be retrying).

        Kept only while retries are enabled: without them `feed` is the input
        itself, and the run knows the input ended when its loop did."""

    @property
    def enabled(self) -> bool:
        """Whether failed items are retried in this run (else `track` keeps nothing)."""
        return self._enabled

    def track(self, item_id: str, item: T) -> None:
        """Remember an admitted item, in case it has to go back to the queue."""
        if self._enabled:
            # One dict store needs no lock: it is atomic, and only the thread
            # running the item touches its key.
            self._in_flight[item_id] = item

    def done(self, item_id: str) -> None:
        """An item was recorded done."""
        self._in_flight.pop(item_id, None)  # atomic, as in `track`
        if not self._failed:
            return  # nothing failed in this run: no lock to take
        with self._lock:
            if item_id in self._failed:
                self._failed.discard(item_id)
                self.retried += 1

    def failed(self, ctx: ItemContext, error: BaseException) -> bool:
        """An item's attempt was recorded failed: queue it again if that is worth it.

        Args:
            ctx: The failed attempt.
            error: Its error.

        Returns:
            Whether the item was queued again.
        """
        with self._lock:
            item = self._in_flight.pop(ctx.item_id, None)
            self._failed.add(ctx.item_id)
        if item is None or not self._enabled or self._state.aborted:
            return False
        if ctx.attempt >= self._max_attempts:
            return False
        state = self._state
        # An item that used up its whole deadline would likely take as long
        # again: it is left for a later run, like any non-transient failure.
        if isinstance(error, DeadlineExceeded) or classify_error(error) != "transient":
            return False
        told = error_wait(error, state.config.wall_clock())
        delay = told if told is not None else self._retry.backoff(ctx.attempt)
        with self._lock:
            ready = self._clock() + delay
            heapq.heappush(self._queue, (ready, next(self._order), ctx.item_id, item))
            self.requeued += 1
        return True

    def pending(self) -> int:
        """Items waiting in the queue."""
        with self._lock:
            return len(self._queue)

    def delay(self) -> float:
        """Seconds until the next queued item is ready (a short poll when none is queued)."""
        with self._lock:
            if not self._queue:
                return _POLL
            return max(0.0, min(_POLL, self._queue[0][0] - self._clock()))

    def _next_queued(self) -> T | Wait | None:
        """The next queued item if ready, `WAIT` if one may still come, ``None`` when done."""
        state = self._state
        if state.stopping:
            return None
        with self._lock:
            if self._queue and self._queue[0][0] <= self._clock():
                return heapq.heappop(self._queue)[3]
            if not self._queue and state.in_flight <= 0:
                return None
            return WAIT

    async def afeed(self, it: AsyncIterator[T]) -> AsyncIterator[T | Wait]:
        """`feed` for an async input (``Session.aremaining``)."""
        # Not `yield from`-like delegation: closing this generator must not close the input.
        async for given in it:
            yield given
        self.input_done = True
        if not self._enabled:
            return
        while True:
            item = self._next_queued()
            if item is None:
                return
            yield item

    def feed(self, it: Iterator[T]) -> Iterator[T | Wait]:
        """The input's items, then the queued ones as they become ready, until none can come.

        Yields `WAIT` while items are queued but not ready, or in flight and may
        fail; the caller waits (`delay`) and asks again. Ends when the queue is
        empty and nothing is in flight, or when the run stops admitting.
        """
        if not self._enabled:
            # Nothing can be queued: the input itself, without a generator around each item.
            return it
        # A C iterator over the input, then over the queue: no Python frame per
        # input item. It never closes the input, which the run still counts
        # from when it stopped early.
        tail: _Queued[T] = _Queued(self)
        return itertools.chain(it, tail)

    def queued_after_input(self) -> Iterator[T | Wait]:
        """The queued items, as `feed` gives them once the input has ended."""
        self.input_done = True
        return iter(self._next_queued, None)


class _Queued(Generic[T]):
    """The tail of `Requeue.feed`: made an iterator only when the input has ended."""

    __slots__ = ("_requeue",)

    def __init__(self, requeue: Requeue[T]) -> None:
        self._requeue = requeue

    def __iter__(self) -> Iterator[T | Wait]:
        return self._requeue.queued_after_input()
