"""The threaded run's workers take their own items: the limit, the order of failures, errors."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agent_resume import JsonlStore, ResumableRun, RunConfig, StopReason
from agent_resume._run._state import RunState
from agent_resume._run._threads import Feeder, Pool
from agent_resume._session._items import IdReader


def test_workers_never_exceed_the_concurrency_and_do_each_item_once(tmp_path: Any) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    seen: list[str] = []
    threads: set[str] = set()

    def process(item: str, ctx: Any) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            seen.append(item)
            threads.add(threading.current_thread().name)
        time.sleep(0.001)
        with lock:
            running -= 1
        return item

    items = [f"i{n}" for n in range(300)]
    config = RunConfig(
        job_id="j", store=JsonlStore(tmp_path / "c.jsonl"), concurrency=4, progress=False
    )
    report = ResumableRun(config).run(process, items)
    assert (report.done, report.stop_reason, report.remaining) == (300, "completed", 0)
    assert sorted(seen) == sorted(items) and 1 <= peak <= 4
    assert threading.main_thread().name not in threads


def test_a_budget_cuts_the_input_and_counts_what_is_left(tmp_path: Any) -> None:
    config = RunConfig(
        job_id="j",
        store=JsonlStore(tmp_path / "c.jsonl"),
        concurrency=3,
        max_items=10,
        progress=False,
    )
    report = ResumableRun(config).run(lambda item, ctx: None, [f"i{n}" for n in range(50)])
    assert (report.done, report.stop_reason, report.remaining) == (10, "item_budget", 40)


def test_a_key_that_raises_mid_input_reaches_the_caller(tmp_path: Any) -> None:
    done: list[str] = []

    def key(item: str) -> str:
        if item == "i40":
            raise LookupError("no key for i40")
        return item

    config = RunConfig(
        job_id="j", store=JsonlStore(tmp_path / "c.jsonl"), concurrency=4, progress=False
    )
    with pytest.raises(LookupError, match="no key for i40"):
        ResumableRun(config).run(
            lambda item, ctx: done.append(item), [f"i{n}" for n in range(80)], key=key
        )
    assert "i40" not in done and set(done) <= {f"i{n}" for n in range(40)}


# -- workers resting after quick items (issue 15) ------------------------------------


def _pool(concurrency: int = 2) -> tuple[Pool, RunState, Feeder]:
    config = RunConfig(job_id="j", store="memory:", concurrency=concurrency, progress=False)
    state = RunState(config)
    feeder = Feeder(state, iter(()), IdReader(None), lambda item_id: None)  # type: ignore[arg-type,return-value]
    return Pool(concurrency, state, feeder), state, feeder


def _resting(pool: Pool) -> tuple[threading.Thread, threading.Event]:
    """A worker that finished a quick item now, resting in its own thread."""
    back = threading.Event()

    def rest() -> None:
        pool.rest(time.monotonic())
        back.set()

    thread = threading.Thread(target=rest, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while pool.rested == 0 and not back.is_set() and time.monotonic() < deadline:
        time.sleep(0.001)
    return thread, back


def test_a_worker_rests_after_a_quick_item_while_another_is_free() -> None:
    pool, state, _ = _pool()
    pool.live = 2
    thread, back = _resting(pool)
    assert pool.rested == 1 and not back.is_set()
    state.stop("signal", StopReason("signal", "test"))  # seen at its safety poll (1 s)
    assert back.wait(5) and pool.rested == 0
    thread.join(5)


def test_a_worker_does_not_rest_when_it_is_the_only_free_one() -> None:
    pool, _, _ = _pool()
    pool.live = 1
    pool.rest(time.monotonic())  # the only worker: returns at once
    pool.live = 2
    pool.rest(time.monotonic() - 1.0)  # a slow item (it waited for something): no rest
    pool.since[1] = time.monotonic()
    time.sleep(0.01)  # the other worker's item has run for a while: it is busy
    pool.rest(time.monotonic())
    assert pool.rested == 0


def test_the_main_thread_wakes_a_resting_worker_when_every_active_one_is_busy() -> None:
    pool, _, _ = _pool()
    pool.live = 2
    resting, back = _resting(pool)
    assert pool.rested == 1
    pool.since[0] = time.monotonic()  # the other worker's item now waits (for the network, say)
    watcher = threading.Thread(target=pool.watch, daemon=True)
    watcher.start()
    assert back.wait(5), "the resting worker was not woken"
    pool.since[0] = 0.0
    pool.gone()
    pool.gone()
    watcher.join(5)
    resting.join(5)
    assert not watcher.is_alive() and pool.live == 0


def test_a_worker_that_ends_wakes_the_resting_ones() -> None:
    pool, _, feeder = _pool(3)
    pool.live = 3
    thread, back = _resting(pool)
    feeder.ended = True
    pool.gone()  # another worker found the input's end
    assert back.wait(5)
    thread.join(5)


def test_slow_items_after_quick_ones_still_run_at_the_full_concurrency(tmp_path: Any) -> None:
    # The quick items leave one worker active; four items that each wait for the
    # others can only finish if the resting workers are woken to take them.
    barrier = threading.Barrier(4, timeout=30)

    def process(item: str, ctx: Any) -> str:
        if item.startswith("slow"):
            barrier.wait()
        return item

    items = [f"quick{n}" for n in range(500)] + [f"slow{n}" for n in range(4)]
    config = RunConfig(
        job_id="j", store=JsonlStore(tmp_path / "c.jsonl"), concurrency=4, progress=False
    )
    report = ResumableRun(config).run(process, items)
    assert (report.done, report.failed, report.stop_reason) == (504, 0, "completed")


def test_a_budget_stops_quick_items_exactly_with_workers_resting(tmp_path: Any) -> None:
    config = RunConfig(
        job_id="j",
        store=JsonlStore(tmp_path / "c.jsonl"),
        concurrency=8,
        max_items=1500,
        progress=False,
    )
    items = [f"i{n}" for n in range(2000)]
    report = ResumableRun(config).run(lambda item, ctx: None, items)
    assert (report.done, report.stop_reason, report.remaining) == (1500, "item_budget", 500)
    assert report.abandoned == 0


def test_a_hook_raising_after_quick_items_reaches_the_caller(tmp_path: Any) -> None:
    seen: list[str] = []

    def hook(outcome: Any) -> None:
        seen.append(outcome.item_id)
        if outcome.item_id == "i700":
            raise RuntimeError("hook failed at i700")

    config = RunConfig(
        job_id="j",
        store=JsonlStore(tmp_path / "c.jsonl"),
        concurrency=8,
        on_item_done=hook,
        progress=False,
    )
    with pytest.raises(RuntimeError, match="hook failed at i700"):
        ResumableRun(config).run(lambda item, ctx: None, [f"i{n}" for n in range(2000)])
    assert "i700" in seen and len(seen) < 2000
