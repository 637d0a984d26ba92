"""Which errors of an LLM call are worth retrying, and how long to wait before the next try.

Errors are classified by what they carry, never by importing an SDK: an HTTP
status (``status_code``, ``status``, ``code``, ``response.status_code``) when
there is one, else the names of the exception's classes (``APIConnectionError``,
``ReadTimeout``, ``ServiceUnavailableError``, ...), else the exception it was
raised from. The waits honour what the provider said: ``retry-after`` (seconds
or an HTTP date), ``retry-after-ms`` and OpenAI's ``x-ratelimit-reset-*``
durations (``1s``, ``6m0s``, ``20ms``), read from the error's response headers.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal

from agent_resume import _validate as validate
from agent_resume._errors import ArgumentValueError, DeadlineExceeded

__all__ = [
    "JOB_WIDE_ADVICE",
    "ErrorKind",
    "Retry",
    "classify_error",
    "error_headers",
    "error_status",
    "error_wait",
    "job_wide_error",
    "parse_duration",
    "provider_wait",
]

ErrorKind = Literal["transient", "permanent", "unknown"]
"""What an error says about trying again: ``"transient"`` (a rate limit, an
overloaded or failing server, a lost connection, a timeout: try again),
``"permanent"`` (the request itself is wrong: do not), ``"unknown"`` (not a
provider error: an ordinary exception of the caller's code)."""

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
"""HTTP statuses worth retrying; any other 5xx is retried too."""

# Class names (anywhere in the exception's MRO) of the SDKs' transient errors:
# openai/anthropic (APIConnectionError, APITimeoutError, RateLimitError,
# InternalServerError, OverloadedError), httpx (TransportError and its
# ConnectError, ReadTimeout, RemoteProtocolError, ...), requests
# (ConnectionError, Timeout, ChunkedEncodingError), google-genai (ServerError),
# litellm (ServiceUnavailableError, APIConnectionError, Timeout, RateLimitError),
# aiohttp (ClientConnectionError, ServerTimeoutError), builtins.
_TRANSIENT_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "RateLimitError",
        "InternalServerError",
        "OverloadedError",
        "ServiceUnavailableError",
        "ServerError",
        "TransportError",
        "TimeoutException",
        "NetworkError",
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
        "ChunkedEncodingError",
        "ConnectionError",
        "Timeout",
        "TimeoutError",
        "ClientConnectionError",
        "ServerTimeoutError",
        "ServerDisconnectedError",
        "IncompleteRead",
    }
)
_PERMANENT_NAMES = frozenset(
    {
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "UnprocessableEntityError",
        "ContextWindowExceededError",
        "ContentPolicyViolationError",
        "InvalidRequestError",
    }
)
_CHAIN = 4  # how many __cause__/__context__ links to follow
# The SDKs' errors for a key or an account the provider refuses (openai,
# anthropic and litellm name them so): every call of the job would fail alike.
_REFUSED_NAMES = frozenset({"AuthenticationError", "PermissionDeniedError"})
_REFUSED_STATUS = (401, 403)


def _quota_exhausted(error: BaseException, status: int | None) -> bool:
    """Whether the provider says the account's quota or credit is used up.

    OpenAI answers 429 with the code ``insufficient_quota`` (a 429 that no
    wait cures, unlike a rate limit; LiteLLM keeps the code in its message),
    Anthropic 400 with "Your credit balance is too low".
    """
    if status == 429:
        return (
            getattr(error, "code", None) == "insufficient_quota"
            or "insufficient_quota" in str(error)[:2000]
        )
    if status == 400:
        return "credit balance is too low" in str(error)[:2000]
    return False


def _status(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) == 3:
        return int(value)
    return None


def error_status(error: BaseException) -> int | None:
    """The HTTP status an exception carries, if any.

    Reads ``status_code`` (openai, anthropic, litellm), ``status`` (aiohttp),
    ``code`` (google-genai) and ``response.status_code`` (httpx, requests).

    Args:
        error: The exception.

    Returns:
        The status, or ``None`` when the exception carries none.
    """
    for name in ("status_code", "status", "code", "http_status"):
        found = _status(getattr(error, name, None))
        if found is not None:
            return found
    response = getattr(error, "response", None)
    if response is not None:
        for name in ("status_code", "status"):
            found = _status(getattr(response, name, None))
            if found is not None:
                return found
    return None


def _kind_of_status(status: int) -> ErrorKind:
    if status in TRANSIENT_STATUS or status >= 500:
        return "transient"
    if 400 <= status < 500:
        return "permanent"
    return "unknown"


def _kind_here(error: BaseException) -> ErrorKind:
    if isinstance(error, DeadlineExceeded):
        # The item's or the run's deadline: no retry of the call can beat it.
        return "permanent"
    status = error_status(error)
    if _quota_exhausted(error, status):
        return "permanent"  # every try would be refused until the account is topped up
    if status is not None:
        # OpenAI and Anthropic may say it themselves, as their SDKs obey.
        told = error_headers(error).get("x-should-retry")
        if told in ("true", "false"):
            return "transient" if told == "true" else "permanent"
        return _kind_of_status(status)
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & _PERMANENT_NAMES:
        return "permanent"
    if names & _TRANSIENT_NAMES:
        return "transient"
    return "unknown"


def classify_error(error: BaseException) -> ErrorKind:
    """Classify an exception raised by an LLM call, without importing any SDK.

    Transient: HTTP 408, 409, 425, 429, 5xx (529 is Anthropic's "overloaded"),
    connection errors and timeouts of openai, anthropic, google-genai, httpx,
    requests, aiohttp and litellm, and the builtin ``ConnectionError`` and
    ``TimeoutError``. Permanent: any other 4xx (400, 401, 403, 404, 422, ...),
    OpenAI's 429 ``insufficient_quota`` (no wait cures it) and agent-resume's
    own ``DeadlineExceeded``. A response's ``x-should-retry: true`` or
    ``false`` header (OpenAI, Anthropic) overrides its status, as in their
    SDKs. An exception that is neither is judged by the one it was raised
    from (``__cause__``, else ``__context__``), a few links deep.

    Args:
        error: The exception.

    Returns:
        ``"transient"``, ``"permanent"`` or ``"unknown"``.
    """
    for current in _chain(error):
        kind = _kind_here(current)
        if kind != "unknown":
            return kind
    return "unknown"


JOB_WIDE_ADVICE: Final = {
    "access_refused": ("the provider refused access", "fix the API key or its permissions"),
    "model_not_found": ("the provider does not know the model", "fix the model's name"),
    "quota_exhausted": (
        "the provider says the account's quota or credit is used up",
        "add credit or raise the account's limit",
    ),
}
"""What a run says of each kind of :func:`job_wide_error`, and what to fix."""


def job_wide_error(error: BaseException) -> tuple[str, str] | None:
    """Whether an LLM SDK's error would fail every item of the job alike, and which it is.

    Found in the error, then in what it was raised from with ``raise ...
    from`` (``__cause__``, a few links deep; not an error that was only
    being handled: a fallback that failed after a refused key is the
    fallback's own failure):

    - ``"access_refused"``: the provider refuses the credentials or the
      account: an ``AuthenticationError`` or ``PermissionDeniedError``
      (openai, anthropic, litellm), or a google-genai ``ClientError`` with
      HTTP 401 or 403;
    - ``"model_not_found"``: the provider does not know the model (a typo,
      a retired model): openai's 404 with the code ``model_not_found``,
      anthropic's 404 whose message names the model (``"model: ..."``), or
      google-genai's 404 for ``models/...``;
    - ``"quota_exhausted"``: the account's quota or credit is used up:
      OpenAI's 429 ``insufficient_quota``, Anthropic's 400 "Your credit
      balance is too low".

    A 401, 403 or 404 of any other library (a web page fetched with
    ``requests``) is an item's own failure, and is not counted.

    Args:
        error: The exception.

    Returns:
        ``(name, "ClassName (HTTP 401)")`` for such an error (the status
        when it carries one), else ``None``.
    """
    for current in _chain(error, handled=False):
        kind = type(current)
        status = error_status(current)
        names = {cls.__name__ for cls in kind.__mro__}
        google = kind.__module__.startswith("google.genai")
        what = kind.__name__ if status is None else f"{kind.__name__} (HTTP {status})"
        if (names & _REFUSED_NAMES) or (google and status in _REFUSED_STATUS):
            return "access_refused", what
        if _quota_exhausted(current, status):
            return "quota_exhausted", what
        if status == 404 and _names_a_missing_model(current, names, google):
            return "model_not_found", what
    return None


def _names_a_missing_model(error: BaseException, names: set[str], google: bool) -> bool:
    if google:
        return "models/" in str(getattr(error, "message", "") or "")
    if "NotFoundError" not in names:
        return False
    if getattr(error, "code", None) == "model_not_found":  # openai
        return True
    body = getattr(error, "body", None)  # anthropic: {"type": "error", "error": {...}}
    inner = body.get("error") if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    return isinstance(message, str) and message.startswith("model:")


def _chain(error: BaseException, *, handled: bool = True) -> Iterator[BaseException]:
    """The error, then what it was raised from, a few links deep.

    ``__cause__``, else (with ``handled``) ``__context__``: the error being
    handled when it was raised.
    """
    current: BaseException | None = error
    for _ in range(_CHAIN):
        if current is None:
            return
        yield current
        current = current.__cause__ or (current.__context__ if handled else None)


# -- headers -------------------------------------------------------------------


class _Headers:
    """Case-insensitive read access to whatever mapping of headers an SDK gives."""

    __slots__ = ("_map",)

    def __init__(self, raw: Any) -> None:
        self._map: dict[str, str] = {}
        items = getattr(raw, "items", None)
        if not callable(items):
            return
        try:
            for key, value in items():
                self._map[str(key).lower()] = str(value)
        except Exception:  # a broken header object must not break the call's error handling
            self._map.clear()

    def get(self, name: str) -> str | None:
        return self._map.get(name)

    def __bool__(self) -> bool:
        return bool(self._map)


def error_headers(error: BaseException) -> Mapping[str, str]:
    """The response headers an exception carries, lower-cased (empty when none).

    Reads ``response.headers`` (openai, anthropic, httpx, requests) or ``headers``.

    Args:
        error: The exception.

    Returns:
        A dict of lower-case header names to values.
    """
    response = getattr(error, "response", None)
    raw = getattr(response, "headers", None) if response is not None else None
    if raw is None:
        raw = getattr(error, "headers", None)
    return dict(_Headers(raw)._map)


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(text: str) -> float | None:
    """Parse a Go-style duration as OpenAI sends it (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``).

    A bare number is seconds.

    Args:
        text: The header value.

    Returns:
        Seconds, or ``None`` when the text is not a duration.
    """
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    total = 0.0
    position = 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def _until(text: str, now_wall: float) -> float | None:
    """Seconds from ``now_wall`` to an HTTP date or an RFC 3339 time, or ``None``."""
    when: datetime | None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now_wall)


def provider_wait(headers: Mapping[str, str], now_wall: float) -> float | None:
    """How long the provider asked the caller to wait, from its response headers.

    In order: ``retry-after-ms``; ``retry-after`` (seconds or an HTTP date);
    OpenAI's ``x-ratelimit-reset-requests`` / ``-tokens`` (the one whose
    ``x-ratelimit-remaining-*`` is 0, else the longer); Anthropic's
    ``anthropic-ratelimit-*-reset`` times (likewise).

    Args:
        headers: Response headers with lower-case names.
        now_wall: The current wall-clock time in POSIX seconds (for dates).

    Returns:
        Seconds to wait, or ``None`` when the headers say nothing.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    value = headers.get("retry-after")
    if value is not None:
        try:
            seconds = float(value)
        except ValueError:
            found = _until(value, now_wall)
            if found is not None:
                return found
        else:
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    waits: list[tuple[bool, float]] = []
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        reset = headers.get(f"x-ratelimit-reset-{kind}")
        if reset is not None:
            found = parse_duration(reset)
            if found is not None:
                waits.append((headers.get(f"x-ratelimit-remaining-{kind}") == "0", found))
        reset = headers.get(f"anthropic-ratelimit-{kind}-reset")
        if reset is not None:
            found = _until(reset, now_wall)
            if found is not None:
                waits.append((headers.get(f"anthropic-ratelimit-{kind}-remaining") == "0", found))
    if not waits:
        return None
    exhausted = [seconds for empty, seconds in waits if empty]
    return max(exhausted or [seconds for _, seconds in waits])


def error_wait(
    error: BaseException, now_wall: float, headers: Mapping[str, str] | None = None
) -> float | None:
    """How long the provider asked the caller to wait, from an error's response.

    Its headers first (:func:`provider_wait`), then the body's
    ``google.rpc.RetryInfo`` ``retryDelay`` (``"35s"``) that Gemini sends
    with a 429 instead of a header (google-genai's ``APIError.details``).

    Args:
        error: The exception.
        now_wall: The current wall-clock time in POSIX seconds (for dates).
        headers: Its :func:`error_headers`, when the caller has read them.

    Returns:
        Seconds to wait, or ``None`` when the provider said nothing.
    """
    if headers is None:
        headers = error_headers(error)
    told = provider_wait(headers, now_wall) if headers else None
    if told is not None:
        return told
    body = getattr(error, "details", None)
    inner = body.get("error", body) if isinstance(body, Mapping) else None
    details = inner.get("details") if isinstance(inner, Mapping) else None
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            return parse_duration(str(detail.get("retryDelay", "")))
    return None


# -- the policy ----------------------------------------------------------------


LONGEST_TOLD = 60.0
"""The longest ``retry-after`` followed with the default ``Retry.maximum`` (the SDKs' own cap)."""


@dataclass(frozen=True, kw_only=True)
class Retry:
    """How ``ctx.call``/``ctx.acall`` retry a failed call: which errors, how often, how long apart.

    A call is tried at most ``attempts`` times. Between tries it waits what
    the provider asked for (``retry-after``, ``retry-after-ms``,
    ``x-ratelimit-reset-*``, Gemini's ``retryDelay``), else a random time
    between 0 and ``min(maximum, initial * 2 ** (try - 1))`` (exponential
    backoff with full jitter, so that callers that failed together do not
    retry together). What the provider asks for is waited up to
    :meth:`longest_told` (``maximum``, at least 60 seconds, as the SDKs cap
    ``retry-after``); a longer ask (a day, a bogus header) is cut there, with
    a warning. A wait that would end after the item's deadline is not
    waited: the error is raised at once.

    Attributes:
        attempts: Tries per call, the first included (1 means no retry).
        initial: The cap of the first backoff, in seconds (or a ``timedelta``).
        maximum: The largest backoff cap, in seconds (or a ``timedelta``).
        retry_on: A predicate: an exception for which it returns ``True`` is
            retried whatever its classification.
        give_up_on: A predicate: an exception for which it returns ``True``
            is never retried (checked before ``retry_on``).

    Example:
        >>> Retry(attempts=6, initial=0.5, maximum=30.0)
        Retry(attempts=6, initial=0.5, maximum=30.0)
    """

    attempts: int = 5
    initial: float | timedelta = 0.5
    maximum: float | timedelta = 30.0
    retry_on: Callable[[BaseException], bool] | None = None
    give_up_on: Callable[[BaseException], bool] | None = None

    def __post_init__(self) -> None:
        validate.positive_int("attempts", self.attempts)
        initial = validate.duration(
            "initial", self.initial, allow_none=False, allow_zero=True, allow_inf=False
        )
        maximum = validate.duration(
            "maximum", self.maximum, allow_none=False, allow_zero=True, allow_inf=False
        )
        if maximum < initial:
            raise ArgumentValueError(
                "maximum",
                self.maximum,
                f"`maximum` must be at least `initial` ({initial!r}) (got {self.maximum!r})",
            )
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "maximum", maximum)
        validate.callable_or_none("retry_on", self.retry_on)
        validate.callable_or_none("give_up_on", self.give_up_on)

    def __repr__(self) -> str:
        parts = [f"attempts={self.attempts}", f"initial={self.initial!r}"]
        parts.append(f"maximum={self.maximum!r}")
        for name in ("retry_on", "give_up_on"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={getattr(value, '__qualname__', None) or value!r}")
        return f"Retry({', '.join(parts)})"

    def retryable(self, error: BaseException) -> bool:
        """Whether this policy retries ``error`` (its predicates first, then its classification).

        Args:
            error: The exception a call raised.

        Returns:
            ``True`` to try the call again.
        """
        if self.give_up_on is not None and self.give_up_on(error):
            return False
        if self.retry_on is not None and self.retry_on(error):
            return True
        return classify_error(error) == "transient"

    def backoff(self, tries: int, rng: random.Random | None = None) -> float:
        """A random wait after ``tries`` failed tries: full jitter under an exponential cap.

        Args:
            tries: The failed tries so far (1 after the first failure).
            rng: The random source (``random`` when ``None``).

        Returns:
            Seconds, between 0 and ``min(maximum, initial * 2 ** (tries - 1))``.
        """
        initial: float = self.initial  # type: ignore[assignment]
        maximum: float = self.maximum  # type: ignore[assignment]
        cap = min(maximum, initial * 2.0 ** min(max(tries - 1, 0), 60))
        return (rng or random).uniform(0.0, cap)

    def longest_told(self) -> float:
        """The longest wait a provider's ``retry-after`` is followed for: ``maximum``, at least 60 s."""
        maximum: float = self.maximum  # type: ignore[assignment]
        return max(maximum, LONGEST_TOLD)
