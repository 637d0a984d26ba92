"""Stop conditions: when to end an item's LLM loop, or a whole run.

The built-in conditions live here, each a limit on one field of the
``LoopState`` snapshot; the snapshot, ``StopReason``, the base class and the
``|``, ``&``, ``~`` composition live in :mod:`agent_resume._stop_base` and are
re-exported from this module.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agent_resume._deadline import to_seconds
from agent_resume._errors import ArgumentValueError
from agent_resume._stop_base import (
    AllOf,
    AnyOf,
    Custom,
    LoopState,
    Not,
    StopCondition,
    StopLike,
    StopReason,
    ToolCall,
    _set,
    _type_error,
    _value_error,
    as_stop_condition,
)

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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(parameter, value, "a number")
    if not value > 0:  # NaN fails this comparison too
        raise _value_error(parameter, value, "be greater than 0")
    return float(value)


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
        if state.cost_usd is None or state.cost_usd < self.usd:
            return None
        return StopReason(
            "max_cost", f"${state.cost_usd:.4f} spent reached the limit of ${self.usd:g}"
        )


class MaxSeconds(StopCondition):
    """Stop once ``state.elapsed_seconds`` reaches ``s`` (seconds or a ``timedelta``).

    The check is cooperative: a call in progress is not interrupted, so the
    loop can run past ``s`` by one call. Use a ``Deadline`` to bound a call.
    """

    __slots__ = ("s",)
    s: float

    def __init__(self, s: float | timedelta) -> None:
        _set(self, "s", _positive("s", to_seconds(s, "s") if isinstance(s, timedelta) else s))

    def _args(self) -> tuple[Any, ...]:
        return (self.s,)

    def __call__(self, state: LoopState) -> StopReason | None:
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


class NoProgress(StopCondition):
    """Stop when the last ``turns`` model outputs are identical."""

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
            "no_progress", f"the last {run} outputs were identical (limit {self.turns})"
        )
