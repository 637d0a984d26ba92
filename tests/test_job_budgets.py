"""Job budgets, unknown prices and per-item limits over attempts, with real processes.

The children (``_budget_child.py``) call a loopback provider with the real
``openai`` SDK through ``ctx.call``; the parent SIGKILLs them part-way, as a
crash or an OOM kill would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from agent_resume import (
    BudgetExhausted,
    Ledger,
    ModelPrice,
    PriceTable,
    ResultJsonlStore,
    ResumableRun,
    RunConfig,
    UnknownModelWarning,
    Usage,
)
from agent_resume._run._spent import JobSpent

CHILD = str(Path(__file__).with_name("_budget_child.py"))
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


def _env() -> dict[str, str]:
    here = str(Path(__file__).parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, *sys.path])}


def run_child(path: Path, **opts: Any) -> tuple[dict[str, Any], list[str]]:
    args = [sys.executable, CHILD, str(path), *(f"{k}={v}" for k, v in opts.items())]
    proc = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    report = next(line for line in lines if line.startswith("REPORT "))
    return json.loads(report.split(" ", 1)[1]), [
        line for line in lines if line.startswith("CALLED")
    ]


def kill_child_after(path: Path, after: int, **opts: Any) -> list[str]:
    """Start a child, SIGKILL it once it has printed ``after`` CALLED lines."""
    args = [sys.executable, CHILD, str(path), *(f"{k}={v}" for k, v in opts.items())]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:
            if line.startswith("CALLED"):
                seen.append(line.strip())
                if len(seen) >= after:
                    break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(seen) == after
    return seen


def records(path: Path) -> list[dict[str, Any]]:
    return list(ResultJsonlStore(str(path)).iter_records())


@pytest.mark.slow
def test_a_job_killed_twice_stops_at_its_job_cost_cap_counting_the_killed_runs_calls(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.jsonl"
    kill_child_after(path, 7, calls=3, concurrency=2)
    kill_child_after(path, 7, calls=3, concurrency=2)
    before = Ledger.from_records(records(path))
    assert before.lower_bound  # two runs started and never ended
    prior = before.total.cost_usd
    assert prior is not None and before.total.calls >= 14
    call_costs = [Usage.from_dict(r["usage"]).cost_usd or 0.0 for r in records(path) if "call" in r]
    per_call = max(call_costs)
    cap = prior + 8 * per_call  # room for about 8 more calls in the whole job

    report, called = run_child(path, calls=3, concurrency=2, job_cost=cap)

    assert report["stop_reason"] == "cost_budget"
    assert "over all its runs" in report["stop_message"]
    after = Ledger.from_records(records(path))
    total = after.total.cost_usd
    assert total is not None
    assert total >= cap
    # Overshoot: the call that crossed the cap, and at most one more in flight (concurrency 2).
    assert total < cap + 2 * per_call
    # Had the killed runs' calls not counted, this run alone would have spent the whole cap.
    assert 0 < total - prior < cap - 2 * per_call
    assert called
    # Items whose next call the budget refused are interrupted, not failed attempts.
    assert not [r for r in records(path) if r.get("status") == "failed"]
    assert report["failed"] == 0

    # A run that starts over the cap admits nothing and says why.
    again, called_again = run_child(path, calls=3, concurrency=2, job_cost=cap)
    assert called_again == []
    assert (again["done"], again["stop_reason"]) == (0, "cost_budget")
    assert "job_max_cost_usd" in again["stop_message"]
    assert Ledger.from_records(records(path)).total.calls == after.total.calls


@pytest.mark.slow
def test_a_job_token_budget_counts_every_run(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    first, _ = run_child(path, calls=1, items=4, concurrency=1)
    used = Ledger.from_records(records(path)).total
    tokens = used.input_tokens + used.output_tokens
    assert first["done"] == 4
    report, called = run_child(path, calls=1, items=8, concurrency=1, job_tokens=tokens)
    assert called == []
    assert report["stop_reason"] == "token_budget"
    assert "job_max_tokens" in report["stop_message"]


@pytest.mark.slow
def test_a_model_with_no_price_under_a_cost_budget_stops_the_run_naming_the_model(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.jsonl"
    report, called = run_child(
        path, calls=2, items=10, concurrency=1, model="mystery-model-x", run_cost=5.0
    )
    assert report["stop_reason"] == "cost_budget"
    assert "mystery-model-x" in report["stop_message"]
    # The first call found the model unpriced; no further call was made.
    assert len(called) == 1
    assert report["done"] == 0 and report["interrupted"] == 1 and report["failed"] == 0
    # on_unknown_price="warn" goes on.
    path2 = tmp_path / "warn.jsonl"
    report2, called2 = run_child(
        path2, calls=1, items=3, model="mystery-model-x", run_cost=5.0, unknown="warn"
    )
    assert (report2["done"], report2["stop_reason"], len(called2)) == (3, "completed", 3)


@pytest.mark.slow
def test_an_item_resumed_from_its_conversation_under_max_turns_4_makes_4_calls_in_all(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.jsonl"
    kill_child_after(path, 2, items=1, concurrency=1, max_turns=4, hang_after=2)
    report, called = run_child(path, items=1, concurrency=1, max_turns=4)
    assert report["done"] == 1
    assert called == ["CALLED t000 1", "CALLED t000 2"]  # 2 were made before the kill
    found = records(path)
    assert sum(1 for r in found if r.get("call") == "t000") == 4
    done = next(r for r in found if r.get("id") == "t000")
    assert done["stop"] == "max_turns"


def test_on_unknown_price_defaults_and_checks() -> None:
    assert RunConfig(job_id="j", store="memory:").unknown_price == "warn"
    assert RunConfig(job_id="j", store="memory:", max_cost_usd=1.0).unknown_price == "stop"
    assert RunConfig(job_id="j", store="memory:", job_max_cost_usd=1.0).unknown_price == "stop"
    config = RunConfig(job_id="j", store="memory:", job_max_cost_usd=1, on_unknown_price="ignore")
    assert config.unknown_price == "ignore"
    with pytest.raises(ValueError, match="on_unknown_price"):
        RunConfig(job_id="j", store="memory:", on_unknown_price="halt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="job_max_cost_usd"):
        RunConfig(job_id="j", store="memory:", job_max_cost_usd=-1.0)
    with pytest.raises(ValueError, match="job_max_tokens"):
        RunConfig(job_id="j", store="memory:", job_max_tokens=0)


def test_a_fallback_price_is_an_estimate_marked_as_such_and_keeps_the_budget(
    tmp_path: Path,
) -> None:
    table = PriceTable(fallback=ModelPrice(input=2.0, output=4.0))
    priced = table.price(Usage(input_tokens=1_000_000, output_tokens=500_000, model="nobody-1"))
    assert (priced.cost_usd, priced.price_source) == (4.0, "fallback")
    with pytest.raises(TypeError, match="fallback"):
        PriceTable(fallback=3.0)  # type: ignore[arg-type]
    config = RunConfig(
        job_id="fb",
        store=str(tmp_path / "fb.jsonl"),
        prices=table,
        max_cost_usd=10.0,
        progress=False,
    )

    def process(item: str, ctx: Any) -> str:
        response = {"model": "nobody-1", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
        assert ctx.record_usage(response).price_source == "fallback"
        return item

    report = ResumableRun(config).run(process, ["a", "b"])
    assert (report.done, report.stop_reason) == (2, "completed")
    assert report.usage.cost_usd == pytest.approx(2 * (0.002 + 0.0004))


def test_job_spent_counts_killed_attempts_once_and_starts_afresh_after_done_or_release() -> None:
    call = {"usage": {"in": 10, "out": 1, "calls": 1, "cost": 0.5, "s": 2.0}}
    found = JobSpent(
        [
            {"call": "a", "a": "k1", "ts": 1, **call},  # killed attempt
            {"call": "a", "a": "k2", "ts": 2, **call},
            {"id": "a", "ts": 3, "status": "failed", "usage": {**call["usage"], "s": 3.0}},
            {"call": "b", "a": "k3", "ts": 4, **call},
            {"id": "b", "ts": 5},  # done: no allowance carried
            {"call": "c", "a": "k4", "ts": 6, **call},
            {"id": "c", "ts": 7, "status": "retry"},  # released
        ],
        None,
    )
    a = found.item("a")
    assert a is not None
    # k1 killed (its call counts); k2's call is covered by the failure.
    assert (a.usage.calls, a.usage.input_tokens, a.attempts, a.seconds) == (2, 20, 2, 5.0)
    assert found.item("b") is None and found.item("c") is None
    # As the Ledger counts: b's completion has no usage, so it covers no call: k3 counts.
    assert found.total.calls == 4 and found.total.cost_usd == pytest.approx(2.0)


def test_budget_exhausted_pickles_with_its_reason() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(BudgetExhausted("job_max_cost", "spent $3")))
    assert (error.reason, error.detail, str(error)) == (
        "job_max_cost",
        "spent $3",
        "job_max_cost: spent $3",
    )


def test_an_outcome_covers_only_its_own_attempts_calls_in_the_ledger_and_job_spent() -> None:
    killed = {"in": 50, "out": 5, "calls": 1, "cost": 0.25}
    found = [
        {"call": "x", "a": "killed", "ts": 1, "usage": killed},
        # The next attempt made its calls without ctx.call: its outcome names no attempt's calls.
        {
            "id": "x",
            "ts": 2,
            "status": "failed",
            "usage": {"in": 10, "calls": 1, "cost": 0.1, "a": ""},
        },
    ]
    ledger = Ledger.from_records(found)
    assert ledger.total.calls == 2 and ledger.total.cost_usd == pytest.approx(0.35)
    spent = JobSpent(found, None).item("x")
    assert spent is not None and spent.usage.calls == 2 and spent.attempts == 2
    # An outcome naming the attempt covers exactly its calls.
    own = [*found[:1], {"call": "x", "a": "k2", "ts": 2, "usage": killed},
           {"id": "x", "ts": 3, "status": "failed", "usage": {**killed, "a": "k2"}}]  # fmt: skip
    assert Ledger.from_records(own).total.calls == 2


def test_on_unknown_price_warn_logs_once_per_model_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = RunConfig(job_id="w", store=str(tmp_path / "w.jsonl"), progress=False)

    def process(item: str, ctx: Any) -> str:
        ctx.record_usage(Usage(input_tokens=5, output_tokens=1, model="house-1"))
        ctx.record_usage(Usage(input_tokens=5, output_tokens=1))  # no model, no cost: not tracked
        return item

    with (
        caplog.at_level("WARNING", logger="agent_resume.run"),
        pytest.warns(UnknownModelWarning, match="'house-1'"),  # the table's own, as for a response
    ):
        report = ResumableRun(config).run(process, ["a", "b", "c"])
    assert (report.done, report.stop_reason, report.usage.cost_usd) == (3, "completed", None)
    lines = [r.getMessage() for r in caplog.records if "no price" in r.getMessage()]
    assert lines == ["no price for model 'house-1': its calls' cost is unknown"]


def test_a_job_budget_over_a_malformed_usage_counts_the_rest_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.jsonl"
    spend = Usage(input_tokens=400, output_tokens=100, calls=1, cost_usd=0.4, model="m")
    ran: list[str] = []

    def process(item: str, ctx: Any) -> None:
        ran.append(item)
        ctx.record_usage(spend)

    first = RunConfig(job_id="j", store=str(path), progress=False)
    ResumableRun(first).run(process, ["a", "b"])
    with open(path, "a", encoding="utf-8") as f:  # a hand-damaged record, still JSON
        f.write('{"id": "c", "ts": 1, "usage": {"in": -9, "cost": 100.0}}\n')
    config = RunConfig(job_id="j", store=str(path), job_max_cost_usd=1.0, progress=False)
    ran.clear()
    with caplog.at_level("WARNING", logger="agent_resume.run"):
        report = ResumableRun(config).run(process, ["a", "b", "c", "d", "e", "f"])
    # $0.80 counted from a and b (c's damaged $100 is not, and c is done): d runs,
    # which reaches the cap.
    assert ran == ["d"]
    assert (report.stop_reason, report.usage.cost_usd) == ("cost_budget", 0.4)
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert lines == [
        "the usage of 1 earlier record(s) is malformed and not counted (item 'c' first): "
        "the job budget counts the rest"
    ]


def test_earlier_items_that_recorded_no_usage_leave_a_job_cost_budget_working(
    tmp_path: Path,
) -> None:
    # Items whose process called no model record no usage: they cost nothing,
    # and are no model without a price (which would stop the run at once).
    path = tmp_path / "j.jsonl"
    ResumableRun(RunConfig(job_id="j", store=str(path), progress=False)).run(
        lambda item, ctx: None, ["a", "b"]
    )
    spend = Usage(input_tokens=4, output_tokens=1, calls=1, cost_usd=0.4, model="m")
    ran: list[str] = []

    def process(item: str, ctx: Any) -> None:
        ran.append(item)
        ctx.record_usage(spend)

    config = RunConfig(job_id="j", store=str(path), job_max_cost_usd=1.0, progress=False)
    report = ResumableRun(config).run(process, ["a", "b", "c", "d", "e", "f"])
    assert ran == ["c", "d", "e"]
    assert report.stop_reason == "cost_budget"
    # A usage with tokens but neither model nor cost is unpriced, named as the live check names it.
    spent = JobSpent([{"id": "x", "ts": 1, "usage": {"in": 5}}, {"id": "y", "ts": 1}], None)
    assert spent.unpriced == ["(no model name)"]


def test_on_unknown_price_stop_in_process_names_the_model_to_on_stop(tmp_path: Path) -> None:
    seen: list[Any] = []
    config = RunConfig(
        job_id="s",
        store=str(tmp_path / "s.jsonl"),
        progress=False,
        max_cost_usd=1.0,
        on_stop=seen.append,
    )

    def process(item: str, ctx: Any) -> str:
        ctx.record_usage(Usage(input_tokens=5, output_tokens=1, model="house-2"))
        return item

    report = ResumableRun(config).run(process, ["a", "b", "c"])
    assert (report.done, report.stop_reason) == (1, "cost_budget")
    assert [r.name for r in seen] == ["unknown_price"] and "'house-2'" in seen[0].message


def _answer(model: str) -> dict[str, Any]:
    """A chat completion of 1,000 tokens in and 500 out: $0.0075 on gpt-4o."""
    usage = {"prompt_tokens": 1000, "completion_tokens": 500}
    return {"object": "chat.completion", "model": model, "usage": usage}


@pytest.mark.parametrize("unknown", ["warn", "ignore"])
@pytest.mark.parametrize("which", ["max_cost_usd", "job_max_cost_usd"])
def test_a_call_with_no_price_leaves_the_cost_budget_counting_the_priced_calls(
    tmp_path: Path, unknown: str, which: str
) -> None:
    # The first item calls a model nobody priced; under "warn" or "ignore" the run goes
    # on, and the budget must still stop it at 10 priced calls (not at no limit).
    made: list[str] = []

    def process(item: str, ctx: Any) -> str:
        model = "house-model-x" if item == "i00" else "gpt-4o"
        made.append(model)
        ctx.call(_answer, model)
        return model

    path = tmp_path / "job.jsonl"
    items = [f"i{n:02d}" for n in range(50)]
    budget = {which: 10 * 0.0075}
    config = RunConfig(
        job_id="j",
        store=path,
        progress=False,
        on_unknown_price=unknown,
        **budget,  # type: ignore[arg-type]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownModelWarning)  # (once per model per table)
        report = ResumableRun(config).run(process, items)
    assert report.stop_reason == "cost_budget"
    assert made.count("gpt-4o") == 10
    assert report.usage.cost_usd is None  # the total is unknown, never a silent 0
    if which == "job_max_cost_usd":
        assert "at least $0.075" in report.stop_message
        # The next run counts what the earlier one spent at its known prices: nothing more.
        made.clear()
        again = ResumableRun(config).run(process, items)
        assert (again.stop_reason, made) == ("cost_budget", [])


def test_cost_budgets_are_reached_by_a_spend_that_adds_up_to_them_in_floats(
    tmp_path: Path,
) -> None:
    # Ten calls of $0.10 add up to $0.9999999999999999: a plain `>=` let an
    # eleventh item through a $1.00 run budget, and a second run through a
    # $1.00 job budget the first had spent.
    prices = PriceTable({"tenth": {"input": 0.1, "output": 0.0}}, builtin=False)

    def process(item: str, ctx: Any) -> str:
        ctx.record_usage(Usage(input_tokens=1_000_000, calls=1, model="tenth"))
        return item

    items = [f"i{n}" for n in range(30)]
    path = tmp_path / "job.jsonl"
    run = ResumableRun(RunConfig(job_id="j", store=path, max_cost_usd=1.0, prices=prices))
    first = run.run(process, items)
    total = 0.0
    for _ in range(10):
        total += 0.1
    assert total < 1.0  # the floats this test is about
    assert (first.done, first.stop_reason) == (10, "cost_budget")
    again = ResumableRun(RunConfig(job_id="j", store=path, job_max_cost_usd=1.0, prices=prices))
    second = again.run(process, items)
    assert (second.done, second.stop_reason) == (0, "cost_budget")
    assert "job_max_cost_usd=1" in (second.stop_message or "")
