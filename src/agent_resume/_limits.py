"""Provider rate limits: ``RateLimit``, the token buckets behind it, and token estimates.

Every call made through ``ctx.call``/``ctx.acall`` asks the run's `Limiter` when
it may start. The limiter keeps one bucket per configured limit (requests,
tokens, input tokens, output tokens per minute) as a *theoretical arrival
time* (GCRA): a call of cost ``c`` on a bucket of rate ``r`` per second starts
no earlier than the bucket's time and pushes it ``c / r`` seconds on. Permits
are so spread evenly over the minute, never spent as a burst: providers
enforce per-minute limits over shorter windows. A call waits for the latest
of its buckets, then reserves all of them at once (first come, first served).

A call's token cost is estimated before it starts (`estimate_cost`) and
corrected with its real usage afterwards (`Limiter.settle`). A 429 pauses every
caller until the provider's reset (`Limiter.pause`) and halves the number of
calls allowed in flight (once per burst); the number doubles back per quiet
period.
Limits that were not configured are adopted from the provider's
``x-ratelimit-limit-*`` and ``anthropic-ratelimit-*-limit`` headers.

Nothing here sleeps or does I/O: the limiter answers "wait this long", and a
`Buckets` backend keeps the buckets (in memory, or in a shared store through
the database's clock).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from agent_resume import _validate as validate

__all__ = [
    "BUCKETS",
    "Buckets",
    "Cost",
    "Limiter",
    "LocalBuckets",
    "RateLimit",
    "estimate_cost",
    "max_output",
]

BUCKETS = ("requests", "tokens", "input_tokens", "output_tokens")
"""The names of the buckets, in the order of `Cost`'s fields."""

HEADROOM = 0.97
"""The limiter runs at this fraction of each limit, so that a sliding window
that catches one permit more than the average still stays under the limit."""

QUIET_SECONDS = 5.0
"""After a 429, the calls allowed in flight double back per quiet period this long."""

_HALVE_EVERY = 1.0  # 429s from one burst halve the calls in flight once, not once each

_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4
_TEXT_ARGUMENTS = ("messages", "input", "prompt", "system", "contents", "instructions")
_SKIP_KEYS = frozenset(
    {"role", "type", "id", "name", "model", "image_url", "source", "data", "url"}
)


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A provider's rate limits, per minute, for the calls made through ``ctx.call``/``ctx.acall``.

    A limit left ``None`` is adopted from the provider's response headers
    (``x-ratelimit-limit-requests``/``-tokens``, ``anthropic-ratelimit-*-limit``)
    when a response or an error carries them. The limiter runs at 97% of each
    limit and spreads permits evenly (600 a minute is one every 0.1 s).

    Attributes:
        requests_per_minute: Calls a minute.
        tokens_per_minute: Input plus output tokens a minute.
        input_tokens_per_minute: Input tokens a minute (Anthropic's ITPM).
        output_tokens_per_minute: Output tokens a minute (Anthropic's OTPM).
        shared: Keep the budget in the job's SQLite or PostgreSQL store, so
            that every worker of the job (every process, every machine)
            shares one limit, timed by the database's clock.

    Example:
        >>> RateLimit(requests_per_minute=500, tokens_per_minute=200_000)
        RateLimit(requests_per_minute=500.0, tokens_per_minute=200000.0)
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None
    shared: bool = False

    def __post_init__(self) -> None:
        for name in BUCKETS:
            attribute = f"{name}_per_minute"
            rate = validate.positive_number(attribute, getattr(self, attribute))
            object.__setattr__(self, attribute, rate)
        validate.boolean("shared", self.shared)

    def __repr__(self) -> str:
        parts = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) not in (None, False)
        ]
        return f"RateLimit({', '.join(parts)})"

    def per_minute(self) -> dict[str, float]:
        """The configured limits by bucket name (``requests``, ``tokens``, ...), ``None`` left out."""
        out = {}
        for name in BUCKETS:
            value = getattr(self, f"{name}_per_minute")
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class Cost:
    """What one call takes from each bucket."""

    requests: float = 1.0
    tokens: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    guessed: bool = False
    """Whether the output is a guess: no maximum given, and no call answered yet."""

    def get(self, name: str) -> float:
        """The cost for the bucket ``name``."""
        return float(getattr(self, name))


# -- estimates -----------------------------------------------------------------


def _texts(value: Any, out: list[str], depth: int = 0) -> int:
    """Collect the strings of a prompt argument; returns how many messages it held."""
    if depth > 12:
        return 0
    if isinstance(value, str):
        out.append(value)
        return 0
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key not in _SKIP_KEYS:
                _texts(inner, out, depth + 1)
        return 1
    if isinstance(value, (list, tuple)):
        return sum(_texts(inner, out, depth + 1) for inner in value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return _texts(dump(), out, depth + 1)
        except Exception:  # an object that cannot dump itself counts for nothing
            return 0
    return 0


_ENCODER: list[Any] = []  # [encoder or None], filled on first use


def _count_tokens(texts: list[str]) -> int:
    if not _ENCODER:
        encoder = None
        try:
            import tiktoken  # type: ignore[import-not-found,unused-ignore]

            encoder = tiktoken.get_encoding("o200k_base")
        except Exception:  # not installed, or its encoding cannot be loaded here
            encoder = None
        _ENCODER.append(encoder)
    encoder = _ENCODER[0]
    if encoder is not None:
        return sum(len(encoder.encode(text, disallowed_special=())) for text in texts)
    return -(-sum(len(text) for text in texts) // _CHARS_PER_TOKEN)


def max_output(kwargs: Mapping[str, Any]) -> int | None:
    """The output limit a call's arguments give (``max_tokens`` and its other names), or ``None``."""
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = kwargs.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    for name in ("config", "generation_config"):
        inner = kwargs.get(name)
        if isinstance(inner, Mapping):
            found = max_output(inner)
        else:
            found = getattr(inner, "max_output_tokens", None)
        if isinstance(found, int) and not isinstance(found, bool) and found > 0:
            return found
    return None


def estimate_cost(kwargs: Mapping[str, Any], usual_output: float = 0.0) -> Cost:
    """Estimate the tokens a call will take, from its keyword arguments.

    Input: the text of ``messages``, ``input``, ``prompt``, ``system``,
    ``contents`` and ``instructions``, counted with tiktoken when it is
    installed, else at about 4 characters a token, plus 4 tokens a message.
    Output: ``max_tokens``, ``max_completion_tokens`` or ``max_output_tokens``
    (also inside Gemini's ``config``) when given, else ``usual_output``.

    Args:
        kwargs: The call's keyword arguments.
        usual_output: The output tokens to assume when no maximum is given
            (the limiter passes the mean of the calls so far).

    Returns:
        The estimated cost.
    """
    texts: list[str] = []
    messages = 0
    for name in _TEXT_ARGUMENTS:
        if name in kwargs:
            messages += _texts(kwargs[name], texts)
    input_tokens = _count_tokens(texts) + _MESSAGE_OVERHEAD * messages if texts else 0
    output = max_output(kwargs)
    output_tokens = float(output) if output is not None else max(0.0, usual_output)
    return Cost(1.0, input_tokens + output_tokens, float(input_tokens), output_tokens)


# -- buckets -------------------------------------------------------------------


class Buckets(Protocol):
    """Where the limiter's buckets live: this process, or a store shared by the job's workers."""

    def reserve(self, demands: Sequence[tuple[str, float, float]]) -> float:
        """Reserve ``(bucket, rate_per_second, cost)`` on every bucket at once.

        Returns:
            Seconds from now until the call may start (0 for at once).
        """
        ...

    def adjust(self, demands: Sequence[tuple[str, float, float]]) -> None:
        """Correct reservations by ``cost`` (negative to give back) on each bucket."""
        ...

    def pause(self, seconds: float) -> None:
        """Let no reservation start before ``seconds`` from now."""
        ...


class LocalBuckets:
    """Buckets in this process, shared by its threads and tasks.

    Args:
        clock: A monotonic clock in seconds.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._paused_until = -math.inf

    def reserve(self, demands: Sequence[tuple[str, float, float]]) -> float:
        """Reserve every bucket at the earliest time all of them allow; returns the wait."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            for name, _, _ in demands:
                start = max(start, self._tat.get(name, start))
            for name, rate, cost in demands:
                self._tat[name] = start + cost / rate
            return start - now

    def adjust(self, demands: Sequence[tuple[str, float, float]]) -> None:
        """Move each bucket's time by ``cost / rate`` (a correction after the call)."""
        with self._lock:
            for name, rate, cost in demands:
                if name in self._tat:
                    self._tat[name] += cost / rate

    def pause(self, seconds: float) -> None:
        """Hold every reservation until ``seconds`` from now."""
        with self._lock:
            until = self._clock() + seconds
            self._paused_until = max(self._paused_until, until)
            for name, at in self._tat.items():
                self._tat[name] = max(at, until)


# -- the limiter -----------------------------------------------------------------

_ADOPT = {
    "requests": ("x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"),
    "tokens": ("x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-limit"),
    "input_tokens": ("anthropic-ratelimit-input-tokens-limit",),
    "output_tokens": ("anthropic-ratelimit-output-tokens-limit",),
}


class Limiter:
    """The run's gate for calls: rate buckets, a global cool-down, and adaptive concurrency.

    Thread-safe. It never sleeps: `reserve` says how long to wait, and the
    caller waits (``time.sleep`` or ``asyncio.sleep``).

    Args:
        limit: The configured limits, or ``None`` (limits adopted from headers only).
        concurrency: The most calls in flight at once (the run's concurrency).
        clock: A monotonic clock in seconds.
        buckets: Where the buckets live; in memory when ``None``.
    """

    def __init__(
        self,
        limit: RateLimit | None,
        concurrency: int,
        clock: Callable[[], float],
        buckets: Buckets | None = None,
    ) -> None:
        self._clock = clock
        self._buckets: Buckets = buckets if buckets is not None else LocalBuckets(clock)
        self._lock = threading.Lock()
        self.configured = {} if limit is None else limit.per_minute()
        self.rates: dict[str, float] = dict(self.configured)
        """Limits in force, per minute, by bucket (configured or adopted)."""
        self.max_in_flight = max(1, concurrency)
        self.allowed = self.max_in_flight
        """Calls allowed in flight now: halved by a 429, grown back after quiet periods."""
        self.in_flight = 0
        self.paused_until = -math.inf
        self._last_change = clock()
        self._last_halved = -math.inf
        self._outputs = 0.0
        self._output_calls = 0
        self._guesser: Cost | None = None  # the call whose output is a guess, in flight
        self.waited = 0.0
        """Seconds callers have waited for a permit, in total."""
        self.waiting = 0
        """Callers waiting for a permit now (see `waiting_for_permit`)."""

    # -- permits -----------------------------------------------------------------

    def estimate(self, kwargs: Mapping[str, Any]) -> Cost:
        """The estimated cost of a call with these keyword arguments."""
        with self._lock:
            usual = self._outputs / self._output_calls if self._output_calls else 0.0
            learned = self._output_calls > 0
        cost = estimate_cost(kwargs, usual)
        if not learned and max_output(kwargs) is None:
            return replace(cost, guessed=True)
        return cost

    def _demands(self, cost: Cost, sign: float = 1.0) -> list[tuple[str, float, float]]:
        demands = []
        for name, per_minute in self.rates.items():
            amount = cost.get(name) * sign
            if amount or sign > 0:
                demands.append((name, per_minute * HEADROOM / 60.0, amount))
        return demands

    def reserve(self, cost: Cost) -> float:
        """Reserve a permit for a call of this cost; returns the seconds to wait before it starts."""
        demands = self._demands(cost)
        wait = self._buckets.reserve(demands) if demands else 0.0
        pause = self.paused_until - self._clock()
        wait = max(wait, pause, 0.0)
        if wait > 0:
            with self._lock:
                self.waited += wait
        return wait

    def waiting_for_permit(self, delta: int) -> None:
        """Count a caller that starts (``+1``) or stops (``-1``) waiting for its permit."""
        with self._lock:
            self.waiting += delta

    def try_enter(self) -> bool:
        """Take a slot for a call in flight, if the adaptive limit allows one now."""
        with self._lock:
            if self.in_flight >= self.allowed:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        """Give back a slot taken with `try_enter`."""
        with self._lock:
            self.in_flight -= 1

    def take_guess(self, cost: Cost) -> bool:
        """Whether a call of this cost may reserve its permit now (before `reserve`).

        Under a token limit, calls whose output is a guess (no maximum given
        and no call answered yet: each would count it as nothing) go one at a
        time until a call has answered and taught the usual output, so that
        the first wave cannot burst past the limit. The caller that gets
        ``True`` for such a call gives the turn back with `drop_guess`, on
        every way out of its try.
        """
        with self._lock:
            if not cost.guessed or self._output_calls or not self._counts_tokens():
                return True
            if self._guesser is not None:
                return False
            self._guesser = cost
            return True

    def drop_guess(self, cost: Cost) -> None:
        """End the turn `take_guess` gave a call of this cost (nothing when it had none)."""
        with self._lock:
            if self._guesser is cost:
                self._guesser = None

    def _counts_tokens(self) -> bool:
        return any(name != "requests" for name in self.rates)

    # -- after the call ----------------------------------------------------------------

    def settle(self, estimated: Cost, actual: Cost | None) -> None:
        """Correct the buckets with a call's real token usage (``None``: the call failed).

        A failed call gives its estimated tokens back; its request stays spent.
        """
        answered = actual is not None
        if actual is None:
            actual = Cost(1.0)
        delta = Cost(
            0.0,
            actual.tokens - estimated.tokens,
            actual.input_tokens - estimated.input_tokens,
            actual.output_tokens - estimated.output_tokens,
        )
        demands = [d for d in self._demands(delta, 1.0) if d[0] != "requests" and d[2]]
        if demands:
            self._buckets.adjust(demands)
        if answered:
            # Learned after the buckets are corrected: a call waiting for the
            # first answer (`take_guess`) reserves behind this one's real tokens.
            with self._lock:
                self._outputs += actual.output_tokens
                self._output_calls += 1
                self._grow()

    def _grow(self) -> None:
        now = self._clock()
        if self.allowed < self.max_in_flight and now - self._last_change >= QUIET_SECONDS:
            self.allowed = min(self.max_in_flight, self.allowed * 2)
            self._last_change = now

    def pause(self, seconds: float) -> None:
        """A 429: hold every caller for ``seconds`` and halve the calls allowed in flight.

        The 429s of one burst (within a second) halve them once.
        """
        seconds = max(0.0, seconds)
        with self._lock:
            now = self._clock()
            self.paused_until = max(self.paused_until, now + seconds)
            if now - self._last_halved >= _HALVE_EVERY:
                self.allowed = max(1, self.allowed // 2)
                self._last_halved = now
            self._last_change = now
        if seconds > 0:
            self._buckets.pause(seconds)

    def adopt(self, headers: Mapping[str, str]) -> None:
        """Take the limits not configured from a response's rate-limit headers."""
        if not headers:
            return
        with self._lock:
            for name, candidates in _ADOPT.items():
                if name in self.configured:
                    continue
                for header in candidates:
                    value = headers.get(header)
                    if value is None:
                        continue
                    try:
                        number = float(value)
                    except ValueError:
                        continue
                    if number > 0 and math.isfinite(number):
                        self.rates[name] = number
                        break

    def state(self) -> dict[str, Any]:
        """A snapshot for progress lines: limits in force, calls in flight and allowed, pause left."""
        with self._lock:
            return {
                "limits": dict(self.rates),
                "in_flight": self.in_flight,
                "allowed": self.allowed,
                "paused": max(0.0, self.paused_until - self._clock()),
                "waited": self.waited,
                "waiting": self.waiting,
            }
