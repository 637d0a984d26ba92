"""Stop conditions: when to end an item's LLM loop, or a whole run.

The built-in conditions live here, each a limit on one field of the
``LoopState`` snapshot; the snapshot, ``StopReason``, the base class and the
``|``, ``&``, ``~`` composition live in :mod:`agent_resume._stop_base` and are
re-exported from this module.
"""

from __future__ import annotations

import math
import time
import warnings
from datetime import datetime
from typing import Any

from agent_resume._deadline import Clock, Deadline
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._render import format_cost
from agent_resume._stop_base import (
    AllOf,
    AnyOf,
    Custom,
    LoopState,
    Not,
    Renamed,
    StopCondition,
    StopLike,
    StopReason,
    ToolCall,
    _set,
    _type_error,
    _value_error,
    as_stop_condition,
)
from agent_resume._validate import Seconds, real_to_float, to_seconds

__all__ = [
    "AllOf",
    "AnyOf",
    "ConsecutiveErrors",
    "Custom",
    "LoopState",
    "MaxCost",
    "MaxItems",
    "MaxSeconds",
    "MaxTokens",
    "MaxTurns",
    "NoProgress",
    "Not",
    "Renamed",
    "RepeatedOutput",
    "RepeatedToolCall",
    "StopCondition",
    "StopLike",
    "StopPhrase",
    "StopReason",
    "ToolCall",
    "as_stop_condition",
]


def _int_at_least(parameter: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(parameter, value, "an int")
    if value < minimum:
        raise _value_error(parameter, value, f"be at least {minimum}")
    return value


def _positive(parameter: str, value: object) -> float:
    number = real_to_float(value, parameter, "a number")
    if not number > 0:  # NaN fails this comparison too
        raise _value_error(parameter, value, "be greater than 0")
    return number


COST_TOLERANCE = 1e-9
"""How close below a cost limit a spend counts as reaching it, as a share of the limit."""


def cost_reached(spent: float, limit: float) -> bool:
    """Whether ``spent`` dollars reach ``limit``, the float sum's last bits aside.

    A spend is a sum of float products: ten calls of $0.10 add up to
    $0.9999999999999999, which a plain ``>=`` finds below a $1.00 limit, and
    one more item would be paid for. A spend within a billionth of the limit
    (:data:`COST_TOLERANCE`) reaches it.
    """
    return spent >= limit - abs(limit) * COST_TOLERANCE


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _trailing_run(items: tuple[Any, ...]) -> int:
    """Return how many items at the end of ``items`` equal the last one."""
    run = 0
    for item in reversed(items):
        if item != items[-1]:
            break
        run += 1
    return run


class _CountLimit(StopCondition):
    """A limit ``n`` on one count of the state; fires once the count reaches ``n``."""

    __slots__ = ("n",)
    n: int
    _name = ""
    _noun = ""

    def __init__(self, n: int) -> None:
        _set(self, "n", _int_at_least("n", n, 1))

    def _args(self) -> tuple[Any, ...]:
        return (self.n,)

    def _count(self, state: LoopState) -> int:
        raise NotImplementedError

    def __call__(self, state: LoopState) -> StopReason | None:
        count = self._count(state)
        if count < self.n:
            return None
        return StopReason(self._name, f"{_plural(count, self._noun)} reached the limit of {self.n}")


class MaxTurns(_CountLimit):
    """Stop once ``n`` model calls have completed (``state.turns >= n``)."""

    __slots__ = ()
    _name, _noun = "max_turns", "turn"

    def _count(self, state: LoopState) -> int:
        return state.turns


class MaxTokens(_CountLimit):
    """Stop once input plus output tokens reach ``n``.

    The check runs between calls, so the call that crosses the limit has
    already been paid for: the total can exceed ``n`` by one call's tokens.
    """

    __slots__ = ()
    _name, _noun = "max_tokens", "token"

    def _count(self, state: LoopState) -> int:
        return state.total_tokens


class MaxItems(_CountLimit):
    """Stop once ``n`` items have finished; a run budget (reads ``state.items``)."""

    __slots__ = ()
    _name, _noun = "max_items", "item"

    def _count(self, state: LoopState) -> int:
        return state.items


class ConsecutiveErrors(_CountLimit):
    """Stop after ``n`` failed calls in a row."""

    __slots__ = ()
    _name, _noun = "consecutive_errors", "consecutive error"

    def _count(self, state: LoopState) -> int:
        return state.consecutive_errors


class MaxCost(StopCondition):
    """Stop once the cost in US dollars reaches ``usd``.

    An unknown cost (``cost_usd is None``, a model missing from the price
    table) never fires this condition; combine it with ``MaxTokens`` to cap
    such models too. Like ``MaxTokens``, the limit can be exceeded by one call.
    """

    __slots__ = ("usd",)
    usd: float

    def __init__(self, usd: float) -> None:
        _set(self, "usd", _positive("usd", usd))

    def _args(self) -> tuple[Any, ...]:
        return (self.usd,)

    def __call__(self, state: LoopState) -> StopReason | None:
        if state.cost_usd is None or not cost_reached(state.cost_usd, self.usd):
            return None
        return StopReason(
            "max_cost",
            f"{format_cost(state.cost_usd)} spent reached the limit of {format_cost(self.usd)}",
        )


class MaxSeconds(StopCondition):
    """Stop after a time: ``s`` seconds of the loop, or at a moment on the clock.

    Three forms; give exactly one:

    - ``MaxSeconds(s)``: once ``state.elapsed_seconds`` reaches ``s`` (seconds
      or a ``timedelta``), the loop's own age as its producer reports it.
    - ``MaxSeconds(after=d)``: ``d`` from now (when the condition is made),
      read from ``clock``, as llm-stop-conditions' ``MaxSeconds::after``.
    - ``MaxSeconds(at=t)``: at ``t``: a ``datetime`` (a wall-clock cut-off,
      measured once, like ``Deadline.at_wallclock``), a ``Deadline``, or a
      reading of ``clock`` in seconds, as ``MaxSeconds::at``.

    The clock forms fire from the clock even when the snapshot is empty
    (``LoopState()``): they ignore ``elapsed_seconds``. The check is
    cooperative: a call in progress is not interrupted, so the loop can run
    past the limit by one call. Use a ``Deadline`` to bound a call.

    Args:
        s: The limit on ``elapsed_seconds``.
        at: The moment to stop.
        after: How long from now to stop.
        clock: The monotonic clock of the clock forms (``MockClock`` in
            tests); a ``Deadline`` given as ``at`` brings its own.
        wall_clock: The wall clock, in POSIX seconds, for a ``datetime``
            ``at`` (``MockClock.time`` in tests).
    """

    __slots__ = ("deadline", "s")
    s: float | None
    deadline: Deadline | None

    def __init__(
        self,
        s: Seconds | None = None,
        *,
        at: datetime | Deadline | float | None = None,
        after: Seconds | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        given = [name for name, v in (("s", s), ("at", at), ("after", after)) if v is not None]
        if len(given) != 1:
            raise ArgumentTypeError(
                "s",
                (s, at, after),
                f"MaxSeconds takes exactly one of `s`, `at` and `after` (got {given or 'none'})",
            )
        deadline: Deadline | None = None
        seconds: float | None = None
        if s is not None:
            seconds = to_seconds(s, "s")
            if not seconds > 0:
                raise _value_error("s", s, "be greater than 0")
        else:
            if after is not None:
                span = to_seconds(after, "after")
                if span < 0:
                    raise _value_error("after", after, "be at least 0 seconds")
                deadline = Deadline.from_now(span, clock=clock)
            elif isinstance(at, Deadline):
                deadline = at
            elif isinstance(at, datetime):
                deadline = Deadline.at_wallclock(at, clock=clock, wall_clock=wall_clock)
            else:
                moment = real_to_float(at, "at", "a datetime, a Deadline or a clock reading")
                if math.isnan(moment):
                    raise _value_error("at", at, "not be NaN")
                deadline = Deadline(at=moment, clock=clock)
        _set(self, "s", seconds)
        _set(self, "deadline", deadline)

    def _args(self) -> tuple[Any, ...]:
        return (self.s, self.deadline)

    def __repr__(self) -> str:
        if self.deadline is None:
            return f"MaxSeconds({self.s!r})"
        return f"MaxSeconds(at={self.deadline.at!r})"

    def __call__(self, state: LoopState) -> StopReason | None:
        if self.deadline is not None:
            if not self.deadline.is_expired():
                return None
            late = self.deadline.clock() - self.deadline.at
            return StopReason("max_seconds", f"the clock passed the deadline ({late:.3f}s ago)")
        assert self.s is not None
        if state.elapsed_seconds < self.s:
            return None
        return StopReason(
            "max_seconds", f"{state.elapsed_seconds:.3f}s elapsed reached the limit of {self.s:g}s"
        )


class StopPhrase(StopCondition):
    """Stop when the latest model output contains any of ``phrases``.

    Matching is by substring, ignoring case (Unicode case folding) unless
    ``case_sensitive=True``.
    """

    __slots__ = ("_folded", "case_sensitive", "phrases")
    phrases: tuple[str, ...]
    case_sensitive: bool
    _folded: tuple[str, ...]

    def __init__(self, *phrases: str, case_sensitive: bool = False) -> None:
        if not phrases:
            raise ArgumentValueError("phrases", phrases, "`phrases` must hold at least one phrase")
        for phrase in phrases:
            if not isinstance(phrase, str):
                raise _type_error("phrases", phrase, "strings")
            if not phrase:
                raise ArgumentValueError("phrases", phrase, "`phrases` must not hold ''")
        _set(self, "phrases", phrases)
        _set(self, "case_sensitive", bool(case_sensitive))
        _set(self, "_folded", phrases if case_sensitive else tuple(p.casefold() for p in phrases))

    def _args(self) -> tuple[Any, ...]:
        return (*self.phrases, self.case_sensitive)

    def __repr__(self) -> str:
        args = ", ".join(repr(p) for p in self.phrases)
        return f"StopPhrase({args}{', case_sensitive=True' if self.case_sensitive else ''})"

    def __call__(self, state: LoopState) -> StopReason | None:
        text = state.last_text if self.case_sensitive else state.last_text.casefold()
        for phrase, folded in zip(self.phrases, self._folded, strict=True):
            if folded in text:
                return StopReason("stop_phrase", f"the model's output contains {phrase!r}")
        return None


class RepeatedToolCall(StopCondition):
    """Stop when the same tool, with the same arguments, was called ``times`` in a row."""

    __slots__ = ("times",)
    times: int

    def __init__(self, times: int) -> None:
        _set(self, "times", _int_at_least("times", times, 2))

    def _args(self) -> tuple[Any, ...]:
        return (self.times,)

    def __call__(self, state: LoopState) -> StopReason | None:
        run = _trailing_run(state.tool_calls)
        if run < self.times:
            return None
        last = state.tool_calls[-1]
        return StopReason(
            "repeated_tool_call",
            f"tool {last.name!r} was called {run} times in a row with the same arguments "
            f"(limit {self.times})",
        )


class RepeatedOutput(StopCondition):
    """Stop when the last ``turns`` model outputs are identical.

    This was called ``NoProgress(turns)`` before; ``NoProgress`` now means idle
    time, as in llm-stop-conditions, and ``NoProgress(turns)`` still builds
    this condition, with a ``DeprecationWarning``.
    """

    __slots__ = ("turns",)
    turns: int

    def __init__(self, turns: int) -> None:
        _set(self, "turns", _int_at_least("turns", turns, 2))

    def _args(self) -> tuple[Any, ...]:
        return (self.turns,)

    def __call__(self, state: LoopState) -> StopReason | None:
        run = _trailing_run(state.recent_outputs)
        if run < self.turns:
            return None
        return StopReason(
            "repeated_output", f"the last {run} outputs were identical (limit {self.turns})"
        )


class NoProgress(StopCondition):
    """Stop when the loop has made no progress for ``max_idle`` seconds.

    Idle time is ``state.idle_seconds`` when the snapshot carries it (in a
    run: the time since the item's last ``ctx.mark_progress()``, or since it
    started); otherwise it is measured on ``clock`` from ``since``, which
    defaults to the moment the condition is made. This is llm-stop-conditions'
    ``NoProgress::new(since, max_idle)``.

    ``NoProgress(turns)`` with a positional count is the deprecated spelling
    of ``RepeatedOutput(turns)`` (N identical outputs): it warns and returns a
    ``RepeatedOutput``.

    Args:
        max_idle: The longest stretch without progress, in seconds or a
            ``timedelta``; greater than 0.
        since: The moment to measure from when the snapshot has no
            ``idle_seconds``, in seconds of ``clock``; defaults to now.
        clock: The monotonic clock (``MockClock`` in tests).
    """

    __slots__ = ("clock", "max_idle", "since")
    max_idle: float
    since: float
    clock: Clock

    def __new__(
        cls,
        turns: int | None = None,
        *,
        max_idle: Seconds | None = None,
        since: float | None = None,
        clock: Clock = time.monotonic,
    ) -> Any:
        if turns is None:
            return super().__new__(cls)
        if max_idle is not None:
            raise ArgumentTypeError(
                "turns",
                turns,
                "NoProgress takes `max_idle` (idle seconds); for N identical outputs use "
                f"RepeatedOutput(turns) (got turns={turns!r} and max_idle={max_idle!r})",
            )
        if isinstance(turns, bool) or not isinstance(turns, int):
            raise ArgumentTypeError(
                "turns",
                turns,
                "NoProgress takes `max_idle=` (idle seconds) by keyword; a positional "
                "argument is the deprecated count of RepeatedOutput(turns) "
                f"(got {type(turns).__name__} {turns!r})",
            )
        warnings.warn(
            f"NoProgress({turns}) meaning {turns} identical outputs is deprecated: use "
            f"RepeatedOutput({turns}); NoProgress(max_idle=...) now means idle time",
            DeprecationWarning,
            stacklevel=2,
        )
        return RepeatedOutput(turns)

    def __init__(
        self,
        turns: int | None = None,
        *,
        max_idle: Seconds | None = None,
        since: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_idle is None:
            raise ArgumentTypeError(
                "max_idle", None, "NoProgress needs `max_idle`, the idle seconds allowed"
            )
        if not callable(clock):
            raise _type_error("clock", clock, "callable")
        start = float(clock()) if since is None else real_to_float(since, "since")
        if math.isnan(start):
            raise _value_error("since", since, "not be NaN")
        idle = to_seconds(max_idle, "max_idle")
        if not idle > 0:
            raise _value_error("max_idle", max_idle, "be greater than 0")
        _set(self, "max_idle", idle)
        _set(self, "since", start)
        _set(self, "clock", clock)

    def _args(self) -> tuple[Any, ...]:
        return (self.max_idle, self.since)

    def __repr__(self) -> str:
        return f"NoProgress(max_idle={self.max_idle!r})"

    def __call__(self, state: LoopState) -> StopReason | None:
        idle = state.idle_seconds
        if idle is None:
            idle = max(0.0, self.clock() - self.since)
        if idle < self.max_idle:
            return None
        return StopReason(
            "no_progress", f"{idle:.3f}s without progress reached the limit of {self.max_idle:g}s"
        )
