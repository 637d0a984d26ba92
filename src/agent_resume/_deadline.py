"""Deadlines: absolute points on a monotonic clock, with ``math.inf`` meaning none.

A drop-in for the ``Deadline`` of agent-deadline 0.1, plus a wall-clock
cut-off, any real number or a ``timedelta`` wherever seconds are taken, and an
injectable clock (``MockClock``) so that tests never sleep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol, runtime_checkable

from agent_resume._errors import ArgumentTypeError, ArgumentValueError, DeadlineExceeded
from agent_resume._validate import Seconds, real_to_float, to_seconds

__all__ = [
    "Clock",
    "Deadline",
    "MockClock",
    "Seconds",
    "SupportsRemainingSeconds",
    "as_deadline",
    "real_to_float",
    "remaining_of",
    "to_seconds",
    "trusted_deadline",
]

Clock = Callable[[], float]
"""A function returning the current time in seconds on a clock that never goes back."""


@runtime_checkable
class SupportsRemainingSeconds(Protocol):
    """Anything that can say how many seconds are left: a ``Deadline`` or a look-alike."""

    def remaining_seconds(self) -> float:
        """Return the seconds left, ``0.0`` when expired and ``math.inf`` for none."""
        ...


class MockClock:
    """A manual clock for tests: time moves only when told to.

    Pass it as the ``clock`` of a deadline (it is callable like
    ``time.monotonic``) and call ``advance()`` to let time pass. Its ``time()``
    method is a matching wall clock in POSIX seconds, for
    ``Deadline.at_wallclock``.

    Args:
        start: The initial reading of the monotonic clock.
        epoch: The wall-clock time (POSIX seconds) matching ``start``.

    Example:
        >>> clock = MockClock()
        >>> deadline = Deadline.from_now(10, clock=clock)
        >>> clock.advance(4)
        >>> deadline.remaining_seconds()
        6.0
    """

    def __init__(self, start: float = 0.0, *, epoch: float = 1_750_000_000.0) -> None:
        self._start = to_seconds(start, "start")
        self._now = self._start
        self._epoch = to_seconds(epoch, "epoch")

    def __call__(self) -> float:
        """Return the current monotonic reading."""
        return self._now

    def time(self) -> float:
        """Return the current wall-clock reading, in POSIX seconds."""
        return self._epoch + (self._now - self._start)

    def advance(self, seconds: Seconds) -> None:
        """Move the clock forward.

        Args:
            seconds: How far, as seconds or a ``timedelta``.

        Raises:
            ArgumentValueError: ``seconds`` is negative or infinite; a monotonic
                clock never goes back.
        """
        step = to_seconds(seconds, "seconds")
        if step < 0 or math.isinf(step):
            raise ArgumentValueError(
                "seconds", seconds, f"`seconds` must be finite and at least 0 (got {seconds!r})"
            )
        self._now += step

    def __repr__(self) -> str:
        return f"MockClock(now={self._now!r})"


@dataclass(frozen=True)
class Deadline:
    """An absolute deadline on a monotonic clock; ``at=math.inf`` never expires.

    Build one with ``Deadline.from_now(seconds)``, ``Deadline.never()`` or
    ``Deadline.at_wallclock(when)``, check it with ``check_or_raise()`` between
    steps, and hand ``remaining_seconds()`` to calls that take a timeout.
    Deadlines are immutable: ``intersect`` returns a new, tighter one.

    Used as a context manager, a deadline refuses to enter once expired
    (raising ``DeadlineExceeded``); on exit it neither raises nor suppresses.
    The check is cooperative: nothing is interrupted when the time passes.

    Attributes:
        at: The moment the deadline passes, in seconds of ``clock``.
        created_at: When the deadline was made, in seconds of ``clock``; it
            defaults to the clock's current reading.
        clock: The monotonic clock, ``time.monotonic`` unless one is injected
            (a ``MockClock`` in tests). Left out of equality and repr.
    """

    at: float
    created_at: float = math.nan
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", to_seconds(self.at, "at"))
        if not callable(self.clock):
            raise ArgumentTypeError(
                "clock", self.clock, f"`clock` must be callable (got {self.clock!r})"
            )
        created = real_to_float(self.created_at, "created_at")
        object.__setattr__(
            self, "created_at", float(self.clock()) if math.isnan(created) else created
        )

    @classmethod
    def from_now(cls, seconds: Seconds, *, clock: Clock = time.monotonic) -> Deadline:
        """Make a deadline ``seconds`` from now.

        Args:
            seconds: Seconds or a ``timedelta``. Zero or negative gives a deadline
                that has already expired; ``math.inf`` gives one that never does,
                exactly like ``never()``.
            clock: The monotonic clock to use.

        Returns:
            The new deadline.
        """
        span = to_seconds(seconds, "seconds")
        now = float(clock())
        return cls(at=now + span, created_at=now, clock=clock)

    @classmethod
    def never(cls, *, clock: Clock = time.monotonic) -> Deadline:
        """Make a deadline that never expires (``at`` is ``math.inf``).

        Args:
            clock: The monotonic clock, used only by ``elapsed_seconds()``.

        Returns:
            The new deadline.
        """
        return cls(at=math.inf, created_at=float(clock()), clock=clock)

    @classmethod
    def at_wallclock(
        cls,
        when: datetime,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> Deadline:
        """Make a deadline that passes at a wall-clock time, such as 06:00 tomorrow.

        The time left is measured once, now, and the deadline lives on the
        monotonic clock from then on: a later change of the system clock (NTP,
        daylight saving) does not move it.

        Args:
            when: The cut-off. A naive ``datetime`` is read as local time, as
                ``datetime.timestamp()`` does; pass an aware one to be explicit.
                A time in the past gives an already expired deadline.
            clock: The monotonic clock to use.
            wall_clock: The wall clock, in POSIX seconds (``MockClock.time`` in
                tests).

        Returns:
            The new deadline.
        """
        if not isinstance(when, datetime):
            raise ArgumentTypeError(
                "when", when, f"`when` must be a datetime (got {type(when).__name__} {when!r})"
            )
        now = float(clock())
        return cls(at=now + (when.timestamp() - float(wall_clock())), created_at=now, clock=clock)

    def is_never(self) -> bool:
        """Return whether this deadline never expires."""
        return self.at == math.inf

    def is_expired(self) -> bool:
        """Return whether the clock has reached the deadline."""
        return self.clock() >= self.at

    def remaining_seconds(self) -> float:
        """Return the seconds left: never below ``0.0``, ``math.inf`` for ``never()``."""
        if self.is_never():
            return math.inf
        return max(0.0, self.at - self.clock())

    def elapsed_seconds(self) -> float:
        """Return the seconds since this deadline was created."""
        return self.clock() - self.created_at

    def check_or_raise(self) -> None:
        """Raise ``DeadlineExceeded`` if the deadline has passed; otherwise do nothing.

        Raises:
            DeadlineExceeded: The deadline has passed. It carries this deadline
                and the seconds elapsed since its creation.
        """
        now = self.clock()
        if now >= self.at:
            raise DeadlineExceeded(self, now - self.created_at)

    def intersect(
        self, seconds: Seconds | None = None, *, other_seconds: Seconds | None = None
    ) -> Deadline:
        """Return the tighter of this deadline and one ``seconds`` from now.

        Args:
            seconds: A budget for a nested step, as seconds or a ``timedelta``.
            other_seconds: The same, under agent-deadline's keyword
                (``intersect(other_seconds=5)``). Give one of the two.

        Returns:
            A deadline on this deadline's clock, keeping its creation time.

        Raises:
            ArgumentTypeError: Both or neither of ``seconds`` and
                ``other_seconds`` were given.
        """
        if (seconds is None) == (other_seconds is None):
            raise ArgumentTypeError(
                "seconds",
                (seconds, other_seconds),
                "intersect() takes one budget: `seconds` or `other_seconds` "
                f"(got seconds={seconds!r}, other_seconds={other_seconds!r})",
            )
        budget = seconds if seconds is not None else other_seconds
        assert budget is not None
        parameter = "seconds" if seconds is not None else "other_seconds"
        span = to_seconds(budget, parameter)
        return self.intersect_deadline(Deadline.from_now(span, clock=self.clock))

    def intersect_deadline(self, other: Deadline | SupportsRemainingSeconds) -> Deadline:
        """Return the tighter of this deadline and ``other``.

        Args:
            other: Another deadline, or anything with ``remaining_seconds()``.
                A deadline on another clock is compared by its time left.

        Returns:
            A deadline on this deadline's clock, keeping its creation time, so
            ``elapsed_seconds()`` still counts from the start of the outer task.
        """
        if isinstance(other, Deadline) and other.clock is self.clock:
            other_at = other.at
        else:
            other_at = self.clock() + remaining_of(other)
        return Deadline(at=min(self.at, other_at), created_at=self.created_at, clock=self.clock)

    def __enter__(self) -> Deadline:
        """Enter a block that needs this deadline, refusing if it has passed."""
        self.check_or_raise()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave the block; never raises, never suppresses the block's exception."""
        return None


def remaining_of(
    deadline: Deadline | SupportsRemainingSeconds, parameter: str = "deadline"
) -> float:
    """Return the seconds left on anything with ``remaining_seconds()``.

    The value is checked, so a look-alike that returns nonsense fails here and
    not deep inside a timeout.

    Args:
        deadline: A ``Deadline`` or any object with ``remaining_seconds()``.
        parameter: The parameter's name, used in error messages.

    Returns:
        The seconds left: at least ``0.0``, ``math.inf`` for no deadline.

    Raises:
        ArgumentTypeError: ``deadline`` has no ``remaining_seconds()``, or it
            does not return a number (``None`` included: no deadline is
            ``math.inf``).
        ArgumentValueError: ``remaining_seconds()`` returned NaN.
    """
    method = getattr(deadline, "remaining_seconds", None)
    if not callable(method):
        raise ArgumentTypeError(
            parameter,
            deadline,
            f"`{parameter}` must be a Deadline or have remaining_seconds() "
            f"(got {type(deadline).__name__}); use Deadline.never() for no deadline",
        )
    left = method()
    try:
        seconds = real_to_float(left, parameter)
    except ArgumentTypeError:
        raise ArgumentTypeError(
            parameter,
            deadline,
            f"`{parameter}`.remaining_seconds() must return a number "
            f"(got {type(left).__name__} {left!r}); math.inf means no deadline",
        ) from None
    if math.isnan(seconds):
        raise ArgumentValueError(
            parameter, deadline, f"`{parameter}`.remaining_seconds() returned NaN"
        )
    return max(0.0, seconds)


def as_deadline(
    deadline: Deadline | SupportsRemainingSeconds,
    *,
    clock: Clock = time.monotonic,
    parameter: str = "deadline",
) -> Deadline:
    """Return ``deadline`` itself if it is a ``Deadline``, else one with the same time left.

    Args:
        deadline: A ``Deadline`` or any object with ``remaining_seconds()``.
        clock: The clock for a converted deadline.
        parameter: The parameter's name, used in error messages.

    Returns:
        A ``Deadline``.
    """
    if isinstance(deadline, Deadline):
        return deadline
    return Deadline.from_now(remaining_of(deadline, parameter), clock=clock)


def trusted_deadline(at: float, created_at: float, clock: Clock) -> Deadline:
    """Make a deadline from values already checked, without checking them again.

    For the run loop, which makes one deadline per item: ``at`` and
    ``created_at`` are floats (``at`` may be ``math.inf``) and ``clock`` is
    the callable the values were read from.

    Args:
        at: The moment the deadline passes, in seconds of ``clock``.
        created_at: When the deadline was made, in seconds of ``clock``.
        clock: The monotonic clock.

    Returns:
        The deadline, equal to ``Deadline(at=at, created_at=created_at, clock=clock)``.
    """
    deadline = object.__new__(Deadline)
    deadline.__dict__.update(at=float(at), created_at=float(created_at), clock=clock)
    return deadline
