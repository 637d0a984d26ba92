"""Admitting a run's next item: the step the threaded and the async feeders share.

A feeder reads the run's input (``Requeue.feed``) and hands each worker its
next item with the item's context, once the run has counted it as started;
or a `Wait` while retries are not ready; or ``None`` once no more items are
handed out. The serial loop does the same steps inline (it runs them once
per item, and has no feeder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent_resume._run._requeue import Wait

if TYPE_CHECKING:
    from agent_resume._run._context import ItemContext
    from agent_resume._run._state import RunState
    from agent_resume._session._items import IdReader

__all__ = ["END", "Admission"]

END = object()
"""What a feeder reads at the end of its input."""


class Admission:
    """Turns what the input gives next into an admitted item, a `Wait`, or the end.

    Args:
        state: The run's state (its stops and budgets, the requeue).
        ids: How to read an item's ID.
        begin: Admits an item by its ID and returns its context (``ResumableRun._begin``).
    """

    __slots__ = ("_begin", "_ids", "_track", "ended", "exhausted", "state")

    def __init__(self, state: RunState, ids: IdReader, begin: Callable[[str], ItemContext]) -> None:
        self.state = state
        self._ids = ids
        self._begin = begin
        requeue = state.requeue
        self._track = requeue.track if requeue.enabled else None
        self.ended = False
        """Set when no more items are handed out (the input ended, a stop, the run's end)."""
        self.exhausted = True
        """Whether the input was read to its end (``False`` when a stop cut it)."""

    def admit(self, item: Any) -> tuple[Any, ItemContext] | Wait | None:
        """``item`` with its context, the `Wait` itself, or ``None`` when nothing more is handed out.

        Args:
            item: What the input gave: an item, a `Wait`, or `END`.
        """
        state = self.state
        if item is END:
            self.ended = True
            return None
        if isinstance(item, Wait):
            if state.blocked():
                self.ended = True
                return None
            return item
        if state.blocked():
            self.ended = True
            self.exhausted = False
            return None
        ctx = self._begin(self._ids(item))
        track = self._track
        if track is not None:
            track(ctx.item_id, item)
        return item, ctx
