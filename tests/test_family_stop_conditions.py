"""llm-stop-conditions' cases (the Rust crate's tests/integration.rs), in this project's words.

Each test is named after the behaviour it pins; its docstring names the
crate's test it translates. Where the crate spells a thing differently, the
translation uses this project's spelling: ``MaxIters`` is ``MaxTurns``,
``MaxUsd`` is ``MaxCost``, an ``Evaluator`` is ``AnyOf`` (``|``), a panic is
an ``ArgumentValueError``, an ``Instant`` is a reading of a ``MockClock``,
and ``snapshot.last_progress`` is ``LoopState.idle_seconds`` (the time since
it).
"""

from __future__ import annotations

import math

import pytest

from agent_resume import (
    AnyOf,
    ArgumentValueError,
    Custom,
    LoopState,
    MaxCost,
    MaxSeconds,
    MaxTokens,
    MaxTurns,
    NoProgress,
    StopReason,
)
from agent_resume.testing import MockClock

EMPTY = LoopState()


def test_an_empty_snapshot_is_all_zero() -> None:
    """snapshot_default_is_zeroed."""
    assert (EMPTY.turns, EMPTY.total_tokens, EMPTY.cost_usd, EMPTY.elapsed_seconds) == (
        0,
        0,
        0.0,
        0.0,
    )
    assert EMPTY.idle_seconds is None


# --- MaxTurns (MaxIters) ---------------------------------------------------------------


def test_max_turns_below_the_limit_goes_on() -> None:
    """max_iters_below_limit_does_not_stop."""
    assert MaxTurns(5)(LoopState(turns=4)) is None


def test_max_turns_at_the_limit_stops() -> None:
    """max_iters_at_limit_stops."""
    assert MaxTurns(5)(LoopState(turns=5)) is not None


def test_max_turns_above_the_limit_stops() -> None:
    """max_iters_above_limit_stops."""
    assert MaxTurns(5)(LoopState(turns=9_999)) is not None


def test_max_turns_message_has_the_numbers() -> None:
    """max_iters_message_includes_numbers."""
    reason = MaxTurns(10)(LoopState(turns=10))
    assert reason is not None
    assert "10" in reason.message
    assert "limit" in reason.message


def test_max_turns_of_zero_is_refused() -> None:
    """max_iters_zero_panics."""
    with pytest.raises(ArgumentValueError, match="`n` must be at least 1"):
        MaxTurns(0)


def test_a_condition_can_be_renamed() -> None:
    """max_iters_custom_name."""
    reason = MaxTurns(3).with_name("ceiling")(LoopState(turns=3))
    assert reason is not None
    assert reason.name == "ceiling"


# --- MaxTokens -----------------------------------------------------------------------------


def test_max_tokens_below_the_limit_goes_on() -> None:
    """max_tokens_below_limit_does_not_stop."""
    assert MaxTokens(1_000)(LoopState(input_tokens=999)) is None


def test_max_tokens_at_or_above_the_limit_stops() -> None:
    """max_tokens_at_or_above_stops."""
    assert MaxTokens(1_000)(LoopState(input_tokens=1_000)) is not None
    assert MaxTokens(1_000)(LoopState(input_tokens=4_000, output_tokens=1_000)) is not None


def test_max_tokens_of_zero_is_refused() -> None:
    """max_tokens_zero_panics."""
    with pytest.raises(ArgumentValueError, match="`n` must be at least 1"):
        MaxTokens(0)


# --- MaxCost (MaxUsd) ----------------------------------------------------------------------


def test_max_cost_below_the_limit_goes_on() -> None:
    """max_usd_below_limit_does_not_stop."""
    assert MaxCost(5.00)(LoopState(cost_usd=4.99)) is None


def test_max_cost_at_or_above_the_limit_stops() -> None:
    """max_usd_at_or_above_stops."""
    assert MaxCost(5.00)(LoopState(cost_usd=5.00)) is not None
    assert MaxCost(5.00)(LoopState(cost_usd=9.99)) is not None


@pytest.mark.parametrize("limit", [0.0, -1.0, math.nan], ids=["zero", "negative", "nan"])
def test_max_cost_must_be_greater_than_zero(limit: float) -> None:
    """max_usd_zero_panics, max_usd_negative_panics, max_usd_nan_panics."""
    with pytest.raises(ArgumentValueError, match="`usd` must be greater than 0"):
        MaxCost(limit)


def test_max_cost_message_has_the_amount() -> None:
    """max_usd_message_formatting."""
    reason = MaxCost(5.0)(LoopState(cost_usd=5.5))
    assert reason is not None
    assert "5.5" in reason.message


# --- MaxSeconds: the clock forms --------------------------------------------------------------


def test_max_seconds_before_its_moment_goes_on() -> None:
    """max_seconds_before_deadline_does_not_stop."""
    assert MaxSeconds(after=60, clock=MockClock())(EMPTY) is None


def test_max_seconds_after_its_moment_stops_even_on_an_empty_snapshot() -> None:
    """max_seconds_after_deadline_stops."""
    clock = MockClock(start=10.0)
    assert MaxSeconds(at=clock() - 0.001, clock=clock)(EMPTY) is not None


def test_max_seconds_fires_once_the_time_has_passed() -> None:
    """max_seconds_real_wait, with a clock that moves when told."""
    clock = MockClock()
    condition = MaxSeconds(after=0.02, clock=clock)
    assert condition(EMPTY) is None
    clock.advance(0.04)
    assert condition(EMPTY) is not None


# --- NoProgress: idle time -----------------------------------------------------------------------


def test_no_progress_within_the_window_goes_on() -> None:
    """no_progress_within_window_does_not_stop."""
    clock = MockClock()
    assert NoProgress(max_idle=60, clock=clock)(LoopState(idle_seconds=0.0)) is None


def test_no_progress_past_the_window_stops() -> None:
    """no_progress_past_window_stops."""
    clock = MockClock(start=10.0)
    condition = NoProgress(max_idle=0.1, since=clock() - 0.5, clock=clock)
    assert condition(LoopState(idle_seconds=0.5)) is not None


def test_no_progress_trusts_the_snapshots_idle_time() -> None:
    """no_progress_uses_snapshot_marker_when_present."""
    clock = MockClock(start=100.0)
    condition = NoProgress(max_idle=1, since=clock(), clock=clock)  # fresh: would not trip
    assert condition(LoopState(idle_seconds=10.0)) is not None


def test_no_progress_without_idle_time_measures_from_since() -> None:
    """no_progress_falls_back_to_since."""
    clock = MockClock(start=100.0)
    assert NoProgress(max_idle=1, since=clock() - 5, clock=clock)(EMPTY) is not None


# --- Custom ------------------------------------------------------------------------------------------


def test_a_custom_predicate_can_stop() -> None:
    """custom_predicate_can_trip."""
    assert Custom("cancel", lambda s: s.turns > 3)(LoopState(turns=5)) is not None


def test_a_custom_predicate_can_decline() -> None:
    """custom_predicate_can_decline."""
    assert Custom("cancel", lambda s: False)(EMPTY) is None


def test_a_custom_message_names_the_condition() -> None:
    """custom_message_includes_name."""
    reason = Custom("user_canceled", lambda s: True)(EMPTY)
    assert reason is not None
    assert "user_canceled" in reason.message


# --- AnyOf (Evaluator) ----------------------------------------------------------------------------------


def test_an_empty_any_of_stops_nothing() -> None:
    """evaluator_returns_none_when_empty."""
    empty = AnyOf()
    assert empty(EMPTY) is None
    assert empty.conditions == ()
    assert len(empty.conditions) == 0


def test_any_of_gives_the_first_reason_in_order() -> None:
    """evaluator_returns_first_match_in_order."""
    stop = AnyOf(MaxTurns(10), MaxCost(5.0))
    assert stop(LoopState(turns=100, cost_usd=100.0)).name == "max_turns"  # type: ignore[union-attr]


def test_any_of_falls_through_to_a_later_condition() -> None:
    """evaluator_falls_through_to_later_condition."""
    stop = MaxTurns(10) | MaxCost(5.0)
    assert stop(LoopState(turns=1, cost_usd=10.0)).name == "max_cost"  # type: ignore[union-attr]


def test_any_of_goes_on_when_every_condition_does() -> None:
    """evaluator_none_when_all_pass."""
    assert (MaxTurns(10) | MaxCost(5.0) | MaxTokens(100))(EMPTY) is None


def test_adding_conditions_grows_the_composite() -> None:
    """evaluator_add_grows_len."""
    stop = AnyOf()
    stop = stop | MaxTurns(1)
    stop = stop | MaxCost(1.0)
    assert len(stop.conditions) == 2  # type: ignore[attr-defined]


def test_built_ins_and_custom_conditions_mix() -> None:
    """evaluator_mixes_builtins_and_custom."""
    stop = MaxTurns(1_000_000) | Custom("flag", lambda s: s.total_tokens > 42)
    assert stop(LoopState(input_tokens=100)).name == "flag"  # type: ignore[union-attr]


def test_the_reason_reports_the_numbers() -> None:
    """evaluator_reports_message."""
    reason = AnyOf(MaxTurns(2))(LoopState(turns=2))
    assert reason is not None
    assert "2 turns" in reason.message
    assert "limit of 2" in reason.message


# --- StopReason ------------------------------------------------------------------------------------


def test_a_reason_prints_as_name_colon_message() -> None:
    """stop_reason_display."""
    assert str(StopReason("foo", "bar")) == "foo: bar"


def test_reasons_compare_by_name_and_message() -> None:
    """stop_reason_equality."""
    assert StopReason("foo", "bar") == StopReason("foo", "bar")
    assert StopReason("foo", "bar") != StopReason("foo", "baz")
