"""ctx.call / ctx.acall against the provider simulator, with the real openai and anthropic SDKs."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from agent_resume import Ledger, RateLimit, ResumableRun, Retry, RunConfig, RunReport
from agent_resume.stores import JsonlStore
from provider_sim import ProviderSim, SimConfig

FAST = Retry(attempts=8, initial=0.02, maximum=0.5)


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def _message(item: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"[item:{item}] summarise this ticket, please"}]


def test_acall_retries_transient_errors_tries_permanent_ones_once_and_loses_nothing(
    tmp_path: Path,
) -> None:
    config = SimConfig(rpm=3000, window=2.0, transient=0.05, permanent_items=0.02, seed=3)
    items = [f"t{n}" for n in range(400)]
    path = tmp_path / "ck.jsonl"
    with ProviderSim(config) as sim:

        async def main() -> object:
            client = openai.AsyncOpenAI(api_key="test", base_url=sim.openai_url, max_retries=0)

            async def summarise(item: str, ctx: object) -> str:
                response = await ctx.acall(  # type: ignore[attr-defined]
                    client.chat.completions.create,
                    model="gpt-4o-mini",
                    messages=_message(item),
                    max_tokens=50,
                )
                return str(response.choices[0].message.content)

            run_config = RunConfig(
                job_id="tickets", store=path, concurrency=16, progress=False, retry=FAST
            )
            try:
                return await ResumableRun(run_config).arun(summarise, items)
            finally:
                await client.close()

        report = asyncio.run(main())
        poisoned = {i for i in items if sim.poisoned(i)}
        assert poisoned and sim.counts.transient > 0
        # Every poisoned item was tried exactly once; every other one is done.
        assert {i: sim.counts.permanent_requests[i] for i in poisoned} == dict.fromkeys(poisoned, 1)
        assert report.done == len(items) - len(poisoned)  # type: ignore[attr-defined]
        records = _records(path)
        done = {r["id"] for r in records if "id" in r and "status" not in r}
        failed = {r["id"] for r in records if r.get("status") == "failed"}
        assert done == set(items) - poisoned
        assert failed == poisoned
        assert all("BadRequestError" in str(r["error"]) for r in records if r.get("status"))
        # The job's totals are what the server served, call for call.
        calls, input_tokens, output_tokens = sim.served_totals()
        total = Ledger.from_records(records).total
        assert (total.calls, total.input_tokens, total.output_tokens) == (
            calls,
            input_tokens,
            output_tokens,
        )
        assert sum(1 for r in records if "call" in r) == calls


def test_call_in_threads_with_anthropic_stays_under_the_limit(tmp_path: Path) -> None:
    config = SimConfig(rpm=200, tpm=20_000, window=1.0, latency=(0.005, 0.02), seed=5)
    with ProviderSim(config) as sim:
        client = anthropic.Anthropic(api_key="test", base_url=sim.url, max_retries=0)

        def answer(item: str, ctx: object) -> str:
            message = ctx.call(  # type: ignore[attr-defined]
                client.messages.create,
                model="claude-3-5-haiku-latest",
                max_tokens=20,
                messages=_message(item),
            )
            return str(message.content[0].text)

        run_config = RunConfig(
            job_id="threads",
            store=tmp_path / "ck.jsonl",
            concurrency=8,
            progress=False,
            retry=FAST,
            # The simulator's "minute" is one second.
            rate_limit=RateLimit(requests_per_minute=200 * 60, tokens_per_minute=20_000 * 60),
        )
        report = ResumableRun(run_config).run(answer, [f"a{n}" for n in range(300)])
        client.close()
        assert report.done == 300
        assert sim.counts.rate_limited <= 2  # scheduling jitter on a loaded machine, at most
        most_requests, most_tokens = sim.max_in_window()
        assert most_requests <= 200
        assert most_tokens <= 20_000


def test_unknown_limits_are_learned_from_429s_and_their_headers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="agent_resume.progress")
    # 10 requests a half second: 16 callers at once always hit the limit at first.
    config = SimConfig(rpm=10, window=0.5, seed=7)
    with ProviderSim(config) as sim:

        async def main() -> object:
            client = openai.AsyncOpenAI(api_key="test", base_url=sim.openai_url, max_retries=0)

            async def process(item: str, ctx: object) -> str:
                response = await ctx.acall(  # type: ignore[attr-defined]
                    client.chat.completions.create, model="gpt-4o-mini", messages=_message(item)
                )
                return str(response.choices[0].message.content)

            run_config = RunConfig(
                job_id="learn",
                store=tmp_path / "ck.jsonl",
                concurrency=16,
                progress="log",
                progress_interval=60,
            )
            try:
                return await ResumableRun(run_config).arun(process, [f"l{n}" for n in range(80)])
            finally:
                await client.close()

        report = asyncio.run(main())
        assert report.done == 80  # type: ignore[attr-defined]
        # A 429 carried the limit; after it the run paced itself.
        assert 0 < sim.counts.rate_limited < 20
        assert sim.max_in_window()[0] <= 10
        # The report and the last progress line count the 429s and the retries.
        assert report.rate_limited == sim.counts.rate_limited  # type: ignore[attr-defined]
        assert report.call_retries == sim.counts.rate_limited  # type: ignore[attr-defined]
        last = [r.getMessage() for r in caplog.records if r.name == "agent_resume.progress"][-1]
        assert f"calls 0 in flight, {sim.counts.rate_limited} HTTP 429" in last


def test_a_hung_request_times_out_and_is_retried(tmp_path: Path) -> None:
    config = SimConfig(hang_rate=0.1, hang=5.0, seed=11)
    with ProviderSim(config) as sim:

        async def main() -> object:
            client = openai.AsyncOpenAI(api_key="test", base_url=sim.openai_url, max_retries=0)

            async def process(item: str, ctx: object) -> str:
                response = await ctx.acall(  # type: ignore[attr-defined]
                    client.chat.completions.create, model="gpt-4o-mini", messages=_message(item)
                )
                return str(response.choices[0].message.content)

            run_config = RunConfig(
                job_id="hangs",
                store=tmp_path / "ck.jsonl",
                concurrency=8,
                progress=False,
                call_timeout=0.3,
                item_timeout=4.0,
                retry=FAST,
            )
            try:
                return await ResumableRun(run_config).arun(process, [f"h{n}" for n in range(40)])
            finally:
                await client.close()

        report = asyncio.run(main())
        assert sim.counts.hung > 0
        assert report.done == 40  # type: ignore[attr-defined]
        assert sim.served_totals()[0] == 40


def test_call_records_are_written_as_each_call_returns(tmp_path: Path) -> None:
    path = tmp_path / "ck.jsonl"
    with ProviderSim(SimConfig()) as sim:
        client = openai.OpenAI(api_key="test", base_url=sim.openai_url, max_retries=0)
        seen: list[int] = []

        def two_calls(item: str, ctx: object) -> None:
            for _ in range(2):
                ctx.call(  # type: ignore[attr-defined]
                    client.chat.completions.create, model="gpt-4o-mini", messages=_message(item)
                )
                # The record is on disk before the item is done.
                seen.append(sum(1 for r in _records(path) if r.get("call") == item))
            raise RuntimeError("the item fails after its calls")

        run_config = RunConfig(job_id="calls", store=JsonlStore(path), progress=False)
        report = ResumableRun(run_config).run(two_calls, ["x"])
        client.close()
    assert seen == [1, 2]
    assert report.failed == 1
    records = _records(path)
    calls = [r for r in records if "call" in r]
    assert len({r["a"] for r in calls}) == 1
    ledger = Ledger.from_records(records)
    assert ledger.total.calls == 2  # the failure's usage covers the two calls, once
    assert not ledger.lower_bound


@pytest.mark.parametrize("kill_between", [True])
def test_calls_of_an_attempt_that_never_recorded_an_outcome_still_count(kill_between: bool) -> None:
    usage = {"in": 10, "out": 5, "calls": 1, "model": "gpt-4o-mini"}
    records: list[dict[str, object]] = [
        {"run": "start", "ts": 1, "pid": 1},
        {"call": "a", "a": "t1", "ts": 1, "usage": usage},
        {"call": "a", "a": "t1", "ts": 1, "usage": usage},
        # killed here: no outcome, no run end
        {"run": "start", "ts": 2, "pid": 2},
        {"call": "a", "a": "t2", "ts": 2, "usage": usage},
        {"id": "a", "ts": 2, "usage": usage},
        {"call": "b", "a": "t3", "ts": 2, "usage": usage},
    ]
    ledger = Ledger.from_records(records)
    assert ledger.total.calls == 4
    assert ledger.item("a").usage.calls == 3  # type: ignore[union-attr]
    assert ledger.item("b").status == "interrupted"  # type: ignore[union-attr]
    assert ledger.lower_bound
    assert not Ledger.from_records([*records, {"run": "end"}, {"run": "end"}]).lower_bound


def _four_workers(store_url: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    # 60 requests per 2-second "minute"; each worker alone could go at the limit.
    per_window, window = 60, 2.0
    items = 160
    with ProviderSim(SimConfig(rpm=per_window, window=window, seed=13)) as sim:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        worker = str(Path(__file__).with_name("_calls_worker.py"))
        # The workers' shared limit is 80% of the server's, the headroom a real job
        # keeps: scheduling jitter between four processes on a loaded 2-core test
        # machine must not turn into 429s. Without sharing, each worker alone would
        # go at 80% of the limit, 320% together.
        args = [store_url, sim.openai_url, str(items), str(0.8 * per_window * 60 / window)]
        procs = [
            subprocess.Popen(
                [sys.executable, worker, *args], stdout=subprocess.PIPE, text=True, env=env
            )
            for _ in range(4)
        ]
        reports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            reports.append(json.loads(out.strip().splitlines()[-1]))
        assert sum(r["done"] for r in reports) == items
        assert len(sim.counts.served_items) == items
        # Four processes, one budget: the server refused almost nothing (four
        # workers each at the limit would have made it refuse about three in four;
        # the few left come from scheduling jitter on a loaded test machine).
        assert sim.max_in_window()[0] <= per_window
        assert sim.counts.rate_limited <= max(3, sim.counts.requests // 20)


@pytest.mark.slow
def test_four_sqlite_workers_with_a_shared_limit_stay_under_it(tmp_path: Path) -> None:
    _four_workers(f"sqlite:///{tmp_path / 'job.db'}", tmp_path)


@pytest.mark.slow
def test_four_postgres_workers_with_a_shared_limit_stay_under_it(
    pg_dsn: str, tmp_path: Path
) -> None:
    _four_workers(pg_dsn, tmp_path)


def test_a_shared_limit_needs_a_database_store(tmp_path: Path) -> None:
    from agent_resume import ArgumentValueError

    with pytest.raises(ArgumentValueError, match="needs a SQLite or PostgreSQL store"):
        RunConfig(
            job_id="j",
            store=tmp_path / "a.jsonl",
            rate_limit=RateLimit(requests_per_minute=5, shared=True),
        )


@pytest.mark.slow
def test_job_totals_equal_what_the_server_served_across_a_sigkill(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    concurrency = 8
    items = 120
    path = tmp_path / "ck.jsonl"
    config = SimConfig(transient=0.05, latency=(0.01, 0.05), seed=17)
    with ProviderSim(config) as sim:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        child = str(Path(__file__).with_name("_calls_child.py"))
        args = [sys.executable, child, str(path), sim.openai_url, str(items), str(concurrency)]
        proc = subprocess.Popen(args, env=env)
        deadline = time.monotonic() + 60
        while sim.served_totals()[0] < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        served_at_kill = sim.served_totals()
        ledger = Ledger.from_records(JsonlStore(path).iter_records())
        # Every call that returned before the kill is in the checkpoint, but for
        # those in flight (answered by the server, not yet written by the child).
        assert ledger.lower_bound
        assert served_at_kill[0] - concurrency <= ledger.total.calls <= served_at_kill[0]
        assert served_at_kill[0] > 0
        # Resume: every item ends done, none lost, and the job's totals match
        # what the server served but for the calls in flight at the kill.
        rerun = subprocess.run(args, env=env, timeout=120)
        assert rerun.returncode == 0
        records = list(JsonlStore(path).iter_records())
        done = {r["id"] for r in records if "id" in r and "status" not in r}
        assert done == {f"k{n}" for n in range(items)}
        ledger = Ledger.from_records(records)
        calls, input_tokens, _ = sim.served_totals()
        missing = calls - ledger.total.calls
        assert 0 <= missing <= concurrency
        assert ledger.total.input_tokens <= input_tokens
        assert not ledger.lower_bound or missing > 0


def test_limits_are_adopted_from_a_raw_responses_headers(tmp_path: Path) -> None:
    # The simulator's limit, advertised per real minute on every answer: 20 a second.
    config = SimConfig(rpm=40, window=2.0, seed=19)
    with ProviderSim(config) as sim:
        client = openai.OpenAI(api_key="test", base_url=sim.openai_url, max_retries=0)
        limits: list[dict[str, float]] = []

        def process(item: str, ctx: object) -> str:
            raw = ctx.call(  # type: ignore[attr-defined]
                client.chat.completions.with_raw_response.create,
                model="gpt-4o-mini",
                messages=_message(item),
            )
            limits.append(dict(ctx.gate.limiter.rates))  # type: ignore[attr-defined]
            return str(raw.parse().choices[0].message.content)

        run_config = RunConfig(job_id="raw", store=tmp_path / "ck.jsonl", progress=False)
        report = ResumableRun(run_config).run(process, [f"r{n}" for n in range(30)])
        client.close()
    assert report.done == 30
    assert report.usage.calls == 30  # the usage was read from the parsed body
    assert limits[0] == {"requests": 1200.0}
    # Paced from the first answer on (a 429 or two may come from scheduling jitter).
    assert sim.counts.rate_limited <= 2


def test_a_stream_is_returned_as_it_is_and_counted_once_with_record_usage(
    tmp_path: Path,
) -> None:
    from llm_server import LLMServer, Reply

    with LLMServer(Reply(text="one two", input_tokens=50, output_tokens=7)) as server:
        client = openai.OpenAI(api_key="test", base_url=server.openai_url, max_retries=0)

        def process(item: str, ctx: object) -> str:
            stream = ctx.call(  # type: ignore[attr-defined]
                client.chat.completions.create,
                model="gpt-4o-mini",
                messages=_message(item),
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            ctx.record_usage(chunks[-1])  # type: ignore[attr-defined]
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        path = tmp_path / "ck.jsonl"
        report = ResumableRun(RunConfig(job_id="s", store=path, progress=False)).run(process, ["a"])
        client.close()
    assert report.done == 1
    assert (report.usage.calls, report.usage.input_tokens, report.usage.output_tokens) == (1, 50, 7)
    assert Ledger.from_records(_records(path)).total.calls == 1


def _stream_run(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    *,
    count: bool,
    concurrency: int = 1,
    **settings: Any,
) -> tuple[RunReport, list[str]]:
    """Stream a chat completion per item through ``ctx.acall``; count it or not."""
    from llm_server import LLMServer, Reply

    async def process(item: str, ctx: Any) -> str:
        stream = await ctx.acall(
            client.chat.completions.create,
            model="gpt-4o-mini",
            messages=_message(item),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        if count:
            ctx.record_usage(chunks[-1])
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with LLMServer(Reply(text="one two", input_tokens=50, output_tokens=7)) as server:
        client = openai.AsyncOpenAI(api_key="test", base_url=server.openai_url, max_retries=0)
        config = RunConfig(
            job_id="s",
            store=tmp_path / "ck.jsonl",
            progress=False,
            concurrency=concurrency,
            **settings,
        )
        with caplog.at_level(logging.WARNING, logger="agent_resume"):
            report = asyncio.run(ResumableRun(config).arun(process, ["a", "b", "c"]))
        asyncio.run(client.close())
    warned = [r.getMessage() for r in caplog.records if "returned no usage" in r.getMessage()]
    return report, warned


def test_a_stream_left_uncounted_is_warned_of_once_per_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report, warned = _stream_run(tmp_path, caplog, count=False)
    # The three calls were paid, and nothing counted them: the run says so, once, and
    # counts them as calls of unknown cost (never as free), in the checkpoint too.
    assert (report.done, report.usage.calls, report.usage.cost_usd) == (3, 3, None)
    total = Ledger.from_records(_records(tmp_path / "ck.jsonl")).total
    assert (total.calls, total.input_tokens, total.cost_usd) == (3, 0, None)
    assert len(warned) == 1
    assert "a call through ctx.call returned no usage (a stream?)" in warned[0]
    assert "ctx.record_usage" in warned[0]


def test_a_stream_counted_with_its_last_chunk_is_not_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report, warned = _stream_run(tmp_path, caplog, count=True)
    assert (report.done, report.usage.calls, report.usage.output_tokens) == (3, 3, 21)
    assert warned == []


def test_a_stream_left_uncounted_under_a_cost_budget_stops_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A call of unknown cost, as an unknown price: the budget cannot be kept.
    report, _ = _stream_run(tmp_path, caplog, count=False, max_cost_usd=1.0)
    assert (report.done, report.stop_reason, report.remaining) == (1, "cost_budget", 2)
    assert "returned no usage (a stream?)" in report.stop_message
    assert "max_cost_usd" in report.stop_message
    # on_unknown_price="ignore" goes on, and says nothing.
    report, warned = _stream_run(
        tmp_path / "ignore", caplog, count=False, max_cost_usd=1.0, on_unknown_price="ignore"
    )
    assert (report.done, report.stop_reason, warned) == (3, "completed", [])


_STREAMING_CHILD = """
import sys, time
import openai
from agent_resume import ResumableRun, RunConfig

store, url = sys.argv[1:3]
client = openai.OpenAI(base_url=url, api_key="test", max_retries=0)

def process(item, ctx):
    for turn in range(3):
        stream = ctx.call(
            client.chat.completions.create, model="gpt-4o", stream=True,
            messages=[{"role": "user", "content": "x"}],
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        ctx.record_usage(chunks[-1])
        print("counted", flush=True)
        time.sleep(0.2)
    return "ok"

ResumableRun(RunConfig(job_id="st", store=store, progress=False)).run(process, ["a", "b", "c"])
"""


def test_a_streams_usage_counted_with_record_usage_survives_a_sigkill(tmp_path: Path) -> None:
    # The documented way to count a stream (its last chunk, to ctx.record_usage) writes
    # the call's record at once, as ctx.call does: a kill mid-item loses none of it.
    import subprocess

    from llm_server import LLMServer, Reply

    child = tmp_path / "child.py"
    child.write_text(_STREAMING_CHILD)
    path = tmp_path / "ck.jsonl"
    with LLMServer(Reply(input_tokens=1000, output_tokens=500)) as server:
        proc = subprocess.Popen(
            [sys.executable, str(child), str(path), server.openai_url],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        with proc.stdout:
            counted = [proc.stdout.readline() for _ in range(5)]  # a's 3 calls, b's first 2
            proc.kill()
            proc.wait()
        served = len(server.requests)
    assert counted == ["counted\n"] * 5 and served == 5
    total = Ledger.from_records(_records(path)).total
    assert (total.calls, total.input_tokens) == (5, 5000)
    assert total.cost_usd == pytest.approx(5 * 0.0075)


def test_a_call_that_returns_a_plain_value_is_no_uncounted_llm_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # ctx.call for its retries around something that is no model (a fetch, a tool):
    # nothing to count, so no warning, and a cost budget goes on.
    def fetch(n: int) -> dict[str, int]:
        return {"length": n}

    def process(item: str, ctx: Any) -> int:
        return int(ctx.call(fetch, len(item))["length"]) + len(ctx.call(str, item))

    config = RunConfig(job_id="p", store=tmp_path / "ck.jsonl", progress=False, max_cost_usd=1.0)
    with caplog.at_level(logging.WARNING, logger="agent_resume"):
        report = ResumableRun(config).run(process, ["a", "bb", "ccc"])
    assert (report.done, report.stop_reason, report.usage.calls) == (3, "completed", 0)
    assert not [r for r in caplog.records if "returned no usage" in r.getMessage()]


def test_calls_fanned_out_over_threads_of_one_item_are_counted_once_each(
    tmp_path: Path,
) -> None:
    # One item, 16 ctx.call at once from its own threads: the attempt has one token
    # (its call records are covered by its completion), and every call counts once.
    from concurrent.futures import ThreadPoolExecutor

    fan = 16

    def answer(n: int) -> dict[str, Any]:
        time.sleep(0.002)  # the calls of an item overlap, and return together
        usage = {"prompt_tokens": 1000, "completion_tokens": 500}
        return {"object": "chat.completion", "model": "gpt-4o", "usage": usage}

    def process(item: str, ctx: Any) -> int:
        with ThreadPoolExecutor(fan) as pool:
            return len(list(pool.map(lambda n: ctx.call(answer, n), range(fan))))

    path = tmp_path / "ck.jsonl"
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        config = RunConfig(job_id="fan", store=path, progress=False, concurrency=fan)
        report = ResumableRun(config).run(process, [f"i{n}" for n in range(12)])
    finally:
        sys.setswitchinterval(interval)
    calls = 12 * fan
    assert (report.done, report.usage.calls) == (12, calls)
    tokens = {r["a"] for r in _records(path) if "call" in r}
    assert len(tokens) == 12  # one per attempt
    total = Ledger.from_records(_records(path)).total
    assert (total.calls, total.input_tokens) == (calls, calls * 1000)
    assert total.cost_usd == pytest.approx(calls * 0.0075)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_call_records_in_the_sql_stores(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from agent_resume import open_store
    from llm_server import LLMServer

    url = (
        f"sqlite:///{tmp_path / 'job.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("pg_dsn")
    )
    with LLMServer() as server:
        client = openai.OpenAI(api_key="test", base_url=server.openai_url, max_retries=0)

        def two_calls_then_fail(item: str, ctx: object) -> None:
            for _ in range(2):
                ctx.call(  # type: ignore[attr-defined]
                    client.chat.completions.create, model="gpt-4o-mini", messages=_message(item)
                )
            raise ValueError("after two calls")

        config = RunConfig(job_id="sql", store=url, progress=False)
        report = ResumableRun(config).run(two_calls_then_fail, ["a", "b"])
        client.close()
    assert report.failed == 2
    store = open_store(url)
    records = list(store.iter_records())
    assert sum(1 for r in records if "call" in r) == 4
    ledger = Ledger.from_records(records)
    assert ledger.total.calls == 4  # the failures' usage covers their calls, once
    # Call records are not runs: a new session sees one run (start and end).
    state = store.open("sql")
    try:
        assert [r.get("run") for r in state.runs] == ["start", "end"]
    finally:
        store.close()


def test_call_and_acall_refuse_what_they_cannot_call(tmp_path: Path) -> None:
    from agent_resume import ArgumentTypeError

    async def coroutine_function() -> int:
        return 1

    def plain() -> int:
        return 1

    errors: list[BaseException] = []

    def sync_item(item: str, ctx: object) -> None:
        for fn in (42, coroutine_function):
            try:
                ctx.call(fn)  # type: ignore[attr-defined]
            except ArgumentTypeError as error:
                errors.append(error)

    async def async_item(item: str, ctx: object) -> None:
        for fn in (None, plain):
            try:
                await ctx.acall(fn)  # type: ignore[attr-defined]
            except ArgumentTypeError as error:
                errors.append(error)

    config = RunConfig(job_id="bad", store=tmp_path / "a.jsonl", progress=False)
    ResumableRun(config).run(sync_item, ["x"])
    config = RunConfig(job_id="bad", store=tmp_path / "b.jsonl", progress=False)
    asyncio.run(ResumableRun(config).arun(async_item, ["x"]))
    messages = [str(e) for e in errors]
    assert len(messages) == 4
    assert "ctx.call's `fn` must be callable" in messages[0]
    assert "returned a coroutine: await async functions with ctx.acall" in messages[1]
    assert "ctx.acall's `fn` must be callable" in messages[2]
    assert "must return an awaitable (got int); call sync functions with ctx.call" in messages[3]
    assert all(getattr(e, "parameter", None) == "fn" for e in errors)


def test_acall_given_a_sync_sdk_call_counts_what_it_paid_before_refusing_it(
    tmp_path: Path,
) -> None:
    # The sync client's call was made, and paid, before acall saw no awaitable:
    # its usage was not counted, by the run or the job's budget.
    from llm_server import LLMServer

    with LLMServer() as server:
        client = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)

        async def aprocess(item: str, ctx: Any) -> None:
            await ctx.acall(
                client.chat.completions.create, model="gpt-4o-mini", messages=_message("x")
            )

        config = RunConfig(job_id="mixed", store=str(tmp_path / "ck.jsonl"), progress=False)
        report = asyncio.run(ResumableRun(config).arun(aprocess, ["a"]))
        client.close()
        sent = len(server.requests)
    assert (report.failed, report.usage.calls, sent) == (1, 1, 1)
    assert report.usage.cost_usd is not None and report.usage.cost_usd > 0
    records = _records(tmp_path / "ck.jsonl")
    assert [r["call"] for r in records if "call" in r] == ["a"]
    failure = next(r for r in records if r.get("status") == "failed")
    assert "must return an awaitable" in failure["error"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_structured_output_cut_at_max_tokens_counts_what_it_paid(
    tmp_path: Path, mode: str
) -> None:
    # chat.completions.parse raises LengthFinishReasonError for an answer cut at
    # max_tokens: the provider billed every token of it, and the run counted none.
    import pydantic

    from llm_server import LLMServer, Reply

    class Verdict(pydantic.BaseModel):
        label: str

    reply = Reply(text='{"label": "sp', output_tokens=500, finish_reason="length")
    request = {"model": "gpt-4o-mini", "messages": _message("x"), "response_format": Verdict}
    run = ResumableRun(RunConfig(job_id="cut", store=str(tmp_path / "ck.jsonl"), progress=False))
    with LLMServer(reply) as server:
        if mode == "sync":
            with openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0) as client:
                report = run.run(
                    lambda item, ctx: ctx.call(client.chat.completions.parse, **request), ["a"]
                )
        else:

            async def main() -> Any:
                async with openai.AsyncOpenAI(
                    base_url=server.openai_url, api_key="k", max_retries=0
                ) as client:

                    async def aprocess(item: str, ctx: Any) -> None:
                        await ctx.acall(client.chat.completions.parse, **request)

                    return await run.arun(aprocess, ["a"])

            report = asyncio.run(main())
    assert (report.failed, report.usage.calls, report.usage.output_tokens) == (1, 1, 500)
    assert report.usage.cost_usd is not None and report.usage.cost_usd > 0
    records = _records(tmp_path / "ck.jsonl")
    assert [r["usage"]["out"] for r in records if "call" in r] == [500]
    failure = next(r for r in records if r.get("status") == "failed")
    assert "LengthFinishReasonError" in failure["error"] and failure["usage"]["out"] == 500


def _one_call_per_item(sdk: str, server: Any, model: str) -> tuple[Any, Callable[[str, Any], None]]:
    """A real ``sdk`` client of the loopback server, and a process making one call per item."""
    if sdk == "openai":
        client: Any = openai.OpenAI(api_key="k", base_url=server.openai_url, max_retries=0)
        create = client.chat.completions.create
    else:
        client = anthropic.Anthropic(api_key="k", base_url=server.url, max_retries=0)
        create = client.messages.create

    def process(item: str, ctx: Any) -> None:
        ctx.call(create, model=model, max_tokens=10, messages=_message(item))

    return client, process


@pytest.mark.parametrize(
    ("sdk", "status", "concurrency"),
    [("openai", 401, 1), ("openai", 403, 4), ("anthropic", 401, 1), ("anthropic", 403, 4)],
)
def test_a_refused_key_stops_the_run_after_the_items_in_flight(
    tmp_path: Path, sdk: str, status: int, concurrency: int
) -> None:
    # A wrong API key fails every item alike: the run stops admitting at the
    # first refusal, instead of spending an attempt of every item of the job.
    from llm_server import LLMServer, Reply

    stops: list[object] = []
    with LLMServer(Reply(status=status)) as server:
        client, process = _one_call_per_item(sdk, server, "gpt-4o-mini")
        path = tmp_path / "ck.jsonl"
        config = RunConfig(
            job_id="k",
            store=path,
            concurrency=concurrency,
            retry=FAST,
            on_stop=stops.append,
            progress=False,
        )
        items = [f"item-{n}" for n in range(40)]
        report = ResumableRun(config).run(process, items)
        client.close()
        served = len(server.requests)
    failed = [r for r in _records(path) if r.get("status") == "failed"]
    assert 1 <= len(failed) == served <= concurrency  # tried once each: a permanent error
    assert (report.done, report.failed, report.stop_reason) == (0, len(failed), "failures")
    assert report.remaining == 40
    assert "the provider refused access" in report.stop_message
    assert f"HTTP {status}" in report.stop_message
    assert [getattr(s, "name", None) for s in stops] == ["access_refused"]
    # The items tried keep their other attempts for the run after the key is fixed.
    assert {r["attempt"] for r in failed} == {1}


QUOTA_ERRORS = {
    "openai": (
        429,
        {
            "error": {
                "message": "You exceeded your current quota, please check your plan and "
                "billing details.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
    ),
    "anthropic": (
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API. "
                "Please go to Plans & Billing to upgrade or purchase credits.",
            },
        },
    ),
}


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_used_up_quota_stops_the_run_without_retrying(tmp_path: Path, sdk: str) -> None:
    # OpenAI's insufficient_quota is a 429 that no wait cures: retried as a rate
    # limit, it paused the run and tried every item until the deadline.
    from llm_server import LLMServer, Reply

    status, body = QUOTA_ERRORS[sdk]
    stops: list[object] = []
    with LLMServer(Reply(status=status, error_body=body)) as server:
        client, process = _one_call_per_item(sdk, server, "gpt-4o-mini")
        path = tmp_path / "ck.jsonl"
        config = RunConfig(job_id="q", store=path, retry=FAST, on_stop=stops.append, progress=False)
        report = ResumableRun(config).run(process, [f"item-{n}" for n in range(10)])
        client.close()
        served = len(server.requests)
    assert served == 1  # one try of one item: not retried, not tried on the others
    assert (report.done, report.failed, report.stop_reason, report.rate_limited) == (
        0,
        1,
        "failures",
        0,
    )
    assert "quota or credit is used up" in report.stop_message
    assert [getattr(s, "name", None) for s in stops] == ["quota_exhausted"]


def test_the_providers_x_should_retry_header_wins_over_the_status(tmp_path: Path) -> None:
    from llm_server import LLMServer, Reply

    with LLMServer() as server:
        client, process = _one_call_per_item("openai", server, "gpt-4o-mini")
        config = RunConfig(
            job_id="h", store=tmp_path / "ck.jsonl", retry=FAST, max_attempts=1, progress=False
        )
        server.queue(
            Reply(status=500, headers={"x-should-retry": "false"}),  # item a: not retried
            Reply(status=400, headers={"x-should-retry": "true"}),  # item b: retried, then done
        )
        report = ResumableRun(config).run(process, ["a", "b"])
        client.close()
        served = len(server.requests)
    assert (served, report.done, report.failed, report.call_retries) == (3, 1, 1, 1)
    failed = [r for r in _records(tmp_path / "ck.jsonl") if r.get("status") == "failed"]
    assert [(r["id"], str(r["error"]).split(":")[0]) for r in failed] == [
        ("a", "InternalServerError")
    ]


def test_an_items_own_403_from_another_library_is_an_items_failure(tmp_path: Path) -> None:
    class HTTPError(Exception):  # what `requests` raises for a page that refuses access
        def __init__(self) -> None:
            super().__init__("403 Client Error: Forbidden for url: https://example.com/x")
            self.response = type("Response", (), {"status_code": 403})()

    def process(item: str, ctx: object) -> None:
        if item == "b":
            raise HTTPError()

    config = RunConfig(job_id="w", store=tmp_path / "w.jsonl", progress=False)
    report = ResumableRun(config).run(process, ["a", "b", "c", "d"])
    assert (report.done, report.failed, report.stop_reason) == (3, 1, "failures")
    assert "1 failed item is left" in report.stop_message


def test_a_refused_key_stops_an_async_run_too(tmp_path: Path) -> None:
    from llm_server import LLMServer, Reply

    with LLMServer(Reply(status=401)) as server:

        async def main() -> object:
            client = openai.AsyncOpenAI(api_key="bad", base_url=server.openai_url, max_retries=0)

            async def process(item: str, ctx: object) -> None:
                await ctx.acall(  # type: ignore[attr-defined]
                    client.chat.completions.create, model="gpt-4o-mini", messages=_message(item)
                )

            config = RunConfig(
                job_id="a", store=tmp_path / "a.jsonl", concurrency=8, retry=FAST, progress=False
            )
            try:
                return await ResumableRun(config).arun(process, [f"i{n}" for n in range(100)])
            finally:
                await client.close()

        report = asyncio.run(main())
        served = len(server.requests)
    assert 1 <= served <= 8
    assert (report.done, report.failed, report.remaining) == (0, served, 100)  # type: ignore[attr-defined]
    assert "AuthenticationError (HTTP 401)" in report.stop_message  # type: ignore[attr-defined]


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_an_unknown_model_stops_the_run_after_the_items_in_flight(tmp_path: Path, sdk: str) -> None:
    # A typo in the model's name, or a model the provider retired overnight.
    from llm_server import LLMServer, Reply

    body: dict[str, object] = (
        {"error": {"message": "The model `gpt-4.1-mnii` does not exist", "code": "model_not_found"}}
        if sdk == "openai"
        else {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"}}
    )
    stops: list[object] = []
    with LLMServer(Reply(status=404, error_body=body)) as server:
        client, process = _one_call_per_item(sdk, server, "gpt-4.1-mnii")
        config = RunConfig(
            job_id="m",
            store=tmp_path / "m.jsonl",
            concurrency=2,
            retry=FAST,
            on_stop=stops.append,
            progress=False,
        )
        report = ResumableRun(config).run(process, [f"item-{n}" for n in range(30)])
        client.close()
        served = len(server.requests)
    assert 1 <= served <= 2
    assert (report.done, report.failed, report.remaining) == (0, served, 30)
    assert report.stop_message.startswith("the provider does not know the model (NotFoundError")
    assert "fix the model's name and run again" in report.stop_message
    assert [getattr(s, "name", None) for s in stops] == ["model_not_found"]


def _run_under_an_hour_long_pause(tmp_path: Path, items: int, **limits: Any) -> tuple[Any, int]:
    """Run ``items`` items whose first call gets a 429 asking to wait an hour; the report and the requests sent."""
    from llm_server import LLMServer, Reply

    with LLMServer() as server:
        client = openai.OpenAI(base_url=server.openai_url, api_key="k", max_retries=0)

        def process(item: dict[str, int], ctx: Any) -> str:
            response = ctx.call(
                client.chat.completions.create, model="gpt-4o-mini", messages=_message("x")
            )
            return str(response.choices[0].message.content)

        server.queue(Reply(status=429, headers={"retry-after": "3600"}))
        config = RunConfig(
            job_id="paused",
            store=str(tmp_path / "ck.jsonl"),
            progress=False,
            retry=FAST,
            **limits,
        )
        report = ResumableRun(config).run(process, [{"id": n} for n in range(items)])
        client.close()
        return report, len(server.requests)


def test_a_retry_after_past_the_items_deadline_fails_it_at_once_and_says_why(
    tmp_path: Path,
) -> None:
    # The provider pauses everyone for an hour; each item has two seconds.
    report, sent = _run_under_an_hour_long_pause(tmp_path, 3, time_budget=3, item_timeout=2)
    # The pause outlasts the run: it stops at once, admitting no other item to cut.
    assert (report.done, report.stop_reason, report.remaining) == (0, "time_budget", 3)
    assert "paused every call for 3600.0s (HTTP 429)" in report.stop_message
    errors = [r["error"] for r in _records(tmp_path / "ck.jsonl") if r.get("status") == "failed"]
    assert len(errors) == 1 and "DeadlineExceeded" in errors[0]  # the item's own deadline
    assert "HTTP 429: the next try would be in 3600.0s, and the item has 2.0s left" in errors[0]
    assert sent == 1  # nothing was sent during the pause


def test_a_pause_past_the_runs_deadline_stops_the_run_and_uses_no_attempt(
    tmp_path: Path,
) -> None:
    # Before, every item of the input was admitted and cut in turn, and the run
    # then idled until its deadline; the first item used an attempt for the 429.
    report, sent = _run_under_an_hour_long_pause(tmp_path, 500, time_budget=30)
    assert report.stop_reason == "time_budget" and "3600.0s" in report.stop_message
    # The item in flight is cut (no attempt used), and no other is admitted.
    assert (report.done, report.failed, report.interrupted, report.remaining) == (0, 0, 1, 500)
    records = _records(tmp_path / "ck.jsonl")
    assert not [r for r in records if r.get("status") == "failed"]
    assert sent == 1


def test_geminis_retry_delay_in_the_body_is_waited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Gemini sends no retry-after header: its 429 names the wait in a RetryInfo detail.
    import logging

    from google import genai
    from google.genai import types as genai_types

    from llm_server import LLMServer, Reply

    body = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.6s"}
            ],
        }
    }
    with LLMServer() as server:
        client = genai.Client(
            api_key="k", http_options=genai_types.HttpOptions(base_url=server.url)
        )

        def process(item: str, ctx: Any) -> str:
            response = ctx.call(
                client.models.generate_content, model="gemini-2.5-flash", contents=item
            )
            return str(response.text)

        server.queue(Reply(status=429, error_body=body))
        config = RunConfig(
            job_id="g",
            store=tmp_path / "ck.jsonl",
            retry=Retry(attempts=3, initial=0.01, maximum=0.02),  # far shorter than 0.6 s
            progress=False,
        )
        with caplog.at_level(logging.INFO, logger="agent_resume"):
            report = ResumableRun(config).run(process, ["a"])
        client.close()
        served = len(server.requests)
    assert (served, report.done, report.call_retries, report.rate_limited) == (2, 1, 1, 1)
    assert "every call waits 0.600s" in caplog.text  # the provider's wait, not the backoff


@pytest.mark.parametrize("limits", [{}, {"item_timeout": 60.0}, {"call_timeout": 30.0}])
def test_a_timeout_error_that_fn_raises_itself_is_a_transient_error_of_fn(
    tmp_path: Path, limits: dict[str, float]
) -> None:
    # On 3.11+ asyncio.TimeoutError is TimeoutError: one raised inside `fn`
    # (an SDK's or aiohttp's read timeout, `asyncio.timeout`) read as the call's
    # own limit: DeadlineExceeded "after 0.000s" with no deadline set, never
    # retried; with call_timeout, a CallTimeout(30) for a call of no time.
    tries: list[str] = []

    async def flaky(item: str) -> str:
        tries.append(item)
        if len(tries) == 1:
            raise TimeoutError("read timed out")
        return item

    async def process(item: str, ctx: Any) -> str:
        return str(await ctx.acall(flaky, item))

    config = RunConfig(
        job_id="j", store=tmp_path / "ck.jsonl", progress=False, retry=FAST, **limits
    )
    report = asyncio.run(ResumableRun(config).arun(process, ["a"]))
    assert (report.done, report.failed, tries) == (1, 0, ["a", "a"])


def test_a_timeout_error_fn_raises_that_is_not_retried_keeps_its_type(tmp_path: Path) -> None:
    async def process(item: str, ctx: Any) -> str:
        async def never(item: str) -> str:
            raise TimeoutError("read timed out")

        return str(await ctx.acall(never, item))

    retry = Retry(attempts=1)
    config = RunConfig(
        job_id="j", store=tmp_path / "ck.jsonl", progress=False, retry=retry, max_attempts=1
    )
    report = asyncio.run(ResumableRun(config).arun(process, ["a"]))
    assert report.failed == 1
    failure = next(r for r in _records(tmp_path / "ck.jsonl") if r.get("status") == "failed")
    assert str(failure["error"]).startswith("TimeoutError")


def test_a_retry_after_of_a_day_is_cut_to_the_longest_wait_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # `retry-after: 86400` put the whole run to sleep for a day, said at INFO level.
    import httpx

    from agent_resume import _retry

    monkeypatch.setattr(_retry, "LONGEST_TOLD", 0.3)  # 60 s in use: a test cannot wait that
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    tries: list[float] = []

    def create() -> str:
        tries.append(time.monotonic())
        if len(tries) == 1:
            response = httpx.Response(429, headers={"retry-after": "86400"}, request=request)
            raise openai.RateLimitError("slow down", response=response, body=None)
        return "ok"

    def process(item: str, ctx: Any) -> str:
        return str(ctx.call(create))

    retry = Retry(attempts=3, initial=0.05, maximum=0.1)
    config = RunConfig(job_id="j", store=tmp_path / "ck.jsonl", progress=False, retry=retry)
    with caplog.at_level(logging.WARNING, logger="agent_resume"):
        report = ResumableRun(config).run(process, ["a"])
    assert (report.done, len(tries)) == (1, 2)
    assert tries[1] - tries[0] < 5.0
    assert "asked to wait 86400s; waiting 0s" in caplog.text  # 0.3 s, shown to the second


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_provider_down_stops_the_run_before_its_items_are_quarantined(
    tmp_path: Path, concurrency: int
) -> None:
    # Nothing listens on the port: every call is a connection error, retried,
    # then the item's failed attempt. A 17 s outage quarantined every item of
    # the job (max_attempts spent within the run) and the run said "completed".
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = openai.OpenAI(api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    stops: list[str] = []

    def process(item: str, ctx: Any) -> str:
        ctx.call(
            client.chat.completions.create,
            model="gpt-4o-mini",
            messages=_message(item),
            max_tokens=5,
        )
        return item

    retry = Retry(attempts=2, initial=0.01, maximum=0.02)
    config = RunConfig(
        job_id="down",
        store=tmp_path / "ck.jsonl",
        progress=False,
        retry=retry,
        concurrency=concurrency,
        on_stop=lambda reason: stops.append(reason.name),
    )
    items = [f"t{n}" for n in range(30)]
    try:
        report = ResumableRun(config).run(process, items)
    finally:
        client.close()
    assert report.stop_reason == "failures" and stops == ["provider_unavailable"]
    assert "looks unavailable" in (report.stop_message or "")
    assert (report.done, report.quarantined) == (0, 0)
    assert report.remaining == len(items)
    assert max(5, concurrency) <= report.failed < 3 * max(5, concurrency)


@pytest.mark.parametrize("max_tokens", [None, 50])
def test_under_a_token_limit_calls_of_unknown_output_wait_for_the_first_answer(
    tmp_path: Path, max_tokens: int | None
) -> None:
    # Without max_tokens the first calls counted their output as nothing and
    # all started at once: RateLimit(tokens_per_minute=1800) let 75 tokens
    # through in a second. Until one has answered they go one at a time.
    config = SimConfig(latency=(0.3, 0.3), send_limit_headers=False)
    extra = {} if max_tokens is None else {"max_tokens": max_tokens}
    with ProviderSim(config) as sim:

        async def main() -> RunReport:
            client = openai.AsyncOpenAI(api_key="k", base_url=sim.openai_url, max_retries=0)

            async def process(item: str, ctx: Any) -> str:
                response = await ctx.acall(
                    client.chat.completions.create,
                    model="gpt-4o-mini",
                    messages=_message(item),
                    **extra,
                )
                return str(response.choices[0].message.content)

            run_config = RunConfig(
                job_id="tpm",
                store=tmp_path / "ck.jsonl",
                progress=False,
                concurrency=8,
                rate_limit=RateLimit(tokens_per_minute=10_000_000),
            )
            try:
                return await ResumableRun(run_config).arun(process, [f"t{n}" for n in range(8)])
            finally:
                await client.close()

        report = asyncio.run(main())
        starts = sorted(served.at for served in sim.counts.served)
    assert report.done == 8
    if max_tokens is None:
        assert starts[1] - starts[0] >= 0.25  # the second waited for the first's answer
        assert starts[-1] - starts[1] < 0.25  # then the rest went together
    else:
        assert starts[-1] - starts[0] < 0.25  # a known maximum: no one waits


def test_the_sdks_own_retries_are_warned_of_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # With the SDK's max_retries left on, each try of ctx.call is several
    # requests the run never sees (and a sync one can overrun the deadline):
    # the SDK says how often it retried in the request it sends.
    config = SimConfig(transient=1.0, send_limit_headers=False)
    with ProviderSim(config) as sim:
        client = openai.OpenAI(api_key="k", base_url=sim.openai_url, max_retries=1)

        def process(item: str, ctx: Any) -> str:
            ctx.call(client.chat.completions.create, model="gpt-4o-mini", messages=_message(item))
            return item

        run_config = RunConfig(
            job_id="sdk", store=tmp_path / "ck.jsonl", progress=False, retry=Retry(attempts=1)
        )
        with caplog.at_level(logging.WARNING, logger="agent_resume"):
            report = ResumableRun(run_config).run(process, ["a", "b"])
        client.close()
        assert sim.counts.requests == 2 * report.failed  # two requests a try
    warned = [r for r in caplog.records if "retried a call 1 time(s) itself" in r.getMessage()]
    assert len(warned) == 1 and "max_retries=0" in warned[0].getMessage()
