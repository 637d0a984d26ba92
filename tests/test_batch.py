"""Batch mode against a loopback server speaking OpenAI's and Anthropic's batch APIs.

The real SDK clients talk to ``batch_server.BatchServer``; the crash tests
SIGKILL a real child process at the two dangerous moments of a submission.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from agent_resume import (
    AgentResume,
    ArgumentTypeError,
    ArgumentValueError,
    DuplicateItemWarning,
    ItemContext,
    JsonlStore,
    Ledger,
    PriceTable,
    ResultJsonlStore,
    ResumableRun,
    RunConfig,
    SqliteStore,
    Usage,
    default_prices,
)
from batch_server import INPUT_TOKENS, OUTPUT_TOKENS, BatchServer
from batch_server import batch_server_fixture as batch_server_fixture

HERE = Path(__file__).parent
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-20241022"


def tickets(n: int = 10) -> list[dict[str, str]]:
    return [{"id": f"t-{i}", "text": f"ticket {i}"} for i in range(n)]


_CLIENTS: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client_for(provider: str, server: BatchServer) -> Any:
    if provider == "openai":
        client: Any = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
    else:
        client = anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)
    _CLIENTS.append(client)
    return client


def request_for(provider: str) -> Any:
    model = OPENAI_MODEL if provider == "openai" else ANTHROPIC_MODEL

    def request(ticket: dict[str, str]) -> dict[str, Any]:
        return {
            "model": model,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": ticket["text"]}],
        }

    return request


def text_of(response: Any) -> str:
    if isinstance(response, dict):
        return str(response["choices"][0]["message"]["content"])
    return str(response.content[0].text)


def ticket_of(body: dict[str, Any]) -> str:
    return str(body["messages"][0]["content"])


def config(path: Path, **kw: Any) -> RunConfig:
    return RunConfig(job_id="batch-job", store=str(path), progress=False, **kw)


def online_cost(model: str) -> float:
    usage = Usage(input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS, calls=1, model=model)
    cost = default_prices().price(usage).cost_usd
    assert cost is not None and cost > 0
    return cost


def _batch_run(
    path: Path,
    server: BatchServer,
    provider: str,
    online: list[str],
    *,
    n: int = 10,
    time_budget: float | None = None,
    **options: Any,
) -> Any:
    """One batch run over ``n`` tickets, with a fallback that counts what it is given."""

    def fallback(ticket: dict[str, str], ctx: ItemContext) -> str:
        online.append(ticket["id"])
        return "online"

    return ResumableRun(config(path, time_budget=time_budget)).run_batch(
        request=request_for(provider),
        items=tickets(n),
        client=client_for(provider, server),
        parse=lambda t, response: text_of(response),
        fallback=fallback,
        **{"poll_interval": 0.01, **options},
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_every_item_is_done_through_one_batch_at_half_the_online_price(
    provider: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    path = tmp_path / "ck.jsonl"
    report = ResumableRun(config(path)).run_batch(
        request=request_for(provider),
        items=tickets(),
        client=client_for(provider, batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert (report.done, report.remaining, report.stop_reason) == (10, 0, "completed")
    assert batch_server.created[provider] == 1
    model = OPENAI_MODEL if provider == "openai" else ANTHROPIC_MODEL
    assert report.usage.calls == 10
    assert report.usage.cost_usd == pytest.approx(10 * online_cost(model) / 2)
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job") as session:
        assert session.stats.already_done == 10
    # Recorded as batch calls (an OpenAI body says "default"), so that prices of
    # your own, given later, bill them at the batch rate too.
    records = [r for r in JsonlStore(path).iter_records() if "usage" in r]
    assert {r["usage"]["tier"] for r in records} == {"batch"}
    own = PriceTable({model: {"input": 1.0, "output": 3.0}}, builtin=False, genai_prices=False)
    repriced = Ledger.from_records(records, prices=own).total.cost_usd
    assert repriced == pytest.approx(10 * (INPUT_TOKENS + 3 * OUTPUT_TOKENS) / 1e6 / 2)
    # A second run finds everything done and submits nothing.
    again = ResumableRun(config(path)).run_batch(
        request=request_for(provider),
        items=tickets(),
        client=client_for(provider, batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert (again.done, again.already_done, batch_server.created[provider]) == (0, 10, 1)


def test_anthropic_error_types_decide_whether_an_item_is_tried_again(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    # A result names its error type, not its status: a billing error or a request
    # too large was taken for a server error and tried again in every run.
    types = {
        "ticket 0": "billing_error",
        "ticket 1": "request_too_large",
        "ticket 2": "not_found_error",
        "ticket 3": "overloaded_error",
        "ticket 4": "rate_limit_error",
        "ticket 5": "timeout_error",
    }
    batch_server.outcome = lambda custom_id, body: "error:" + types[ticket_of(body)]
    path = tmp_path / "ck.jsonl"
    report = ResumableRun(config(path)).run_batch(
        request=request_for("anthropic"),
        items=tickets(6),
        client=client_for("anthropic", batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert (report.done, report.failed) == (0, 6)
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job") as session:
        quarantined = {f"t-{n}" for n in range(6) if session.is_quarantined(f"t-{n}")}
    assert quarantined == {"t-0", "t-1", "t-2"}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_errored_requests_fail_and_expired_ones_return_to_the_queue(
    provider: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    outcomes = {"ticket 1": "error", "ticket 2": "transient", "ticket 3": "expire"}
    batch_server.outcome = lambda custom_id, body: outcomes.get(ticket_of(body), "ok")
    path = tmp_path / "ck.db"
    store_url = f"sqlite:///{path}"
    report = ResumableRun(RunConfig(job_id="batch-job", store=store_url, progress=False)).run_batch(
        request=request_for(provider),
        items=tickets(6),
        client=client_for(provider, batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert (report.done, report.failed, report.remaining) == (3, 2, 2)
    assert (report.stop_reason, report.stop_message) == (
        "failures",
        "2 items are left for a later run",
    )
    # The expired request was submitted again, twice, within the run (three rounds).
    assert batch_server.created[provider] == 3
    with AgentResume(SqliteStore(path)).resume_or_start("batch-job") as session:
        assert {i for i in ("t-0", "t-4", "t-5") if session.is_done(i)} == {"t-0", "t-4", "t-5"}
        assert session.is_quarantined("t-1")  # a 400 is permanent
        assert not session.is_quarantined("t-2") and session.attempts("t-2") == 1
        assert session.attempts("t-3") == 0 and not session.is_done("t-3")
    # Each failure keeps the provider's reason, from the response's body or the result.
    errors = {
        r["id"]: r["error"] for r in SqliteStore(path).iter_records() if r.get("status") == "failed"
    }
    assert "invalid_request_error" in errors["t-1"] and ": error" in errors["t-1"]
    assert ": transient" in errors["t-2"]
    # The next run submits only what is left: the transient failure and the expired one
    # (the permanent failure is quarantined).
    batch_server.outcome = lambda custom_id, body: "ok"
    again = ResumableRun(RunConfig(job_id="batch-job", store=store_url, progress=False)).run_batch(
        request=request_for(provider),
        items=tickets(6),
        client=client_for(provider, batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert (again.done, again.remaining, batch_server.created[provider]) == (2, 0, 4)
    assert again.stop_reason == "completed"
    last = list(batch_server.batches.values())[-1]
    assert len(last.requests) == 2


def test_items_a_batch_pass_leaves_go_to_the_fallback(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    # A retryable error: the batch pass ends with `failures`, and the fallback,
    # which runs online, finishes the item; the combined report is `completed`.
    batch_server.outcome = lambda custom_id, body: (
        "transient" if ticket_of(body) == "ticket 2" else "ok"
    )
    online: list[str] = []
    report = _batch_run(tmp_path / "ck.jsonl", batch_server, "openai", online, n=4)
    assert online == ["t-2"]
    assert (report.done, report.failed, report.remaining, report.stop_reason) == (
        4,
        1,
        0,
        "completed",
    )


def test_a_deadline_cancels_the_batch_and_the_rest_runs_online(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    batch_server.polls_to_finish = None  # the batch would never finish by itself
    online: list[str] = []
    report = _batch_run(
        tmp_path / "ck.jsonl",
        batch_server,
        "openai",
        online,
        n=8,
        time_budget=1.5,
        poll_interval=0.05,
        batch_margin=1.0,
    )
    assert len(batch_server.cancelled) == 1
    # The server answered half the requests before the cancel; the rest ran online.
    assert sorted(online) == [f"t-{i}" for i in range(4, 8)]
    assert (report.done, report.remaining, report.stop_reason) == (8, 0, "completed")
    assert report.ended_at - report.started_at < 1.5 + 1.0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_cancel_that_has_not_landed_by_the_deadline_ends_the_run_on_time(
    provider: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    # OpenAI's "cancelling" can last minutes: the run must not wait it out.
    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = None  # the batch would never finish by itself
    batch_server.cancel_lands_after = None  # nor would its cancel land
    online: list[str] = []
    report = _batch_run(
        path,
        batch_server,
        provider,
        online,
        n=8,
        time_budget=1.5,
        poll_interval=0.05,
        batch_margin=1.0,
    )
    assert report.ended_at - report.started_at < 1.5 + 0.5
    assert len(batch_server.cancelled) == 1
    # Its items may still be answered (and paid for) by the batch: none went online.
    assert (report.done, report.remaining, report.stop_reason, online) == (
        0,
        8,
        "time_budget",
        [],
    )
    assert "the next run collects their answers" in report.stop_message
    assert [r["batch"] for r in _batch_records(path)] == ["intent", "submitted"]
    # The cancel lands: the next run collects the half answered and runs the rest.
    batch_server.cancel_lands_after = 0
    batch_server.polls_to_finish = 2
    again = _batch_run(path, batch_server, provider, online, n=8)
    assert (again.done, again.remaining, again.stop_reason, online) == (8, 0, "completed", [])
    assert batch_server.created[provider] == 2  # the other half, in a batch of its own


def test_a_run_too_close_to_its_deadline_submits_no_batch(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    online: list[str] = []
    # Two seconds left, and a margin of five: a batch would be cancelled at once.
    report = _batch_run(
        tmp_path / "ck.jsonl",
        batch_server,
        "openai",
        online,
        n=4,
        time_budget=2.0,
        poll_interval=0.05,
        batch_margin=5.0,
    )
    assert batch_server.created["openai"] == 0
    assert sorted(online) == [f"t-{i}" for i in range(4)]
    assert (report.done, report.remaining) == (4, 0)


def test_arun_batch_with_the_async_clients(batch_server: BatchServer, tmp_path: Path) -> None:
    async def main() -> Any:
        async with openai.AsyncOpenAI(
            base_url=batch_server.url + "/v1", api_key="t", max_retries=0
        ) as client:
            return await ResumableRun(config(tmp_path / "ck.jsonl")).arun_batch(
                request=request_for("openai"),
                items=tickets(5),
                client=client,
                parse=lambda t, response: text_of(response),
                poll_interval=0.01,
            )

    report = asyncio.run(main())
    assert (report.done, report.remaining, batch_server.created["openai"]) == (5, 0, 1)


def test_batches_are_split_to_the_request_limit(batch_server: BatchServer, tmp_path: Path) -> None:
    report = ResumableRun(config(tmp_path / "ck.jsonl")).run_batch(
        request=request_for("anthropic"),
        items=tickets(7),
        client=client_for("anthropic", batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
        max_batch_requests=3,
    )
    assert report.done == 7
    assert [len(b.requests) for b in batch_server.batches.values()] == [3, 3, 1]


def test_a_cost_budget_limits_what_is_submitted(batch_server: BatchServer, tmp_path: Path) -> None:
    report = ResumableRun(config(tmp_path / "ck.jsonl", max_cost_usd=1e-9)).run_batch(
        request=request_for("openai"),
        items=tickets(4),
        client=client_for("openai", batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert batch_server.created["openai"] == 0
    assert (report.done, report.remaining, report.stop_reason) == (0, 4, "cost_budget")


def test_a_job_budget_counts_earlier_runs_before_a_submission(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    path = tmp_path / "ck.jsonl"

    # An earlier online run of the job spent $1 of its $1.0000001 job budget.
    def spend(item: Any, ctx: Any) -> None:
        ctx.record_usage(Usage(input_tokens=10, output_tokens=1, cost_usd=1.0, model="m"))

    ResumableRun(config(path)).run(spend, [{"id": "earlier"}])
    report = ResumableRun(config(path, job_max_cost_usd=1.0000001)).run_batch(
        request=request_for("openai"),
        items=tickets(4),
        client=client_for("openai", batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert batch_server.created["openai"] == 0
    assert (report.done, report.stop_reason) == (0, "cost_budget")


def test_an_unknown_model_under_a_cost_budget_submits_nothing_and_names_the_model(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    report = ResumableRun(config(tmp_path / "ck.jsonl", max_cost_usd=5.0)).run_batch(
        request=lambda t: {
            "model": "house-model-7",
            "messages": [{"role": "user", "content": "x"}],
        },
        items=tickets(2),
        client=client_for("openai", batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert batch_server.created["openai"] == 0
    assert report.stop_reason == "cost_budget" and "house-model-7" in report.stop_message


def test_bad_arguments_are_typed_errors(batch_server: BatchServer, tmp_path: Path) -> None:
    run = ResumableRun(config(tmp_path / "ck.jsonl"))
    with pytest.raises(ArgumentTypeError, match="client"):
        run.run_batch(request=request_for("openai"), items=[], client=object(), parse=print)
    with pytest.raises(ArgumentValueError, match="poll_interval"):
        run.run_batch(
            request=request_for("openai"),
            items=[],
            client=client_for("openai", batch_server),
            parse=print,
            poll_interval=-1,
        )
    async_client = openai.AsyncOpenAI(base_url=batch_server.url + "/v1", api_key="t")
    with pytest.raises(ArgumentTypeError, match="async"):
        run.run_batch(
            request=request_for("openai"), items=tickets(1), client=async_client, parse=print
        )
    asyncio.run(async_client.close())
    # A body every request of the batch would be refused for: nothing is submitted.
    for provider, drop in (("openai", "model"), ("anthropic", "max_tokens")):
        make = request_for(provider)
        with pytest.raises(ArgumentValueError, match=f"item 't-0' a body without '{drop}'"):
            run.run_batch(
                request=lambda t, make=make, drop=drop: {
                    k: v for k, v in make(t).items() if k != drop
                },
                items=tickets(1),
                client=client_for(provider, batch_server),
                parse=print,
            )
    assert batch_server.created == {"openai": 0, "anthropic": 0}
    # Each of those runs wrote its end record on the way out (it was not killed).
    ends = [r["report"] for r in _records(tmp_path / "ck.jsonl") if r.get("run") == "end"]
    assert [e["stop_reason"] for e in ends[-2:]] == ["error", "error"]
    assert ends[-1]["stop_message"].startswith("ArgumentValueError: ")


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ctrl_c_while_polling_records_the_end_and_the_next_run_collects(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = None  # the batch runs for hours
    batch_server.kill_with = signal.SIGINT
    code = _child(path, batch_server, "openai", "poll")
    assert code == -signal.SIGINT  # Python ends by SIGINT after the KeyboardInterrupt
    ends = [r["report"] for r in _records(path) if r.get("run") == "end"]
    assert [(e["stop_reason"], e["stop_message"]) for e in ends] == [
        ("signal", "interrupted (KeyboardInterrupt)")
    ]
    # The batch stayed in flight at the provider, and recorded: the next run collects it.
    batch_server.polls_to_finish = 1
    assert _child(path, batch_server, "openai", None) == 0
    assert batch_server.created["openai"] == 1
    done = [r for r in _records(path) if r.get("status") is None and "id" in r and "ts" in r]
    assert sorted(r["id"] for r in done) == [f"t-{n}" for n in range(6)]


def _child(
    path: Path, server: BatchServer, provider: str, kill_on: str | None, *budget: str
) -> int:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_batch_child.py"), str(path), server.url, provider, *budget],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if kill_on:
        server.kill_on = (kill_on, proc.pid)
    proc.communicate(timeout=60)
    return proc.returncode


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("moment", ["create", "poll"])
def test_a_runner_killed_around_submission_creates_exactly_one_batch(
    provider: str, moment: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    path = tmp_path / "ck.jsonl"
    assert _child(path, batch_server, provider, moment) == -9  # SIGKILLed where asked
    assert batch_server.created[provider] == 1
    records = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = [r["batch"] for r in records if "batch" in r]
    assert kinds == (["intent"] if moment == "create" else ["intent", "submitted"])
    assert _child(path, batch_server, provider, None) == 0
    assert batch_server.created[provider] == 1  # found again, not submitted twice
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job") as session:
        assert session.stats.already_done == 6


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_runner_killed_at_its_second_batch_finds_that_one_not_its_first(
    provider: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    # Six items in two batches of three; killed as the provider created the second.
    # Anthropic's batches hold no key: the job's own first batch (same size, created
    # since the intent) matched too, so the intent was taken for never created, and
    # its three requests were submitted and paid for again.
    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = 3
    batch_server.kill_skip = 1
    assert _child(path, batch_server, provider, "create", "-", "3") == -9
    assert batch_server.created[provider] == 2
    assert _child(path, batch_server, provider, None, "-", "3") == 0
    assert batch_server.created[provider] == 2
    assert sum(len(b.requests) for b in batch_server.batches.values()) == 6
    ended = [r.get("status") for r in _batch_records(path) if r["batch"] == "ended"]
    assert "never_created" not in ended
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job") as session:
        assert session.stats.already_done == 6


def test_an_interrupted_anthropic_submission_that_matches_two_batches_is_not_sent_again(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    # Killed as its batch was created; meanwhile another job on the account made a
    # batch of the same size. Neither can be told for the job's own: its items are
    # not submitted again (that could pay for them twice), and the run says why.
    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = None
    assert _child(path, batch_server, "anthropic", "create") == -9
    other = [{"custom_id": f"o-{n}", "params": {}} for n in range(6)]
    batch_server.create("anthropic", other)
    proc = subprocess.run(
        [sys.executable, str(HERE / "_batch_child.py"), str(path), batch_server.url, "anthropic"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["failures", "0", "6"]
    assert "none can be told for its own" in proc.stderr
    assert batch_server.created["anthropic"] == 2  # the job's and the other's; none more
    assert [r["batch"] for r in _batch_records(path)] == ["intent"]  # still open


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_job_budget_counts_the_batches_a_killed_run_left_in_flight(
    provider: str, batch_server: BatchServer, tmp_path: Path
) -> None:

    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = 3
    # What one of the child's six requests is estimated to cost, from a batch's intent.
    _child(tmp_path / "probe.jsonl", batch_server, provider, None)
    intent = _batch_records(tmp_path / "probe.jsonl")[0]
    each = intent["estimate"] / 6
    assert each > 0
    cap = 4.5 * each  # room for four requests of six
    assert _child(path, batch_server, provider, "poll", str(cap)) == -9  # killed, four in flight
    assert len(_batch_records(path)[0]["ids"]) == 4
    assert _child(path, batch_server, provider, None, str(cap)) == 0
    # The next run polled the four and submitted nothing more: they used the budget.
    assert batch_server.created[provider] == 2  # the probe's batch and the four's
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job") as session:
        assert session.stats.already_done == 4
    spent = Ledger.from_records(JsonlStore(path).iter_records()).total.cost_usd
    assert spent is not None and 0 < spent <= cap


def test_the_batch_command_lists_refreshes_and_cancels(
    batch_server: BatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from agent_resume._cli import main

    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = None
    assert _child(path, batch_server, "openai", "poll") == -9  # a batch left in flight
    assert main(["batch", str(path)]) == 0
    out = capsys.readouterr().out
    batch_id = next(iter(batch_server.batches))
    assert batch_id in out and "in flight" in out and "openai" in out
    monkeypatch.setenv("OPENAI_BASE_URL", batch_server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    assert main(["batch", "--refresh", str(path)]) == 0
    assert "in_progress (total 6, completed 0, failed 0)" in capsys.readouterr().out
    assert main(["batch", "cancel", str(path)]) == 0
    assert f"cancelled openai batch {batch_id}" in capsys.readouterr().out
    assert batch_server.cancelled == [batch_id]
    # The next run records what the cancelled batch had answered and submits the rest.
    batch_server.polls_to_finish = 1
    assert _child(path, batch_server, "openai", None) == 0
    assert batch_server.created["openai"] == 2  # the 3 cancelled requests, submitted again
    assert main(["batch", str(path)]) == 0
    assert capsys.readouterr().out.count("ended (") == 2
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job") as session:
        assert session.stats.already_done == 6
    assert main(["batch", "list", "two", str(path)]) == 2
    assert "batch takes STORE" in capsys.readouterr().err
    assert main(["batch", "cancel"]) == 2  # the store forgotten, not a store named "cancel"
    assert "batch takes STORE or `cancel STORE` (got 'cancel')" in capsys.readouterr().err


def test_a_parse_error_is_a_failed_attempt_that_keeps_its_usage(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    def parse(ticket: dict[str, str], response: Any) -> str:
        if ticket["id"] == "t-1":
            raise KeyError("choices")
        return text_of(response)

    report = ResumableRun(config(tmp_path / "ck.jsonl")).run_batch(
        request=request_for("openai"),
        items=tickets(3),
        client=client_for("openai", batch_server),
        parse=parse,
        poll_interval=0.01,
    )
    assert (report.done, report.failed, report.usage.calls) == (2, 1, 3)
    with AgentResume(JsonlStore(tmp_path / "ck.jsonl")).resume_or_start("batch-job") as session:
        assert session.attempts("t-1") == 1 and not session.is_done("t-1")


def test_a_result_that_cannot_be_stored_is_a_failed_attempt_not_a_dead_job(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    # `parse` returned something that is not JSON. Before, the error escaped
    # while the batch's results were read: the batch never ended, and every
    # next run read it again and died at the same result. Then it was a
    # retryable failure, and every next run paid for the same answer again.
    path = tmp_path / "ck.jsonl"

    def parse(ticket: dict[str, str], response: Any) -> Any:
        return object() if ticket["id"] == "t-1" else text_of(response)

    reports = []
    for _ in range(2):
        store = ResultJsonlStore(str(path))
        reports.append(
            ResumableRun(RunConfig(job_id="batch-job", store=store, progress=False)).run_batch(
                request=request_for("openai"),
                items=tickets(3),
                client=client_for("openai", batch_server),
                parse=parse,
                poll_interval=0.01,
            )
        )
    first, second = reports
    assert (first.done, first.failed, first.quarantined, first.usage.calls) == (2, 1, 1, 3)
    assert (second.done, second.failed, second.usage.calls) == (0, 0, 0)  # nothing sent again
    records = [json.loads(line) for line in path.read_text().splitlines()]
    failures = [r for r in records if r.get("status") == "failed"]
    assert len(failures) == 1 and "JSON" in failures[0]["error"]
    assert failures[0]["retryable"] is False and failures[0]["usage"]["calls"] == 1
    assert [r["batch"] for r in _batch_records(path)].count("ended") == 1


def test_a_request_that_cannot_be_built_is_that_items_failed_attempt(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    path = tmp_path / "ck.jsonl"
    build = request_for("openai")

    def request(ticket: dict[str, str]) -> dict[str, Any]:
        if ticket["id"] == "t-2":
            raise KeyError("text")  # a malformed input row
        return build(ticket)

    for expected_done in (4, 0):
        report = ResumableRun(config(path)).run_batch(
            request=request,
            items=tickets(5),
            client=client_for("openai", batch_server),
            parse=lambda t, response: text_of(response),
            poll_interval=0.01,
        )
        # Not "completed": a failed item is left for a later run, as in an online run.
        assert (report.done, report.failed, report.stop_reason) == (expected_done, 1, "failures")
        assert report.stop_message == "1 item is left for a later run"
    assert batch_server.created["openai"] == 1
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job") as session:
        assert session.attempts("t-2") == 2 and not session.is_done("t-2")
        assert session.stats.already_done == 4


def test_the_default_margin_follows_the_jobs_online_throughput() -> None:
    from agent_resume._run._batch import seconds_per_item

    assert seconds_per_item([], concurrency=5) == 1.0  # 5 s an item over 5 workers
    runs = [
        {"run": "start", "ts": 1},
        {"run": "end", "report": {"duration": 30.0, "done": 10}},
        {"run": "end", "mode": "batch", "report": {"duration": 3600.0, "done": 10}},
        {"run": "end", "report": {"duration": 10.0, "done": 30}},
    ]
    assert seconds_per_item(runs, concurrency=5) == 1.0  # 40 s for 40 items online


def _batch_records(path: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if "batch" in r]


def test_a_batch_the_provider_rejects_stops_the_run_with_the_providers_reason(
    batch_server: BatchServer, tmp_path: Path, capsys: Any
) -> None:
    from agent_resume._cli import main

    path = tmp_path / "ck.jsonl"
    batch_server.reject = [
        {
            "code": "token_limit_exceeded",
            "message": "Enqueued token limit reached for gpt-4o-mini in organization org-x.",
            "param": None,
            "line": None,
        }
    ]
    online: list[str] = []
    report = _batch_run(path, batch_server, "openai", online)
    assert (report.done, report.failed, report.remaining) == (0, 0, 10)
    assert report.stop_reason == "failures"
    assert "token_limit_exceeded: Enqueued token limit reached" in report.stop_message
    assert "none of its 10 requests ran" in report.stop_message
    assert online == []  # not run online at full price: the fallback is for the deadline
    ended = _batch_records(path)[-1]
    assert (ended["batch"], ended["status"]) == ("ended", "failed")
    assert ended["error"].startswith("token_limit_exceeded: ")
    with AgentResume(JsonlStore(path)).resume_or_start("batch-job") as session:
        assert all(session.attempts(f"t-{i}") == 0 for i in range(10))  # nothing ran
    assert main(["batch", str(path)]) == 0
    assert "ended (failed: token_limit_exceeded: Enqueued" in capsys.readouterr().out
    # Once the provider takes the batch, the next run submits the items again.
    batch_server.reject = None
    again = _batch_run(path, batch_server, "openai", online)
    assert (again.done, again.stop_reason, batch_server.created["openai"]) == (10, "completed", 2)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_polls_that_fail_for_a_transient_reason_are_tried_again(
    provider: str, batch_server: BatchServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batch_server.fail["retrieve"] = [503, 500, 429]
    online: list[str] = []
    report = _batch_run(tmp_path / "ck.jsonl", batch_server, provider, online)
    assert (report.done, report.stop_reason, batch_server.created[provider]) == (10, "completed", 1)
    assert online == [] and batch_server.fail["retrieve"] == []
    assert sum("trying again at the next poll" in r.getMessage() for r in caplog.records) == 3


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_poll_on_a_silent_connection_is_cut_and_tried_again(
    provider: str,
    batch_server: BatchServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The SDK would wait 600 s for this poll's answer (and try twice more);
    # the run must not: its calls wait REQUEST_TIMEOUT at most (here shortened).
    from agent_resume._run import _batch_providers

    monkeypatch.setattr(_batch_providers, "REQUEST_TIMEOUT", 0.5)
    batch_server.silent["retrieve"] = 1
    online: list[str] = []
    box: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: box.update(
            report=_batch_run(tmp_path / "ck.jsonl", batch_server, provider, online)
        ),
        daemon=True,
    )
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the run waited on the silent poll"
    assert not batch_server.hush.is_set()  # the silent request was never answered
    report = box["report"]
    assert (report.done, report.stop_reason, batch_server.created[provider]) == (10, "completed", 1)
    assert batch_server.silent["retrieve"] == 0 and online == []
    assert sum("trying again at the next poll" in r.getMessage() for r in caplog.records) == 1


async def _arun_batch_cut(path: Path, client: Any, *, timeout: float, **options: Any) -> None:
    """``arun_batch`` over four tickets under ``asyncio.wait_for``, which must time out."""
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(
            ResumableRun(config(path)).arun_batch(
                request=request_for("openai"),
                items=tickets(4),
                client=client,
                parse=lambda t, response: text_of(response),
                poll_interval=0.05,
                **options,
            ),
            timeout=timeout,
        )


def test_cancelling_arun_batch_stops_its_thread_and_the_next_run_collects(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    # asyncio.wait_for around a batch job: before, the cancelled run's thread
    # polled on (for hours) and asyncio.run never returned, waiting for it.
    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = None  # the batch runs for hours
    client = openai.AsyncOpenAI(base_url=batch_server.url + "/v1", api_key="t", max_retries=0)

    async def job() -> None:
        await _arun_batch_cut(path, client, timeout=1.0)
        # The run had stopped, and recorded its end, when the cancellation
        # reached the caller; the client is still open, and no thread polls it.
        ends = [r["report"] for r in _records(path) if r.get("run") == "end"]
        assert [(e["stop_reason"], e["stop_message"]) for e in ends] == [
            ("signal", "cancelled (CancelledError)")
        ]
        await client.close()

    worker = threading.Thread(target=lambda: asyncio.run(job()), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "asyncio.run waited for the cancelled run's thread"
    polls = batch_server.batches[next(iter(batch_server.batches))].polls
    batch_server.polls_to_finish = polls + 1  # the provider finishes the batch
    again = _batch_run(path, batch_server, "openai", [], n=4)
    assert (again.done, again.stop_reason, batch_server.created["openai"]) == (4, "completed", 1)


def test_cancelling_arun_batch_while_it_submits_stops_before_the_next_batch(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    # Four batches of one request, each upload and create answered after
    # 0.4 s: the cancellation at 1 s comes while the first or second is sent.
    path = tmp_path / "ck.jsonl"
    batch_server.delay = 0.4
    client = openai.AsyncOpenAI(base_url=batch_server.url + "/v1", api_key="t", max_retries=0)

    async def job() -> None:
        await _arun_batch_cut(path, client, timeout=1.0, max_batch_requests=1)
        await client.close()

    asyncio.run(job())
    made = batch_server.created["openai"]
    assert 1 <= made < 4  # the batches not yet sent were not sent
    ends = [r["report"] for r in _records(path) if r.get("run") == "end"]
    assert [e["stop_reason"] for e in ends] == ["signal"]
    batch_server.delay = 0.0
    again = _batch_run(path, batch_server, "openai", [], n=4, max_batch_requests=1)
    assert (again.done, again.stop_reason) == (4, "completed")
    assert batch_server.created["openai"] == 4  # each request in exactly one batch


def test_a_client_with_a_shorter_timeout_keeps_it() -> None:
    from agent_resume._run._batch_providers import REQUEST_TIMEOUT, adapter_for

    for timeout, kept in ((5.0, 5.0), (None, REQUEST_TIMEOUT), (600.0, REQUEST_TIMEOUT)):
        options = {} if timeout is None else {"timeout": timeout}
        client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="t", **options)
        adapter = adapter_for(client, None)
        assert adapter.client.timeout == kept, timeout
        client.close()


def test_a_provider_that_stays_down_stops_the_run_and_the_next_run_polls_its_batch(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    from agent_resume._run._batch import POLL_FAILURES

    path = tmp_path / "ck.jsonl"
    batch_server.fail["retrieve"] = [503] * POLL_FAILURES
    online: list[str] = []
    report = _batch_run(path, batch_server, "openai", online)
    assert (report.done, report.remaining, report.stop_reason) == (0, 10, "failures")
    assert report.stop_message.startswith("polling batch batch_")
    assert "InternalServerError" in report.stop_message and "next run polls" in report.stop_message
    assert online == []  # the batch may still answer: nothing is paid for twice
    assert [r["batch"] for r in _batch_records(path)] == ["intent", "submitted"]
    runs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["run"] for r in runs if "run" in r] == ["start", "end"]  # ended, not killed
    again = _batch_run(path, batch_server, "openai", online)
    assert (again.done, again.stop_reason, batch_server.created["openai"]) == (10, "completed", 1)
    assert online == []


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_key_refused_while_polling_stops_the_run_at_once(
    provider: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    path = tmp_path / "ck.jsonl"
    batch_server.fail["retrieve"] = [401]
    online: list[str] = []
    report = _batch_run(path, batch_server, provider, online)
    assert (report.done, report.stop_reason, online) == (0, "failures", [])
    assert "AuthenticationError" in report.stop_message
    assert "fix the API key or its permissions and run again" in report.stop_message
    again = _batch_run(path, batch_server, provider, online)
    assert (again.done, batch_server.created[provider]) == (10, 1)


@pytest.mark.parametrize(
    ("provider", "route"),
    [
        ("openai", "files.create"),
        ("openai", "batches.create"),
        ("anthropic", "batches.create"),
    ],
)
def test_a_submission_that_fails_is_found_or_made_once_by_the_next_run(
    provider: str, route: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    # `files.create` fails before anything exists; `batches.create` creates the
    # batch and then the answer is lost: either way the next run ends with one batch.
    path = tmp_path / "ck.jsonl"
    batch_server.fail[route] = [500]
    online: list[str] = []
    report = _batch_run(path, batch_server, provider, online)
    assert (report.done, report.remaining, report.stop_reason) == (0, 10, "failures")
    assert report.stop_message.startswith("submitting batch ")
    assert online == []
    assert [r["batch"] for r in _batch_records(path)] == ["intent"]
    created = batch_server.created[provider]
    assert created == (0 if route == "files.create" else 1)
    again = _batch_run(path, batch_server, provider, online)
    assert (again.done, again.stop_reason, online) == (10, "completed", [])
    assert batch_server.created[provider] == 1
    kinds = [r["batch"] for r in _batch_records(path)]
    if route == "files.create":  # never created: closed, then submitted afresh
        assert kinds == ["intent", "ended", "intent", "submitted", "ended"]
    else:  # found by the next run and polled, not submitted again
        assert kinds == ["intent", "submitted", "ended"]


def test_a_cancel_that_fails_at_the_deadline_runs_nothing_online(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = None  # the batch would never finish by itself
    batch_server.fail["cancel"] = [500]
    online: list[str] = []
    report = _batch_run(
        path,
        batch_server,
        "openai",
        online,
        n=4,
        time_budget=1.0,
        poll_interval=0.05,
        batch_margin=0.5,
    )
    # The batch still runs, so nothing goes online.
    assert (report.stop_reason, report.remaining, online) == ("failures", 4, [])
    assert report.stop_message.startswith("cancelling batch batch_")
    assert batch_server.cancelled == []
    assert [r["batch"] for r in _batch_records(path)] == ["intent", "submitted"]


def test_a_failure_after_a_budget_stop_runs_nothing_online(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    online: list[str] = []
    _batch_run(tmp_path / "probe.jsonl", batch_server, "openai", online, n=4)
    each = _batch_records(tmp_path / "probe.jsonl")[0]["estimate"] / 4
    path = tmp_path / "ck.jsonl"
    batch_server.fail["retrieve"] = [401]
    report = ResumableRun(config(path, max_cost_usd=2.5 * each)).run_batch(
        request=request_for("openai"),
        items=tickets(4),
        client=client_for("openai", batch_server),
        parse=lambda t, response: text_of(response),
        fallback=lambda t, ctx: online.append(t["id"]),
        poll_interval=0.01,
    )
    # The budget stopped the submission after two requests; then the provider
    # failed. The two are still in a live batch: neither they nor the rest go online.
    assert len(_batch_records(path)[0]["ids"]) == 2
    assert (report.stop_reason, report.remaining, online) == ("failures", 4, [])


def test_a_lookup_that_fails_submits_nothing(batch_server: BatchServer, tmp_path: Path) -> None:
    path = tmp_path / "ck.jsonl"
    batch_server.fail["files.create"] = [500]
    online: list[str] = []
    _batch_run(path, batch_server, "openai", online)
    batch_server.fail["list"] = [401]  # the next run cannot look for the batch
    report = _batch_run(path, batch_server, "openai", online)
    assert (report.stop_reason, batch_server.created["openai"], online) == ("failures", 0, [])
    assert report.stop_message.startswith("looking for batch ")
    assert [r["batch"] for r in _batch_records(path)] == ["intent"]


def test_a_file_name_given_as_the_items_is_refused_before_anything_is_sent(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    run = ResumableRun(config(tmp_path / "ck.jsonl"))
    kwargs: dict[str, Any] = {
        "request": request_for("openai"),
        "items": "tickets.jsonl",
        "client": client_for("openai", batch_server),
        "parse": lambda t, response: text_of(response),
    }
    with pytest.raises(ArgumentTypeError, match="`items` must be a collection of items"):
        run.run_batch(**kwargs)
    kwargs["client"] = openai.AsyncOpenAI(base_url=batch_server.url + "/v1", api_key="test")
    with pytest.raises(ArgumentTypeError, match="`items` must be a collection of items"):
        asyncio.run(run.arun_batch(**kwargs))
    assert batch_server.files == {} and batch_server.batches == {}
    assert not (tmp_path / "ck.jsonl").exists()


@pytest.mark.parametrize(
    "bad",
    [{"ids": {"r0": "a"}}, {"ids": [1, 2], "ts": 1}, {"ids": "abc", "ts": 1}, {"ts": "x"}],
)
def test_a_malformed_batch_record_is_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: dict[str, Any]
) -> None:
    # An edited or damaged record: `agent-resume batch` exited 70 (KeyError: 'ts').
    from agent_resume._cli import main

    path = tmp_path / "ck.jsonl"
    with AgentResume(path).resume_or_start("b") as session:
        session.mark_done("x")
    good = {"batch": "intent", "key": "k2", "provider": "openai", "ids": {"r0": "y"}, "ts": 5}
    with path.open("a") as f:
        f.write(json.dumps({"batch": "intent", "key": "k1", "provider": "openai", **bad}) + "\n")
        f.write(json.dumps(good) + "\n")
    assert main(["batch", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "k2" in out and "k1" not in out
    assert "a batch record is malformed and skipped (key 'k1'" in err


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_batch_read_again_after_a_stop_records_each_answer_once(
    provider: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    # The first run stops while reading the results (Ctrl-C in `parse` at t-2): the
    # batch is still open, and the next run reads all its results again. t-0's paid
    # answer, refused by `parse`, was recorded then: not again (a second attempt, and
    # its cost counted twice).
    path = tmp_path / "ck.jsonl"
    stop = {"t-2"}

    def parse(ticket: dict[str, Any], response: Any) -> str:
        if ticket["id"] == "t-0":
            raise ValueError("unreadable answer")
        if ticket["id"] in stop:
            stop.clear()
            raise KeyboardInterrupt
        return text_of(response)

    def run() -> Any:
        return ResumableRun(RunConfig(job_id="j", store=path, progress=False)).run_batch(
            request=request_for(provider),
            items=tickets(4),
            client=client_for(provider, batch_server),
            parse=parse,
            poll_interval=0.01,
        )

    with pytest.raises(KeyboardInterrupt):
        run()
    report = run()
    assert batch_server.created[provider] == 1
    assert (report.done, report.failed) == (2, 0)  # t-2, t-3 (t-1 was done before the stop)
    found = list(JsonlStore(path).iter_records())
    failures = [r for r in found if r.get("status") == "failed"]
    assert [(r["id"], r["attempt"]) for r in failures] == [("t-0", 1)]
    # Four answers were paid for, at the batch rate: four calls in the job's total.
    assert Ledger.from_records(found).total.calls == 4


def test_a_repeated_item_id_is_parsed_with_the_item_that_was_submitted(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    items = [{"id": "a", "text": "one"}, {"id": "a", "text": "two"}]
    seen: list[str] = []

    def parse(item: dict[str, Any], response: Any) -> str:
        seen.append(item["text"])
        return str(item["text"])

    with pytest.warns(DuplicateItemWarning):
        ResumableRun(RunConfig(job_id="d", store=tmp_path / "d.jsonl", progress=False)).run_batch(
            request=lambda t: {
                "model": "gpt-4o-mini",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": t["text"]}],
            },
            items=items,
            client=client_for("openai", batch_server),
            parse=parse,
            poll_interval=0.01,
        )
    batches = batch_server.batches.values()
    sent = [r["body"]["messages"][0]["content"] for b in batches for r in b.requests]
    assert sent == ["one"] and seen == ["one"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_poll_on_a_silent_connection_ends_by_the_cut_and_the_rest_runs_online(
    provider: str, batch_server: BatchServer, tmp_path: Path
) -> None:
    # A production client (the SDK's two retries): its polls wait 60 s each on a
    # silent connection, three tries, past the run's deadline, and the fallback
    # never ran. Each try now waits its share of the time left before the cut.
    batch_server.polls_to_finish = None
    polls = [0]
    poll = batch_server.poll

    def going_silent(batch: Any) -> None:
        polls[0] += 1
        if polls[0] == 2:
            batch_server.silent["retrieve"] = 3  # the next three polls get no answer
        poll(batch)

    batch_server.poll = going_silent  # type: ignore[method-assign]
    if provider == "openai":
        client: Any = openai.OpenAI(base_url=batch_server.url + "/v1", api_key="test")
    else:
        client = anthropic.Anthropic(base_url=batch_server.url, api_key="test")
    _CLIENTS.append(client)
    online: list[str] = []
    report = ResumableRun(config(tmp_path / "ck.jsonl", time_budget=12)).run_batch(
        request=request_for(provider),
        items=tickets(4),
        client=client,
        parse=lambda t, response: text_of(response),
        fallback=lambda t, ctx: online.append(t["id"]) or "online",
        poll_interval=0.2,
        batch_margin=4,
    )
    # The batch was cancelled at the cut (answering what it had), the rest went online.
    assert online and set(online) <= {f"t-{n}" for n in range(4)}
    assert (report.done, report.remaining) == (4, 0)


def test_items_a_cost_budget_left_out_stay_for_a_later_run_not_the_fallback(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    online: list[str] = []
    _batch_run(tmp_path / "probe.jsonl", batch_server, "openai", online, n=4)
    each = _batch_records(tmp_path / "probe.jsonl")[0]["estimate"] / 4
    online.clear()
    path = tmp_path / "ck.jsonl"
    report = ResumableRun(config(path, max_cost_usd=2.5 * each)).run_batch(
        request=request_for("openai"),
        items=tickets(4),
        client=client_for("openai", batch_server),
        parse=lambda t, response: text_of(response),
        fallback=lambda t, ctx: online.append(t["id"]) or "online",
        poll_interval=0.01,
    )
    # Two fit in the budget; the other two ran online at twice the price before.
    assert (report.done, report.remaining, report.stop_reason) == (2, 2, "cost_budget")
    assert online == []


def test_a_request_without_max_tokens_is_estimated_at_a_real_output_under_a_budget(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    # Estimated with no output at all, 12 requests went in under a budget for 7.
    def request(ticket: dict[str, str]) -> dict[str, Any]:
        return {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": ticket["text"]}]}

    report = ResumableRun(config(tmp_path / "ck.jsonl", max_cost_usd=0.0001)).run_batch(
        request=request,
        items=tickets(20),
        client=client_for("openai", batch_server),
        parse=lambda t, response: text_of(response),
        poll_interval=0.01,
    )
    assert report.stop_reason == "cost_budget"
    assert "no max_tokens, so its output is estimated at 1,000 tokens" in report.stop_message
    assert report.usage.cost_usd is not None and report.usage.cost_usd <= 0.0001


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_batch_cancelled_from_outside_while_the_run_polls_it_is_not_sent_again(
    provider: str, batch_server: BatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `agent-resume batch cancel` to stop spending, while the run polls: the run
    # submitted the unanswered requests again at once, as if nothing had happened.
    import time

    from agent_resume._cli import main

    path = tmp_path / "ck.jsonl"
    batch_server.polls_to_finish = 200
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_batch_child.py"), str(path), batch_server.url, provider],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not any(b.polls for b in batch_server.batches.values()):  # polled: running
        time.sleep(0.05)
    for name, value in (("OPENAI_BASE_URL", batch_server.url + "/v1"), ("OPENAI_API_KEY", "t")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", batch_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "t")
    assert main(["batch", "cancel", str(path)]) == 0
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split()[0] == "failures"
    assert batch_server.created[provider] == 1  # nothing submitted again


def test_a_second_run_batch_on_a_shared_job_is_refused_while_the_first_is_alive(
    batch_server: BatchServer, tmp_path: Path
) -> None:
    # B started while A was uploading (its intent recorded, no batch ID yet): B took
    # A's intent for never created and submitted the same items again.
    import time

    target = f"sqlite:///{tmp_path / 'job.db'}"
    batch_server.delay = 2.0  # each upload and create takes 2 s
    child = [sys.executable, str(HERE / "_batch_child.py"), target, batch_server.url, "openai"]
    first = subprocess.Popen(child, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not [r for r in SqliteStore(tmp_path / "job.db").iter_records() if "batch" in r]:
        time.sleep(0.05)  # A's intent is recorded: its upload is under way
    second = subprocess.run(child, capture_output=True, text=True, timeout=60)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert second.returncode != 0 and "JobLockedError" in second.stderr
    assert batch_server.created["openai"] == 1
    # Once A has ended, the job is free again.
    assert subprocess.run(child, capture_output=True, timeout=60).returncode == 0
