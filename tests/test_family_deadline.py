"""agent-deadline 0.1's test behaviours, in this project's words.

`Deadline` promises to be a drop-in for agent-deadline's. Each test here pins
one behaviour of that package's own suite (MukundaKatta/agent-deadline,
tests/test_deadline.py; the test it follows is named in each docstring),
written against a ``MockClock`` instead of sleeping, plus the behaviours
issue 14 found missing: ``DeadlineExceeded`` outside the ``TimeoutError``
tree, durations of any real type, and ``intersect(other_seconds=...)``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import math
import time
from decimal import Decimal

import pytest

import agent_resume
from agent_resume import Deadline, DeadlineExceeded
from agent_resume.testing import MockClock


@pytest.fixture
def clock() -> MockClock:
    return MockClock()  # starts at 0.0: exact sums, like the real test's sleeps


# --- factories -------------------------------------------------------------------


def test_from_now_is_that_many_seconds_past_the_monotonic_clock() -> None:
    """test_from_now_sets_at_relative_to_monotonic, on the real clock."""
    before = time.monotonic()
    deadline = Deadline.from_now(0.5)
    after = time.monotonic()
    assert before + 0.5 <= deadline.at <= after + 0.5


def test_a_negative_duration_gives_an_expired_deadline(clock: MockClock) -> None:
    """test_from_now_negative_gives_already_expired_deadline."""
    deadline = Deadline.from_now(-1.0, clock=clock)
    assert deadline.is_expired()
    assert deadline.remaining_seconds() == 0.0


def test_never_does_not_expire_and_has_infinite_time_left(clock: MockClock) -> None:
    """test_never_is_not_expired_and_remaining_is_inf."""
    deadline = Deadline.never(clock=clock)
    clock.advance(10**9)
    assert deadline.is_never()
    assert not deadline.is_expired()
    assert deadline.remaining_seconds() == math.inf


def test_checking_never_does_nothing_however_often(clock: MockClock) -> None:
    """test_never_check_or_raise_is_noop."""
    deadline = Deadline.never(clock=clock)
    for _ in range(5):
        clock.advance(10**6)
        assert deadline.check_or_raise() is None


def test_the_constructor_takes_an_absolute_time() -> None:
    """test_constructor_directly_with_at_works."""
    target = time.monotonic() + 60.0
    deadline = Deadline(at=target)
    assert deadline.at == target
    assert not deadline.is_expired()
    assert Deadline(target).at == target  # positionally too


def test_a_finite_deadline_is_not_never(clock: MockClock) -> None:
    """test_is_never_false_for_finite_deadline."""
    assert not Deadline.from_now(5.0, clock=clock).is_never()
    assert not Deadline(at=clock() + 1.0, clock=clock).is_never()


def test_an_infinite_duration_is_never(clock: MockClock) -> None:
    """test_from_now_inf_behaves_like_never."""
    deadline = Deadline.from_now(math.inf, clock=clock)
    assert deadline.is_never()
    assert not deadline.is_expired()
    assert deadline.remaining_seconds() == math.inf
    assert deadline.check_or_raise() is None


def test_the_version_is_a_non_empty_string() -> None:
    """test_version_is_exposed."""
    assert isinstance(agent_resume.__version__, str)
    assert agent_resume.__version__


# --- is_expired and remaining_seconds ------------------------------------------------


def test_a_deadline_in_the_future_is_not_expired(clock: MockClock) -> None:
    """test_is_expired_false_when_in_future."""
    assert not Deadline.from_now(10.0, clock=clock).is_expired()


def test_a_deadline_in_the_past_is_expired(clock: MockClock) -> None:
    """test_is_expired_true_when_past."""
    deadline = Deadline.from_now(0.001, clock=clock)
    clock.advance(0.01)
    assert deadline.is_expired()


def test_time_left_is_positive_and_at_most_the_duration(clock: MockClock) -> None:
    """test_remaining_seconds_positive_when_in_future."""
    deadline = Deadline.from_now(1.0, clock=clock)
    clock.advance(0.25)
    assert 0.0 < deadline.remaining_seconds() <= 1.0


def test_time_left_is_zero_once_expired(clock: MockClock) -> None:
    """test_remaining_seconds_zero_when_expired."""
    deadline = Deadline.from_now(0.001, clock=clock)
    clock.advance(0.01)
    assert deadline.remaining_seconds() == 0.0


def test_time_left_is_never_negative(clock: MockClock) -> None:
    """test_remaining_seconds_never_negative."""
    assert Deadline.from_now(-100.0, clock=clock).remaining_seconds() == 0.0


# --- check_or_raise --------------------------------------------------------------------


def test_checking_before_the_deadline_passes(clock: MockClock) -> None:
    """test_check_or_raise_does_not_raise_when_in_future."""
    assert Deadline.from_now(5.0, clock=clock).check_or_raise() is None


def test_checking_after_the_deadline_raises_with_the_deadline(clock: MockClock) -> None:
    """test_check_or_raise_raises_when_past."""
    deadline = Deadline.from_now(0.001, clock=clock)
    clock.advance(0.01)
    with pytest.raises(DeadlineExceeded) as info:
        deadline.check_or_raise()
    assert info.value.deadline is deadline
    assert info.value.elapsed_seconds > 0.0


def test_the_error_carries_the_elapsed_time_and_says_so(clock: MockClock) -> None:
    """test_deadline_exceeded_carries_elapsed."""
    deadline = Deadline.from_now(0.001, clock=clock)
    clock.advance(0.02)
    with pytest.raises(DeadlineExceeded) as info:
        deadline.check_or_raise()
    assert info.value.elapsed_seconds >= 0.02
    assert "deadline exceeded" in str(info.value)


# --- elapsed_seconds -------------------------------------------------------------------


def test_elapsed_time_counts_up(clock: MockClock) -> None:
    """test_elapsed_seconds_counts_up."""
    deadline = Deadline.from_now(10.0, clock=clock)
    first = deadline.elapsed_seconds()
    clock.advance(0.02)
    second = deadline.elapsed_seconds()
    assert second - first == pytest.approx(0.02)


def test_elapsed_time_starts_at_zero(clock: MockClock) -> None:
    """test_elapsed_seconds_starts_near_zero."""
    assert Deadline.from_now(10.0, clock=clock).elapsed_seconds() == 0.0


# --- intersect -------------------------------------------------------------------------


def test_intersect_takes_a_sooner_budget(clock: MockClock) -> None:
    """test_intersect_picks_tighter_when_other_sooner."""
    parent = Deadline.from_now(60.0, clock=clock)
    child = parent.intersect(1.0)
    assert child.remaining_seconds() <= 1.0
    assert child.at < parent.at


def test_intersect_keeps_the_parent_when_the_budget_is_later(clock: MockClock) -> None:
    """test_intersect_keeps_parent_when_other_later."""
    parent = Deadline.from_now(1.0, clock=clock)
    assert parent.intersect(60.0).at == parent.at


def test_intersect_with_an_infinite_budget_keeps_the_parent(clock: MockClock) -> None:
    """test_intersect_with_never_keeps_self."""
    parent = Deadline.from_now(5.0, clock=clock)
    assert parent.intersect(math.inf).at == parent.at


def test_intersect_keeps_the_parents_start_for_elapsed(clock: MockClock) -> None:
    """test_intersect_preserves_created_at_for_elapsed."""
    parent = Deadline.from_now(60.0, clock=clock)
    clock.advance(0.02)
    assert parent.intersect(1.0).elapsed_seconds() >= 0.02


def test_intersect_deadline_takes_the_tighter(clock: MockClock) -> None:
    """test_intersect_deadline_picks_tighter."""
    a = Deadline.from_now(10.0, clock=clock)
    b = Deadline.from_now(1.0, clock=clock)
    assert a.intersect_deadline(b).at == b.at


def test_intersect_deadline_with_never_keeps_self(clock: MockClock) -> None:
    """test_intersect_deadline_with_never_keeps_self."""
    finite = Deadline.from_now(5.0, clock=clock)
    assert finite.intersect_deadline(Deadline.never(clock=clock)).at == finite.at


def test_never_intersected_with_a_deadline_is_that_deadline(clock: MockClock) -> None:
    """test_intersect_deadline_never_with_finite_picks_finite."""
    finite = Deadline.from_now(5.0, clock=clock)
    assert Deadline.never(clock=clock).intersect_deadline(finite).at == finite.at


# --- context manager --------------------------------------------------------------------


def test_the_block_runs_while_time_is_left(clock: MockClock) -> None:
    """test_context_manager_enters_when_alive."""
    deadline = Deadline.from_now(5.0, clock=clock)
    with deadline as inner:
        assert inner is deadline
        assert not inner.is_expired()


def test_the_block_never_starts_past_the_deadline(clock: MockClock) -> None:
    """test_context_manager_raises_on_enter_if_already_expired."""
    deadline = Deadline.from_now(0.001, clock=clock)
    clock.advance(0.01)
    ran = []
    with pytest.raises(DeadlineExceeded), deadline:
        ran.append(True)
    assert ran == []


def test_leaving_the_block_late_does_not_raise(clock: MockClock) -> None:
    """test_context_manager_does_not_auto_raise_on_exit."""
    deadline = Deadline.from_now(0.05, clock=clock)
    with deadline:
        clock.advance(0.1)
    assert deadline.is_expired()


def test_the_blocks_own_exception_goes_through(clock: MockClock) -> None:
    """test_context_manager_does_not_suppress_inner_exceptions."""
    with pytest.raises(RuntimeError, match="inner"), Deadline.from_now(5.0, clock=clock):
        raise RuntimeError("inner")


def test_a_deadline_is_frozen(clock: MockClock) -> None:
    """test_deadline_is_frozen."""
    deadline = Deadline.from_now(5.0, clock=clock)
    with pytest.raises(dataclasses.FrozenInstanceError):
        deadline.at = 0.0  # type: ignore[misc]


# --- what issue 14 found missing --------------------------------------------------------


def test_deadline_exceeded_is_not_a_timeout_error() -> None:
    """agent-deadline's DeadlineExceeded derives from Exception only."""
    assert not issubclass(DeadlineExceeded, TimeoutError)
    assert not issubclass(DeadlineExceeded, asyncio.TimeoutError)
    assert not issubclass(DeadlineExceeded, OSError)
    assert issubclass(DeadlineExceeded, Exception)


@pytest.mark.parametrize(
    "seconds",
    [5, 5.0, Decimal("5"), fractions.Fraction(10, 2)],
    ids=["int", "float", "Decimal", "Fraction"],
)
def test_any_real_duration_is_taken(clock: MockClock, seconds: object) -> None:
    """agent-deadline calls float(seconds); here every real number is taken."""
    assert Deadline.from_now(seconds, clock=clock).remaining_seconds() == 5.0  # type: ignore[arg-type]
    assert Deadline.never(clock=clock).intersect(seconds).remaining_seconds() == 5.0  # type: ignore[arg-type]


def test_numpy_durations_are_taken(clock: MockClock) -> None:
    """numpy.int64 and numpy.float32, when numpy is installed."""
    np = pytest.importorskip("numpy")
    assert Deadline.from_now(np.int64(5), clock=clock).remaining_seconds() == 5.0
    assert Deadline.from_now(np.float32(2.5), clock=clock).remaining_seconds() == 2.5


def test_intersect_takes_the_other_seconds_keyword(clock: MockClock) -> None:
    """agent-deadline's signature: intersect(other_seconds)."""
    parent = Deadline.from_now(60.0, clock=clock)
    assert parent.intersect(other_seconds=5).remaining_seconds() == 5.0
