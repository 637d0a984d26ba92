"""``ctx.should_stop()`` stops an item whose next call cannot fit before its deadline."""

from __future__ import annotations

import math

from agent_resume import ResumableRun, RunConfig, Usage
from agent_resume.testing import MockClock


def config(clock, **kwargs):
    return RunConfig(
        job_id="j", store="memory:", clock=clock, progress=False, handle_signals=False, **kwargs
    )


def test_an_item_stops_when_its_next_call_would_not_fit():
    clock = MockClock()
    seen = []

    def process(item, ctx):
        while (reason := ctx.should_stop()) is None:
            clock.advance(10)  # a call takes 10 s
            ctx.record_usage(Usage(input_tokens=1, output_tokens=1))
        seen.append((ctx.turns, ctx.time_left(), ctx.next_call_seconds(), reason))
        return ctx.turns

    ResumableRun(config(clock, item_timeout=25)).run(process, ["a"])
    # After 2 calls (20 s), 5 s are left: a third 10 s call would be cut, so none is started.
    [(turns, left, need, reason)] = seen
    assert (turns, left, need) == (2, 5.0, 10.0)
    assert reason.name == "deadline"
    assert "5.000s left is less than the 10.000s a call takes" in reason.message


def test_a_new_item_learns_from_the_calls_of_the_run():
    clock = MockClock()
    first_turns = []

    def process(item, ctx):
        first_turns.append(ctx.next_call_seconds())
        while ctx.should_stop() is None and ctx.turns < 3:
            clock.advance(8)
            ctx.record_usage(Usage(input_tokens=1, output_tokens=1))
        return ctx.turns

    ResumableRun(config(clock, item_timeout=100)).run(process, ["a", "b"])
    assert first_turns == [0.0, 8.0]


def test_no_deadline_never_stops_for_time():
    clock = MockClock()

    def process(item, ctx):
        clock.advance(1000)
        ctx.record_usage(Usage(input_tokens=1, output_tokens=1))
        assert ctx.time_left() == math.inf
        assert ctx.should_stop() is None
        return 1

    report = ResumableRun(config(clock)).run(process, ["a"])
    assert report.done == 1
