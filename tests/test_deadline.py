from __future__ import annotations

import dataclasses
import math
import pickle
from datetime import datetime, timedelta, timezone

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


@pytest.mark.parametrize("bad", [True, "3", None, [1]])
def test_to_seconds_refuses_other_types(bad: object) -> None:
    with pytest.raises(ArgumentTypeError, match="`item_timeout` must be a number of seconds"):
        to_seconds(bad, "item_timeout")  # type: ignore[arg-type]


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


def test_deadline_exceeded_is_a_timeout_error_and_ours() -> None:
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert issubclass(DeadlineExceeded, AgentResumeError)


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
