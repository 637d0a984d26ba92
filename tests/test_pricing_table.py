"""Every case of issue 13's table, on objects built by the SDKs' own classes.

Each row prices one response three ways: with the default table (genai-prices
first when installed), with the built-in table alone, and with genai-prices
called directly on counts written out by hand. The built-in cost must equal
the row's fixed figure (worked out in the comment beside it); where
genai-prices is installed, the default cost must equal its figure.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic.types as anthropic_types
import openai.types.chat as openai_chat
import pytest
from google.genai import types as genai_types
from langchain_core.messages import AIMessage

from agent_resume import (
    InconsistentUsageWarning,
    PriceTable,
    Usage,
    usage_from,
)

try:
    import genai_prices
except ImportError:  # pragma: no cover - CI installs the prices extra
    genai_prices = None


def chat(model: str, prompt: int, completion: int, **extra: Any) -> openai_chat.ChatCompletion:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    for key in ("prompt_tokens_details", "completion_tokens_details"):
        if key in extra:
            usage[key] = extra.pop(key)
    return openai_chat.ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "ok"},
                }
            ],
            "usage": usage,
            **extra,
        }
    )


def message(model: str, **usage: Any) -> anthropic_types.Message:
    return anthropic_types.Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": usage,
        }
    )


def gemini(model: str, prompt: int, candidates: int, audio: int = 0) -> Any:
    details = None
    if audio:
        details = [
            genai_types.ModalityTokenCount(modality="TEXT", token_count=prompt - audio),
            genai_types.ModalityTokenCount(modality="AUDIO", token_count=audio),
        ]
    return genai_types.GenerateContentResponse(
        model_version=model,
        usage_metadata=genai_types.GenerateContentResponseUsageMetadata(
            prompt_token_count=prompt,
            candidates_token_count=candidates,
            total_token_count=prompt + candidates,
            prompt_tokens_details=details,
        ),
    )


@dataclass
class Row:
    """One case: the response, its fixed cost, and what genai-prices is asked."""

    name: str
    build: Callable[[], object]
    expected: float
    reference_model: str
    reference_counts: dict[str, int]
    reference_context: dict[str, str] | None = None
    reference_provider: str | None = None
    # Prices for models outside the built-in table (the fixed figure uses them).
    own: dict[str, dict[str, float]] = field(default_factory=dict)
    inconsistent: bool = False
    # Above a context tier of the built-in table: the built-in entry prices it.
    tiered: bool = False


SONNET = "claude-sonnet-4-5-20250929"

ROWS = [
    Row(
        # langchain-anthropic moves cache writes to ephemeral_*_input_tokens with
        # cache_creation 0. Sonnet 4.5: 15,000 uncached x $3 + 5,000 read x $0.30
        # + 10,000 5-minute writes x $3.75 + 1,000 out x $15.
        "langchain ChatAnthropic 5-minute cache writes",
        lambda: AIMessage(
            content="ok",
            usage_metadata={
                "input_tokens": 30_000,
                "output_tokens": 1_000,
                "total_tokens": 31_000,
                "input_token_details": {
                    "cache_read": 5_000,
                    "cache_creation": 0,
                    "ephemeral_5m_input_tokens": 10_000,
                },
            },
            response_metadata={"model_name": SONNET},
        ),
        (15_000 * 3 + 5_000 * 0.30 + 10_000 * 3.75 + 1_000 * 15) / 1e6,
        SONNET,
        {
            "input_tokens": 30_000,
            "cache_read_tokens": 5_000,
            "cache_write_tokens": 10_000,
            "output_tokens": 1_000,
        },
    ),
    Row(
        # As above with 6,000 of the writes at the 1-hour rate ($6).
        "langchain ChatAnthropic 1-hour cache writes",
        lambda: AIMessage(
            content="ok",
            usage_metadata={
                "input_tokens": 30_000,
                "output_tokens": 1_000,
                "total_tokens": 31_000,
                "input_token_details": {
                    "cache_read": 5_000,
                    "cache_creation": 0,
                    "ephemeral_5m_input_tokens": 4_000,
                    "ephemeral_1h_input_tokens": 6_000,
                },
            },
            response_metadata={"model_name": SONNET},
        ),
        (15_000 * 3 + 5_000 * 0.30 + 4_000 * 3.75 + 6_000 * 6 + 1_000 * 15) / 1e6,
        SONNET,
        {
            "input_tokens": 30_000,
            "cache_read_tokens": 5_000,
            "cache_write_tokens": 10_000,
            "cache_write_1h_tokens": 6_000,
            "output_tokens": 1_000,
        },
    ),
    Row(
        "anthropic 1-hour cache writes",
        lambda: message(
            SONNET,
            input_tokens=15_000,
            cache_read_input_tokens=5_000,
            cache_creation_input_tokens=10_000,
            cache_creation={"ephemeral_5m_input_tokens": 4_000, "ephemeral_1h_input_tokens": 6_000},
            output_tokens=1_000,
        ),
        (15_000 * 3 + 5_000 * 0.30 + 4_000 * 3.75 + 6_000 * 6 + 1_000 * 15) / 1e6,
        SONNET,
        {
            "input_tokens": 30_000,
            "cache_read_tokens": 5_000,
            "cache_write_tokens": 10_000,
            "cache_write_1h_tokens": 6_000,
            "output_tokens": 1_000,
        },
    ),
    Row(
        # Its own price, $5 / $15, not gpt-4o's $2.50 / $10.
        "gpt-4o-2024-05-13",
        lambda: chat("gpt-4o-2024-05-13", 10_000, 2_000),
        (10_000 * 5 + 2_000 * 15) / 1e6,
        "gpt-4o-2024-05-13",
        {"input_tokens": 10_000, "output_tokens": 2_000},
    ),
    Row(
        # Over 200k prompt tokens: $2.50 / $15 instead of $1.25 / $10.
        "gemini-2.5-pro over 200k",
        lambda: gemini("gemini-2.5-pro", 250_000, 2_000),
        (250_000 * 2.50 + 2_000 * 15) / 1e6,
        "gemini-2.5-pro",
        {"input_tokens": 250_000, "output_tokens": 2_000},
        tiered=True,
    ),
    Row(
        # Over 200k input tokens: $6 / $22.50 instead of $3 / $15.
        "claude-sonnet-4-5 over 200k",
        lambda: message(SONNET, input_tokens=250_000, output_tokens=1_000),
        (250_000 * 6 + 1_000 * 22.50) / 1e6,
        SONNET,
        {"input_tokens": 250_000, "output_tokens": 1_000},
        tiered=True,
    ),
    Row(
        # Anthropic's 1M-context rates apply to Sonnet 4 as to 4.5; genai-prices
        # 0.2.3 has no tier for it and bills $0.765, half.
        "claude-sonnet-4 over 200k",
        lambda: message("claude-sonnet-4-20250514", input_tokens=250_000, output_tokens=1_000),
        (250_000 * 6 + 1_000 * 22.50) / 1e6,
        "claude-sonnet-4-20250514",
        {"input_tokens": 250_000, "output_tokens": 1_000},
        tiered=True,
    ),
    Row(
        "bedrock global inference profile",
        lambda: message(
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            input_tokens=10_000,
            output_tokens=1_000,
        ),
        (10_000 * 3 + 1_000 * 15) / 1e6,
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        {"input_tokens": 10_000, "output_tokens": 1_000},
        reference_provider="aws",
    ),
    Row(
        "bedrock apac inference profile",
        lambda: message(
            "apac.anthropic.claude-sonnet-4-20250514-v1:0", input_tokens=10_000, output_tokens=1_000
        ),
        (10_000 * 3 + 1_000 * 15) / 1e6,
        "apac.anthropic.claude-sonnet-4-20250514-v1:0",
        {"input_tokens": 10_000, "output_tokens": 1_000},
        reference_provider="aws",
    ),
    Row(
        # Cached (1,000) above the prompt (100): the cache was counted apart, so the
        # input is 1,100. gpt-5.2: 100 x $1.75 + 1,000 x $0.175 + 50 x $14.
        "cache read above input",
        lambda: chat("gpt-5.2-2025-12-11", 100, 50, prompt_tokens_details={"cached_tokens": 1_000}),
        (100 * 1.75 + 1_000 * 0.175 + 50 * 14) / 1e6,
        "gpt-5.2",
        {"input_tokens": 1_100, "cache_read_tokens": 1_000, "output_tokens": 50},
        inconsistent=True,
    ),
    Row(
        # xAI counts reasoning apart from completion_tokens: the output is 100 + 900.
        # Fixed figure at our own $3 / $15 for grok-4 (not in the built-in table).
        "xai reasoning outside completion tokens",
        lambda: chat(
            "grok-4-0709", 1_000, 100, completion_tokens_details={"reasoning_tokens": 900}
        ),
        (1_000 * 3 + 1_000 * 15) / 1e6,
        "grok-4-0709",
        {"input_tokens": 1_000, "output_tokens": 1_000, "output_reasoning_tokens": 900},
        own={"grok-4-0709": {"input": 3.0, "output": 15.0}},
        inconsistent=True,
    ),
    Row(
        "openai flex",
        lambda: chat("gpt-5-2025-08-07", 10_000, 1_000, service_tier="flex"),
        (10_000 * 1.25 + 1_000 * 10) / 1e6 * 0.5,
        "gpt-5",
        {"input_tokens": 10_000, "output_tokens": 1_000},
        reference_context={"service_tier": "flex"},
    ),
    Row(
        "openai priority",
        lambda: chat("gpt-5-2025-08-07", 10_000, 1_000, service_tier="priority"),
        (10_000 * 1.25 + 1_000 * 10) / 1e6 * 2,
        "gpt-5",
        {"input_tokens": 10_000, "output_tokens": 1_000},
        reference_context={"service_tier": "priority"},
    ),
    Row(
        "openai batch output line",
        lambda: {
            "id": "batch_req_1",
            "custom_id": "item-1",
            "response": {
                "status_code": 200,
                "request_id": "req_1",
                "body": chat("gpt-5-2025-08-07", 10_000, 1_000).model_dump(mode="json"),
            },
            "error": None,
        },
        (10_000 * 1.25 + 1_000 * 10) / 1e6 * 0.5,
        "gpt-5",
        {"input_tokens": 10_000, "output_tokens": 1_000},
        reference_context={"processing": "batch"},
    ),
    Row(
        "anthropic service_tier batch",
        lambda: message(SONNET, input_tokens=10_000, output_tokens=1_000, service_tier="batch"),
        (10_000 * 3 + 1_000 * 15) / 1e6 * 0.5,
        SONNET,
        {"input_tokens": 10_000, "output_tokens": 1_000},
        reference_context={"processing": "batch"},
    ),
    Row(
        "anthropic MessageBatchIndividualResponse",
        lambda: anthropic_types.messages.MessageBatchIndividualResponse(
            custom_id="item-1",
            result=anthropic_types.messages.MessageBatchSucceededResult(
                type="succeeded", message=message(SONNET, input_tokens=10_000, output_tokens=1_000)
            ),
        ),
        (10_000 * 3 + 1_000 * 15) / 1e6 * 0.5,
        SONNET,
        {"input_tokens": 10_000, "output_tokens": 1_000},
        reference_context={"processing": "batch"},
    ),
    Row(
        # $10 per 1,000 searches on top of the tokens.
        "anthropic web search",
        lambda: message(
            SONNET,
            input_tokens=10_000,
            output_tokens=1_000,
            server_tool_use={"web_search_requests": 3, "web_fetch_requests": 0},
        ),
        (10_000 * 3 + 1_000 * 15) / 1e6 + 3 * 10 / 1_000,
        SONNET,
        {"input_tokens": 10_000, "output_tokens": 1_000, "web_searches": 3},
    ),
    Row(
        # Audio input at $1.00 instead of text's $0.30.
        "gemini audio input",
        lambda: gemini("gemini-2.5-flash", 10_000, 1_000, audio=4_000),
        (6_000 * 0.30 + 4_000 * 1.00 + 1_000 * 2.50) / 1e6,
        "gemini-2.5-flash",
        {"input_tokens": 10_000, "input_audio_tokens": 4_000, "output_tokens": 1_000},
    ),
    Row(
        # The preview's own price, $0.15 / $0.60, not the GA $0.30 / $2.50.
        "gemini-2.5-flash-preview-05-20",
        lambda: gemini("gemini-2.5-flash-preview-05-20", 100_000, 10_000),
        (100_000 * 0.15 + 10_000 * 0.60) / 1e6,
        "gemini-2.5-flash-preview-05-20",
        {"input_tokens": 100_000, "output_tokens": 10_000},
    ),
]


def priced(row: Row, table: PriceTable) -> Usage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InconsistentUsageWarning)
        return usage_from(row.build(), prices=table)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_builtin_table_gives_the_fixed_figure(row: Row) -> None:
    usage = priced(row, PriceTable(row.own, genai_prices=False))
    assert usage.cost_usd == pytest.approx(row.expected, rel=1e-9)
    assert usage.price_source is not None
    assert usage.price_source.startswith("own" if row.own else "built-in")


@pytest.mark.skipif(genai_prices is None, reason="the prices extra is not installed")
@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_default_table_agrees_with_genai_prices(row: Row) -> None:
    assert genai_prices is not None
    usage = priced(row, PriceTable())
    if row.tiered:  # the built-in entry's tier, whatever genai-prices has
        assert usage.cost_usd == pytest.approx(row.expected, rel=1e-9)
        assert usage.price_source is not None
        assert usage.price_source.startswith("built-in")
        return
    expected = genai_prices.calc_price(
        genai_prices.Usage(**row.reference_counts),
        row.reference_model,
        provider_id=row.reference_provider,
        price_context=row.reference_context,
    ).total_price
    assert usage.cost_usd == pytest.approx(float(expected), rel=1e-9)
    assert usage.price_source is not None
    assert usage.price_source.startswith("genai-prices")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # Cache above input: the cache is added to the input.
        (
            lambda model: chat(model, 100, 50, prompt_tokens_details={"cached_tokens": 1_000}),
            Usage(input_tokens=1_100, output_tokens=50, cache_read_tokens=1_000, calls=1),
        ),
        # Reasoning above output: the reasoning is added to the output.
        (
            lambda model: chat(model, 10, 100, completion_tokens_details={"reasoning_tokens": 900}),
            Usage(input_tokens=10, output_tokens=1_000, reasoning_tokens=900, calls=1),
        ),
    ],
    ids=["cache above input", "reasoning above output"],
)
def test_inconsistent_usage_is_corrected_and_warned_once(
    response: Callable[[str], object], expected: Usage, request: pytest.FixtureRequest
) -> None:
    model = f"house-model-{request.node.callspec.id.replace(' ', '-')}"
    table = PriceTable({model: {"input": 1.0, "output": 2.0}}, builtin=False, genai_prices=False)
    with pytest.warns(InconsistentUsageWarning, match="added to the") as record:
        first, second = (usage_from(response(model), prices=table) for _ in range(2))
    assert len(record) == 1
    assert record[0].filename == __file__
    assert first == second
    assert (first.input_tokens, first.output_tokens) == (
        expected.input_tokens,
        expected.output_tokens,
    )
    assert first.cache_read_tokens == expected.cache_read_tokens
    assert first.reasoning_tokens == expected.reasoning_tokens
    assert first.cost_usd == pytest.approx(
        (expected.input_tokens + 2 * expected.output_tokens) / 1e6
    )


@pytest.mark.skipif(genai_prices is None, reason="the prices extra is not installed")
@pytest.mark.parametrize(
    "model",
    # genai-prices has batch rates for gpt-4o-mini and claude-sonnet-4-5, none for the others.
    ["gpt-4o-mini", "gpt-5.3", "claude-sonnet-4-5", "claude-sonnet-4-20250514", "claude-3-5-haiku"],
)
def test_a_batch_call_is_billed_at_half_where_genai_prices_has_no_batch_rate(model: str) -> None:
    table = PriceTable()
    counts = {"input_tokens": 10_000, "output_tokens": 1_000, "calls": 1}
    standard = table.price(Usage(model=model, **counts))
    assert standard.cost_usd is not None and standard.cost_usd > 0
    for tier in ("batch", "flex"):
        tiered = table.price(Usage(model=model, service_tier=tier, **counts))
        assert tiered.cost_usd == pytest.approx(standard.cost_usd / 2, rel=1e-9), tier
        assert tiered.price_source == standard.price_source
    if model.startswith("gpt"):
        # An OpenAI Batch API output line: the tier is read from the line itself.
        line = {
            "custom_id": "r-1",
            "response": {"status_code": 200, "body": chat(model, 10_000, 1_000).model_dump()},
        }
        assert usage_from(line).cost_usd == pytest.approx(standard.cost_usd / 2, rel=1e-9)


_CACHE_READS_FIRST = """
from agent_resume import PriceTable, Usage
table = PriceTable()
model = "gpt-4.1-2025-04-14"
counts = {"input_tokens": 10_000, "output_tokens": 1_000, "calls": 1}
table.price(Usage(model=model, service_tier="batch", input_tokens=10_000,
                  cache_read_tokens=10_000, calls=1))
print(table.price(Usage(model=model, **counts)).cost_usd)
print(table.price(Usage(model=model, service_tier="batch", **counts)).cost_usd)
"""


@pytest.mark.skipif(genai_prices is None, reason="the prices extra is not installed")
def test_a_first_batch_call_of_cache_reads_alone_does_not_halve_later_calls_twice() -> None:
    # genai-prices bills gpt-4.1's cache reads alike in both tiers: a batch call
    # of cache reads alone costs what a standard one does. Asked with that
    # call's counts, "no batch rate" was kept for the process and every later
    # batch call of the model was halved twice. A fresh process, so that this
    # call is the first of its model and tier.
    out = subprocess.run(
        [sys.executable, "-c", _CACHE_READS_FIRST], capture_output=True, text=True, check=True
    ).stdout.split()
    standard, batch = (float(x) for x in out)
    assert standard == pytest.approx((10_000 * 2 + 1_000 * 8) / 1e6)
    assert batch == pytest.approx(standard / 2, rel=1e-9)
