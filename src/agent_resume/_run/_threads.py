"""The threaded run's input and workers: who takes the next item, and who waits aside.

Each worker takes its own next item from the `Feeder` (one lock, no
hand-off through the main thread). The `Pool` keeps the workers from
queueing for the GIL when they have nothing to wait for: under the GIL only
one thread runs Python at a time, and every time the running worker lets the
GIL go (each record it writes does) a worker queued for it is woken, so with
quick items the workers hand the GIL and the locks to each other at every
item, and a no-op item cost three times as much in 8 threads as in one.

So a worker whose item was quick (it waited for nothing: no call, no sleep)
rests while another worker is free to take the next item, and the main thread
wakes a resting worker once no active worker is free: when every active
worker's item has been running for 2 ms (it waits for the network, a sleep,
a lock, or computes at length); the main thread looks every 0.1 s and wakes
one worker per look. Items that wait run ``concurrency`` at a time as
before; quick items run in turn on one worker. The first items are still
admitted all at once, one per worker, before any starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agent_resume._run._admission import END, Admission
from agent_resume._run._requeue import Wait

if TYPE_CHECKING:
    from agent_resume._run._context import ItemContext
    from agent_resume._run._state import RunState
    from agent_resume._session._items import IdReader

__all__ = ["Feeder", "Pool"]

# An item that took less than this (with its bookkeeping) waited for nothing:
# its worker may rest.
_QUICK = 0.0002
# An item running longer than this is waiting (or computing at length): a
# resting worker is woken to take the next item meanwhile.
_BUSY = 0.002
# How often the main thread looks at the items in flight (and at the grace
# period, signals, the workers' end). Each look takes the GIL from the running
# worker for a moment (and makes it wake the main thread at each record it
# writes while the main thread waits for it), so it is not done more often:
# a resting worker is woken within 0.1 s of the last free worker's item
# starting to wait, one worker per look.
_POLL = 0.1
# A resting worker is woken by the others and the main thread; this is a safety net.
_REST_POLL = 1.0


class Feeder(Admission):
    """The threaded run's input: each worker takes its next item, admitted, under one lock.

    Args:
        state: The run's state.
        feed: The items to run (the requeue's feed over ``Session.remaining``).
        ids: How to read an item's ID.
        begin: Admits an item: returns its context (``ResumableRun._begin``).
    """

    __slots__ = ("_feed", "_lock")

    def __init__(
        self,
        state: RunState,
        feed: Iterator[Any],
        ids: IdReader,
        begin: Callable[[str], ItemContext],
    ) -> None:
        super().__init__(state, ids, begin)
        self._feed = feed
        self._lock = threading.Lock()

    def take(self) -> tuple[Any, ItemContext] | Wait | None:
        """The next item with its context (admitted), a `Wait` to wait, ``None`` at the end."""
        # Once per item: acquire and release cost half a `with` block.
        lock = self._lock
        lock.acquire()
        try:
            if self.ended or self.state.aborted:
                return None
            return self.admit(next(self._feed, END))
        finally:
            lock.release()


class Pool:
    """The threaded run's workers: which run, which rest, and when the run's wait is over.

    A worker sets its slot of `since` around each item (the moment it
    started, ``time.monotonic()``; ``0.0`` once done), calls `rest` after a
    quick item while another worker is active, and `gone` when it ends. The main thread calls `watch`, which
    returns when every worker has ended, the run was aborted or the grace
    period after a stop has passed, and wakes resting workers meanwhile.

    Args:
        size: The number of workers (``concurrency``).
        state: The run's state (stops, the grace period).
        feeder: The run's input (whether it has ended).
    """

    __slots__ = (
        "_feeder",
        "_lock",
        "_resting",
        "_state",
        "_wakes",
        "_watching",
        "live",
        "rested",
        "since",
    )

    def __init__(self, size: int, state: RunState, feeder: Feeder) -> None:
        self._state = state
        self._feeder = feeder
        self.since = [0.0] * size
        """When each worker's item started (``time.monotonic()``), ``0.0`` while it runs none.

        The real clock, even when a test gives the run a mock one: these are real waits.
        """
        self._lock = threading.Lock()
        self._resting = threading.Condition(self._lock)  # resting workers wait here
        self._watching = threading.Condition(self._lock)  # the main thread waits here
        self._wakes = 0
        self.rested = 0
        """Workers resting now."""
        self.live = 0
        """Workers started and not yet ended (set by the runner before it starts them)."""

    def _busy(self, now: float) -> int:
        # Workers whose item has run longer than _BUSY (lock not needed: floats are swapped whole).
        return sum(1 for since in self.since if since and now - since > _BUSY)

    def rest(self, started: float) -> None:
        """After an item that started at ``started``: wait aside if it was quick and another worker is free.

        Returns once woken (the workers in flight are all busy), or when the
        run stops or its input ends (the worker then finds no item and ends).
        """
        now = time.monotonic()
        if now - started >= _QUICK or self.live - self.rested <= 1:
            return
        state = self._state
        feeder = self._feeder
        with self._lock:
            if self.live - self.rested <= 1 + self._busy(now):
                return  # every other active worker is busy: this one is needed
            self.rested += 1
            try:
                while not self._wakes:
                    if feeder.ended or state.stopping or state.aborted:
                        return
                    self._resting.wait(_REST_POLL)
                self._wakes -= 1
            finally:
                self.rested -= 1

    def gone(self) -> None:
        """A worker ended (its input ended, the run stopped, or an exception escaped)."""
        with self._lock:
            self.live -= 1
            # The input ended or the run stops: resting workers end too.
            self._wakes = self.rested
            self._resting.notify_all()
            self._watching.notify()

    def wake_all(self) -> None:
        """Wake every resting worker (the run ends)."""
        with self._lock:
            self._wakes = self.rested
            self._resting.notify_all()

    def watch(self) -> None:
        """Wait for the workers (main thread), waking resting ones when every active one is busy.

        Returns when every worker has ended, the run was aborted (a second
        signal), or the grace period after a stop or an escaped exception
        has passed. Looks at least every 0.1 s.
        """
        state = self._state
        feeder = self._feeder
        deadline = state.deadline.at
        while True:
            with self._lock:
                if self.live <= 0 or state.aborted:
                    return
                left = state.grace_at - state.clock()
                if left <= 0:
                    return
                if self.rested:
                    if feeder.ended or state.stopping:
                        self._wakes = self.rested
                        self._resting.notify_all()
                    elif (
                        self._wakes < self.rested
                        and self.live - self.rested + self._wakes <= self._busy(time.monotonic())
                    ):
                        self._wakes += 1  # no active worker is free: wake one
                        self._resting.notify()
                self._watching.wait(min(_POLL, left))
            if not state.stopping and state.clock() >= deadline:
                # Every worker may be inside a long item, none asking for the next:
                # the run's deadline is noticed here, and the grace period starts.
                state.blocked()
