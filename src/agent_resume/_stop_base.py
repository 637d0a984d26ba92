"""The machinery of stop conditions: the snapshot, the reason, the base class, composition.

Every condition reads one snapshot, ``LoopState``, and returns a ``StopReason``
or ``None``. Conditions compose: ``a | b`` stops when either does, ``a & b``
when both do, ``~a`` when ``a`` does not; plain callables compose too. The
built-in conditions are in :mod:`agent_resume._stop`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from agent_resume._errors import ArgumentTypeError, ArgumentValueError

__all__ = [
    "AllOf",
    "AnyOf",
    "Custom",
    "LoopState",
    "Not",
    "Renamed",
    "StopCondition",
    "StopLike",
    "StopReason",
    "ToolCall",
    "as_stop_condition",
]


class ToolCall(NamedTuple):
    """One tool call: the tool's name and its arguments as canonical JSON.

    Build one with ``ToolCall.of(name, arguments)`` so that equal arguments
    give equal strings whatever their key order or spacing.
    """

    name: str
    arguments: str

    @classmethod
    def of(cls, name: str, arguments: Mapping[str, Any] | str | None = None) -> ToolCall:
        """Make a tool call with canonical arguments.

        Args:
            name: The tool's name.
            arguments: A mapping, or a JSON string as OpenAI sends it. A string
                that is not valid JSON is kept as it is.

        Returns:
            The tool call.
        """
        if arguments is None:
            return cls(name, "{}")
        value: Any = arguments
        if isinstance(arguments, str):
            try:
                value = json.loads(arguments)
            except ValueError:
                return cls(name, arguments)
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(name, text)


@dataclass(frozen=True)
class LoopState:
    """A snapshot of a loop, read by stop conditions.

    For an item, it describes the item's LLM loop so far. For a run, the same
    type carries the run's totals (``items`` finished, tokens and cost of all
    items, seconds since the run started), so the same conditions serve as run
    budgets (``MaxCost(25.0) | MaxItems(1000)``).

    Attributes:
        turns: Model calls completed so far.
        input_tokens: Input tokens of all those calls (cache tokens included).
        output_tokens: Output tokens of all those calls (reasoning included).
        cost_usd: Cost in US dollars, or ``None`` when some call could not be
            priced; ``MaxCost`` never fires on an unknown cost.
        elapsed_seconds: Seconds since the loop (or run) started.
        last_text: The text of the latest model output, ``""`` before the first.
        tool_calls: Every tool call requested so far, oldest first.
        recent_outputs: The latest model outputs as text, oldest first. A
            producer may keep only the last few, as many as the largest
            ``RepeatedOutput(turns)`` in use.
        consecutive_errors: Failed calls in a row since the last success.
        items: For a run: items finished in this run. ``0`` for an item's loop.
        idle_seconds: Seconds since the loop last made progress (in a run:
            since the item's last ``ctx.mark_progress()``, or its start), or
            ``None`` when the producer does not track progress; then
            ``NoProgress`` measures from its own ``since``.
        attempt: Which attempt at the item this is, from 1.
        this_attempt: In a run, the same snapshot for the current attempt
            alone, or ``None``. ``turns``, ``input_tokens``,
            ``output_tokens``, ``cost_usd`` and ``elapsed_seconds`` are the
            item's totals over *all* its attempts (earlier ones read from
            the checkpoint), so ``MaxTurns(4)`` allows 4 calls in all, not 4
            per attempt; ``this_attempt`` holds the current attempt's own.
    """

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    elapsed_seconds: float = 0.0
    last_text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    recent_outputs: tuple[str, ...] = ()
    consecutive_errors: int = 0
    items: int = 0
    idle_seconds: float | None = None
    attempt: int = 1
    this_attempt: LoopState | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class StopReason:
    """Why a loop stopped.

    Attributes:
        name: A short stable identifier, such as ``"max_turns"``.
        message: A sentence for people, with the numbers that decided it.
    """

    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """Return ``{"name": ..., "message": ...}``, as stored in a checkpoint."""
        return {"name": self.name, "message": self.message}

    def as_dict(self) -> dict[str, str]:
        """Deprecated name of `to_dict`, the name every value type here uses."""
        warnings.warn(
            "StopReason.as_dict() is now StopReason.to_dict()", DeprecationWarning, stacklevel=2
        )
        return self.to_dict()


StopLike = Callable[[LoopState], "StopReason | bool | None"]
"""A stop condition or a plain function of a ``LoopState``."""


class StopCondition:
    """The base of every stop condition.

    A subclass implements ``__call__`` and ``_args`` (the constructor's
    arguments, which give equality, hashing and a repr that reads like the
    call that built the condition). Instances are immutable.
    """

    __slots__ = ()

    def __call__(self, state: LoopState) -> StopReason | None:
        raise NotImplementedError

    def _args(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __or__(self, other: StopLike) -> StopCondition:
        return AnyOf(self, other) if callable(other) else NotImplemented

    def __ror__(self, other: StopLike) -> StopCondition:
        return AnyOf(other, self) if callable(other) else NotImplemented

    def __and__(self, other: StopLike) -> StopCondition:
        return AllOf(self, other) if callable(other) else NotImplemented

    def __rand__(self, other: StopLike) -> StopCondition:
        return AllOf(other, self) if callable(other) else NotImplemented

    def __invert__(self) -> StopCondition:
        return Not(self)

    def with_name(self, name: str) -> StopCondition:
        """Return this condition under another name: its reasons carry ``name``.

        The message is kept; only ``StopReason.name`` changes, so a log or a
        checkpoint can tell two limits of the same kind apart
        (``MaxTurns(3).with_name("ceiling")``).

        Args:
            name: The new reason name, a non-empty string.

        Returns:
            A new condition; this one is unchanged.

        Raises:
            ArgumentValueError: ``name`` is not a non-empty string.
        """
        return Renamed(self, name)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, StopCondition)
        return self._args() == other._args()

    def __hash__(self) -> int:
        return hash((type(self), *(a if isinstance(a, Hashable) else id(a) for a in self._args())))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and deepcopy restore slots with setattr, which is refused here.
        slots = (name for cls in type(self).__mro__ for name in getattr(cls, "__slots__", ()))
        return (_rebuild, (type(self), {name: getattr(self, name) for name in slots}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(a) for a in self._args())})"


def _set(obj: StopCondition, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _rebuild(cls: type[StopCondition], state: dict[str, Any]) -> StopCondition:
    obj = object.__new__(cls)
    for name, value in state.items():
        _set(obj, name, value)
    return obj


def _type_error(parameter: str, value: object, expected: str) -> ArgumentTypeError:
    message = f"`{parameter}` must be {expected} (got {type(value).__name__} {value!r})"
    return ArgumentTypeError(parameter, value, message)


def _value_error(parameter: str, value: object, rule: str) -> ArgumentValueError:
    return ArgumentValueError(parameter, value, f"`{parameter}` must {rule} (got {value!r})")


class Custom(StopCondition):
    """Stop when ``predicate(state)`` says so.

    The predicate returns a ``bool``, or a ``StopReason``/``None`` for full
    control of the message. On ``True`` the reason is named ``name``.
    """

    __slots__ = ("name", "predicate")
    name: str
    predicate: StopLike

    def __init__(self, name: str, predicate: StopLike) -> None:
        if not isinstance(name, str) or not name:
            raise _value_error("name", name, "be a non-empty str")
        if not callable(predicate):
            raise _type_error("predicate", predicate, "callable")
        _set(self, "name", name)
        _set(self, "predicate", predicate)

    def _args(self) -> tuple[Any, ...]:
        return (self.name, self.predicate)

    def __repr__(self) -> str:
        label = getattr(self.predicate, "__qualname__", None) or repr(self.predicate)
        return f"Custom({self.name!r}, {label})"

    def __call__(self, state: LoopState) -> StopReason | None:
        verdict = self.predicate(state)
        if verdict is None or verdict is False:
            return None
        if verdict is True:
            return StopReason(self.name, f"{self.name} held")
        if isinstance(verdict, StopReason):
            return verdict
        raise ArgumentTypeError(
            "predicate",
            self.predicate,
            f"stop condition {self.name!r} must return a bool, a StopReason or None "
            f"(got {type(verdict).__name__} {verdict!r})",
        )


def as_stop_condition(condition: StopLike, parameter: str = "stop") -> StopCondition:
    """Return ``condition`` as a ``StopCondition``, wrapping a plain callable in ``Custom``.

    Args:
        condition: A stop condition, or a function of a ``LoopState`` returning
            a ``bool`` or a ``StopReason``/``None``.
        parameter: The parameter's name, used in error messages.

    Returns:
        The condition.

    Raises:
        ArgumentTypeError: ``condition`` is not callable.
    """
    if isinstance(condition, StopCondition):
        return condition
    if not callable(condition):
        raise _type_error(parameter, condition, "a stop condition or a callable")
    return Custom(getattr(condition, "__name__", None) or "custom", condition)


class _Composite(StopCondition):
    __slots__ = ("conditions",)
    conditions: tuple[StopCondition, ...]
    _symbol = ""

    def __init__(self, *conditions: StopLike) -> None:
        flat: list[StopCondition] = []
        for item in conditions:
            cond = as_stop_condition(item, "conditions")
            if type(cond) is type(self):
                assert isinstance(cond, _Composite)
                flat.extend(cond.conditions)
            else:
                flat.append(cond)
        if not flat and not self._empty_ok:
            raise ArgumentValueError(
                "conditions", conditions, "`conditions` must hold at least one condition"
            )
        _set(self, "conditions", tuple(flat))

    _empty_ok = False

    def _args(self) -> tuple[Any, ...]:
        return self.conditions

    def __repr__(self) -> str:
        if len(self.conditions) <= 1:
            return f"{type(self).__name__}({', '.join(repr(c) for c in self.conditions)})"
        parts = [f"({c!r})" if isinstance(c, _Composite) else repr(c) for c in self.conditions]
        return f" {self._symbol} ".join(parts)


class AnyOf(_Composite):
    """Stop when any of ``conditions`` does (``a | b``); the first reason found wins.

    ``AnyOf()`` with no condition is allowed and never stops, like ``any([])``
    (and llm-stop-conditions' empty ``Evaluator``): a list of conditions built
    up at run time may well be empty.
    """

    __slots__ = ()
    _symbol = "|"
    _empty_ok = True

    def __call__(self, state: LoopState) -> StopReason | None:
        for condition in self.conditions:
            reason = condition(state)
            if reason is not None:
                return reason
        return None


class AllOf(_Composite):
    """Stop when every one of ``conditions`` does (``a & b``); the reasons are joined.

    ``AllOf()`` with no condition is refused: ``all([])`` is true, so it would
    stop every loop before its first turn, which is never what was meant.
    """

    __slots__ = ()
    _symbol = "&"

    def __call__(self, state: LoopState) -> StopReason | None:
        reasons: list[StopReason] = []
        for condition in self.conditions:
            reason = condition(state)
            if reason is None:
                return None
            reasons.append(reason)
        if len(reasons) == 1:
            return reasons[0]
        return StopReason("&".join(r.name for r in reasons), "; ".join(r.message for r in reasons))


class Not(StopCondition):
    """Stop when ``condition`` does not (``~a``); ``~~a`` is ``a`` again."""

    __slots__ = ("condition",)
    condition: StopCondition

    def __new__(cls, condition: StopLike) -> Any:
        # ~~a gives back a itself rather than a double negation.
        if isinstance(condition, Not):
            return condition.condition
        return super().__new__(cls)

    def __init__(self, condition: StopLike) -> None:
        _set(self, "condition", as_stop_condition(condition, "condition"))

    def _args(self) -> tuple[Any, ...]:
        return (self.condition,)

    def __repr__(self) -> str:
        inner = repr(self.condition)
        return f"~({inner})" if isinstance(self.condition, _Composite) else f"~{inner}"

    def __call__(self, state: LoopState) -> StopReason | None:
        if self.condition(state) is not None:
            return None
        return StopReason("not", f"{self.condition!r} did not hold")


class Renamed(StopCondition):
    """``condition``, with every reason it gives renamed to ``name``.

    Made by ``condition.with_name(name)``; renaming a renamed condition
    replaces the name rather than nesting.
    """

    __slots__ = ("condition", "name")
    condition: StopCondition
    name: str

    def __init__(self, condition: StopLike, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise _value_error("name", name, "be a non-empty str")
        inner = as_stop_condition(condition, "condition")
        if isinstance(inner, Renamed):
            inner = inner.condition
        _set(self, "condition", inner)
        _set(self, "name", name)

    def _args(self) -> tuple[Any, ...]:
        return (self.condition, self.name)

    def __repr__(self) -> str:
        inner = repr(self.condition)
        cond = self.condition
        if isinstance(cond, Not) or (isinstance(cond, _Composite) and len(cond.conditions) > 1):
            inner = f"({inner})"  # `.with_name` binds tighter than `|`, `&` and `~`
        return f"{inner}.with_name({self.name!r})"

    def __call__(self, state: LoopState) -> StopReason | None:
        reason = self.condition(state)
        if reason is None:
            return None
        return StopReason(self.name, reason.message)
