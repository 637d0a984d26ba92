"""The state one run shares between its items: budgets, deadlines, totals, stop flags.

``ResumableRun`` asks ``RunState.blocked()`` before it admits each item; items
add their usage through it; signal handlers and ``fail_fast`` set its stop.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import TYPE_CHECKING

from agent_resume._accounting._usage import Usage
from agent_resume._deadline import Deadline
from agent_resume._run._config import RunConfig
from agent_resume._run._conversations import Conversations
from agent_resume._stop import (
    AnyOf,
    LoopState,
    MaxCost,
    MaxItems,
    MaxTokens,
    StopCondition,
    StopReason,
)

if TYPE_CHECKING:
    from agent_resume._run._calls import CallGate

__all__ = ["RunState"]

# How a run-budget stop reason maps to the report's stop reason.
_BUDGET_NAMES = {
    "max_cost": "cost_budget",
    "max_tokens": "token_budget",
    "max_items": "item_budget",
}
_RECENT = 20


class RunState:
    """Counters, totals and stop flags of one run; thread-safe where it is written.

    Args:
        config: The run's configuration.
        conversations: Where the items' conversations are saved (see
            :func:`~agent_resume._run._conversations.conversations_for`);
            ``None`` keeps none.
    """

    def __init__(
        self,
        config: RunConfig,
        conversations: Conversations | None = None,
    ) -> None:
        self.config = config
        self.clock = config.clock
        # Re-entrant: a signal handler may run while the main thread holds it.
        self.lock = threading.RLock()
        self.started = self.clock()
        self.started_wall = config.wall_clock()
        deadline = Deadline.from_now(config.time_budget_seconds, clock=self.clock)
        if config.finish_by is not None:
            cutoff = Deadline.at_wallclock(
                config.finish_by, clock=self.clock, wall_clock=config.wall_clock
            )
            deadline = deadline.intersect_deadline(cutoff)
        self.deadline = deadline
        self.deadline_at = deadline.at
        self.item_timeout = config.item_timeout_seconds
        budgets: list[StopCondition] = []
        if config.max_cost_usd is not None:
            budgets.append(MaxCost(config.max_cost_usd))
        if config.max_tokens is not None:
            budgets.append(MaxTokens(config.max_tokens))
        if config.max_items is not None:
            budgets.append(MaxItems(config.max_items))
        self.budget = AnyOf(*budgets) if budgets else None
        self.usage = Usage()
        self.admitted = 0
        self.done = 0
        self.failed = 0
        self.in_flight = 0
        self.recent: deque[float] = deque(maxlen=_RECENT)
        self.estimate = 0.0
        self.stop_name: str | None = None
        self.stop_reason: StopReason | None = None
        self.signals = 0
        self.grace_at = math.inf
        self.aborted = False
        self.abandoned = 0
        self.failed_ids: set[str] = set()
        self.fail_fast_error: BaseException | None = None
        self.calls: CallGate | None = None
        """The run's side of ``ctx.call``/``ctx.acall``, set when the run opens."""
        self.conversations = Conversations() if conversations is None else conversations

    # -- stopping --------------------------------------------------------------

    def stop(self, name: str, reason: StopReason) -> bool:
        """Stop admitting items, for the first reason only; returns whether this was the first."""
        with self.lock:
            if self.stop_name is not None:
                return False
            self.stop_name = name
            self.stop_reason = reason
        hook = self.config.on_stop
        if hook is not None:
            hook(reason)
        return True

    def blocked(self) -> bool:
        """Whether the next item must not be admitted; sets the stop reason if newly so."""
        if self.stop_name is not None:
            return True
        at = self.deadline_at
        if at != math.inf:
            now = self.clock()
            if now >= at:
                self.stop("time_budget", StopReason("time_budget", "the run's deadline passed"))
                return True
            if now + self.estimate > at:
                message = (
                    f"{at - now:.3f}s left is less than the {self.estimate:.3f}s "
                    "recent items have taken"
                )
                self.stop("time_budget", StopReason("time_budget", message))
                return True
        budget = self.budget
        if budget is not None:
            u = self.usage
            state = LoopState(
                turns=u.calls,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cost_usd=u.cost_usd if u.calls else 0.0,
                elapsed_seconds=self.clock() - self.started,
                items=self.admitted,
            )
            reason = budget(state)
            if reason is not None:
                self.stop(_BUDGET_NAMES.get(reason.name, reason.name), reason)
                return True
        return False

    # -- items -------------------------------------------------------------------

    def item_deadline(self) -> Deadline:
        """A new item's deadline: the item timeout intersected with the run's deadline."""
        now = self.clock()
        at = min(now + self.item_timeout, self.deadline_at)
        return Deadline(at=at, created_at=now, clock=self.clock)

    def finished(self, duration: float, ok: bool) -> None:
        """Count a finished item and learn from its duration."""
        with self.lock:
            if ok:
                self.done += 1
            else:
                self.failed += 1
            if self.deadline_at != math.inf:
                recent = self.recent
                recent.append(duration)
                ordered = sorted(recent)
                self.estimate = ordered[len(ordered) // 2]

    def abandon(self) -> None:
        """End the run: items still in flight are abandoned and will not be recorded."""
        with self.lock:
            self.abandoned = max(self.in_flight, 0)
            self.aborted = True

    def add_usage(self, usage: Usage) -> None:
        """Add one call's usage to the run's totals."""
        with self.lock:
            self.usage = self.usage + usage
