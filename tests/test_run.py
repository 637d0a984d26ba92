import asyncio
import dataclasses
import math
import os
from datetime import datetime, timezone

import pytest

from agent_resume import (
    AgentResume,
    DeadlineExceeded,
    InMemoryStore,
    JsonlStore,
    ResultJsonlStore,
)
from agent_resume._accounting._usage import Usage
from agent_resume._deadline import MockClock
from agent_resume._errors import ArgumentTypeError
from agent_resume._run._config import RunConfig
from agent_resume._run._context import ItemContext
from agent_resume._run._report import ItemOutcome, RunReport
from agent_resume._run._runner import ResumableRun
from agent_resume._stop import MaxTurns, StopPhrase, StopReason
from agent_resume.testing import SimulatedLLM

ITEMS = [f"item-{i}" for i in range(10)]


def config(tmp_path, **kwargs):
    kwargs.setdefault("store", str(tmp_path / "job.jsonl"))
    return RunConfig(job_id="job", progress=False, **kwargs)


def records(tmp_path):
    return list(ResultJsonlStore(str(tmp_path / "job.jsonl")).iter_records())


def completions(tmp_path):
    return [r["id"] for r in records(tmp_path) if "id" in r and r.get("status") is None]


def noop(item, ctx):
    return None


def test_every_item_is_done_once_and_the_result_kept(tmp_path):
    report = ResumableRun(config(tmp_path)).run(lambda item, ctx: item.upper(), ITEMS)
    assert (report.done, report.failed, report.remaining, report.stop_reason) == (
        10,
        0,
        0,
        "completed",
    )
    assert sorted(completions(tmp_path)) == sorted(ITEMS)
    with AgentResume(str(tmp_path / "job.jsonl")).resume_or_start("job") as session:
        assert dict(session.results())["item-3"] == "ITEM-3"


def test_items_done_in_an_earlier_run_are_skipped(tmp_path):
    run = ResumableRun(config(tmp_path, max_items=4))
    first = run.run(noop, ITEMS)
    assert (first.done, first.remaining, first.stop_reason) == (4, 6, "item_budget")
    seen = []
    second = ResumableRun(config(tmp_path)).run(lambda item, ctx: seen.append(item), ITEMS)
    assert seen == ITEMS[4:]
    assert (second.done, second.already_done, second.remaining) == (6, 4, 0)
    assert len(completions(tmp_path)) == 10


def test_an_exception_is_a_failure_and_the_run_goes_on(tmp_path):
    def process(item, ctx):
        if item == "item-2":
            raise RuntimeError("boom")
        return item

    report = ResumableRun(config(tmp_path)).run(process, ITEMS)
    assert (report.done, report.failed, report.remaining) == (9, 1, 1)
    failure = next(r for r in records(tmp_path) if r.get("status") == "failed")
    assert failure["id"] == "item-2"
    assert "RuntimeError: boom" in failure["error"]


def test_failed_items_are_retried_then_quarantined(tmp_path):
    attempts = []

    def process(item, ctx):
        attempts.append(ctx.attempt)
        raise ValueError("always")

    cfg = config(tmp_path, max_attempts=3)
    for _ in range(4):
        report = ResumableRun(cfg).run(process, ["only"])
    assert attempts == [1, 2, 3]
    assert (report.failed, report.quarantined, report.remaining) == (0, 1, 0)


def test_fail_fast_records_the_failure_then_reraises(tmp_path):
    seen = []

    def process(item, ctx):
        seen.append(item)
        if item == "item-1":
            raise KeyError("bad")

    with pytest.raises(KeyError, match="bad"):
        ResumableRun(config(tmp_path, fail_fast=True)).run(process, ITEMS)
    assert seen == ["item-0", "item-1"]
    recs = records(tmp_path)
    assert [r["id"] for r in recs if r.get("status") == "failed"] == ["item-1"]
    end = [r for r in recs if r.get("run") == "end"][-1]
    assert end["report"]["stop_reason"] == "fail_fast"
    assert end["report"]["done"] == 1


def test_no_item_is_admitted_after_the_time_budget(tmp_path):
    clock = MockClock()

    def process(item, ctx):
        clock.advance(5 if item == "item-2" else 0)

    report = ResumableRun(config(tmp_path, time_budget=2.0, clock=clock)).run(process, ITEMS)
    # The third item overran the run's deadline: it is recorded, the fourth never starts.
    assert report.done == 3
    assert report.stop_reason == "time_budget"
    assert report.stop_message == "the run's deadline passed"
    assert report.remaining == 7


def test_an_item_is_not_started_when_recent_items_took_longer_than_the_time_left(tmp_path):
    clock = MockClock()

    def process(item, ctx):
        clock.advance(10)

    cfg = config(tmp_path, time_budget=35, clock=clock)
    report = ResumableRun(cfg).run(process, ITEMS)
    # After three items (t=30) 5 s are left, less than the 10 s items take.
    assert report.done == 3
    assert report.stop_reason == "time_budget"
    assert "recent items" in report.stop_message


def test_finish_by_is_a_wall_clock_cut_off(tmp_path):
    clock = MockClock(epoch=1_000_000.0)
    cutoff = datetime.fromtimestamp(1_000_004.5, tz=timezone.utc)

    def process(item, ctx):
        clock.advance(1)

    cfg = config(tmp_path, finish_by=cutoff, clock=clock, wall_clock=clock.time)
    report = ResumableRun(cfg).run(process, ITEMS)
    assert report.done == 4
    assert report.stop_reason == "time_budget"


def test_item_deadline_is_the_item_timeout_intersected_with_the_run(tmp_path):
    clock = MockClock()
    deadlines = []

    def process(item, ctx):
        deadlines.append(ctx.deadline.at)
        clock.advance(4)

    cfg = config(tmp_path, time_budget=100, item_timeout=30, clock=clock)
    ResumableRun(cfg).run(process, ["a", "b"])
    assert deadlines == [30.0, 34.0]
    clock2 = MockClock()
    seen = []
    run = ResumableRun(
        RunConfig(
            job_id="j2",
            store="memory:",
            time_budget=10,
            item_timeout=30,
            grace_period=5,
            clock=clock2,
            progress=False,
        )
    )
    run.run(lambda item, ctx: seen.append(ctx.deadline.at), ["x"])
    # The run's deadline is soft: an item in flight may go on for the grace period.
    assert seen == [15.0]


def test_a_sync_item_past_its_deadline_is_a_retryable_failure(tmp_path):
    clock = MockClock()

    def process(item, ctx):
        clock.advance(6)
        assert ctx.should_stop() == StopReason("deadline", "the item's deadline passed")
        ctx.deadline.check_or_raise()

    report = ResumableRun(config(tmp_path, item_timeout=5, clock=clock)).run(process, ["a"])
    assert report.failed == 1
    failure = next(r for r in records(tmp_path) if r.get("status") == "failed")
    assert failure["retryable"] is True
    assert "DeadlineExceeded" in failure["error"]


def test_record_usage_adds_to_the_item_and_the_run_and_is_stored(tmp_path):
    llm = SimulatedLLM(seed=3)
    seen_usage = []

    def process(item, ctx):
        messages = [{"role": "user", "content": item}]
        for _ in range(2):
            response = llm.complete(messages)
            ctx.record_usage(response)
            messages.append(response["choices"][0]["message"])
        assert ctx.turns == 2
        return ctx.usage.total_tokens

    cfg = config(tmp_path, prices=llm.prices, on_usage=lambda i, u: seen_usage.append((i, u)))
    report = ResumableRun(cfg).run(process, ["a", "b", "c"])
    assert report.usage.calls == 6
    assert len(seen_usage) == 6
    total = sum((u for _, u in seen_usage), Usage())
    assert report.usage.total_tokens == total.total_tokens
    assert report.usage.cost_usd == pytest.approx(total.cost_usd)
    done = next(r for r in records(tmp_path) if r.get("id") == "a")
    assert done["usage"]["calls"] == 2
    assert done["usage"]["in"] + done["usage"]["out"] == done["result"]


def test_cost_budget_stops_admission_and_the_report_names_it(tmp_path):
    llm = SimulatedLLM(input_price=1000.0, output_price=1000.0)

    def process(item, ctx):
        ctx.record_usage(llm.complete([{"role": "user", "content": item}]))

    stops = []
    cfg = config(tmp_path, prices=llm.prices, max_cost_usd=0.05, on_stop=stops.append)
    report = ResumableRun(cfg).run(process, ITEMS)
    assert report.stop_reason == "cost_budget"
    assert 0 < report.done < 10
    assert report.usage.cost_usd >= 0.05
    assert [s.name for s in stops] == ["max_cost"]


def test_a_usage_naming_its_model_without_a_cost_is_priced_by_the_runs_table(tmp_path):
    # Built by hand (a provider the SDK readers do not know): priced as a response is.
    priced = []

    def process(item, ctx):
        usage = Usage(input_tokens=1_000_000, output_tokens=100_000, model="gpt-4o-mini")
        priced.append(ctx.record_usage(usage))
        ctx.record_usage(Usage(input_tokens=1, cost_usd=0.25, model="gpt-4o-mini"))  # kept

    report = ResumableRun(config(tmp_path, max_cost_usd=1.0)).run(process, ["a", "b"])
    assert (report.done, report.stop_reason) == (2, "completed")
    # $0.15 / $0.60 per million, from genai-prices or the built-in table.
    assert [u.cost_usd for u in priced] == [pytest.approx(0.21), pytest.approx(0.21)]
    assert all(u.price_source is not None for u in priced)
    assert report.usage.cost_usd == pytest.approx(2 * (0.21 + 0.25))
    own = {"gpt-4o-mini": {"input": 1.0, "output": 10.0}}
    priced.clear()
    own_config = RunConfig(
        job_id="own", store=str(tmp_path / "own.jsonl"), prices=own, progress=False
    )
    ResumableRun(own_config).run(process, ["a"])
    assert priced[0].cost_usd == pytest.approx(2.0)
    assert priced[0].price_source == "own prices"

    def several_calls(item, ctx):
        # A sum of three calls: whether each was above the context tier is unknown.
        several = Usage(input_tokens=300_000, calls=3, model="gemini-2.5-pro")
        priced.append(ctx.record_usage(several))
        # A sum of two models, without calls: no model to price.
        two = Usage(input_tokens=5, model="gpt-4o") + Usage(input_tokens=5, model="gpt-4o-mini")
        priced.append(ctx.record_usage(two))

    priced.clear()
    ResumableRun(own_config).run(several_calls, ["b"])
    assert [(u.cost_usd, u.calls) for u in priced] == [(None, 3), (None, 1)]


def test_token_budget_stops_admission(tmp_path):
    def process(item, ctx):
        ctx.record_usage(Usage(input_tokens=60, output_tokens=40, cost_usd=0.0))

    report = ResumableRun(config(tmp_path, max_tokens=250)).run(process, ITEMS)
    assert (report.done, report.stop_reason) == (3, "token_budget")
    assert report.usage.total_tokens == 300


def test_should_stop_reads_the_stop_conditions_and_the_reason_is_recorded(tmp_path):
    llm = SimulatedLLM(finish_after=3)

    def process(item, ctx):
        messages = [{"role": "user", "content": item}]
        while ctx.should_stop() is None:
            response = llm.complete(messages)
            ctx.record_usage(response)
            messages.append(response["choices"][0]["message"])
        return ctx.turns

    cfg = config(tmp_path, prices=llm.prices, stop=MaxTurns(5) | StopPhrase("DONE"))
    ResumableRun(cfg).run(process, ["a"])
    done = next(r for r in records(tmp_path) if r.get("id") == "a")
    assert done["result"] == 3
    assert done["stop"] == "stop_phrase"


@pytest.mark.parametrize("store", ["job.jsonl", "memory:"])
def test_an_item_retried_in_the_same_run_counts_its_failed_attempts_turns(tmp_path, store):
    # MaxTurns(5) allows 5 calls over all attempts; an attempt the run itself
    # retried started again from 0 (3 + 5 calls) on JSONL and in-memory stores.
    llm = SimulatedLLM(seed=3)
    starts = []

    def process(item, ctx):
        starts.append((ctx.attempt, ctx.loop_state().turns))
        messages = [{"role": "user", "content": item}]
        while ctx.should_stop() is None:
            response = llm.complete(messages)
            ctx.record_usage(response)
            messages.append(response["choices"][0]["message"])
            if ctx.attempt == 1 and ctx.turns == 3:
                raise ConnectionError("the link dropped")
        return ctx.turns

    path = store if store == "memory:" else str(tmp_path / store)
    report = ResumableRun(config(tmp_path, store=path, prices=llm.prices, stop=MaxTurns(5))).run(
        process, ["a"]
    )
    assert starts == [(1, 0), (2, 3)]
    assert (report.done, report.usage.calls) == (1, 5)


def test_hooks_see_every_outcome(tmp_path):
    outcomes: list[ItemOutcome] = []

    def process(item, ctx):
        if item == "item-1":
            raise RuntimeError("x")
        return item

    ResumableRun(config(tmp_path, on_item_done=outcomes.append, max_attempts=1)).run(
        process, ITEMS[:3]
    )
    assert [(o.item_id, o.status) for o in outcomes] == [
        ("item-0", "done"),
        ("item-1", "quarantined"),
        ("item-2", "done"),
    ]
    assert isinstance(outcomes[1].error, RuntimeError)
    assert outcomes[2].result == "item-2"


def test_threads_record_every_item_exactly_once(tmp_path):
    import threading

    names = set()

    def process(item, ctx):
        names.add(threading.current_thread().name)
        if item.endswith("7"):
            raise RuntimeError("seven")
        return item

    items = [f"i{n}" for n in range(300)]
    report = ResumableRun(config(tmp_path, concurrency=4)).run(process, items)
    assert (report.done, report.failed) == (270, 30)
    done = completions(tmp_path)
    assert len(done) == len(set(done)) == 270
    assert len(names) > 1


def test_threads_respect_the_item_budget(tmp_path):
    report = ResumableRun(config(tmp_path, concurrency=4, max_items=5)).run(noop, ITEMS)
    assert (report.done, report.stop_reason, report.remaining) == (5, "item_budget", 5)


def test_fail_fast_with_threads(tmp_path):
    def process(item, ctx):
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        ResumableRun(config(tmp_path, concurrency=3, fail_fast=True)).run(process, ITEMS)
    end = [r for r in records(tmp_path) if r.get("run") == "end"][-1]
    assert end["report"]["stop_reason"] == "fail_fast"


def test_the_report_is_recorded_and_reads_back(tmp_path):
    report = ResumableRun(config(tmp_path)).run(noop, ITEMS[:3])
    ResumableRun(config(tmp_path)).run(noop, ITEMS[:5])
    with AgentResume(str(tmp_path / "job.jsonl")).resume_or_start("job") as session:
        ends = [r for r in session.runs if r["run"] == "end"]
        starts = [r for r in session.runs if r["run"] == "start"]
    assert len(ends) == len(starts) == 2
    first = RunReport.from_dict(ends[0]["report"])
    # The record holds ISO-8601 times to the millisecond (the report schema).
    assert first.ended_at == pytest.approx(report.ended_at, abs=1e-3)
    assert first == dataclasses.replace(
        report, started_at=first.started_at, ended_at=first.ended_at
    )
    assert RunReport.from_dict(ends[1]["report"]).already_done == 3


def test_remaining_is_unknown_for_an_iterator_left_unread(tmp_path):
    report = ResumableRun(config(tmp_path, max_items=2)).run(noop, iter(ITEMS))
    assert report.remaining is None
    assert "unknown" in report.format()


def test_a_result_that_cannot_be_stored_quarantines_the_item_and_keeps_what_it_paid(tmp_path):
    # The same code would pay for the same result again: no later run calls it,
    # until `retry` after a fix.
    calls = []

    def process(item, ctx):
        calls.append(item)
        ctx.record_usage(Usage(input_tokens=1000, output_tokens=100, cost_usd=0.5))
        return {"reply": object()} if item == "a" else {"reply": "fine"}

    report = ResumableRun(config(tmp_path)).run(process, ["a", "b"])
    assert (report.done, report.failed, report.quarantined) == (1, 1, 1)
    assert report.usage.cost_usd == 1.0
    failure = next(r for r in records(tmp_path) if r.get("status") == "failed")
    assert failure["retryable"] is False and "JSON-encodable" in failure["error"]
    assert failure["usage"]["cost"] == 0.5
    again = ResumableRun(config(tmp_path)).run(process, ["a", "b"])
    assert (again.done, again.failed, again.quarantined) == (0, 0, 1)
    assert calls == ["a", "b"]


@pytest.mark.parametrize("items", ["items.jsonl", None, "pandas"])
def test_an_input_that_is_not_a_collection_of_items_is_refused_before_anything_is_written(
    tmp_path, items
):
    if items == "pandas":
        import pandas as pd

        items = pd.DataFrame({"id": [1, 2]})
    seen = []
    run = ResumableRun(config(tmp_path))
    with pytest.raises(ArgumentTypeError, match="`items`"):
        run.run(lambda item, ctx: seen.append(item), items)

    async def aprocess(item, ctx):
        seen.append(item)

    with pytest.raises(ArgumentTypeError, match="`items`"):
        asyncio.run(run.arun(aprocess, items))
    assert seen == [] and not (tmp_path / "job.jsonl").exists()


class _Job:
    def process(self, item, ctx):
        return item


@pytest.mark.parametrize(
    ("process", "shown"),
    [
        (lambda item: item, "<lambda>(item)"),
        (_Job.process, "_Job.process(self, item, ctx)"),  # the class's, not an instance's
        (lambda item, ctx, extra: item, "<lambda>(item, ctx, extra)"),
    ],
)
def test_a_process_that_cannot_take_item_and_ctx_is_refused_before_any_attempt(
    tmp_path, process, shown
):
    # Each item failed with a TypeError, an attempt used, run after run, until all were
    # quarantined.
    run = ResumableRun(config(tmp_path))
    with pytest.raises(ArgumentTypeError, match="`process` is called as process") as info:
        run.run(process, ["a", "b"])
    assert shown in str(info.value)
    assert not (tmp_path / "job.jsonl").exists()
    # What can take two arguments runs: defaults, *args, a bound method.
    for fine in (lambda item, ctx=None, **kw: item, lambda *args: args[0], _Job().process):
        assert ResumableRun(config(tmp_path)).run(fine, ["a", "b"]).failed == 0


def test_a_run_reads_ids_from_the_field_named_by_key(tmp_path):
    items = [{"doc_id": "a", "text": "x"}, {"doc_id": "b", "text": "y"}]
    first = ResumableRun(config(tmp_path, max_items=1)).run(noop, items, key="doc_id")
    report = ResumableRun(config(tmp_path)).run(noop, items, key="doc_id")
    assert (first.done, report.done, report.already_done, report.remaining) == (1, 1, 1, 0)
    assert completions(tmp_path) == ["a", "b"]


def test_an_exception_whose_str_raises_is_recorded_and_the_run_goes_on(tmp_path):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no text")

    def process(item, ctx):
        if item == "a":
            raise Unprintable()
        return item

    report = ResumableRun(config(tmp_path)).run(process, ["a", "b"])
    assert (report.done, report.failed, report.stop_reason) == (1, 1, "failures")
    failure = next(r for r in records(tmp_path) if r.get("status") == "failed")
    assert failure["error"] == "Unprintable: <str() of the exception raised RuntimeError>"
    with pytest.raises(Unprintable):
        ResumableRun(config(tmp_path, fail_fast=True)).run(process, ["a"])
    assert "Unprintable" in records(tmp_path)[-1]["report"]["stop_message"]


def test_a_store_that_keeps_no_results_does_not_fail_an_item_for_its_result(tmp_path):
    store = JsonlStore(str(tmp_path / "job.jsonl"))
    report = ResumableRun(config(tmp_path, store=store)).run(lambda item, ctx: object(), ["a"])
    assert (report.done, report.failed) == (1, 0)


def test_an_interrupted_attempt_hands_its_conversation_to_the_next(tmp_path):
    seen = []

    def process(item, ctx):
        seen.append(ctx.conversation)
        if not ctx.conversation:
            ctx.save_conversation([{"role": "user", "content": "turn 1"}])
            assert ctx.conversation == [{"role": "user", "content": "turn 1"}]
            raise RuntimeError("interrupted")
        return len(ctx.conversation)

    cfg = config(tmp_path)
    ResumableRun(cfg).run(process, ["a/b\nc"])
    conv_dir = tmp_path / "job.jsonl.conversations"
    assert len(os.listdir(conv_dir)) == 1
    report = ResumableRun(cfg).run(process, ["a/b\nc"])
    assert report.done == 1
    assert seen == [[], [{"role": "user", "content": "turn 1"}]]
    assert os.listdir(conv_dir) == []


def test_conversations_of_a_store_without_path_stay_in_memory():
    store = InMemoryStore()
    cfg = RunConfig(job_id="j", store=store, progress=False)

    def process(item, ctx: ItemContext):
        if ctx.attempt == 1:
            ctx.save_conversation([{"role": "user", "content": item}])
            raise RuntimeError("again")
        return ctx.conversation

    run = ResumableRun(cfg)
    run.run(process, ["x"])
    run.run(process, ["x"])
    with AgentResume(store).resume_or_start("j") as session:
        assert dict(session.results()) == {"x": [{"role": "user", "content": "x"}]}


def test_the_report_formats_as_a_table(tmp_path):
    report = ResumableRun(config(tmp_path)).run(noop, ITEMS[:2])
    text = str(report)
    assert text.splitlines()[0].split() == ["job", "job"]
    assert "stopped       completed" in text
    assert "cost          $0.00" in text


def test_run_rejects_a_process_that_is_not_callable(tmp_path):
    with pytest.raises(TypeError, match="process"):
        ResumableRun(config(tmp_path)).run("nope", ITEMS)  # type: ignore[arg-type]


def test_ctx_logger_carries_the_item(tmp_path, caplog):
    caplog.set_level("INFO", logger="agent_resume.run")

    def process(item, ctx):
        ctx.logger.info("working")

    ResumableRun(config(tmp_path)).run(process, ["a"])
    record = next(r for r in caplog.records if r.getMessage() == "working")
    assert record.item_id == "a"
    assert record.attempt == 1


def test_run_deadline_is_infinite_without_budget(tmp_path):
    seen = []
    ResumableRun(config(tmp_path)).run(lambda i, ctx: seen.append(ctx.deadline.at), ["a"])
    assert seen == [math.inf]


def test_a_timeout_error_after_the_deadline_is_recorded_as_the_deadline(tmp_path):
    # DeadlineExceeded is no TimeoutError any more; the run still maps a
    # TimeoutError raised once the item's deadline passed onto the deadline.
    clock = MockClock()

    def process(item, ctx):
        clock.advance(6 if item == "late" else 1)
        raise TimeoutError("the call timed out")

    # retry=None: "early"'s TimeoutError is transient and would be retried in the run.
    report = ResumableRun(config(tmp_path, item_timeout=5, clock=clock, retry=None)).run(
        process, ["late", "early"]
    )
    assert report.failed == 2
    errors = {r["id"]: r["error"] for r in records(tmp_path) if r.get("status") == "failed"}
    assert "DeadlineExceeded" in errors["late"]
    assert errors["early"].startswith("TimeoutError")
    assert not issubclass(DeadlineExceeded, TimeoutError)


def test_a_killed_saves_leftover_goes_when_the_item_is_done(tmp_path):
    from agent_resume._run._conversations import conversation_file

    directory = tmp_path / "job.jsonl.conversations"
    directory.mkdir()
    leftover = directory / (conversation_file("item-1") + ".tmp-999-1")
    leftover.write_text("half a save from a killed run")
    other = directory / (conversation_file("item-99") + ".tmp-999-1")
    other.write_text("an item not in this run")
    report = ResumableRun(config(tmp_path)).run(noop, ["item-1", "item-2"])
    assert report.done == 2
    assert sorted(p.name for p in directory.iterdir()) == [other.name]


def test_no_progress_in_a_run_counts_idle_time_from_the_last_mark(tmp_path):
    from agent_resume import NoProgress

    clock = MockClock()
    seen = []

    def process(item, ctx):
        turn = 0
        while (reason := ctx.should_stop()) is None:
            turn += 1
            clock.advance(2)
            if turn <= 3:
                ctx.mark_progress()
        seen.append((turn, reason.name, ctx.loop_state().idle_seconds))
        return turn

    cfg = config(tmp_path, stop=NoProgress(max_idle=5), clock=clock)
    ResumableRun(cfg).run(process, ["a"])
    # progress at 2, 4, 6; idle 2 at 8, 4 at 10, 6 at 12 -> stops after turn 6
    assert seen == [(6, "no_progress", 6.0)]


def test_save_conversation_appends_only_the_new_messages_and_resumes(tmp_path):
    from agent_resume._run._conversations import conversation_file

    path = tmp_path / "job.jsonl.conversations" / conversation_file("a")
    sizes = []

    def first(item, ctx):
        messages = []
        for n in range(3):
            messages.append({"role": "user", "content": f"turn {n}"})
            ctx.save_conversation(messages)
            sizes.append(path.stat().st_size)
        raise RuntimeError("killed half-way")

    ResumableRun(config(tmp_path)).run(first, ["a"])
    line = len('{"role":"user","content":"turn 1"}\n')
    assert [sizes[1] - sizes[0], sizes[2] - sizes[1]] == [line, line]  # appended, not rewritten
    before = path.read_bytes()
    seen = []

    def second(item, ctx):
        messages = ctx.conversation
        seen.append(list(messages))
        messages.append({"role": "assistant", "content": "done"})
        ctx.save_conversation(messages)
        assert path.read_bytes().startswith(before)
        assert ctx.conversation == messages
        return "ok"

    report = ResumableRun(config(tmp_path)).run(second, ["a"])
    assert report.done == 1
    assert seen == [[{"role": "user", "content": f"turn {n}"} for n in range(3)]]
    assert not path.exists()  # the item is done: its conversation goes


@pytest.mark.parametrize(
    "old",
    [
        b'{"conversation": 1, "messages": [{"role": "user", "content": "hi"}]}',
        b'{"role":"user","content":"hi"}\n',  # conversation-codec's file
    ],
    ids=["agent-resume 0.1 document", "conversation-codec"],
)
def test_a_resumed_item_reads_a_conversation_in_an_older_format(tmp_path, old):
    from agent_resume._run._conversations import conversation_file

    directory = tmp_path / "job.jsonl.conversations"
    directory.mkdir()
    (directory / conversation_file("a")).write_bytes(old)
    seen = []

    def process(item, ctx):
        seen.append(ctx.conversation)
        ctx.save_conversation([*ctx.conversation, {"role": "assistant", "content": "hello"}])
        seen.append(ctx.conversation)
        raise RuntimeError("stop here, keep the file")

    ResumableRun(config(tmp_path)).run(process, ["a"])
    hi, hello = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}
    assert seen == [[hi], [hi, hello]]
    from agent_resume import load_conversation

    assert load_conversation(directory / conversation_file("a")) == [hi, hello]


def test_ctx_job_state_is_the_jobs_state_and_survives_the_run(tmp_path):
    seen = []

    def first(item, ctx):
        seen.append(ctx.job_state)
        ctx.set_job_state(f"seen-{item}", True)
        return item

    ResumableRun(config(tmp_path)).run(first, ["a", "b"])
    assert seen == [{}, {"seen-a": True}]

    def second(item, ctx):
        seen.append(ctx.job_state)
        return item

    ResumableRun(config(tmp_path)).run(second, ["c"])
    assert seen[-1] == {"seen-a": True, "seen-b": True}
    with AgentResume(str(tmp_path / "job.jsonl")).resume_or_start("job") as session:
        assert session.state == {"seen-a": True, "seen-b": True}
        assert session.resumed


def test_a_bad_job_state_value_fails_the_item_and_records_nothing(tmp_path):
    def process(item, ctx):
        ctx.set_job_state("when", b"bytes")

    report = ResumableRun(config(tmp_path)).run(process, ["a"])
    assert report.failed == 1
    failure = next(r for r in records(tmp_path) if r.get("status") == "failed")
    assert "ArgumentTypeError" in failure["error"]
    assert not [r for r in records(tmp_path) if "state" in r]


def test_tool_only_turns_are_no_output_alike_for_anthropic_and_openai(tmp_path):
    # An Anthropic answer of tool calls alone read as the output "": three such
    # turns (with different arguments) stopped RepeatedOutput(3) as "identical",
    # while OpenAI's (content=None) never did; last_text kept an older text.
    import anthropic.types as anthropic_types
    import openai.types.chat as openai_chat

    from agent_resume import RepeatedOutput

    def anthropic_turn(n, text=None):
        content = [{"type": "tool_use", "id": f"t{n}", "name": "search", "input": {"q": n}}]
        if text is not None:
            content.insert(0, {"type": "text", "text": text})
        return anthropic_types.Message.model_validate(
            {
                "id": f"m{n}",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": content,
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 10, "output_tokens": 5},
            }
        )

    def openai_turn(n, text=None):
        call = {
            "id": f"c{n}",
            "type": "function",
            "function": {"name": "search", "arguments": f'{{"q": {n}}}'},
        }
        return openai_chat.ChatCompletion.model_validate(
            {
                "id": f"r{n}",
                "object": "chat.completion",
                "created": 1,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {"role": "assistant", "content": text, "tool_calls": [call]},
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    for turn in (anthropic_turn, openai_turn):
        seen = []

        def process(item, ctx, turn=turn, seen=seen):
            for n, text in enumerate(["thinking", None, None, None, None]):
                ctx.record_usage(turn(n, text))
                seen.append(ctx.loop_state().last_text)
                if ctx.should_stop() is not None:
                    return "stopped"
            return "went on"

        path = tmp_path / f"{turn.__name__}.jsonl"
        cfg = config(tmp_path, store=str(path), stop=RepeatedOutput(3))
        ResumableRun(cfg).run(process, ["a"])
        done = next(r for r in ResultJsonlStore(str(path)).iter_records() if r.get("id") == "a")
        assert done["result"] == "went on", turn.__name__
        assert seen == ["thinking", "", "", "", ""], turn.__name__
