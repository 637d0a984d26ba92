"""The built-in price table: OpenAI, Anthropic and Google models, USD, standard tier.

Source: the providers' pricing pages below, read through the genai-prices
0.2.3 data set (which follows them) and checked on `CHECKED`. Prices are per
million tokens; ``web_search`` is per 1,000 searches (Anthropic's web search
tool, OpenAI's web search tool, Gemini's grounding with Google Search).
``long`` is a context tier: ``(threshold, input, output, cache_read,
cache_write, cache_write_1h)`` used when a request's input tokens exceed the
threshold (``None`` keeps the base price). Anthropic's ``cache_write`` is the
5-minute write and ``cache_write_1h`` the 1-hour one; OpenAI and Gemini
charge nothing extra to write. Batch, flex and priority processing are
applied on top as multipliers (see `agent_resume.PriceTable`), except where
OpenAI lists a model's priority rates: ``priority`` is ``(input, output,
cache_read)`` of that tier. Anthropic's Priority Tier is priced at the
standard rates (its usage draws down a capacity commitment at them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BUILTIN", "CHECKED"]

CHECKED = "2026-11-27"

_OPENAI = "https://platform.openai.com/docs/pricing"
_ANTHROPIC = "https://docs.anthropic.com/en/docs/about-claude/pricing"
_GOOGLE = "https://ai.google.dev/gemini-api/docs/pricing"

Long = tuple[int, float, float, "float | None", "float | None", "float | None"]


def _p(
    source: str,
    input: float,
    output: float,
    cache_read: float | None = None,
    cache_write: float | None = None,
    cache_write_1h: float | None = None,
    *,
    input_audio: float | None = None,
    web_search: float | None = None,
    long: Long | None = None,
    priority: tuple[float, float, float | None] | None = None,
) -> dict[str, Any]:
    price: dict[str, Any] = {"input": input, "output": output, "source": source, "date": CHECKED}
    for key, value in (
        ("cache_read", cache_read),
        ("cache_write", cache_write),
        ("cache_write_1h", cache_write_1h),
        ("input_audio", input_audio),
        ("web_search", web_search),
    ):
        if value is not None:
            price[key] = value
    if priority is not None:
        price["priority_input"], price["priority_output"] = priority[:2]
        if priority[2] is not None:
            price["priority_cache_read"] = priority[2]
    if long is not None:
        threshold, *tiered = long
        price["long_context_threshold"] = threshold
        for key, value in zip(
            (
                "long_input",
                "long_output",
                "long_cache_read",
                "long_cache_write",
                "long_cache_write_1h",
            ),
            tiered,
            strict=True,
        ):
            if value is not None:
                price[key] = value
    return price


def _openai(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return _p(_OPENAI, *args, **kwargs)


def _anthropic(
    input: float, output: float, cache_read: float, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    # Anthropic's Priority Tier bills no rate of its own: its usage draws down a
    # capacity commitment at the standard tier's relative rates, so a priority
    # call is priced as a standard one (not at the generic x2).
    priority = (input, output, cache_read)
    return _p(
        _ANTHROPIC, input, output, cache_read, *args, web_search=10.0, priority=priority, **kwargs
    )


def _google(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return _p(_GOOGLE, *args, **kwargs)


BUILTIN: dict[str, dict[str, Any]] = {
    # OpenAI
    "gpt-4o": _openai(2.50, 10.00, 1.25, web_search=10.0, priority=(4.25, 17.00, 2.125)),
    "gpt-4o-2024-05-13": _openai(5.00, 15.00, web_search=10.0, priority=(8.75, 26.25, None)),
    "gpt-4o-mini": _openai(0.15, 0.60, 0.075, web_search=10.0, priority=(0.25, 1.00, 0.125)),
    "gpt-4.1": _openai(2.00, 8.00, 0.50, web_search=10.0, priority=(3.50, 14.00, 0.875)),
    "gpt-4.1-mini": _openai(0.40, 1.60, 0.10, web_search=10.0, priority=(0.70, 2.80, 0.175)),
    "gpt-4.1-nano": _openai(0.10, 0.40, 0.025),
    # Fine-tuned models (`ft:BASE:org:suffix:id`), billed above their base.
    "ft:gpt-3.5-turbo": _openai(3.00, 6.00),
    "ft:gpt-4o": _openai(3.75, 15.00, 1.875),
    "ft:gpt-4o-mini": _openai(0.30, 1.20, 0.15),
    "ft:gpt-4.1": _openai(3.00, 12.00, 0.75),
    "ft:gpt-4.1-mini": _openai(0.80, 3.20, 0.20),
    "ft:gpt-4.1-nano": _openai(0.20, 0.80, 0.05),
    "ft:o4-mini": _openai(4.00, 16.00, 1.00),
    "gpt-5": _openai(1.25, 10.00, 0.125, web_search=10.0),
    "gpt-5-mini": _openai(0.25, 2.00, 0.025, web_search=10.0, priority=(0.45, 3.60, 0.045)),
    "gpt-5-nano": _openai(0.05, 0.40, 0.005, web_search=10.0),
    "gpt-5-pro": _openai(15.00, 120.00, web_search=10.0),
    "gpt-5.1": _openai(1.25, 10.00, 0.125, web_search=10.0),
    "gpt-5.2": _openai(1.75, 14.00, 0.175, web_search=10.0),
    "gpt-5.2-pro": _openai(21.00, 168.00, web_search=10.0),
    "gpt-5.3": _openai(1.75, 14.00, 0.175),
    "gpt-5.4": _openai(
        2.50, 15.00, 0.25, web_search=10.0, long=(272_000, 5.00, 22.50, 0.50, None, None)
    ),
    "gpt-5.4-mini": _openai(0.75, 4.50, 0.075, web_search=10.0),
    "gpt-5.4-nano": _openai(0.20, 1.25, 0.02, web_search=10.0),
    "gpt-5.5": _openai(
        5.00,
        30.00,
        0.50,
        web_search=10.0,
        long=(272_000, 10.00, 45.00, 1.00, None, None),
        priority=(12.50, 75.00, 1.25),
    ),
    "gpt-5.5-pro": _openai(
        30.00, 180.00, web_search=10.0, long=(272_000, 60.00, 270.00, None, None, None)
    ),
    "gpt-5.6-sol": _openai(
        4.00, 20.00, 0.40, 5.00, web_search=10.0, long=(272_000, 8.00, 30.00, 0.80, 10.00, None)
    ),
    "gpt-5.6-terra": _openai(
        2.00, 12.00, 0.20, 2.50, web_search=10.0, long=(272_000, 4.00, 18.00, 0.40, 5.00, None)
    ),
    "gpt-5.6-luna": _openai(
        0.20, 1.20, 0.02, 0.25, web_search=10.0, long=(272_000, 0.40, 1.80, 0.04, 0.50, None)
    ),
    "o1": _openai(15.00, 60.00, 7.50),
    "o1-mini": _openai(1.10, 4.40, 0.55),
    "o3": _openai(2.00, 8.00, 0.50, web_search=10.0, priority=(3.50, 14.00, 0.875)),
    "o3-mini": _openai(1.10, 4.40, 0.55),
    "o3-pro": _openai(20.00, 80.00),
    "o4-mini": _openai(1.10, 4.40, 0.275, web_search=10.0, priority=(2.00, 8.00, 0.50)),
    # Anthropic: (input, output, cache read, 5-minute cache write, 1-hour cache write)
    "claude-opus-5-5": _anthropic(4.00, 20.00, 0.20, 5.00, 8.00),
    "claude-sonnet-5-5": _anthropic(2.00, 10.00, 0.10, 2.50, 4.00),
    "claude-haiku-5-5": _anthropic(
        0.10, 0.50, 0.01, 0.125, 0.20, long=(100_000, 0.50, 2.50, 0.05, 0.625, 1.00)
    ),
    "claude-opus-5": _anthropic(5.00, 25.00, 0.50, 6.25, 10.00),
    "claude-sonnet-5": _anthropic(2.00, 10.00, 0.20, 2.50, 4.00),
    "claude-opus-4-8": _anthropic(5.00, 25.00, 0.50, 6.25, 10.00),
    "claude-opus-4-7": _anthropic(5.00, 25.00, 0.50, 6.25, 10.00),
    "claude-opus-4-6": _anthropic(5.00, 25.00, 0.50, 6.25, 10.00),
    "claude-sonnet-4-6": _anthropic(3.00, 15.00, 0.30, 3.75, 6.00),
    "claude-opus-4-5": _anthropic(5.00, 25.00, 0.50, 6.25, 10.00),
    "claude-opus-4-1": _anthropic(15.00, 75.00, 1.50, 18.75, 30.00),
    "claude-opus-4": _anthropic(15.00, 75.00, 1.50, 18.75, 30.00),
    "claude-opus-4-0": _anthropic(15.00, 75.00, 1.50, 18.75, 30.00),
    "claude-sonnet-4-5": _anthropic(
        3.00, 15.00, 0.30, 3.75, 6.00, long=(200_000, 6.00, 22.50, 0.60, 7.50, 12.00)
    ),
    "claude-sonnet-4": _anthropic(
        3.00, 15.00, 0.30, 3.75, 6.00, long=(200_000, 6.00, 22.50, 0.60, 7.50, 12.00)
    ),
    "claude-sonnet-4-0": _anthropic(
        3.00, 15.00, 0.30, 3.75, 6.00, long=(200_000, 6.00, 22.50, 0.60, 7.50, 12.00)
    ),
    "claude-3-7-sonnet": _anthropic(3.00, 15.00, 0.30, 3.75, 6.00),
    "claude-3-5-sonnet": _anthropic(3.00, 15.00, 0.30, 3.75, 6.00),
    "claude-haiku-4-5": _anthropic(1.00, 5.00, 0.10, 1.25, 2.00),
    "claude-3-5-haiku": _anthropic(0.80, 4.00, 0.08, 1.00, 1.60),
    "claude-3-haiku": _p(_ANTHROPIC, 0.25, 1.25, 0.03, 0.30, 0.50),
    "claude-3-opus": _p(_ANTHROPIC, 15.00, 75.00, 1.50, 18.75, 30.00),
    # Google: prompts over 200k tokens cost more on the Pro models.
    "gemini-3.8-flash": _google(0.75, 3.75, 0.075, web_search=14.0),
    "gemini-3.7-flash": _google(0.75, 3.75, 0.075, web_search=14.0),
    "gemini-3.6-flash": _google(0.75, 3.75, 0.075, web_search=14.0),
    "gemini-3.5-flash": _google(1.50, 9.00, 0.15, web_search=14.0),
    "gemini-3.5-flash-lite": _google(0.30, 2.50, 0.03, web_search=14.0),
    "gemini-3.1-pro-preview": _google(
        2.00, 12.00, 0.20, web_search=14.0, long=(200_000, 4.00, 18.00, 0.40, None, None)
    ),
    "gemini-3-pro-preview": _google(
        2.00, 12.00, 0.20, web_search=14.0, long=(200_000, 4.00, 18.00, 0.40, None, None)
    ),
    "gemini-3-flash-preview": _google(0.50, 3.00, 0.05, input_audio=1.00, web_search=14.0),
    "gemini-3.1-flash-lite": _google(0.25, 1.50, 0.025, input_audio=0.50, web_search=14.0),
    "gemini-2.5-pro": _google(
        1.25, 10.00, 0.125, web_search=35.0, long=(200_000, 2.50, 15.00, 0.25, None, None)
    ),
    "gemini-2.5-flash": _google(0.30, 2.50, 0.03, input_audio=1.00, web_search=35.0),
    "gemini-2.5-flash-preview-05-20": _google(0.15, 0.60, web_search=35.0),
    "gemini-2.5-flash-lite": _google(0.10, 0.40, 0.01, input_audio=0.30, web_search=35.0),
    "gemini-2.0-flash": _google(0.10, 0.40, 0.025, input_audio=0.70, web_search=35.0),
    "gemini-2.0-flash-lite": _google(0.075, 0.30),
}
"""Model name to the keyword arguments of `agent_resume.ModelPrice`."""
