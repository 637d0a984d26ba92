import asyncio

import pytest

from agent_resume import ResultJsonlStore
from agent_resume._deadline import MockClock
from agent_resume._run._config import RunConfig
from agent_resume._run._runner import ResumableRun
from agent_resume.testing import SimulatedLLM

ITEMS = [f"item-{i}" for i in range(40)]


def config(tmp_path, **kwargs):
    return RunConfig(job_id="job", store=str(tmp_path / "job.jsonl"), progress=False, **kwargs)


def records(tmp_path):
    return list(ResultJsonlStore(str(tmp_path / "job.jsonl")).iter_records())


def test_async_run_processes_each_item_once_within_the_concurrency(tmp_path):
    running = 0
    peak = 0

    async def process(item, ctx):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return item

    report = asyncio.run(ResumableRun(config(tmp_path, concurrency=5)).arun(process, ITEMS))
    assert (report.done, report.remaining, report.stop_reason) == (40, 0, "completed")
    assert peak == 5
    done = [r["id"] for r in records(tmp_path) if "id" in r]
    assert sorted(done) == sorted(ITEMS)


def test_async_items_are_cancelled_at_their_deadline_and_retried_later(tmp_path):
    cancelled = []

    async def process(item, ctx):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise

    cfg = config(tmp_path, item_timeout=0.02, concurrency=2)
    report = asyncio.run(ResumableRun(cfg).arun(process, ["a", "b"]))
    assert report.failed == 2
    assert sorted(cancelled) == ["a", "b"]
    failures = [r for r in records(tmp_path) if r.get("status") == "failed"]
    assert all(f["retryable"] and "DeadlineExceeded" in f["error"] for f in failures)

    async def quick(item, ctx):
        assert ctx.attempt == 2
        return item

    again = asyncio.run(ResumableRun(cfg).arun(quick, ["a", "b"]))
    assert again.done == 2


def test_async_exception_is_recorded_and_the_run_goes_on(tmp_path):
    async def process(item, ctx):
        if item == "item-3":
            raise RuntimeError("nope")

    report = asyncio.run(ResumableRun(config(tmp_path, concurrency=4)).arun(process, ITEMS))
    assert (report.done, report.failed, report.remaining) == (39, 1, 1)


def test_async_fail_fast_reraises_after_recording(tmp_path):
    async def process(item, ctx):
        raise LookupError("first")

    with pytest.raises(LookupError):
        asyncio.run(
            ResumableRun(config(tmp_path, fail_fast=True, concurrency=3)).arun(process, ITEMS)
        )
    recs = records(tmp_path)
    assert any(r.get("status") == "failed" for r in recs)
    assert [r for r in recs if r.get("run") == "end"][-1]["report"]["stop_reason"] == "fail_fast"


def test_async_budgets_and_usage(tmp_path):
    llm = SimulatedLLM(latency=0.001)

    async def process(item, ctx):
        ctx.record_usage(await llm.acomplete([{"role": "user", "content": item}]))

    cfg = config(tmp_path, concurrency=4, max_items=10, prices=llm.prices)
    report = asyncio.run(ResumableRun(cfg).arun(process, ITEMS))
    assert (report.done, report.stop_reason, report.remaining) == (10, "item_budget", 30)
    assert report.usage.calls == 10
    assert report.usage.cost_usd is not None
    assert report.usage.cost_usd > 0

    second = asyncio.run(ResumableRun(config(tmp_path, prices=llm.prices)).arun(process, ITEMS))
    assert (second.already_done, second.done) == (10, 30)


def test_async_deadline_already_passed_is_a_failure_without_a_call(tmp_path):
    from agent_resume._deadline import MockClock

    clock = MockClock()
    calls = []

    async def process(item, ctx):
        calls.append(item)
        clock.advance(10)

    cfg = config(tmp_path, time_budget=5, clock=clock)
    report = asyncio.run(ResumableRun(cfg).arun(process, ["a", "b"]))
    assert calls == ["a"]
    assert report.stop_reason == "time_budget"


def test_a_per_call_timeout_handler_does_not_eat_the_items_deadline(tmp_path):
    # Issue 14's retry loop inside an item: `except asyncio.TimeoutError`
    # around one call must let the item's DeadlineExceeded through.
    clock = MockClock()
    attempts = []

    async def call():
        clock.advance(3)
        await asyncio.sleep(10)

    async def process(item, ctx):
        for _ in range(3):
            try:
                ctx.deadline.check_or_raise()
                attempts.append(item)
                await asyncio.wait_for(call(), 0.001)
                break
            except asyncio.TimeoutError:
                continue
        return "swallowed"

    cfg = config(tmp_path, item_timeout=5, clock=clock)
    report = asyncio.run(ResumableRun(cfg).arun(process, ["a"]))
    assert (report.done, report.failed) == (0, 1)
    assert attempts == ["a", "a"]
    failure = next(r for r in records(tmp_path) if r.get("status") == "failed")
    assert failure["retryable"] is True
    assert failure["error"].startswith("DeadlineExceeded")


def test_a_deadline_raised_inside_acall_is_not_retried_as_a_timeout(tmp_path):
    # DeadlineExceeded is no TimeoutError: ctx.acall's per-call timeout handler
    # does not see it, and the retry policy does not take it for a transient timeout.
    from agent_resume import DeadlineExceeded, Retry

    clock = MockClock()
    calls = []

    async def process(item, ctx):
        async def fn():
            calls.append(item)
            clock.advance(10)
            ctx.deadline.check_or_raise()

        await ctx.acall(fn)

    cfg = config(tmp_path, item_timeout=5, clock=clock, retry=Retry(attempts=5, initial=0.001))
    report = asyncio.run(ResumableRun(cfg).arun(process, ["a"]))
    assert (report.done, report.failed) == (0, 1)
    assert calls == ["a"]
    failure = next(r for r in records(tmp_path) if r.get("status") == "failed")
    assert failure["error"].startswith(DeadlineExceeded.__name__)


def test_an_item_cut_at_its_deadline_leaves_no_cancellation_to_the_next_item(tmp_path):
    # arun's tasks run item after item: the timeout's cancellation of one item
    # (whether the item let it through or swallowed it) must be taken back, or
    # the next item's own asyncio.timeout would not turn into a TimeoutError.
    seen = {}

    async def process(item, ctx):
        if item == "slow":
            await asyncio.sleep(30)
        if item == "swallows":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                return "kept going"
        # Python 3.11+ counts a task's cancellations (3.10 has nothing to take back).
        cancelling = getattr(asyncio.current_task(), "cancelling", None)
        seen[item] = 0 if cancelling is None else cancelling()
        try:
            # On 3.12+ wait_for is asyncio.timeout, which a leftover count would break.
            await asyncio.wait_for(asyncio.sleep(5), 0.01)
        except asyncio.TimeoutError:
            return "own timeout"
        return "no timeout"

    cfg = config(tmp_path, item_timeout=0.3, concurrency=1)
    report = asyncio.run(
        ResumableRun(cfg).arun(process, ["slow", "after-slow", "swallows", "last"])
    )
    assert (report.done, report.failed) == (3, 1)
    assert seen == {"after-slow": 0, "last": 0}
    results = {
        r["id"]: r.get("result") for r in records(tmp_path) if r.get("status") is None and "id" in r
    }
    assert results == {"after-slow": "own timeout", "swallows": "kept going", "last": "own timeout"}


def test_a_cancelled_error_an_item_raises_is_a_failed_attempt_and_the_run_goes_on(tmp_path):
    # It used to leave the item unrecorded and the report said "completed", 0 remaining.
    async def process(item, ctx):
        await asyncio.sleep(0)
        if item == "a":
            raise asyncio.CancelledError("stray")
        if item == "b":
            asyncio.current_task().cancel()
            await asyncio.sleep(1)
        return item

    cfg = config(tmp_path, concurrency=1)
    report = asyncio.run(ResumableRun(cfg).arun(process, ["a", "b", "c", "d"]))
    assert (report.done, report.failed, report.remaining) == (2, 2, 2)
    assert report.stop_reason == "failures"
    done = [r["id"] for r in records(tmp_path) if "id" in r and r.get("status") is None]
    assert done == ["c", "d"]
    failed = {r["id"]: r for r in records(tmp_path) if r.get("status") == "failed"}
    assert sorted(failed) == ["a", "b"]
    assert all(f["retryable"] and f["attempt"] == 1 for f in failed.values())
    assert "CancelledError('stray')" in failed["a"]["error"]
    assert "cancelled its own task" in failed["b"]["error"]

    async def again_process(item, ctx):
        assert ctx.attempt == 2
        return item

    again = asyncio.run(ResumableRun(cfg).arun(again_process, ["a", "b", "c", "d"]))
    assert (again.done, again.already_done, again.remaining) == (2, 2, 0)


def test_items_run_in_at_most_concurrency_tasks(tmp_path):
    # No task per item: each of arun's tasks takes its next item itself.
    tasks = set()

    async def process(item, ctx):
        tasks.add(asyncio.current_task())
        await asyncio.sleep(0)
        return item

    report = asyncio.run(ResumableRun(config(tmp_path, concurrency=4)).arun(process, ITEMS))
    assert report.done == len(ITEMS)
    assert 1 <= len(tasks) <= 4


def test_a_bad_id_in_the_input_is_raised_after_the_items_in_flight_are_recorded(tmp_path):
    # As in the threaded run: the input's error stops admitting, the items
    # started finish and are recorded, then arun raises it.
    from agent_resume import ArgumentTypeError

    def items():
        yield "a"
        yield "b"
        yield 1.5  # not an ID

    async def process(item, ctx):
        await asyncio.sleep(0.05)
        return item

    with pytest.raises(ArgumentTypeError):
        asyncio.run(ResumableRun(config(tmp_path, concurrency=2)).arun(process, items()))
    done = sorted(r["id"] for r in records(tmp_path) if "id" in r and r.get("status") is None)
    assert done == ["a", "b"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_arun_cancelled_from_outside_records_its_end_as_a_signal(tmp_path, concurrency):
    # asyncio.wait_for around a job: the run's end is recorded before the
    # cancellation reaches the caller, not left as "killed" in `status`.
    async def process(item, ctx):
        await asyncio.sleep(0.01 if int(item) < 6 else 30)
        return item

    async def job():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                ResumableRun(config(tmp_path, concurrency=concurrency)).arun(
                    process, [f"{n:02d}" for n in range(20)]
                ),
                timeout=1.0,
            )

    asyncio.run(job())
    ends = [r["report"] for r in records(tmp_path) if r.get("run") == "end"]
    assert [(e["stop_reason"], e["stop_message"], e["remaining"]) for e in ends] == [
        ("signal", "cancelled (CancelledError)", None)
    ]
    done = sorted(int(r["id"]) for r in records(tmp_path) if "id" in r and r.get("status") is None)
    assert done == list(range(6)) and ends[0]["done"] == 6
