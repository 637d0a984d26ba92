"""``RunState``: what one run's items share: budgets, deadline, counters and stopping.

The runner asks :meth:`RunState.blocked` before it admits each item and
:meth:`RunState.admit` when it does; items report back through
:meth:`RunState.item_done`, :meth:`RunState.item_failed`,
:meth:`RunState.add_usage` and
:meth:`RunState.left`; signal handlers call :meth:`RunState.signal`. Every
field is private and every change goes through a method holding the one
lock, so the state is consistent whichever thread (or signal handler) acts.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from agent_resume._accounting._usage import Usage
from agent_resume._deadline import Deadline, trusted_deadline
from agent_resume._errors import add_note
from agent_resume._records import error_text
from agent_resume._run._config import DEFAULT_RETRY, RunConfig
from agent_resume._run._conversations import Conversations
from agent_resume._run._requeue import Requeue
from agent_resume._run._spent import NO_MODEL, ItemSpent, JobSpent
from agent_resume._stop import (
    AnyOf,
    LoopState,
    MaxCost,
    MaxItems,
    MaxTokens,
    StopCondition,
    StopReason,
    cost_reached,
)

if TYPE_CHECKING:
    from agent_resume._run._calls import CallGate
    from agent_resume._session._session import Session

__all__ = ["RunState"]

logger = logging.getLogger("agent_resume.run")

# How a run-budget stop reason maps to the report's stop reason.
_BUDGET_NAMES = {
    "max_cost": "cost_budget",
    "max_tokens": "token_budget",
    "max_items": "item_budget",
}
# How a job-budget or price stop reason maps to the report's stop reason.
_SPEND_NAMES = {
    "job_max_cost": "cost_budget",
    "job_max_tokens": "token_budget",
    "unknown_price": "cost_budget",
}
_RECENT = 20
_FIRST_IN_LINE = 10_000  # interrupted items named in the end record, to be run first next time
_RECENT_TURNS = 50
_SETTLE_SECONDS = 1.0  # after the cut, for cut items to be recorded before the run returns


class RunState:
    """Counters, totals, deadline and stop flags of one run, behind one lock.

    Args:
        config: The run's configuration.
        conversations: Where the items' conversations are saved (see
            :func:`~agent_resume._run._conversations.conversations_for`);
            ``None`` keeps none.
        spent: What the job spent before this run (read from its records),
            for job budgets and per-item totals over attempts; ``None`` for
            nothing known.

    Attributes:
        config: The run's configuration.
        clock: The run's monotonic clock (``config.clock``).
        started: When the run started, on ``clock``.
        started_wall: When the run started, in POSIX seconds.
        deadline: The run's deadline: ``time_budget`` from the start,
            intersected with ``finish_by``.
        conversations: Where the run's items keep their conversations.
    """

    def __init__(
        self,
        config: RunConfig,
        conversations: Conversations | None = None,
        spent: JobSpent | None = None,
    ) -> None:
        self.config = config
        self.spent = spent
        self.clock = config.clock
        self.conversations = Conversations() if conversations is None else conversations
        self.started = self.clock()
        self.started_wall = config.wall_clock()
        deadline = Deadline.from_now(config.time_budget, clock=self.clock)
        if config.finish_by is not None:
            cutoff = Deadline.at_wallclock(
                config.finish_by, clock=self.clock, wall_clock=config.wall_clock
            )
            deadline = deadline.intersect_deadline(cutoff)
        self.deadline = deadline
        # The soft deadline: items in flight at the run's deadline may go on
        # for the grace period, and are cut (interrupted) at this point.
        self.cut_at = deadline.at + config.grace_period if deadline.at != math.inf else math.inf
        budgets: list[StopCondition] = []
        if config.max_cost_usd is not None:
            budgets.append(MaxCost(config.max_cost_usd))
        if config.max_tokens is not None:
            budgets.append(MaxTokens(config.max_tokens))
        if config.max_items is not None:
            budgets.append(MaxItems(config.max_items))
        self._budget = AnyOf(*budgets) if budgets else None
        # Whether anything but a stop, an escape or an unknown price can block the
        # next item: without a deadline or a budget, `blocked` checks nothing more.
        self._watching = (
            deadline.at != math.inf
            or self._budget is not None
            or config.job_max_tokens is not None
            or config.job_max_cost_usd is not None
        )
        self._job_before = Usage() if spent is None else spent.total
        # The priced part of the cost, before this run and in it: a call of unknown
        # cost makes the totals' cost unknown, and the cost budgets count this instead.
        self._priced_before = 0.0 if spent is None else spent.priced_cost
        self._priced = 0.0
        # Earlier runs' unpriced models matter to the job's cost budget only.
        self._unpriced: list[str] = (
            list(spent.unpriced)
            if spent is not None and config.job_max_cost_usd is not None
            else []
        )
        self._warned_prices: set[str] = set()
        self.uncounted_calls = 0
        """Calls through ``ctx.call`` that returned no usage and were never counted."""
        self._spend_stop: StopReason | None = None
        # Re-entrant: a signal handler may run while the main thread holds it.
        # Hot paths take the lock itself (no Python-level Condition.__enter__);
        # ``_waiting`` counts threads in a wait, so that nothing is notified
        # when no thread waits (a serial or async run never waits on it).
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._waiting = 0
        self.alone = False
        """Whether one thread alone admits, ends and counts items (a serial run,
        or ``arun``'s event loop): :meth:`admit`, :meth:`left` and
        :meth:`item_done` then take no lock. Other threads only read those
        counts (whole ints), and a signal handler runs in that same thread,
        where the re-entrant lock never kept it out anyway."""
        self._item_timeout = config.item_timeout
        self._usage = Usage()
        self._admitted = 0
        self._done = 0
        self._failed = 0
        self._in_flight = 0
        self._recent: deque[float] = deque(maxlen=_RECENT)
        self._turns: deque[float] = deque(maxlen=_RECENT_TURNS)
        self._turn_estimate = 0.0
        self._estimate = 0.0
        self._stop_name: str | None = None
        self._stop_reason: StopReason | None = None
        self._signals = 0
        self._grace_at = math.inf
        self._aborted = False
        self._abandoned = 0
        self._interrupted = 0
        self._interrupted_ids: list[str] = []
        self._failed_ids: set[str] = set()
        self._transient_streak = 0  # items failed in a row on a transient error
        self._fail_fast_error: BaseException | None = None
        self._escaped: BaseException | None = None
        self._more_escaped: list[BaseException] = []
        self.calls: CallGate | None = None
        """The run's side of ``ctx.call``/``ctx.acall``, set once when the run opens."""
        self.session: Session | None = None
        """The run's session, for the job's state (``ctx.job_state``), set once when it opens."""
        self.requeue: Requeue[Any] = Requeue(self, DEFAULT_RETRY, enabled=False)
        """Failed items to try again in this run; the runner sets the real one when it opens."""

    # -- reading -----------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        """The usage of the run's items so far."""
        return self._usage

    @property
    def admitted(self) -> int:
        """Items started."""
        return self._admitted

    @property
    def done(self) -> int:
        """Items recorded as done in this run."""
        return self._done

    @property
    def failed(self) -> int:
        """Failed attempts recorded in this run."""
        return self._failed

    @property
    def in_flight(self) -> int:
        """Items started and not yet finished."""
        return self._in_flight

    @property
    def failed_ids(self) -> frozenset[str]:
        """The items with a failed attempt in this run."""
        with self._changed:
            return frozenset(self._failed_ids)

    @property
    def stop_name(self) -> str | None:
        """Why the run stopped admitting items, or ``None`` while it admits them."""
        return self._stop_name

    @property
    def stop_reason(self) -> StopReason | None:
        """The stop's reason with its message, or ``None``."""
        return self._stop_reason

    @property
    def stopping(self) -> bool:
        """Whether no more items will be admitted (a stop, or an exception that escaped)."""
        return self._stop_name is not None or self._escaped is not None

    @property
    def grace_at(self) -> float:
        """When in-flight items stop being waited for, on ``clock``; ``math.inf`` for never."""
        return self._grace_at

    @property
    def signals(self) -> int:
        """How many SIGINT or SIGTERM the run has had (a second one aborts it)."""
        return self._signals

    @property
    def aborted(self) -> bool:
        """Whether the run ended or was aborted: in-flight items will not be recorded."""
        return self._aborted

    @property
    def abandoned(self) -> int:
        """Items still in flight when the run ended, left unrecorded."""
        return self._abandoned

    @property
    def interrupted(self) -> int:
        """Items cut by the run (its deadline or a signal's grace period), not recorded as failed."""
        return self._interrupted

    @property
    def fail_fast_error(self) -> BaseException | None:
        """The first exception from ``process`` under ``fail_fast``, or ``None``."""
        return self._fail_fast_error

    # -- stopping ----------------------------------------------------------------

    def stop(self, name: str, reason: StopReason) -> bool:
        """Stop admitting items, for the first reason only; returns whether this was the first.

        The ``on_stop`` hook is called (outside the lock) by the first caller.
        """
        with self._changed:
            if self._stop_name is not None:
                return False
            self._stop_name = name
            self._stop_reason = reason
            self._changed.notify_all()
        hook = self.config.on_stop
        if hook is not None:
            hook(reason)
        return True

    def blocked(self) -> bool:
        """Whether the next item must not be admitted; sets the stop reason if newly so."""
        if self._stop_name is not None or self._escaped is not None:
            return True
        if not self._watching and not self._unpriced:
            return False  # this runs once per item: nothing to check is the common case
        at = self.deadline.at
        if at != math.inf:
            now = self.clock()
            if now >= at:
                self._drain_until_cut()
                self.stop("time_budget", StopReason("time_budget", "the run's deadline passed"))
                return True
            estimate = self._estimate
            if now + estimate > at:
                message = (
                    f"{at - now:.3f}s left is less than the {estimate:.3f}s recent items have taken"
                )
                self._drain_until_cut()
                self.stop("time_budget", StopReason("time_budget", message))
                return True
        if self._spend_check():
            return True
        budget = self._budget
        if budget is not None:
            # No lock: the totals are immutable values, swapped whole by add_usage.
            u = self._usage
            state = LoopState(
                turns=u.calls,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cost_usd=_cost_or_priced(u, self._priced),
                elapsed_seconds=self.clock() - self.started,
                items=self._admitted,
            )
            reason = budget(state)
            if reason is not None:
                self.stop(_BUDGET_NAMES.get(reason.name, reason.name), reason)
                return True
        return False

    @property
    def job_usage(self) -> Usage:
        """What the job has spent: before this run (every run, killed ones included) and in it."""
        with self._changed:
            return self._job_before + self._usage

    @property
    def spend_stop(self) -> StopReason | None:
        """The job budget or unknown price that stopped the run, or ``None``.

        Once set, ``ctx.call``/``ctx.acall`` make no new call: the items in
        flight are recorded as interrupted (see ``BudgetExhausted``).
        """
        return self._spend_stop

    def _spend_check(self) -> bool:
        """Check the job budgets and unknown prices; stop the run when one is spent."""
        config = self.config
        if self._spend_stop is not None:
            return True
        reason: StopReason | None = None
        which = "max_cost_usd" if config.max_cost_usd is not None else "job_max_cost_usd"
        if self._unpriced and config.unknown_price == "stop":
            model = self._unpriced[0]
            reason = StopReason(
                "unknown_price",
                f"no price for model {model!r}: the cost budget ({which}) cannot be kept; "
                "give its price (prices=PriceTable({...}) or a fallback price) or set "
                "on_unknown_price='warn'",
            )
        elif self.uncounted_calls and config.unknown_price == "stop":
            reason = StopReason(
                "unknown_price",
                f"{_uncounted_text(self.uncounted_calls)}: "
                f"the cost budget ({which}) cannot be kept; {_COUNT_IT}",
            )
        if reason is None and (
            config.job_max_tokens is not None or config.job_max_cost_usd is not None
        ):
            used = self.job_usage
            cap_tokens = config.job_max_tokens
            cap_cost = config.job_max_cost_usd
            tokens = used.input_tokens + used.output_tokens
            cost = _cost_or_priced(used, self._priced_before + self._priced)
            if cap_tokens is not None and tokens >= cap_tokens:
                reason = StopReason(
                    "job_max_tokens",
                    f"the job has used {tokens:,} tokens over all its runs "
                    f"(job_max_tokens={cap_tokens:,})",
                )
            elif cap_cost is not None and cost_reached(cost, cap_cost):
                at_least = "" if used.cost_usd is not None else "at least "
                reason = StopReason(
                    "job_max_cost",
                    f"the job has spent {at_least}${cost:.6g} over all its runs "
                    f"(job_max_cost_usd={cap_cost:g})",
                )
        if reason is None:
            return False
        with self._changed:
            if self._spend_stop is None:
                self._spend_stop = reason
        self.stop(_SPEND_NAMES[reason.name], reason)
        return True

    def _drain_until_cut(self) -> None:
        # Items in flight are waited for until they are cut, and a moment more
        # for the cut ones to be recorded as interrupted.
        with self._changed:
            self._grace_at = min(self._grace_at, self.cut_at + _SETTLE_SECONDS)

    def signal(self, name: str) -> int:
        """Count a SIGINT or SIGTERM; the first stops admitting items and starts the grace period.

        Returns:
            How many signals the run has had, this one included.
        """
        with self._changed:
            self._signals += 1
            count = self._signals
            if count == 1:
                self._grace_at = min(self._grace_at, self.clock() + self.config.grace_period)
        if count == 1:
            self.stop("signal", StopReason("signal", f"received {name}"))
        return count

    def fail_fast(self, error: BaseException) -> None:
        """Keep the first exception from ``process`` under ``fail_fast`` and stop admitting."""
        with self._changed:
            if self._fail_fast_error is None:
                self._fail_fast_error = error
        self.stop("fail_fast", StopReason("fail_fast", error_text(error)))

    def escaped(self, error: BaseException) -> None:
        """An exception escaped an item's bookkeeping (a hook, the store, ``KeyboardInterrupt``).

        The run stops admitting items, lets those in flight finish within the
        grace period, and raises the first such exception to its caller.
        """
        with self._changed:
            if self._escaped is None:
                self._escaped = error
                self._grace_at = min(self._grace_at, self.clock() + self.config.grace_period)
            elif error is not self._escaped:
                self._more_escaped.append(error)
            self._changed.notify_all()

    def raise_escaped(self) -> None:
        """Raise the first exception that escaped an item, if one did.

        Others that escaped other items meanwhile are named in a note (Python 3.11+).
        """
        error = self._escaped
        if error is None:
            return
        more = self._more_escaped
        if more:
            kinds = ", ".join(sorted({type(e).__name__ for e in more}))
            add_note(
                error, f"agent-resume: {len(more)} more exception(s) escaped other items ({kinds})"
            )
        raise error

    def abort(self) -> None:
        """Abort the run now (a second signal): nothing more is recorded."""
        with self._changed:
            self._aborted = True
            self._changed.notify_all()

    def abandon(self) -> None:
        """End the run: items still in flight are abandoned and will not be recorded."""
        with self._changed:
            self._abandoned = max(self._in_flight, 0)
            self._aborted = True

    # -- items -------------------------------------------------------------------

    def admit(self) -> float:
        """Count an item as started and return when it started, on ``clock``.

        Its deadline is :meth:`item_deadline` of that moment, made only
        when the item asks for it.
        """
        # These three run once per item: acquire and release cost half a `with` block,
        # and with one thread counting, nothing (a thousand instructions less each).
        lock = None if self.alone else self._lock
        if lock is not None:
            lock.acquire()
        try:
            self._admitted += 1
            self._in_flight += 1
        finally:
            if lock is not None:
                lock.release()
        return self.clock()

    def item_deadline(self, started: float) -> Deadline:
        """The deadline of an item started at ``started``.

        The item timeout intersected with the run's soft deadline: the run's
        deadline plus the grace period.
        """
        clock = self.clock
        return trusted_deadline(min(started + self._item_timeout, self.cut_at), started, clock)

    def left(self) -> None:
        """Count an admitted item as no longer in flight, however it ended."""
        # Alone, the lock is still taken when a thread waits: to notify it.
        lock = None if self.alone and not self._waiting else self._lock
        if lock is not None:
            lock.acquire()
        try:
            self._in_flight -= 1
            if lock is not None and self._waiting:
                self._changed.notify_all()
        finally:
            if lock is not None:
                lock.release()

    def item_done(self, duration: float, recorded: bool) -> None:
        """Count an item done (``recorded``: by this run, not before it by another worker)."""
        lock = None if self.alone else self._lock
        if lock is not None:
            lock.acquire()
        try:
            if recorded:
                self._done += 1
            self._transient_streak = 0
            if self.deadline.at != math.inf:
                self._learn(duration)
        finally:
            if lock is not None:
                lock.release()

    def item_failed(self, item_id: str, duration: float, *, transient: bool = False) -> int:
        """Count a failed attempt at an item.

        Args:
            item_id: The item.
            duration: Its seconds.
            transient: Whether it failed on a transient error (a connection
                error, a timeout, HTTP 5xx: `classify_error`).

        Returns:
            The items failed in a row on transient errors, this one included
            (0 when it failed otherwise); an item done resets the count.
        """
        with self._changed:
            self._failed += 1
            self._failed_ids.add(item_id)
            self._learn(duration)
            self._transient_streak = self._transient_streak + 1 if transient else 0
            return self._transient_streak

    def _learn(self, duration: float) -> None:
        # How long items take, for the time budget's last admissions (lock held).
        if self.deadline.at != math.inf:
            recent = self._recent
            recent.append(duration)
            ordered = sorted(recent)
            self._estimate = ordered[len(ordered) // 2]

    def item_interrupted(self, item_id: str) -> None:
        """Count an item cut by the run: no attempt used, first in line next time."""
        with self._changed:
            self._interrupted += 1
            if len(self._interrupted_ids) < _FIRST_IN_LINE:
                self._interrupted_ids.append(item_id)

    @property
    def interrupted_ids(self) -> list[str]:
        """The items this run cut (the first 10,000), for the end record: first in line next run."""
        with self._changed:
            return list(self._interrupted_ids)

    def cut_by_run(self, deadline: Deadline) -> bool:
        """Whether an item's deadline is the run's (its soft deadline, a signal's grace period).

        ``False`` when the item's own ``item_timeout`` ends it first: that is
        the item's failure.
        """
        return deadline.at < deadline.created_at + self.config.item_timeout

    def note_turn(self, seconds: float) -> None:
        """Learn how long one of the run's turns (a call and what came before it) took."""
        with self._changed:
            self._turns.append(seconds)
            ordered = sorted(self._turns)
            self._turn_estimate = ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]

    def turn_estimate(self) -> float:
        """The 90th percentile of the run's recent turns, ``0.0`` before any."""
        return self._turn_estimate

    def add_usage(self, usage: Usage) -> None:
        """Add one call's usage to the run's totals, and check the job budgets.

        A call whose model has no price is handled per ``on_unknown_price``.
        """
        unpriced = usage.cost_usd is None and not usage.is_empty()
        model = str(usage.model) if usage.model is not None else NO_MODEL
        with self._changed:
            self._usage = self._usage + usage
            if usage.cost_usd is not None:
                self._priced += usage.cost_usd
            if unpriced and model not in self._unpriced:
                self._unpriced.append(model)
            else:
                unpriced = False  # already known
        # A bare Usage with neither model nor cost is taken as "cost not tracked": no log line.
        if (
            unpriced
            and usage.model is not None
            and self.config.unknown_price == "warn"
            and model not in self._warned_prices
        ):
            self._warned_prices.add(model)
            config = self.config
            budgets = config.max_cost_usd is not None or config.job_max_cost_usd is not None
            logger.warning(
                "no price for model %r: its calls' cost is unknown%s",
                model,
                "; the cost budgets count only the priced calls" if budgets else "",
            )
        self._spend_check()

    def add_uncounted(self, calls: Usage) -> None:
        """Count calls through ``ctx.call`` whose usage no one recorded (a stream not counted).

        ``calls`` is ``Usage(calls=n)``: no tokens, an unknown cost, added to the
        run's totals. It is handled as an unknown price: a warning once per run,
        and under a cost budget (``on_unknown_price="stop"``) the run stops.
        """
        with self._changed:
            first = not self.uncounted_calls
            self.uncounted_calls += calls.calls
            self._usage = self._usage + calls
        if first and self.config.unknown_price == "warn":
            logger.warning(
                "%s: their cost is unknown and no budget counts it; %s",
                _uncounted_text(calls.calls),
                _COUNT_IT,
            )
        self._spend_check()

    def item_before(self, item_id: str) -> ItemSpent | None:
        """An item's totals over its earlier attempts (the checkpoint's and this run's), or ``None``."""
        spent = self.spent
        return None if spent is None else spent.item(item_id)

    def attempt_failed(self, item_id: str, usage: Usage, seconds: float) -> None:
        """Count a failed attempt's spending toward the item's next attempt in this run."""
        spent = self.spent
        if spent is not None:
            spent.add_attempt(item_id, usage, seconds)

    # -- waiting (threads) ---------------------------------------------------------

    def wait_for_slot(self, limit: int, poll: float) -> None:
        """Wait until fewer than ``limit`` items are in flight, or the run is stopping.

        Wakes every ``poll`` seconds so that signals reach the main thread.
        """
        with self._changed:
            while self._in_flight >= limit and not self.stopping:
                self._wait(poll)

    def wait_change(self, seconds: float) -> None:
        """Wait up to ``seconds`` for an item to finish, or anything else to change."""
        with self._changed:
            self._wait(seconds)

    def wait_idle(self, poll: float) -> None:
        """Wait until no item is in flight, or the grace period after a stop has ended."""
        with self._changed:
            while self._in_flight > 0 and not self._aborted:
                left = self._grace_at - self.clock()
                if left <= 0:
                    return
                self._wait(min(poll, left))

    def _wait(self, seconds: float) -> None:
        # Lock held; counted so that `left` notifies only when a thread waits.
        self._waiting += 1
        try:
            self._changed.wait(seconds)
        finally:
            self._waiting -= 1


_COUNT_IT: Final = (
    "count each with ctx.record_usage(...) and what carries its usage (a stream's last "
    "chunk with stream_options={'include_usage': True}, stream.get_final_message(), ...)"
)


def _uncounted_text(calls: int) -> str:
    """What the run says of calls that returned no usage."""
    if calls == 1:
        return "a call through ctx.call returned no usage (a stream?) and was not counted"
    return f"{calls} calls through ctx.call returned no usage (streams?) and were not counted"


def _cost_or_priced(usage: Usage, priced: float) -> float:
    """A total's cost for a budget: its priced part when some call's cost is unknown.

    With ``on_unknown_price="warn"`` or ``"ignore"`` the run goes on past an
    unpriced call; the budget still holds for every call that has a price
    (a total whose cost is unknown would otherwise never reach it).
    """
    cost = usage.cost_usd
    if cost is not None:
        return cost
    return priced if usage.calls else 0.0
