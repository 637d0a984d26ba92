"""The one set of argument checks: durations, numbers, choices, callables and IDs.

Every public entry point (``RunConfig``, ``AgentResume.resume_or_start``, the
stores' settings, the command line) checks its arguments with these, so that
one rule has one wording everywhere: each error names the parameter, the rule
and the value given, and is an :class:`~agent_resume.ArgumentTypeError` (a
``TypeError``) or an :class:`~agent_resume.ArgumentValueError` (a
``ValueError``).

Durations have one parser for the library and the command line:
:func:`duration` takes seconds (``int`` or ``float``), a ``timedelta`` and,
where text is allowed, strings such as ``"90"``, ``"90s"``, ``"250ms"``,
``"5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``. ``None`` means "no limit" where
that is allowed and comes back as ``math.inf``, so a normalised duration is
always a ``float``.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections.abc import Collection
from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from agent_resume._errors import ArgumentTypeError, ArgumentValueError

__all__ = [
    "DURATION_UNITS",
    "Seconds",
    "boolean",
    "callable_or_none",
    "choice",
    "duration",
    "fingerprint_setting",
    "function",
    "identifier",
    "job_id",
    "optional_positive_int",
    "parse_duration",
    "positive_int",
    "positive_number",
    "real_to_float",
    "to_seconds",
]

T = TypeVar("T")

DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
"""The units a duration string may use, in seconds."""

Seconds = float | Decimal | numbers.Real | timedelta
"""A duration: a real number of seconds (``int``, ``float``, ``Fraction``,
``Decimal``, a numpy scalar, anything registered as ``numbers.Real``) or a
``timedelta``."""


def real_to_float(value: object, parameter: str, expected: str = "a real number") -> float:
    """Return ``value`` as a float if it is a real number, refusing what is not.

    Accepted: anything registered as ``numbers.Real`` (``int``, ``float``,
    ``fractions.Fraction``, numpy's integer and floating scalars) and
    ``decimal.Decimal``, the same set agent-deadline's ``float(seconds)``
    takes, minus strings. A value too large for a float becomes an infinity
    of the same sign. NaN passes through: callers that forbid it check.

    Args:
        value: The value to convert.
        parameter: The parameter's name, used in error messages.
        expected: What the parameter takes, for the error message.

    Returns:
        The value as a float.

    Raises:
        ArgumentTypeError: ``value`` is a ``bool`` (almost always a mistake),
            a string, ``None`` or anything else that is not a real number.
    """
    if isinstance(value, float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Decimal):
        if value.is_nan():  # float(Decimal("sNaN")) raises instead of giving NaN
            return math.nan
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(
            parameter,
            value,
            f"`{parameter}` must be {expected} (got {type(value).__name__} {value!r})",
        )
    try:
        return float(value)
    except OverflowError:
        return -math.inf if value < 0 else math.inf


def to_seconds(
    value: object,
    parameter: str = "seconds",
    expected: str = "a number of seconds or a timedelta",
) -> float:
    """Normalise a duration given as a number of seconds or a ``timedelta``.

    Args:
        value: The duration: any real number (``int``, ``float``,
            ``Fraction``, ``Decimal``, a numpy scalar) or a ``timedelta``.
            ``math.inf`` means "no limit" and passes through; negative values
            pass through too (callers that forbid them check).
        parameter: The parameter's name, used in error messages.
        expected: What the parameter takes, for the error message.

    Returns:
        The duration in seconds, as a float.

    Raises:
        ArgumentTypeError: ``value`` is neither a real number nor a ``timedelta``
            (a ``bool`` and a string are refused: almost always a mistake).
        ArgumentValueError: ``value`` is NaN.
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    seconds = real_to_float(value, parameter, expected)
    if math.isnan(seconds):
        raise ArgumentValueError(
            parameter, value, f"`{parameter}` must be a number of seconds, not NaN"
        )
    return seconds


_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h|d)?", re.ASCII)
_WHOLE = re.compile(r"\s*(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?:ms|s|m|h|d)?\s*)+", re.ASCII)


def _kind(value: object) -> str:
    return type(value).__name__


def parse_duration(text: str, parameter: str = "duration") -> float:
    """Read a duration written as text: ``"90"``, ``"90s"``, ``"5m"``, ``"1h30m"``.

    A bare number is seconds. Parts with units add up (``"1h30m"`` is 5400
    seconds); only the last part may go without a unit (``"1m30"`` is 90).

    Args:
        text: The text to read.
        parameter: The parameter's name, for error messages.

    Returns:
        The duration in seconds.

    Raises:
        ArgumentValueError: The text is not a duration.
    """
    if _WHOLE.fullmatch(text) is None:
        raise ArgumentValueError(
            parameter,
            text,
            f"`{parameter}` must be seconds or a duration such as 90s, 5m, 2h or 1h30m "
            f"(got {text!r:.80})",
        )
    total = 0.0
    parts = _PART.findall(text)
    for index, (number, unit) in enumerate(parts):
        if not unit and index != len(parts) - 1:
            raise ArgumentValueError(
                parameter,
                text,
                f"`{parameter}` must give a unit for every part but the last (got {text!r:.80})",
            )
        total += float(number) * DURATION_UNITS[unit or "s"]
    return total


def duration(
    parameter: str,
    value: object,
    *,
    allow_none: bool = True,
    allow_zero: bool = False,
    allow_inf: bool = True,
    text: bool = False,
) -> float:
    """Normalise a duration to seconds, with ``math.inf`` for "no limit".

    Args:
        parameter: The parameter's name, for error messages.
        value: Seconds (any real number, see :func:`real_to_float`), a ``timedelta``,
            ``None`` (no limit, when ``allow_none``) or, when ``text``, a
            string for :func:`parse_duration`.
        allow_none: Whether ``None`` (and ``math.inf``) mean no limit.
        allow_zero: Whether zero is allowed; negative never is.
        allow_inf: Whether ``math.inf`` is allowed when ``None`` is not.
        text: Whether strings are read with :func:`parse_duration` (the
            command line and configuration files).

    Returns:
        The duration in seconds, ``math.inf`` for no limit.

    Raises:
        ArgumentTypeError: The value is of another type.
        ArgumentValueError: The value is NaN, negative, zero when that is not
            allowed, infinite when that is not allowed, or unreadable text.
    """
    if value is None:
        if allow_none:
            return math.inf
        raise ArgumentTypeError(
            parameter, value, f"`{parameter}` must be a number of seconds or a timedelta (got None)"
        )
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif text and isinstance(value, str):
        seconds = parse_duration(value, parameter)
    else:
        also = ", a string such as '5m'" if text else ""
        none = " or None for no limit" if allow_none else ""
        seconds = real_to_float(value, parameter, f"a number of seconds, a timedelta{also}{none}")
    if math.isnan(seconds):
        raise ArgumentValueError(
            parameter, value, f"`{parameter}` must be a number of seconds, not NaN"
        )
    if seconds < 0 or (seconds == 0 and not allow_zero):
        rule = "at least 0" if allow_zero else "greater than 0"
        none = ", or None for no limit" if allow_none else ""
        raise ArgumentValueError(
            parameter, value, f"`{parameter}` must be {rule} seconds{none} (got {value!r:.80})"
        )
    if math.isinf(seconds) and not (allow_none or allow_inf):
        raise ArgumentValueError(
            parameter, value, f"`{parameter}` must be a finite number of seconds (got {value!r})"
        )
    return seconds


def positive_int(parameter: str, value: object) -> int:
    """Check an ``int`` (not a ``bool``) of at least 1.

    Raises:
        ArgumentTypeError: The value is not an ``int``.
        ArgumentValueError: The value is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(
            parameter, value, f"`{parameter}` must be an int (got {_kind(value)} {value!r:.80})"
        )
    if value < 1:
        raise ArgumentValueError(
            parameter, value, f"`{parameter}` must be at least 1 (got {value!r})"
        )
    return int(value)


def optional_positive_int(parameter: str, value: object) -> int | None:
    """Like :func:`positive_int`, with ``None`` for "no limit"."""
    if value is None:
        return None
    return positive_int(parameter, value)


def positive_number(parameter: str, value: object, *, allow_none: bool = True) -> float | None:
    """Check a finite number greater than 0, returned as a float.

    Accepted: what :func:`real_to_float` takes (``int``, ``float``,
    ``Decimal``, ``Fraction``, numpy scalars; not ``bool``). An integer too
    large for a float is infinite, so refused like one.

    Raises:
        ArgumentTypeError: The value is not a number (or ``None`` when allowed).
        ArgumentValueError: The value is 0, negative, NaN or infinite.
    """
    if value is None and allow_none:
        return None
    none = " or None" if allow_none else ""
    number = real_to_float(value, parameter, f"a number{none}")
    if not number > 0 or math.isinf(number):
        raise ArgumentValueError(
            parameter,
            value,
            f"`{parameter}` must be finite and greater than 0 (got {value!r:.80})",
        )
    return number


def boolean(parameter: str, value: object) -> bool:
    """Check a ``bool`` (``0``, ``1`` and strings are refused).

    Raises:
        ArgumentTypeError: The value is not a ``bool``.
    """
    if not isinstance(value, bool):
        raise ArgumentTypeError(
            parameter, value, f"`{parameter}` must be a bool (got {_kind(value)} {value!r:.80})"
        )
    return value


def choice(parameter: str, value: T, choices: Collection[T]) -> T:
    """Check that ``value`` is one of ``choices`` (compared with ``==``, never by type coercion).

    Raises:
        ArgumentValueError: The value is not one of the choices.
    """
    try:
        found = any(type(value) is type(c) and value == c for c in choices)
    except Exception:  # an exotic __eq__
        found = False
    if not found:
        listed = ", ".join(repr(c) for c in choices)
        raise ArgumentValueError(
            parameter, value, f"`{parameter}` must be one of {listed} (got {value!r:.80})"
        )
    return value


def function(parameter: str, value: T) -> T:
    """Check that ``value`` is callable.

    Raises:
        ArgumentTypeError: It is not.
    """
    if not callable(value):
        raise ArgumentTypeError(
            parameter, value, f"`{parameter}` must be callable (got {_kind(value)} {value!r:.80})"
        )
    return value


def callable_or_none(parameter: str, value: T) -> T:
    """Check that ``value`` is callable or ``None``.

    Raises:
        ArgumentTypeError: It is neither.
    """
    if value is not None and not callable(value):
        raise ArgumentTypeError(
            parameter,
            value,
            f"`{parameter}` must be callable or None (got {_kind(value)} {value!r:.80})",
        )
    return value


def _huge_id(value: int, parameter: str) -> ArgumentValueError:
    digits = f"about {int(value.bit_length() * 0.30103) + 1:,}"
    return ArgumentValueError(
        parameter,
        f"<an int of {digits} digits>",
        f"`{parameter}` is an int of {digits} digits, more than Python writes as text "
        "(sys.set_int_max_str_digits): give such an ID as a str",
    )


def identifier(value: object, parameter: str = "item_id") -> str:
    """Return the canonical string form of an ID (an item's or a job's).

    IDs are ``str`` or ``int`` (not ``bool``); an ``int`` becomes its decimal
    string, so ``1`` and ``"1"`` name the same item. Other integer types
    (``numpy.int64`` from a pandas frame: any ``numbers.Integral``) are read
    as the ``int`` they hold.

    Args:
        value: The ID to check.
        parameter: The parameter name to put in error messages.

    Returns:
        The ID as a non-empty string that encodes as UTF-8.

    Raises:
        ArgumentTypeError: The ID is neither ``str`` nor ``int``.
        ArgumentValueError: The ID is empty or holds a lone surrogate.
    """
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
    elif kind is int:
        try:
            return str(value)
        except ValueError:  # more digits than Python converts (4,300 by default)
            raise _huge_id(value, parameter) from None  # type: ignore[arg-type]
    elif isinstance(value, str):
        text = str.__str__(value)
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = operator.index(value)
        try:
            return str(number)
        except ValueError:
            raise _huge_id(number, parameter) from None
    else:
        raise ArgumentTypeError(
            parameter,
            value,
            f"`{parameter}` must be a str or an int, got {kind.__name__} ({value!r:.80}); "
            "pass key= to remaining() to say how to get an ID from each item",
        )
    if not text:
        raise ArgumentValueError(parameter, value, f"`{parameter}` must not be empty (got '')")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ArgumentValueError(
                parameter,
                value,
                f"`{parameter}` must be encodable as UTF-8; it holds a lone surrogate "
                f"at index {exc.start} (got {value!r:.80})",
            ) from None
    return text


def job_id(value: object, parameter: str = "job_id") -> str:
    """Check a job ID: a non-empty ``str`` that encodes as UTF-8.

    Raises:
        ArgumentTypeError: The ID is not a ``str``.
        ArgumentValueError: The ID is empty or holds a lone surrogate.
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(
            parameter,
            value,
            f"`{parameter}` must be a str (got {_kind(value)} {value!r:.80})",
        )
    return identifier(value, parameter)


def fingerprint_setting(value: T) -> T:
    """Check the ``fingerprint`` setting: ``True``, ``False``, ``None`` or a callable.

    Raises:
        ArgumentTypeError: It is anything else.
    """
    if value is None or isinstance(value, bool) or callable(value):
        return value
    raise ArgumentTypeError(
        "fingerprint",
        value,
        f"`fingerprint` must be True, False, None or a callable (got {value!r:.80})",
    )
