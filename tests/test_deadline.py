from __future__ import annotations

import asyncio
import dataclasses
import fractions
import math
import numbers
import pickle
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_resume._deadline import (
    Deadline,
    MockClock,
    SupportsRemainingSeconds,
    as_deadline,
    remaining_of,
    to_seconds,
    trusted_deadline,
)
from agent_resume._errors import (
    AgentResumeError,
    ArgumentTypeError,
    ArgumentValueError,
    DeadlineExceeded,
)


@pytest.fixture
def clock() -> MockClock:
    return MockClock(start=100.0)


class Budget:
    """A look-alike that only has remaining_seconds()."""

    def __init__(self, left: object) -> None:
        self.left = left

    def remaining_seconds(self) -> object:
        return self.left


# --- to_seconds ---------------------------------------------------------------


def test_to_seconds_accepts_numbers_and_timedeltas() -> None:
    assert to_seconds(3) == 3.0
    assert to_seconds(2.5) == 2.5
    assert to_seconds(timedelta(minutes=2, milliseconds=500)) == 120.5
    assert to_seconds(math.inf) == math.inf
    assert to_seconds(-1) == -1.0


def test_to_seconds_refuses_nan_naming_the_parameter() -> None:
    with pytest.raises(ArgumentValueError, match="`time_budget`") as info:
        to_seconds(math.nan, "time_budget")
    assert info.value.parameter == "time_budget"


@pytest.mark.parametrize("bad", [True, False, "3", b"3", None, [1], 1j, object()])
def test_to_seconds_refuses_other_types(bad: object) -> None:
    with pytest.raises(
        ArgumentTypeError, match="`item_timeout` must be a number of seconds"
    ) as info:
        to_seconds(bad, "item_timeout")  # type: ignore[arg-type]
    assert (info.value.parameter, info.value.value) == ("item_timeout", bad)


class Seconds:
    """A real number that is neither int nor float: registered as numbers.Real."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value

    def __gt__(self, other: object) -> bool:
        return bool(self.value > other)  # type: ignore[operator]


numbers.Real.register(Seconds)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("2.5"), 2.5),
        (fractions.Fraction(3, 4), 0.75),
        (Seconds(1.5), 1.5),
        (Decimal("Infinity"), math.inf),
        (10**400, math.inf),
        (-(10**400), -math.inf),
    ],
)
def test_to_seconds_accepts_any_real_number(value: object, expected: float) -> None:
    assert to_seconds(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("nan", [Decimal("NaN"), Decimal("sNaN"), Seconds(math.nan)])
def test_to_seconds_refuses_every_kind_of_nan(nan: object) -> None:
    with pytest.raises(ArgumentValueError, match="`seconds` must be a number of seconds, not NaN"):
        to_seconds(nan)  # type: ignore[arg-type]


def test_durations_accept_numpy_scalars() -> None:
    np = pytest.importorskip("numpy")
    clock = MockClock()
    assert Deadline.from_now(np.int64(5), clock=clock).remaining_seconds() == 5.0
    assert Deadline.from_now(np.float32(0.5), clock=clock).remaining_seconds() == 0.5
    assert Deadline.never(clock=clock).intersect(np.float64(2)).at == 2.0
    with pytest.raises(ArgumentTypeError):
        Deadline.from_now(np.bool_(True), clock=clock)


def test_every_duration_parameter_takes_decimal_and_fraction(clock: MockClock) -> None:
    deadline = Deadline.from_now(Decimal("10"), clock=clock)
    clock.advance(fractions.Fraction(5, 2))
    assert deadline.remaining_seconds() == 7.5
    assert deadline.intersect(Decimal("1.5")).remaining_seconds() == 1.5
    assert Deadline(at=fractions.Fraction(201, 2), created_at=Decimal(100)).at == 100.5
    assert remaining_of(Budget(Decimal("4"))) == 4.0
    assert remaining_of(Budget(fractions.Fraction(1, 4))) == 0.25


def test_intersect_takes_agent_deadlines_keyword(clock: MockClock) -> None:
    outer = Deadline.from_now(30, clock=clock)
    assert outer.intersect(other_seconds=5).at == 105.0
    assert outer.intersect(other_seconds=timedelta(minutes=1)).at == outer.at


@pytest.mark.parametrize("kwargs", [{}, {"seconds": 1, "other_seconds": 2}])
def test_intersect_wants_exactly_one_budget(clock: MockClock, kwargs: dict[str, float]) -> None:
    with pytest.raises(ArgumentTypeError, match="one budget"):
        Deadline.from_now(3, clock=clock).intersect(**kwargs)


def test_intersect_names_the_keyword_in_errors(clock: MockClock) -> None:
    with pytest.raises(ArgumentTypeError, match="`other_seconds`") as info:
        Deadline.from_now(3, clock=clock).intersect(other_seconds="5")  # type: ignore[arg-type]
    assert info.value.parameter == "other_seconds"


# --- the agent-deadline 0.1 API -----------------------------------------------


def test_from_now_counts_down_on_the_clock(clock: MockClock) -> None:
    deadline = Deadline.from_now(10, clock=clock)
    assert deadline.at == 110.0
    assert deadline.remaining_seconds() == 10.0
    clock.advance(4)
    assert deadline.remaining_seconds() == 6.0
    assert deadline.elapsed_seconds() == 4.0
    assert not deadline.is_expired()


def test_deadline_expires_exactly_at_its_time(clock: MockClock) -> None:
    deadline = Deadline.from_now(5, clock=clock)
    clock.advance(4.999)
    assert not deadline.is_expired()
    clock.advance(0.001)
    assert deadline.is_expired()
    assert deadline.remaining_seconds() == 0.0


def test_remaining_is_floored_at_zero(clock: MockClock) -> None:
    deadline = Deadline.from_now(1, clock=clock)
    clock.advance(50)
    assert deadline.remaining_seconds() == 0.0


def test_negative_from_now_is_already_expired(clock: MockClock) -> None:
    deadline = Deadline.from_now(-3, clock=clock)
    assert deadline.is_expired()
    assert deadline.remaining_seconds() == 0.0
    with pytest.raises(DeadlineExceeded):
        deadline.check_or_raise()


def test_from_now_accepts_a_timedelta(clock: MockClock) -> None:
    assert Deadline.from_now(timedelta(hours=1), clock=clock).remaining_seconds() == 3600.0


def test_default_clock_is_monotonic() -> None:
    deadline = Deadline.from_now(3600)
    assert 0.0 < deadline.remaining_seconds() <= 3600.0
    assert not deadline.is_expired()


@pytest.mark.parametrize("make", [Deadline.never, lambda **kw: Deadline.from_now(math.inf, **kw)])
def test_never_and_infinite_from_now_behave_alike(clock: MockClock, make: object) -> None:
    deadline = make(clock=clock)  # type: ignore[operator]
    assert deadline.is_never()
    clock.advance(1e12)
    assert not deadline.is_expired()
    assert deadline.remaining_seconds() == math.inf
    assert deadline.elapsed_seconds() == 1e12
    deadline.check_or_raise()  # a no-op: would raise DeadlineExceeded otherwise
    assert deadline.at == math.inf


def test_a_finite_deadline_is_not_never(clock: MockClock) -> None:
    assert not Deadline.from_now(1e9, clock=clock).is_never()


def test_constructor_takes_at_and_defaults_created_at_to_now(clock: MockClock) -> None:
    deadline = Deadline(at=130.0, clock=clock)
    assert deadline.created_at == 100.0
    assert deadline.remaining_seconds() == 30.0


def test_constructor_positional_at_matches_agent_deadline() -> None:
    assert Deadline(math.inf).is_never()


def test_constructor_refuses_nan_at() -> None:
    with pytest.raises(ArgumentValueError, match="`at`"):
        Deadline(at=math.nan)


def test_check_or_raise_passes_before_and_raises_after(clock: MockClock) -> None:
    deadline = Deadline.from_now(2, clock=clock)
    deadline.check_or_raise()
    clock.advance(3)
    with pytest.raises(DeadlineExceeded) as info:
        deadline.check_or_raise()
    assert info.value.deadline is deadline
    assert info.value.elapsed_seconds == 3.0
    assert "3.000s" in str(info.value)


def test_deadline_exceeded_is_ours_and_not_a_timeout_or_os_error() -> None:
    assert issubclass(DeadlineExceeded, AgentResumeError)
    assert not issubclass(DeadlineExceeded, TimeoutError)
    assert not issubclass(DeadlineExceeded, asyncio.TimeoutError)
    assert not issubclass(DeadlineExceeded, OSError)


@pytest.mark.parametrize(
    "handler",
    [TimeoutError, asyncio.TimeoutError, OSError],
    ids=["TimeoutError", "asyncio.TimeoutError", "OSError"],
)
def test_a_timeout_handler_does_not_swallow_the_deadline(
    clock: MockClock, handler: type[Exception]
) -> None:
    deadline = Deadline.from_now(1, clock=clock)
    clock.advance(2)
    with pytest.raises(DeadlineExceeded):
        try:
            deadline.check_or_raise()
        except handler:
            pytest.fail(f"except {handler.__name__} caught DeadlineExceeded")


def test_the_retry_loop_of_the_issue_ends_at_the_job_deadline() -> None:
    # The pattern from issue 14: a per-call timeout handler must not eat the
    # job's deadline. On 3.11+ asyncio.TimeoutError is TimeoutError.
    clock = MockClock()
    deadline = Deadline.from_now(5, clock=clock)
    calls: list[int] = []

    async def call() -> None:
        calls.append(1)
        clock.advance(3)  # every call uses up 3 s of the job's budget
        await asyncio.sleep(10)

    async def job() -> None:
        for _ in range(3):
            try:
                deadline.check_or_raise()
                await asyncio.wait_for(call(), 0.001)
                break
            except asyncio.TimeoutError:
                continue  # meant for the one call

    with pytest.raises(DeadlineExceeded):
        asyncio.run(job())
    assert len(calls) == 2  # the third attempt never started


def test_deadline_is_frozen(clock: MockClock) -> None:
    deadline = Deadline.from_now(1, clock=clock)
    with pytest.raises(dataclasses.FrozenInstanceError):
        deadline.at = 0.0  # type: ignore[misc]


def test_clock_is_left_out_of_equality_and_repr(clock: MockClock) -> None:
    a = Deadline(at=5.0, created_at=1.0, clock=clock)
    b = Deadline(at=5.0, created_at=1.0)
    assert a == b
    assert hash(a) == hash(b)
    assert repr(a) == "Deadline(at=5.0, created_at=1.0)"


def test_deadline_and_its_error_pickle() -> None:
    deadline = Deadline(at=5.0, created_at=1.0)
    assert pickle.loads(pickle.dumps(deadline)) == deadline
    error = pickle.loads(pickle.dumps(DeadlineExceeded(deadline, 4.5)))
    assert (error.deadline, error.elapsed_seconds) == (deadline, 4.5)


# --- intersect ----------------------------------------------------------------


def test_intersect_picks_the_tighter_and_keeps_creation_time(clock: MockClock) -> None:
    outer = Deadline.from_now(30, clock=clock)
    clock.advance(10)
    inner = outer.intersect(5)
    assert inner.at == 115.0
    assert inner.created_at == outer.created_at
    assert inner.elapsed_seconds() == 10.0
    looser = outer.intersect(timedelta(minutes=5))
    assert looser.at == outer.at


def test_intersect_of_never_gives_the_other(clock: MockClock) -> None:
    tight = Deadline.never(clock=clock).intersect(7)
    assert tight.remaining_seconds() == 7.0
    assert not tight.is_never()
    assert Deadline.never(clock=clock).intersect(math.inf).is_never()


def test_intersect_deadline_keeps_self_creation_time(clock: MockClock) -> None:
    a = Deadline.from_now(10, clock=clock)
    clock.advance(2)
    b = Deadline.from_now(3, clock=clock)
    tighter = a.intersect_deadline(b)
    assert tighter.at == b.at
    assert tighter.created_at == a.created_at
    assert b.intersect_deadline(a).at == b.at
    assert b.intersect_deadline(a).created_at == b.created_at


def test_intersect_deadline_accepts_a_look_alike(clock: MockClock) -> None:
    deadline = Deadline.from_now(60, clock=clock).intersect_deadline(Budget(12.5))  # type: ignore[arg-type]
    assert deadline.remaining_seconds() == 12.5


def test_intersect_deadline_across_clocks_compares_time_left(clock: MockClock) -> None:
    other_clock = MockClock(start=5_000.0)
    other = Deadline.from_now(4, clock=other_clock)
    mine = Deadline.from_now(60, clock=clock).intersect_deadline(other)
    assert mine.at == 104.0


@given(
    st.floats(min_value=-1e6, max_value=1e6) | st.just(math.inf),
    st.floats(min_value=-1e6, max_value=1e6) | st.just(math.inf),
)
def test_intersect_is_the_minimum(first: float, second: float) -> None:
    clock = MockClock()
    a = Deadline.from_now(first, clock=clock)
    b = Deadline.from_now(second, clock=clock)
    assert a.intersect_deadline(b).at == min(a.at, b.at)
    assert a.intersect(second).at == min(a.at, b.at)


# --- context manager ----------------------------------------------------------


def test_context_manager_enters_when_time_is_left(clock: MockClock) -> None:
    deadline = Deadline.from_now(1, clock=clock)
    with deadline as entered:
        assert entered is deadline
        clock.advance(5)  # passing the deadline inside the block is not an error
    assert deadline.is_expired()


def test_context_manager_refuses_to_enter_when_expired(clock: MockClock) -> None:
    deadline = Deadline.from_now(0, clock=clock)
    ran = []
    with pytest.raises(DeadlineExceeded), deadline:
        ran.append(True)
    assert ran == []


def test_context_manager_does_not_suppress(clock: MockClock) -> None:
    with pytest.raises(KeyError), Deadline.from_now(1, clock=clock):
        raise KeyError("boom")


# --- wall clock ---------------------------------------------------------------


def test_at_wallclock_converts_an_aware_datetime(clock: MockClock) -> None:
    now = datetime.fromtimestamp(clock.time(), tz=timezone.utc)
    deadline = Deadline.at_wallclock(
        now + timedelta(minutes=10), clock=clock, wall_clock=clock.time
    )
    assert deadline.remaining_seconds() == 600.0
    clock.advance(600)
    assert deadline.is_expired()


def test_at_wallclock_reads_naive_datetimes_as_local_time(clock: MockClock) -> None:
    naive_local = datetime.fromtimestamp(clock.time() + 90)
    deadline = Deadline.at_wallclock(naive_local, clock=clock, wall_clock=clock.time)
    assert deadline.remaining_seconds() == pytest.approx(90.0)


def test_at_wallclock_in_the_past_is_expired(clock: MockClock) -> None:
    past = datetime.fromtimestamp(clock.time() - 1, tz=timezone.utc)
    assert Deadline.at_wallclock(past, clock=clock, wall_clock=clock.time).is_expired()


def test_at_wallclock_refuses_a_number() -> None:
    with pytest.raises(ArgumentTypeError, match="`when` must be a datetime"):
        Deadline.at_wallclock(12.0)  # type: ignore[arg-type]


# --- look-alikes --------------------------------------------------------------


def test_remaining_of_accepts_anything_with_remaining_seconds(clock: MockClock) -> None:
    assert remaining_of(Budget(3)) == 3.0  # type: ignore[arg-type]
    assert remaining_of(Budget(-2.0)) == 0.0  # type: ignore[arg-type]
    assert remaining_of(Deadline.never(clock=clock)) == math.inf
    assert isinstance(Budget(1), SupportsRemainingSeconds)


@pytest.mark.parametrize("bad", [None, 5, "soon"])
def test_remaining_of_refuses_objects_without_the_method(bad: object) -> None:
    with pytest.raises(ArgumentTypeError, match=r"`deadline` must be a Deadline"):
        remaining_of(bad)  # type: ignore[arg-type]


def test_remaining_of_refuses_none_and_nan_answers() -> None:
    with pytest.raises(ArgumentTypeError, match=r"math\.inf means no deadline"):
        remaining_of(Budget(None))  # type: ignore[arg-type]
    with pytest.raises(ArgumentValueError, match="NaN"):
        remaining_of(Budget(math.nan))  # type: ignore[arg-type]


def test_as_deadline_passes_deadlines_through_and_converts_look_alikes(clock: MockClock) -> None:
    deadline = Deadline.from_now(5, clock=clock)
    assert as_deadline(deadline) is deadline
    converted = as_deadline(Budget(8.0), clock=clock)  # type: ignore[arg-type]
    assert converted.at == 108.0
    assert as_deadline(Budget(math.inf), clock=clock).is_never()  # type: ignore[arg-type]


# --- MockClock ----------------------------------------------------------------


def test_mock_clock_moves_only_when_advanced() -> None:
    clock = MockClock(start=7.0, epoch=1000.0)
    assert clock() == 7.0
    assert clock() == 7.0
    clock.advance(timedelta(seconds=3))
    assert (clock(), clock.time()) == (10.0, 1003.0)
    assert repr(clock) == "MockClock(now=10.0)"


@pytest.mark.parametrize("bad", [-1, math.inf])
def test_mock_clock_never_goes_back_or_to_infinity(bad: float) -> None:
    with pytest.raises(ArgumentValueError, match="`seconds` must be finite and at least 0"):
        MockClock().advance(bad)


def test_trusted_deadline_is_the_checked_one() -> None:
    # The run loop's per-item deadline skips the checks; it must be the same value.
    clock = MockClock(start=5.0)
    fast = trusted_deadline(12, 5, clock)
    slow = Deadline(at=12.0, created_at=5.0, clock=clock)
    assert fast == slow and repr(fast) == repr(slow) and hash(fast) == hash(slow)
    assert (type(fast.at), type(fast.created_at)) == (float, float)
    assert fast.remaining_seconds() == 7.0 and fast.clock is clock
    assert dataclasses.replace(fast, at=6.0).at == 6.0
    assert trusted_deadline(math.inf, 5.0, clock).is_never()
