"""The one text form of times, durations, costs and store URLs, for reports, ``status`` and the CLI.

Times are ISO-8601 in UTC with a ``Z`` (``2026-05-24T02:00:00Z``), the form
:func:`parse_timestamp` reads back on every supported Python, so that what
``status`` prints can be pasted into ``--finish-by``. Costs are rounded to 10
significant digits, so that float noise (``0.00022994999999999998``) never
reaches a reader.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from agent_resume._errors import ArgumentTypeError, ArgumentValueError

__all__ = [
    "COST_DIGITS",
    "format_cost",
    "format_duration",
    "format_timestamp",
    "masked_url",
    "parse_timestamp",
    "round_cost",
    "url_passwords",
]

COST_DIGITS = 10
"""Significant digits kept of a cost in every rendering."""

_TIMESTAMP = re.compile(
    r"""^\s*(?P<date>\d{4}-\d{2}-\d{2})
    (?:[Tt\ ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?)?
    \s*(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?\s*$""",
    re.VERBOSE,
)


def round_cost(usd: float | None) -> float | None:
    """Round a cost to :data:`COST_DIGITS` significant digits; ``None`` stays ``None``."""
    if usd is None or not math.isfinite(usd):
        return usd
    return float(f"{usd:.{COST_DIGITS}g}")


def format_cost(usd: float | None) -> str:
    """Return a cost in dollars for people: ``$0.00022995``, ``$1,234.50``, ``unknown``.

    At least two decimals are shown, more when the cost has them (up to 10
    significant digits), never an exponent.
    """
    rounded = round_cost(usd)
    if rounded is None:
        return "unknown"
    if not math.isfinite(rounded):
        return f"${rounded}"
    text = f"{Decimal(repr(rounded)):,f}"
    whole, _, decimals = text.partition(".")
    decimals = decimals.rstrip("0").ljust(2, "0")
    return f"-${whole[1:]}.{decimals}" if whole.startswith("-") else f"${whole}.{decimals}"


def format_timestamp(ts: float | None) -> str:
    """Return POSIX seconds as ISO-8601 UTC with a ``Z``, to the second; ``None`` gives ``?``."""
    if ts is None or isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return "?"
    if not math.isfinite(ts):
        return "?"
    try:
        moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "?"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration(seconds: float | None) -> str:
    """Return a duration for people: ``0.25s``, ``4m05s``, ``2h03m10s``; unknown gives ``?``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def parse_timestamp(value: object, parameter: str = "timestamp") -> datetime:
    """Read an ISO-8601 date and time, the same way on every supported Python.

    Accepts ``2030-05-25T06:00:00Z``, ``2030-05-25 06:00``, offsets such as
    ``+02:00`` or ``+0200``, fractions of a second, and a date alone
    (midnight). A time without ``Z`` or an offset is local time, as
    ``datetime.timestamp()`` reads it. A ``datetime`` passes through.

    Args:
        value: The text (or a ``datetime``).
        parameter: The parameter's name, used in error messages.

    Returns:
        The moment, as a ``datetime`` (aware when an offset was given).

    Raises:
        ArgumentTypeError: ``value`` is neither text nor a ``datetime``.
        ArgumentValueError: The text is not an ISO-8601 date and time.
    """
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ArgumentTypeError(
            parameter,
            value,
            f"`{parameter}` must be an ISO-8601 date and time such as 2030-05-25T06:00:00Z "
            f"(got {type(value).__name__} {value!r})",
        )
    match = _TIMESTAMP.match(value)
    problem = f"`{parameter}` must be an ISO-8601 date and time such as 2030-05-25T06:00:00Z"
    if match is None:
        raise ArgumentValueError(parameter, value, f"{problem} (got {value!r})")
    try:
        moment = datetime.fromisoformat(match["date"])
        frac = (match["frac"] or "0")[:6].ljust(6, "0")
        moment = moment.replace(
            hour=int(match["h"] or 0),
            minute=int(match["m"] or 0),
            second=int(match["s"] or 0),
            microsecond=int(frac),
        )
    except ValueError as exc:
        raise ArgumentValueError(parameter, value, f"{problem} (got {value!r}: {exc})") from None
    tz = match["tz"]
    if tz is None:
        return moment
    if tz in ("Z", "z"):
        return moment.replace(tzinfo=timezone.utc)
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ArgumentValueError(parameter, value, f"{problem} (got {value!r}: bad offset)")
    offset = timedelta(hours=hours, minutes=minutes)
    return moment.replace(tzinfo=timezone(-offset if tz[0] == "-" else offset))


_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)([^/?#]*)@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)
# A libpq key=value connection string's password, quoted or not.
_CONNINFO_PASSWORD = re.compile(r"""(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)""")


def masked_url(url: str) -> str:
    """A store URL as it is shown to people: a password in it is masked.

    ``postgresql://app:secret@db/jobs?schema=nightly`` is shown as
    ``postgresql://app:***@db/jobs?schema=nightly`` (and ``?password=...``
    as ``?password=***``), and a libpq connection string's ``password=...``
    as ``password=***``: status output, error messages and logged configs
    end up in tickets and chat. Paths pass unchanged.
    """
    if "://" not in url:
        return _CONNINFO_PASSWORD.sub(r"\1***", url) if "password" in url else url
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", url))


def url_passwords(url: str) -> list[str]:
    """The passwords `masked_url` masks in ``url``, as written there (unquoted)."""
    if "://" not in url:
        return [m.group(2).strip("'") for m in _CONNINFO_PASSWORD.finditer(url)]
    found = [m.group(2) for m in (*_URL_PASSWORD.finditer(url), *_QUERY_PASSWORD.finditer(url))]
    return [password for password in found if password]
