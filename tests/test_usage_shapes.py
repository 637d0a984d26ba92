"""Response shapes `usage_from` reads besides the plain ones, and model names it prices.

OpenAI and Anthropic objects come from real SDK clients talking to the
loopback server, or from the SDKs' own classes; Bedrock and Ollama answers
are the JSON their APIs send (boto3 and the Ollama client return it as dicts).
"""

from __future__ import annotations

import sys
import types
import warnings
from typing import Any

import anthropic
import anthropic.types as anthropic_types
import openai
import pytest

from agent_resume import (
    ArgumentValueError,
    PriceSourceWarning,
    PriceTable,
    UnknownModelWarning,
    usage_from,
)
from llm_server import (
    LLMServer,
    Reply,
    close_clients_fixture,  # noqa: F401
    closed_after_test,
    llm_server_fixture,  # noqa: F401
)

BUILTIN = PriceTable(genai_prices=False)
MESSAGES = [{"role": "user", "content": "hi"}]


def openai_client(server: LLMServer) -> openai.OpenAI:
    return closed_after_test(
        openai.OpenAI(base_url=server.openai_url, api_key="test", max_retries=0)
    )


def test_with_raw_response_is_parsed(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(input_tokens=1_000, output_tokens=100)
    raw = openai_client(llm_server).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    usage = usage_from(raw, prices=BUILTIN)
    assert (usage.input_tokens, usage.output_tokens, usage.model) == (1_000, 100, "gpt-4o-mini")
    assert usage.cost_usd == pytest.approx((1_000 * 0.15 + 100 * 0.60) / 1e6)
    client = closed_after_test(
        anthropic.Anthropic(base_url=llm_server.url, api_key="test", max_retries=0)
    )
    raw_message = client.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
    )
    assert usage_from(raw_message, prices=BUILTIN).cost_usd == pytest.approx(
        (1_000 * 1.00 + 100 * 5.00) / 1e6
    )


def test_responses_completed_event_from_a_real_stream(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(input_tokens=300, output_tokens=40)
    stream = openai_client(llm_server).responses.create(
        model="gpt-4.1-nano", input="hi", stream=True
    )
    events = list(stream)
    completed = [event for event in events if event.type == "response.completed"]
    assert len(completed) == 1
    usage = usage_from(completed[0], prices=BUILTIN)
    assert (usage.input_tokens, usage.output_tokens) == (300, 40)
    assert usage.cost_usd == pytest.approx((300 * 0.10 + 40 * 0.40) / 1e6)


def test_failed_batch_results_carry_no_usage() -> None:
    errored = anthropic_types.messages.MessageBatchIndividualResponse.model_validate(
        {
            "custom_id": "item-2",
            "result": {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "busy"},
                },
            },
        }
    )
    with pytest.raises(ArgumentValueError, match="failed batch request"):
        usage_from(errored)
    line = {
        "id": "batch_req_2",
        "custom_id": "item-2",
        "response": None,
        "error": {"code": "server_error", "message": "x"},
    }
    with pytest.raises(ArgumentValueError, match="failed batch request"):
        usage_from(line)


def test_bedrock_converse_response_and_stream_metadata() -> None:
    converse = {
        "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 1_000,
            "outputTokens": 200,
            "totalTokens": 4_200,
            "cacheReadInputTokens": 2_000,
            "cacheWriteInputTokens": 1_000,
        },
        "metrics": {"latencyMs": 500},
    }
    model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    usage = usage_from(converse, prices=BUILTIN, model=model)
    # inputTokens leaves out the cache, as Anthropic's input_tokens does.
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        4_000,
        2_000,
        1_000,
    )
    assert usage.model == model
    assert usage.cost_usd == pytest.approx(
        (1_000 * 3 + 2_000 * 0.30 + 1_000 * 3.75 + 200 * 15) / 1e6
    )
    event = {"metadata": {"usage": converse["usage"], "metrics": {"latencyMs": 500}}}
    assert usage_from(event, prices=BUILTIN, model=model) == usage


def test_ollama_native_fields() -> None:
    body = {
        "model": "house-llama",
        "created_at": "2026-11-27T00:00:00Z",
        "message": {"role": "assistant", "content": "ok"},
        "done": True,
        "prompt_eval_count": 26,
        "eval_count": 290,
    }
    table = PriceTable({"house-llama": {"input": 0.0, "output": 0.0}}, genai_prices=False)
    usage = usage_from(body, prices=table)
    assert (usage.input_tokens, usage.output_tokens, usage.cost_usd) == (26, 290, 0.0)


def test_litellm_response_cost_is_used() -> None:
    class ModelResponse(dict[str, Any]):
        """The part of LiteLLM's ModelResponse that matters: OpenAI-shaped, with _hidden_params."""

    response = ModelResponse(
        model="claude-sonnet-4-5",
        usage={"prompt_tokens": 100, "completion_tokens": 10},
    )
    response._hidden_params = {"response_cost": 0.0123}  # type: ignore[attr-defined]
    usage = usage_from(response, prices=BUILTIN)
    assert usage.cost_usd == pytest.approx(0.0123)
    assert usage.price_source == "litellm"
    # Your own price still wins.
    own = PriceTable({"claude-sonnet-4-5": {"input": 1.0, "output": 1.0}}, genai_prices=False)
    assert usage_from(response, prices=own).cost_usd == pytest.approx(110 / 1e6)


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("apac.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            "claude-3-haiku",
        ),
        (
            "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro",
            "gemini-2.5-pro",
        ),
        ("publishers/anthropic/models/claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("openrouter/anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
        ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
        ("ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123", "ft:gpt-4o-mini"),
        ("ft:gpt-4.1-nano-2025-04-14:my-org::abc123", "ft:gpt-4.1-nano"),
        ("ft:gpt-5-mini-2025-08-07:my-org::abc123", "gpt-5-mini"),  # no fine-tuned rate
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash-preview-05-20"),
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
    ],
)
def test_model_names_are_priced_from_the_builtin_table(model: str, priced_as: str) -> None:
    usage = usage_from(
        {"model": model, "usage": {"prompt_tokens": 1_000, "completion_tokens": 100}},
        prices=BUILTIN,
    )
    assert usage.priced_as == priced_as
    price = BUILTIN.lookup(priced_as)
    assert price is not None
    assert usage.cost_usd == pytest.approx(price.cost(usage))


@pytest.mark.parametrize("genai", [False, True])
def test_a_fine_tune_is_billed_at_its_fine_tuned_rate(genai: bool) -> None:
    # OpenAI bills a gpt-4o-mini fine-tune at twice the base rate ($0.30 and
    # $1.20 per million); before, it was priced as its base, half the bill.
    # With genai-prices installed, its `ft:` models give the same rate.
    model = "ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123"
    response = {
        "model": model,
        "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000},
    }
    usage = usage_from(response, prices=PriceTable(genai_prices=genai))
    assert usage.cost_usd == pytest.approx(1.50)
    assert usage.priced_as == "ft:gpt-4o-mini"
    if genai:
        assert usage.price_source.startswith("genai-prices")
    # A gpt-4.1-mini fine-tune, which genai-prices 0.2.3 does not know: the built-in rate.
    mini = usage_from(
        {**response, "model": "ft:gpt-4.1-mini-2025-04-14:my-org::x1"},
        prices=PriceTable(genai_prices=genai),
    )
    assert (mini.cost_usd, mini.priced_as) == (pytest.approx(4.00), "ft:gpt-4.1-mini")


def test_your_own_price_for_a_fine_tune_or_its_base_comes_first() -> None:
    model = "ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123"
    response = {"model": model, "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0}}
    for name in (model, "ft:gpt-4o-mini", "gpt-4o-mini"):
        own = PriceTable({name: {"input": 0.25, "output": 1.00}})
        usage = usage_from(response, prices=own)
        assert (usage.cost_usd, usage.price_source) == (pytest.approx(0.25), "own prices"), name


def test_a_failing_price_source_does_not_lose_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("genai_prices")
    broken.__version__ = "9.9.9"  # type: ignore[attr-defined]

    def explode(*args: object, **kwargs: object) -> object:
        raise RuntimeError("data file is corrupt")

    broken.calc_price = explode  # type: ignore[attr-defined]
    broken.extract_usage = explode  # type: ignore[attr-defined]
    broken.Usage = dict  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "genai_prices", broken)
    response = {
        "model": "gpt-4o-never-seen-xyz",
        "usage": {"prompt_tokens": 10, "completion_tokens": 1},
    }
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        usage = usage_from(response, prices=PriceTable())
    assert [type(w.message) for w in record] == [PriceSourceWarning, UnknownModelWarning]
    assert "data file is corrupt" in str(record[0].message)
    assert record[0].filename == __file__
    assert (usage.input_tokens, usage.cost_usd) == (10, None)
    # A model the built-in table knows is still priced from it.
    with pytest.warns(PriceSourceWarning, match="'gpt-4o'"):
        known = usage_from({**response, "model": "gpt-4o"}, prices=PriceTable())
    assert known.cost_usd == pytest.approx((10 * 2.50 + 1 * 10.00) / 1e6)
    assert known.price_source is not None
    assert known.price_source.startswith("built-in")


def test_unknown_model_warning_points_at_the_caller_and_names_what_is_installed() -> None:
    response = {
        "model": "house-model-unpriced",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    with pytest.warns(UnknownModelWarning) as record:
        usage_from(response, prices=PriceTable())
    assert record[0].filename == __file__
    text = str(record[0].message)
    assert "--prices" in text
    try:
        import genai_prices  # noqa: F401
    except ImportError:
        assert "agent-resume[prices]" in text
    else:
        assert "agent-resume[prices]" not in text
        assert "does not know it either" in text


def test_unknown_model_warning_inside_a_run_points_at_process() -> None:
    from agent_resume import InMemoryStore, ResumableRun, RunConfig

    def process(item: str, ctx: Any) -> str:
        ctx.record_usage(
            {"model": "house-model-in-a-run", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
        )
        return item

    config = RunConfig(job_id="warn-line", store=InMemoryStore(), progress=False)
    with pytest.warns(UnknownModelWarning, match="house-model-in-a-run") as record:
        ResumableRun(config).run(process, ["a"])
    assert record[0].filename == __file__
    assert record[0].lineno == process.__code__.co_firstlineno + 1
