from __future__ import annotations

import dataclasses
import json
import math
import urllib.request
import warnings
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage

from agent_resume._accounting._prices import PriceTable, UnknownModelWarning
from agent_resume._accounting._responses import usage_from
from agent_resume._accounting._usage import MIXED_MODEL, Usage
from agent_resume._errors import AgentResumeError, ArgumentTypeError, ArgumentValueError
from llm_server import (
    LLMServer,
    Reply,
    close_clients_fixture,  # noqa: F401
    closed_after_test,
    llm_server_fixture,  # noqa: F401
)

MESSAGES = [{"role": "user", "content": "hi"}]


def unpriced(usage: Usage) -> Usage:
    """The usage without the names of its price entry and source, to compare counts and cost."""
    return dataclasses.replace(usage, priced_as=None, price_source=None)


def openai_client(server: LLMServer) -> openai.OpenAI:
    return closed_after_test(
        openai.OpenAI(base_url=server.openai_url, api_key="test", max_retries=0)
    )


def anthropic_client(server: LLMServer) -> anthropic.Anthropic:
    return closed_after_test(
        anthropic.Anthropic(base_url=server.url, api_key="test", max_retries=0)
    )


def gemini_client(server: LLMServer) -> genai.Client:
    return closed_after_test(
        genai.Client(api_key="test", http_options=genai_types.HttpOptions(base_url=server.url))
    )


# ---- the Usage value -----------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "calls",
    ],
)
def test_negative_count_is_a_value_error_naming_the_field(field: str) -> None:
    with pytest.raises(ArgumentValueError, match=f"`{field}` must be at least 0") as info:
        Usage(**{field: -1})
    assert info.value.parameter == field
    assert info.value.value == -1


@pytest.mark.parametrize("value", [1.5, "3", True, None])
def test_non_int_count_is_a_type_error(value: object) -> None:
    with pytest.raises(ArgumentTypeError) as info:
        Usage(input_tokens=value)  # type: ignore[arg-type]
    assert info.value.parameter == "input_tokens"
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("cost", [-0.01, math.nan, math.inf])
def test_bad_cost_is_a_value_error(cost: float) -> None:
    with pytest.raises(ArgumentValueError, match="cost_usd"):
        Usage(cost_usd=cost)


def test_int_cost_is_stored_as_float() -> None:
    usage = Usage(cost_usd=1)
    assert type(usage.cost_usd) is float
    assert usage == Usage(cost_usd=1.0)


def test_model_must_be_a_string() -> None:
    with pytest.raises(ArgumentTypeError, match="model"):
        Usage(model=4)  # type: ignore[arg-type]


def test_usage_is_frozen() -> None:
    usage = Usage(input_tokens=1)
    with pytest.raises(AttributeError):
        usage.input_tokens = 2  # type: ignore[misc]


def test_addition_adds_every_count_and_known_costs() -> None:
    a = Usage(
        input_tokens=10,
        output_tokens=5,
        cache_read_tokens=4,
        cache_write_tokens=3,
        reasoning_tokens=2,
        calls=1,
        cost_usd=0.5,
        model="gpt-4o",
    )
    b = Usage(
        input_tokens=1,
        output_tokens=2,
        cache_read_tokens=0,
        cache_write_tokens=1,
        reasoning_tokens=1,
        calls=2,
        cost_usd=0.25,
        model="gpt-4o",
    )
    assert a + b == Usage(
        input_tokens=11,
        output_tokens=7,
        cache_read_tokens=4,
        cache_write_tokens=4,
        reasoning_tokens=3,
        calls=3,
        cost_usd=0.75,
        model="gpt-4o",
    )
    assert (a + b).total_tokens == 18


def test_known_plus_unknown_cost_is_unknown() -> None:
    known = Usage(input_tokens=1, calls=1, cost_usd=1.0)
    unknown = Usage(input_tokens=1, calls=1)
    assert (known + unknown).cost_usd is None
    assert (unknown + known).cost_usd is None


def test_different_models_sum_to_mixed() -> None:
    total = Usage(calls=1, model="gpt-4o") + Usage(calls=1, model="claude-3-haiku")
    assert total.model == MIXED_MODEL == "mixed"
    assert (total + Usage(calls=1, model="gpt-4o")).model == "mixed"


def test_empty_usage_does_not_poison_a_sum_of_costs() -> None:
    usages = [Usage(calls=1, cost_usd=0.25), Usage(calls=1, cost_usd=0.5)]
    assert sum(usages, Usage()) == Usage(calls=2, cost_usd=0.75)
    assert sum(usages) == Usage(calls=2, cost_usd=0.75)
    assert Usage().is_empty()
    assert not Usage(cost_usd=0.0).is_empty()


def test_adding_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Usage() + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        1 + Usage()  # type: ignore[operator]


def test_to_dict_is_compact_and_stable() -> None:
    assert Usage().to_dict() == {}
    usage = Usage(
        input_tokens=120,
        output_tokens=40,
        cache_read_tokens=100,
        reasoning_tokens=8,
        calls=1,
        cost_usd=0.0012,
        model="gpt-4o",
    )
    data = usage.to_dict()
    assert data == {
        "in": 120,
        "out": 40,
        "cache_read": 100,
        "reasoning": 8,
        "calls": 1,
        "cost": 0.0012,
        "model": "gpt-4o",
    }
    assert list(data) == ["in", "out", "cache_read", "reasoning", "calls", "cost", "model"]
    assert Usage(cost_usd=0.0).to_dict() == {"cost": 0.0}


def test_from_dict_ignores_unknown_keys_and_validates() -> None:
    assert Usage.from_dict({"in": 3, "future": [1]}) == Usage(input_tokens=3)
    with pytest.raises(ArgumentValueError, match="output_tokens"):
        Usage.from_dict({"out": -3})
    with pytest.raises(ArgumentTypeError, match="mapping"):
        Usage.from_dict([("in", 3)])  # type: ignore[arg-type]


counts = st.integers(min_value=0, max_value=10**12)
usages = st.builds(
    Usage,
    input_tokens=counts,
    output_tokens=counts,
    cache_read_tokens=counts,
    cache_write_tokens=counts,
    reasoning_tokens=counts,
    calls=st.integers(min_value=0, max_value=1000),
    cost_usd=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
    model=st.none() | st.sampled_from(["gpt-4o", "claude-3-haiku", "mixed", "é/模型"]),
) | st.just(Usage())


def _same(a: Usage, b: Usage) -> bool:
    if (a.cost_usd is None) != (b.cost_usd is None):
        return False
    if a.cost_usd is not None and b.cost_usd is not None:
        # Float addition is associative only up to rounding.
        if not math.isclose(a.cost_usd, b.cost_usd, rel_tol=1e-9, abs_tol=1e-12):
            return False
        b = Usage.from_dict({**b.to_dict(), "cost": a.cost_usd})
    return a == b


@given(usages, usages, usages)
def test_addition_is_associative(a: Usage, b: Usage, c: Usage) -> None:
    assert _same((a + b) + c, a + (b + c))


@given(usages)
def test_empty_usage_is_the_identity(u: Usage) -> None:
    assert Usage() + u == u
    assert u + Usage() == u
    assert sum([u]) == u


@given(usages)
def test_to_dict_round_trips_through_json(u: Usage) -> None:
    line = json.dumps(u.to_dict(), allow_nan=False)
    assert Usage.from_dict(json.loads(line)) == u


# ---- usage_from with the real SDKs ------------------------------------------------


def test_openai_chat_completion_with_cached_and_reasoning_tokens(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(
        input_tokens=1200, output_tokens=300, cache_read_tokens=1000, reasoning_tokens=20
    )
    response = openai_client(llm_server).chat.completions.create(
        model="gpt-4o-2024-08-06", messages=MESSAGES
    )
    usage = usage_from(response)
    assert usage.input_tokens == 1200
    assert usage.output_tokens == 300
    assert usage.cache_read_tokens == 1000
    assert usage.cache_write_tokens == 0
    assert usage.reasoning_tokens == 20
    assert usage.calls == 1
    assert usage.model == "gpt-4o-2024-08-06"
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens;
    # the 1000 cached tokens are billed once, at the cached price.
    assert usage.cost_usd == pytest.approx((200 * 2.50 + 1000 * 1.25 + 300 * 10.00) / 1e6)
    # The dict form of the same response reads the same.
    assert usage_from(response.model_dump()) == usage
    # The bare usage part reads the same counts, but has no model to price.
    with pytest.warns(UnknownModelWarning, match="without a model name"):
        bare = usage_from(response.usage, prices=PriceTable())
    assert bare == Usage.from_dict(
        {**usage.to_dict(), "model": None, "cost": None, "priced_as": None, "price_source": None}
    )


def test_openai_stream_last_chunk_carries_the_usage(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(text="one two three", input_tokens=50, output_tokens=7)
    stream = openai_client(llm_server).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    usage = usage_from(chunks[-1])
    assert (usage.input_tokens, usage.output_tokens, usage.model) == (50, 7, "gpt-4o-mini")
    assert usage.cost_usd == pytest.approx((50 * 0.15 + 7 * 0.60) / 1e6)
    with pytest.raises(ArgumentValueError, match="include_usage"):
        usage_from(chunks[0])


def test_openai_responses_with_reasoning(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(
        input_tokens=500, output_tokens=800, cache_read_tokens=100, reasoning_tokens=600
    )
    response = openai_client(llm_server).responses.create(model="o4-mini", input="hi")
    usage = usage_from(response)
    assert unpriced(usage) == Usage(
        input_tokens=500,
        output_tokens=800,
        cache_read_tokens=100,
        reasoning_tokens=600,
        calls=1,
        cost_usd=usage.cost_usd,
        model="o4-mini",
    )
    # o4-mini: $1.10 input, $0.275 cached, $4.40 output; reasoning is inside output.
    assert usage.cost_usd == pytest.approx((400 * 1.10 + 100 * 0.275 + 800 * 4.40) / 1e6)
    assert usage_from(response.model_dump()) == usage


def test_openai_responses_stream_final_response(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(input_tokens=30, output_tokens=12)
    client = openai_client(llm_server)
    with client.responses.stream(model="gpt-4.1-nano", input="hi") as stream:
        final = stream.get_final_response()
    usage = usage_from(final)
    assert (usage.input_tokens, usage.output_tokens, usage.model) == (30, 12, "gpt-4.1-nano")
    assert usage.cost_usd == pytest.approx((30 * 0.10 + 12 * 0.40) / 1e6)


def test_anthropic_cache_tokens_are_added_to_input(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(
        input_tokens=120, output_tokens=40, cache_read_tokens=50, cache_write_tokens=30
    )
    message = anthropic_client(llm_server).messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=100, messages=MESSAGES
    )
    # On the wire, Anthropic's input_tokens leave the cache out.
    assert message.usage.input_tokens == 40
    usage = usage_from(message)
    assert usage.input_tokens == 40 + 50 + 30
    assert usage.cache_read_tokens == 50
    assert usage.cache_write_tokens == 30
    assert usage.output_tokens == 40
    assert usage.model == "claude-haiku-4-5-20251001"
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output.
    assert usage.cost_usd == pytest.approx((40 * 1.00 + 50 * 0.10 + 30 * 1.25 + 40 * 5.00) / 1e6)
    assert usage_from(message.model_dump()) == usage
    assert usage_from(message.model_dump(exclude={"type"})) == usage


def test_anthropic_stream_final_message(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(input_tokens=300, output_tokens=25, cache_read_tokens=200)
    client = anthropic_client(llm_server)
    with client.messages.stream(
        model="claude-3-5-haiku-20241022", max_tokens=100, messages=MESSAGES
    ) as stream:
        message = stream.get_final_message()
    usage = usage_from(message)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (300, 200, 25)
    # claude-3-5-haiku: $0.80 input, $0.08 cache read, $4 output.
    assert usage.cost_usd == pytest.approx((100 * 0.80 + 200 * 0.08 + 25 * 4.00) / 1e6)


def test_anthropic_thinking_tokens_are_reasoning() -> None:
    data = {
        "type": "message",
        "model": "claude-haiku-4-5",
        "usage": {
            "input_tokens": 10,
            "output_tokens": 90,
            "output_tokens_details": {"thinking_tokens": 70},
        },
    }
    message = anthropic.types.Message.model_validate(
        {**data, "id": "m", "role": "assistant", "content": [], "stop_reason": "end_turn"}
    )
    for obj in (data, message):
        usage = usage_from(obj)
        assert (usage.output_tokens, usage.reasoning_tokens) == (90, 70)


def test_gemini_thoughts_are_added_to_output(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(
        input_tokens=1000, output_tokens=500, cache_read_tokens=400, reasoning_tokens=300
    )
    # Keep the client referenced: it closes its HTTP client when collected.
    client = gemini_client(llm_server)
    response = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert isinstance(response, genai_types.GenerateContentResponse)
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 200
    usage = usage_from(response)
    assert usage.input_tokens == 1000
    assert usage.output_tokens == 200 + 300
    assert usage.reasoning_tokens == 300
    assert usage.cache_read_tokens == 400
    assert usage.model == "gemini-2.5-flash"
    # gemini-2.5-flash: $0.30 input, $0.03 cached, $2.50 output (thoughts included).
    assert usage.cost_usd == pytest.approx((600 * 0.30 + 400 * 0.03 + 500 * 2.50) / 1e6)
    assert usage_from(response.model_dump()) == usage


def test_gemini_stream_and_rest_json(llm_server: LLMServer) -> None:
    llm_server.reply = Reply(text="a b", input_tokens=10, output_tokens=4, model="gemini-2.0-flash")
    client = gemini_client(llm_server)
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"))
    expected = Usage(
        input_tokens=10,
        output_tokens=4,
        calls=1,
        cost_usd=(10 * 0.10 + 4 * 0.40) / 1e6,
        model="gemini-2.0-flash",
    )
    assert unpriced(usage_from(chunks[-1])) == expected
    # The raw REST JSON, camelCase keys and all.
    request = urllib.request.Request(
        f"{llm_server.url}/v1beta/models/gemini-2.0-flash:generateContent",
        data=b"{}",
        method="POST",
    )
    with urllib.request.urlopen(request) as reply:
        body = json.load(reply)
    assert "usageMetadata" in body
    assert unpriced(usage_from(body)) == expected


def test_langchain_ai_message() -> None:
    message = AIMessage(
        content="hello",
        usage_metadata={
            "input_tokens": 1000,
            "output_tokens": 200,
            "total_tokens": 1200,
            "input_token_details": {"cache_read": 600, "cache_creation": 100},
            "output_token_details": {"reasoning": 50},
        },
        response_metadata={"model_name": "gpt-4.1-mini-2025-04-14"},
    )
    usage = usage_from(message)
    assert unpriced(usage) == Usage(
        input_tokens=1000,
        output_tokens=200,
        cache_read_tokens=600,
        cache_write_tokens=100,
        reasoning_tokens=50,
        calls=1,
        cost_usd=usage.cost_usd,
        model="gpt-4.1-mini-2025-04-14",
    )
    # gpt-4.1-mini: $0.40 input (and cache writes), $0.10 cached, $1.60 output.
    assert usage.cost_usd == pytest.approx(
        (300 * 0.40 + 600 * 0.10 + 100 * 0.40 + 200 * 1.60) / 1e6
    )
    assert usage_from(message.model_dump()) == usage


def test_langchain_anthropic_style_model_key() -> None:
    message = AIMessage(
        content="hi",
        usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
        response_metadata={"model": "claude-3-haiku-20240307"},
    )
    usage = usage_from(message)
    assert usage.model == "claude-3-haiku-20240307"
    assert usage.cost_usd == pytest.approx((10 * 0.25 + 2 * 1.25) / 1e6)


def test_litellm_shaped_dict_with_cache_writes() -> None:
    # LiteLLM's ModelResponse is OpenAI-shaped; for Anthropic it reports cache
    # writes at the top of usage, and prompt_tokens already counts them.
    response = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "model": "claude-3-5-sonnet-20241022",
        "choices": [],
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "total_tokens": 1100,
            "prompt_tokens_details": {"cached_tokens": 500},
            "cache_creation_input_tokens": 200,
            "cache_read_input_tokens": 500,
        },
    }
    usage = usage_from(response)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        1000,
        500,
        200,
    )
    assert usage.cost_usd == pytest.approx(
        (300 * 3.00 + 500 * 0.30 + 200 * 3.75 + 100 * 15.00) / 1e6
    )


def test_a_usage_is_returned_as_it_is() -> None:
    usage = Usage(input_tokens=3, calls=1, model="nobody-knows")
    assert usage_from(usage) is usage


def test_custom_price_table_is_used(llm_server: LLMServer) -> None:
    table = PriceTable({"my-model": {"input": 1.0, "output": 2.0}}, genai_prices=False)
    llm_server.reply = Reply(model="my-model-2025-01-01", input_tokens=1000, output_tokens=500)
    response = openai_client(llm_server).chat.completions.create(model="x", messages=MESSAGES)
    assert usage_from(response, prices=table).cost_usd == pytest.approx(2000 / 1e6)


def test_unknown_model_costs_none_with_one_warning() -> None:
    table = PriceTable(genai_prices=False)
    response = {
        "model": "model-from-nowhere",
        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
    }
    with pytest.warns(UnknownModelWarning, match="model-from-nowhere"):
        usage = usage_from(response, prices=table)
    assert usage.cost_usd is None
    assert usage.input_tokens == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert usage_from(response, prices=table).cost_usd is None


def test_response_without_model_costs_none_with_a_warning() -> None:
    with pytest.warns(UnknownModelWarning, match="without a model name"):
        usage = usage_from({"usage": {"input_tokens": 5, "output_tokens": 1}}, prices=PriceTable())
    assert usage == Usage(input_tokens=5, output_tokens=1, calls=1)


@pytest.mark.parametrize(
    "obj",
    [42, "text", None, {"foo": 1}, {"usage": {"foo": 1}}, object(), [1, 2]],
    ids=["int", "str", "None", "dict", "dict-bad-usage", "object", "list"],
)
def test_unsupported_objects_are_a_type_error_listing_the_shapes(obj: object) -> None:
    with pytest.raises(ArgumentTypeError) as info:
        usage_from(obj)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, AgentResumeError)
    message = str(info.value)
    for shape in ("OpenAI ChatCompletion", "Responses", "Anthropic Message", "Gemini", "LangChain"):
        assert shape in message


def test_message_without_usage_is_a_value_error() -> None:
    with pytest.raises(ArgumentValueError, match="carries no usage"):
        usage_from(AIMessage(content="hi"))


@pytest.mark.parametrize(
    ("usage", "error"),
    [
        ({"prompt_tokens": -1, "completion_tokens": 1}, ArgumentValueError),
        ({"prompt_tokens": "7", "completion_tokens": 1}, ArgumentTypeError),
        ({"prompt_tokens": 1.0, "completion_tokens": 1}, ArgumentTypeError),
    ],
)
def test_bad_token_counts_are_refused(usage: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        usage_from({"model": "gpt-4o", "usage": usage})


def test_loopback_server_scripts_errors_then_replies(llm_server: LLMServer) -> None:
    # The server is shared with the recipes' tests: pin its scripting.
    llm_server.queue(Reply(status=429), Reply(model="gpt-4o-mini", input_tokens=9))
    client = openai_client(llm_server)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    first = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    second = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert (first.model, usage_from(first).input_tokens) == ("gpt-4o-mini", 9)
    assert (second.model, usage_from(second).input_tokens) == ("gpt-4o", 120)
    assert [r.path for r in llm_server.requests] == ["/v1/chat/completions"] * 3
    assert llm_server.requests[0].body["messages"] == MESSAGES
