"""Items that failed with a transient error are tried again in the same run."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent_resume import ResumableRun, Retry, RunConfig

QUICK = Retry(attempts=2, initial=0.01, maximum=0.05)


class Flaky:
    """Fails each item's first ``fails`` attempts with ``error``, then succeeds."""

    def __init__(self, error: type[Exception], fails: int = 1, only: set[str] | None = None):
        self.error = error
        self.fails = fails
        self.only = only
        self.tries: Counter[str] = Counter()

    def __call__(self, item: str, ctx: Any) -> str:
        self.tries[item] += 1
        if (self.only is None or item in self.only) and self.tries[item] <= self.fails:
            raise self.error(f"try {self.tries[item]} of {item}")
        return item


def _config(tmp_path: Path, **kw: Any) -> RunConfig:
    kw.setdefault("retry", QUICK)
    return RunConfig(job_id="job", store=tmp_path / "ck.jsonl", progress=False, **kw)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_transient_failure_is_retried_in_the_same_run(tmp_path: Path, concurrency: int) -> None:
    flaky = Flaky(ConnectionResetError, only={"b", "d"})
    items = ["a", "b", "c", "d", "e"]
    report = ResumableRun(_config(tmp_path, concurrency=concurrency)).run(flaky, items)
    assert (report.done, report.failed, report.retried, report.remaining) == (5, 2, 2, 0)
    assert report.stop_reason == "completed"
    assert flaky.tries == Counter({"a": 1, "b": 2, "c": 1, "d": 2, "e": 1})


def test_async_items_are_retried_in_the_same_run(tmp_path: Path) -> None:
    flaky = Flaky(TimeoutError, only={"x"})

    async def process(item: str, ctx: Any) -> str:
        await asyncio.sleep(0)
        return flaky(item, ctx)

    report = asyncio.run(ResumableRun(_config(tmp_path, concurrency=3)).arun(process, ["x", "y"]))
    assert (report.done, report.retried, report.stop_reason) == (2, 1, "completed")


def test_retries_stop_at_max_attempts_and_the_run_does_not_say_completed(tmp_path: Path) -> None:
    flaky = Flaky(ConnectionError, fails=10, only={"bad"})
    report = ResumableRun(_config(tmp_path, max_attempts=3)).run(flaky, ["ok", "bad"])
    assert flaky.tries["bad"] == 3  # max_attempts over the job's life
    assert (report.done, report.failed, report.quarantined) == (1, 3, 1)
    assert report.stop_reason == "completed"  # quarantined items are not left to do


def test_errors_that_are_not_transient_are_left_for_a_later_run(tmp_path: Path) -> None:
    flaky = Flaky(ValueError, only={"bug"})
    run = ResumableRun(_config(tmp_path))
    report = run.run(flaky, ["bug", "fine"])
    assert flaky.tries["bug"] == 1
    assert (report.remaining, report.stop_reason) == (1, "failures")
    assert "1 failed item is left for a later run" in report.stop_message
    again = run.run(flaky, ["bug", "fine"])
    assert (again.done, again.stop_reason) == (1, "completed")


def test_retry_none_retries_nothing_within_the_run(tmp_path: Path) -> None:
    flaky = Flaky(ConnectionResetError)
    report = ResumableRun(_config(tmp_path, retry=None)).run(flaky, ["a"])
    assert (report.done, report.failed, report.retried, report.stop_reason) == (
        0,
        1,
        0,
        "failures",
    )


def test_the_retry_waits_for_the_time_budget(tmp_path: Path) -> None:
    # A backoff longer than the run's time left: the item is left, the report says why.
    flaky = Flaky(ConnectionResetError, fails=10)
    slow = Retry(attempts=2, initial=5.0, maximum=5.0)
    report = ResumableRun(_config(tmp_path, retry=slow, time_budget=0.5)).run(flaky, ["a"])
    assert flaky.tries["a"] <= 2
    assert report.remaining == 1
    assert report.stop_reason in ("time_budget", "failures")
