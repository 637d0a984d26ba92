from __future__ import annotations

import copy
import pickle
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_resume._deadline import Deadline, MockClock
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._stop import (
    AllOf,
    AnyOf,
    ConsecutiveErrors,
    Custom,
    LoopState,
    MaxCost,
    MaxItems,
    MaxSeconds,
    MaxTokens,
    MaxTurns,
    NoProgress,
    Not,
    Renamed,
    RepeatedOutput,
    RepeatedToolCall,
    StopCondition,
    StopPhrase,
    StopReason,
    ToolCall,
    as_stop_condition,
)

EMPTY = LoopState()


# --- built-ins ----------------------------------------------------------------


def test_max_turns_fires_at_the_limit_with_the_numbers() -> None:
    assert MaxTurns(12)(LoopState(turns=11)) is None
    assert MaxTurns(12)(LoopState(turns=12)) == StopReason(
        "max_turns", "12 turns reached the limit of 12"
    )
    assert MaxTurns(1)(LoopState(turns=1)) == StopReason(
        "max_turns", "1 turn reached the limit of 1"
    )


def test_max_tokens_counts_input_and_output() -> None:
    assert MaxTokens(100)(LoopState(input_tokens=60, output_tokens=39)) is None
    reason = MaxTokens(100)(LoopState(input_tokens=60, output_tokens=45))
    assert reason == StopReason("max_tokens", "105 tokens reached the limit of 100")


def test_max_cost_fires_at_the_limit_and_never_on_unknown_cost() -> None:
    assert MaxCost(2.5)(LoopState(cost_usd=2.49)) is None
    reason = MaxCost(2.5)(LoopState(cost_usd=2.5))
    assert reason == StopReason("max_cost", "$2.50 spent reached the limit of $2.50")
    assert MaxCost(0.01)(LoopState(cost_usd=None, input_tokens=10**9)) is None
    # A small budget's message shows what was spent (it read "$0.0000 spent").
    reason = MaxCost(0.00001)(LoopState(cost_usd=0.000027))
    assert reason is not None
    assert reason.message == "$0.000027 spent reached the limit of $0.00001"


def test_max_seconds_accepts_a_timedelta() -> None:
    condition = MaxSeconds(timedelta(minutes=2))
    assert condition == MaxSeconds(120)
    assert condition(LoopState(elapsed_seconds=119.9)) is None
    reason = condition(LoopState(elapsed_seconds=120.25))
    assert reason == StopReason("max_seconds", "120.250s elapsed reached the limit of 120s")


def test_max_items_reads_the_run_level_count() -> None:
    assert MaxItems(3)(LoopState(items=2, turns=50)) is None
    assert MaxItems(3)(LoopState(items=3)) == StopReason(
        "max_items", "3 items reached the limit of 3"
    )


def test_consecutive_errors() -> None:
    assert ConsecutiveErrors(3)(LoopState(consecutive_errors=2)) is None
    assert ConsecutiveErrors(3)(LoopState(consecutive_errors=3)) == StopReason(
        "consecutive_errors", "3 consecutive errors reached the limit of 3"
    )


def test_stop_phrase_ignores_case_by_default() -> None:
    condition = StopPhrase("FINAL ANSWER", "<done>")
    assert condition(LoopState(last_text="still thinking")) is None
    reason = condition(LoopState(last_text="ok, final answer: 42"))
    assert reason == StopReason("stop_phrase", "the model's output contains 'FINAL ANSWER'")
    assert condition(LoopState(last_text="x <DONE>")) is not None


def test_stop_phrase_case_folds_unicode() -> None:
    assert StopPhrase("STRASSE")(LoopState(last_text="die straße")) is not None


def test_stop_phrase_case_sensitive() -> None:
    condition = StopPhrase("DONE", case_sensitive=True)
    assert condition(LoopState(last_text="done")) is None
    assert condition(LoopState(last_text="DONE.")) is not None


def test_repeated_tool_call_needs_the_same_call_in_a_row() -> None:
    search = ToolCall.of("search", {"q": "x", "n": 1})
    same = ToolCall.of("search", '{"n": 1,  "q": "x"}')
    other = ToolCall.of("search", {"q": "y"})
    condition = RepeatedToolCall(3)
    assert condition(LoopState(tool_calls=(search, same))) is None
    assert condition(LoopState(tool_calls=(search, other, search, same))) is None
    reason = condition(LoopState(tool_calls=(other, search, same, search)))
    assert reason == StopReason(
        "repeated_tool_call",
        "tool 'search' was called 3 times in a row with the same arguments (limit 3)",
    )


def test_tool_call_arguments_are_canonical() -> None:
    assert ToolCall.of("f", '{"b": [1, 2], "a": "é"}') == ("f", '{"a":"é","b":[1,2]}')
    assert ToolCall.of("f", {"a": "é", "b": [1, 2]}).arguments == '{"a":"é","b":[1,2]}'
    assert ToolCall.of("f").arguments == "{}"
    assert ToolCall.of("f", "not json {").arguments == "not json {"


def test_repeated_output_needs_identical_consecutive_outputs() -> None:
    condition = RepeatedOutput(3)
    assert condition(LoopState(recent_outputs=("a", "a"))) is None
    assert condition(LoopState(recent_outputs=("a", "a", "b", "a"))) is None
    reason = condition(LoopState(recent_outputs=("b", "a", "a", "a")))
    assert reason == StopReason("repeated_output", "the last 3 outputs were identical (limit 3)")


def test_no_progress_with_a_count_is_a_deprecated_repeated_output() -> None:
    with pytest.warns(DeprecationWarning, match=r"use RepeatedOutput\(3\)") as caught:
        condition = NoProgress(3)
    assert caught[0].filename == __file__  # the warning points at the caller
    assert condition == RepeatedOutput(3)
    assert type(condition) is RepeatedOutput
    with pytest.warns(DeprecationWarning, match="RepeatedOutput"):
        assert NoProgress(turns=4) == RepeatedOutput(4)


@pytest.mark.parametrize("bad", [2.5, "3", timedelta(seconds=3), True])
def test_no_progress_refuses_a_positional_that_is_not_a_count(bad: object) -> None:
    with pytest.raises(ArgumentTypeError, match="NoProgress takes `max_idle=`") as info:
        NoProgress(bad)  # type: ignore[arg-type]
    assert info.value.parameter == "turns"


def test_no_progress_refuses_both_meanings_at_once() -> None:
    with pytest.raises(ArgumentTypeError, match="RepeatedOutput"):
        NoProgress(3, max_idle=5)


def test_no_progress_needs_max_idle() -> None:
    with pytest.raises(ArgumentTypeError, match="`max_idle`"):
        NoProgress()


def test_no_progress_reads_idle_seconds_from_the_snapshot() -> None:
    clock = MockClock()
    condition = NoProgress(max_idle=60, clock=clock)
    assert condition(LoopState(idle_seconds=59.5)) is None
    assert condition(LoopState(idle_seconds=60.0)) == StopReason(
        "no_progress", "60.000s without progress reached the limit of 60s"
    )


def test_no_progress_without_a_snapshot_marker_measures_from_since() -> None:
    clock = MockClock()
    condition = NoProgress(max_idle=timedelta(seconds=5), clock=clock)
    assert condition(EMPTY) is None
    clock.advance(5)
    assert condition(EMPTY) is not None
    stale = NoProgress(max_idle=1, since=-4.0, clock=clock)
    assert stale(EMPTY) is not None


def test_max_seconds_after_fires_from_the_clock_with_an_empty_snapshot() -> None:
    clock = MockClock()
    condition = MaxSeconds(after=20, clock=clock)
    assert condition(EMPTY) is None
    assert condition(LoopState(elapsed_seconds=1e9)) is None  # the snapshot is not read
    clock.advance(20)
    assert condition(EMPTY) == StopReason(
        "max_seconds", "the clock passed the deadline (0.000s ago)"
    )


def test_max_seconds_at_takes_a_clock_reading_a_deadline_or_a_datetime() -> None:
    clock = MockClock(start=100.0)
    assert MaxSeconds(at=99.0, clock=clock)(EMPTY) is not None
    assert MaxSeconds(at=101.0, clock=clock)(EMPTY) is None
    assert MaxSeconds(at=Deadline.from_now(-1, clock=clock))(EMPTY) is not None
    cut_off = datetime.fromtimestamp(clock.time() + 30, timezone.utc)
    wall = MaxSeconds(at=cut_off, clock=clock, wall_clock=clock.time)
    assert wall(EMPTY) is None
    clock.advance(30)
    assert wall(EMPTY) is not None
    assert repr(MaxSeconds(at=101.0, clock=clock)) == "MaxSeconds(at=101.0)"


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"s": 3, "after": 3}, {"s": 3, "at": 5.0}, {"at": 5.0, "after": 1}],
)
def test_max_seconds_takes_exactly_one_form(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ArgumentTypeError, match="exactly one of `s`, `at` and `after`"):
        MaxSeconds(**kwargs)


def test_max_seconds_after_refuses_a_negative_span() -> None:
    with pytest.raises(ArgumentValueError, match=r"`after` must be at least 0 seconds \(got -1\)"):
        MaxSeconds(after=-1)
    assert MaxSeconds(after=0, clock=MockClock())(EMPTY) is not None


def test_max_seconds_at_refuses_strings_and_nan() -> None:
    with pytest.raises(ArgumentTypeError, match="`at` must be a datetime, a Deadline"):
        MaxSeconds(at="06:00")  # type: ignore[arg-type]
    with pytest.raises(ArgumentValueError, match="`at` must not be NaN"):
        MaxSeconds(at=float("nan"))


def test_limits_take_any_real_number() -> None:
    assert MaxCost(Decimal("2.5")) == MaxCost(2.5)
    assert MaxSeconds(Decimal("30")) == MaxSeconds(30)


def test_with_name_renames_the_reason_and_keeps_the_message() -> None:
    ceiling = MaxTurns(3).with_name("ceiling")
    assert isinstance(ceiling, Renamed)
    assert ceiling(LoopState(turns=3)) == StopReason("ceiling", "3 turns reached the limit of 3")
    assert ceiling(LoopState(turns=2)) is None
    assert MaxTurns(3) == MaxTurns(3)  # the original is unchanged
    assert ceiling.with_name("roof") == MaxTurns(3).with_name("roof")  # no nesting
    assert repr(ceiling) == "MaxTurns(3).with_name('ceiling')"
    both = (MaxTurns(3) | MaxCost(1.0)).with_name("budget")
    assert repr(both) == "(MaxTurns(3) | MaxCost(1.0)).with_name('budget')"
    assert both(LoopState(cost_usd=2.0)).name == "budget"  # type: ignore[union-attr]
    assert pickle.loads(pickle.dumps(ceiling)) == ceiling


@pytest.mark.parametrize("bad", ["", None, 3])
def test_with_name_wants_a_non_empty_string(bad: object) -> None:
    with pytest.raises(ArgumentValueError, match="`name` must be a non-empty str"):
        MaxTurns(3).with_name(bad)  # type: ignore[arg-type]


def test_an_empty_any_of_stops_nothing() -> None:
    empty = AnyOf()
    assert empty(LoopState(turns=10**6, cost_usd=10**6)) is None
    assert repr(empty) == "AnyOf()"
    assert (empty | MaxTurns(2))(LoopState(turns=2)) is not None
    assert (~empty)(EMPTY) is not None


def test_an_empty_all_of_is_refused() -> None:
    with pytest.raises(ArgumentValueError, match="at least one condition"):
        AllOf()


def test_custom_takes_a_bool_or_a_reason() -> None:
    long_text = Custom("long_text", lambda s: len(s.last_text) > 5)
    assert long_text(LoopState(last_text="short")) is None
    assert long_text(LoopState(last_text="much longer")) == StopReason(
        "long_text", "long_text held"
    )
    own = Custom("own", lambda s: StopReason("budget", f"{s.turns} turns"))
    assert own(LoopState(turns=4)) == StopReason("budget", "4 turns")


def test_custom_refuses_other_return_values() -> None:
    with pytest.raises(ArgumentTypeError, match="must return a bool, a StopReason or None"):
        Custom("odd", lambda s: "yes")(EMPTY)


# --- validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MaxTurns(0), r"`n` must be at least 1 \(got 0\)"),
        (lambda: MaxTokens(-5), r"`n` must be at least 1 \(got -5\)"),
        (lambda: MaxItems(0), r"`n` must be at least 1 \(got 0\)"),
        (lambda: ConsecutiveErrors(0), r"`n` must be at least 1 \(got 0\)"),
        (lambda: MaxCost(0), r"`usd` must be greater than 0 \(got 0\)"),
        (lambda: MaxCost(float("nan")), r"`usd` must be greater than 0 \(got nan\)"),
        (lambda: MaxSeconds(-1), r"`s` must be greater than 0 \(got -1\)"),
        (lambda: RepeatedToolCall(1), r"`times` must be at least 2 \(got 1\)"),
        (lambda: RepeatedOutput(1), r"`turns` must be at least 2 \(got 1\)"),
        (lambda: NoProgress(max_idle=0), r"`max_idle` must be greater than 0 \(got 0\)"),
        (lambda: StopPhrase(), r"`phrases` must hold at least one phrase"),
        (lambda: StopPhrase("ok", ""), r"`phrases` must not hold ''"),
        (lambda: Custom("", bool), r"`name` must be a non-empty str"),
        (lambda: AllOf(), r"`conditions` must hold at least one condition"),
    ],
)
def test_limits_are_validated_naming_the_parameter(make: Any, message: str) -> None:
    with pytest.raises(ArgumentValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MaxTurns(2.5), r"`n` must be an int \(got float 2.5\)"),
        (lambda: MaxTurns(True), r"`n` must be an int \(got bool True\)"),
        (lambda: MaxTokens("40000"), r"`n` must be an int \(got str '40000'\)"),
        (lambda: MaxCost(timedelta(1)), r"`usd` must be a number \(got timedelta"),
        (lambda: MaxSeconds("30"), r"`s` must be a number of seconds or a timedelta \(got str"),
        (lambda: StopPhrase("ok", 3), r"`phrases` must be strings \(got int 3\)"),
        (lambda: Custom("x", 3), r"`predicate` must be callable"),
        (lambda: as_stop_condition(8), r"`stop` must be a stop condition or a callable"),
    ],
)
def test_wrong_types_are_refused_naming_the_parameter(make: Any, message: str) -> None:
    with pytest.raises(ArgumentTypeError, match=message):
        make()


def test_conditions_pickle_and_deepcopy() -> None:
    condition = (MaxTurns(8) | StopPhrase("x", case_sensitive=True)) & ~RepeatedOutput(3)
    assert pickle.loads(pickle.dumps(condition)) == condition
    assert copy.deepcopy(condition) == condition
    state = LoopState(turns=8, last_text="x")
    assert pickle.loads(pickle.dumps(condition))(state) == condition(state)


def test_conditions_are_immutable() -> None:
    with pytest.raises(AttributeError, match="immutable"):
        MaxTurns(3).n = 4  # type: ignore[misc]


# --- composition --------------------------------------------------------------


def test_or_stops_when_either_does_with_the_first_reason() -> None:
    condition = MaxTurns(8) | MaxTokens(40_000)
    assert condition(LoopState(turns=3, input_tokens=100)) is None
    assert condition(LoopState(turns=8)) == StopReason(
        "max_turns", "8 turns reached the limit of 8"
    )
    assert condition(LoopState(input_tokens=40_000)) == StopReason(
        "max_tokens", "40000 tokens reached the limit of 40000"
    )
    assert condition(LoopState(turns=9, input_tokens=50_000)).name == "max_turns"  # type: ignore[union-attr]


def test_and_stops_when_both_do_joining_reasons() -> None:
    condition = MaxTurns(2) & StopPhrase("done")
    assert condition(LoopState(turns=5)) is None
    assert condition(LoopState(last_text="done")) is None
    assert condition(LoopState(turns=2, last_text="done")) == StopReason(
        "max_turns&stop_phrase",
        "2 turns reached the limit of 2; the model's output contains 'done'",
    )


def test_not_stops_when_the_inner_does_not() -> None:
    condition = ~StopPhrase("continue")
    assert condition(LoopState(last_text="please continue")) is None
    assert condition(LoopState(last_text="finished")) == StopReason(
        "not", "StopPhrase('continue') did not hold"
    )


def test_double_negation_gives_back_the_condition() -> None:
    inner = MaxTurns(3)
    assert ~~inner is inner
    assert Not(Not(inner)) is inner


def test_composites_flatten() -> None:
    a, b, c, d = MaxTurns(1), MaxTokens(2), MaxCost(3.0), MaxSeconds(4)
    assert ((a | b) | (c | d)) == AnyOf(a, b, c, d)
    assert ((a | b) | (c | d)).conditions == (a, b, c, d)  # type: ignore[attr-defined]
    assert (a & (b & c)).conditions == (a, b, c)  # type: ignore[attr-defined]
    mixed = (a | b) & c
    assert mixed.conditions == (AnyOf(a, b), c)  # type: ignore[attr-defined]


def test_plain_callables_compose_on_either_side() -> None:
    def too_long(state: LoopState) -> bool:
        return len(state.last_text) > 3

    left = too_long | MaxTurns(5)
    right = MaxTurns(5) & too_long
    assert isinstance(left, AnyOf)
    assert isinstance(right, AllOf)
    assert left(LoopState(last_text="abcd")) == StopReason("too_long", "too_long held")
    assert right(LoopState(last_text="abcd")) is None
    assert right(LoopState(last_text="abcd", turns=5)) is not None
    assert (
        repr(left)
        == "Custom('too_long', test_plain_callables_compose_on_either_side.<locals>.too_long) | MaxTurns(5)"
    )


def test_composing_with_a_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        MaxTurns(3) | 5  # type: ignore[operator]
    with pytest.raises(TypeError):
        "x" & MaxTurns(3)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("condition", "text"),
    [
        (MaxTurns(8) | MaxTokens(40_000), "MaxTurns(8) | MaxTokens(40000)"),
        (
            (MaxTurns(8) | MaxTokens(40_000)) & MaxCost(2.0),
            "(MaxTurns(8) | MaxTokens(40000)) & MaxCost(2.0)",
        ),
        (~(MaxTurns(8) & RepeatedOutput(3)), "~(MaxTurns(8) & RepeatedOutput(3))"),
        (~MaxSeconds(30), "~MaxSeconds(30.0)"),
        (StopPhrase("done", "stop"), "StopPhrase('done', 'stop')"),
        (StopPhrase("X", case_sensitive=True), "StopPhrase('X', case_sensitive=True)"),
        (RepeatedToolCall(3) | ConsecutiveErrors(2), "RepeatedToolCall(3) | ConsecutiveErrors(2)"),
        (AnyOf(MaxItems(4)), "AnyOf(MaxItems(4))"),
        (Custom("odd", len), "Custom('odd', len)"),
    ],
)
def test_repr_reads_like_the_constructor(condition: StopCondition, text: str) -> None:
    assert repr(condition) == text


def test_repr_evaluates_back_to_an_equal_condition() -> None:
    condition = (MaxTurns(8) | MaxTokens(40_000)) & ~StopPhrase("a", case_sensitive=True)
    rebuilt = eval(repr(condition), {name: globals()[name] for name in globals()})
    assert rebuilt == condition
    assert hash(rebuilt) == hash(condition)


def test_equality_is_by_type_and_arguments() -> None:
    assert MaxTurns(3) == MaxTurns(3)
    assert MaxTurns(3) != MaxTurns(4)
    assert MaxTurns(3) != MaxItems(3)
    assert len({MaxTurns(3), MaxTurns(3), MaxTokens(3)}) == 2


def test_as_stop_condition_wraps_functions_and_keeps_conditions() -> None:
    condition = MaxTurns(2)
    assert as_stop_condition(condition) is condition
    wrapped = as_stop_condition(lambda s: s.turns > 1)
    assert isinstance(wrapped, Custom)
    assert wrapped.name == "<lambda>"


def test_loop_state_total_tokens_and_reason_as_dict() -> None:
    assert LoopState(input_tokens=3, output_tokens=4).total_tokens == 7
    reason = StopReason("max_turns", "8 turns reached the limit of 8")
    assert reason.to_dict() == {"name": "max_turns", "message": "8 turns reached the limit of 8"}
    assert str(reason) == "max_turns: 8 turns reached the limit of 8"


# --- composition laws (hypothesis) --------------------------------------------
#
# A leaf is a Custom condition that fires when its bit is set in the state's
# `turns`; a tree of |, & and ~ over leaves must agree with any/all/not over
# the same bits, for every assignment of bits.

N_LEAVES = 4


def _leaf(index: int) -> StopCondition:
    return Custom(f"bit{index}", lambda s: bool(s.turns >> index & 1))


Tree = Any  # ("leaf", i) | ("or", [trees]) | ("and", [trees]) | ("not", tree)

trees: st.SearchStrategy[Tree] = st.recursive(
    st.tuples(st.just("leaf"), st.integers(0, N_LEAVES - 1)),
    lambda kids: st.one_of(
        st.tuples(st.just("or"), st.lists(kids, min_size=2, max_size=3)),
        st.tuples(st.just("and"), st.lists(kids, min_size=2, max_size=3)),
        st.tuples(st.just("not"), kids),
    ),
    max_leaves=10,
)


def _build(tree: Tree) -> StopCondition:
    kind, arg = tree
    if kind == "leaf":
        return _leaf(arg)
    if kind == "not":
        return ~_build(arg)
    built = [_build(t) for t in arg]
    result = built[0]
    for other in built[1:]:
        result = (result | other) if kind == "or" else (result & other)
    return result


def _truth(tree: Tree, bits: int) -> bool:
    kind, arg = tree
    if kind == "leaf":
        return bool(bits >> arg & 1)
    if kind == "not":
        return not _truth(arg, bits)
    values = [_truth(t, bits) for t in arg]
    return any(values) if kind == "or" else all(values)


@given(trees, st.integers(0, 2**N_LEAVES - 1))
def test_composition_agrees_with_any_all_not(tree: Tree, bits: int) -> None:
    condition = _build(tree)
    fired = condition(LoopState(turns=bits)) is not None
    assert fired == _truth(tree, bits)


@given(st.lists(st.booleans(), min_size=1, max_size=6))
def test_or_and_of_constants_match_any_and_all(values: list[bool]) -> None:
    conditions = [Custom(f"c{i}", lambda s, v=v: v) for i, v in enumerate(values)]
    assert (AnyOf(*conditions)(EMPTY) is not None) == any(values)
    assert (AllOf(*conditions)(EMPTY) is not None) == all(values)
    assert (Not(AnyOf(*conditions))(EMPTY) is not None) == (not any(values))


@given(trees, trees, st.integers(0, 2**N_LEAVES - 1))
def test_de_morgan(left: Tree, right: Tree, bits: int) -> None:
    a, b = _build(left), _build(right)
    state = LoopState(turns=bits)
    assert ((~(a | b))(state) is None) == (((~a) & (~b))(state) is None)
    assert ((~(a & b))(state) is None) == (((~a) | (~b))(state) is None)
