"""The threaded run's workers take their own items: the limit, the order of failures, errors."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agent_resume import JsonlStore, ResumableRun, RunConfig


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
