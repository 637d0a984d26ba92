"""Every SDK response shape agent-resume reads: usage, text and tool calls.

`usage_from` reads the token usage of one response and prices it;
`text_and_tools` reads the model's text and tool calls (for stop
conditions). Both read by duck typing and never import an SDK, so any SDK
version whose fields keep their names works. The per-provider rules are on
the docs page ``docs/token-accounting.md``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent_resume._accounting._genai import RawResponse
from agent_resume._accounting._prices import PriceTable, default_prices
from agent_resume._accounting._usage import Usage
from agent_resume._caller import warn_at_caller
from agent_resume._errors import ArgumentTypeError, ArgumentValueError, InconsistentUsageWarning
from agent_resume._stop_base import ToolCall

__all__ = ["SUPPORTED_SHAPES", "text_and_tools", "usage_from"]


def _get(obj: object, *names: str) -> Any:
    """Read the first of ``names`` that is present and not None, from a mapping or an object."""
    mapping = type(obj) is dict or isinstance(obj, Mapping)
    for name in names:
        value = obj.get(name) if mapping else getattr(obj, name, None)  # type: ignore[attr-defined]
        if value is not None:
            return value
    return None


def _has(obj: object, name: str) -> bool:
    if type(obj) is dict or isinstance(obj, Mapping):
        return name in obj
    return hasattr(obj, name)


def _count(obj: object, *path: str) -> int:
    """Read a nested token count such as ``usage.prompt_tokens_details.cached_tokens``; absent is 0."""
    value: Any = obj
    for step in path:
        names = step.split("|")
        value = _get(value, *names)
        if value is None:
            return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(
            "obj", obj, f"token count {'.'.join(path)} must be an int (got {value!r})"
        )
    return value


def _model(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tier(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


# --- Counts from each provider's usage part -------------------------------------------


def _openai_chat(usage: object, model: Any, tier: Any) -> Usage:
    return Usage(
        input_tokens=_count(usage, "prompt_tokens"),
        output_tokens=_count(usage, "completion_tokens"),
        cache_read_tokens=_count(usage, "prompt_tokens_details", "cached_tokens"),
        # LiteLLM reports Anthropic cache writes at the top level.
        cache_write_tokens=_count(usage, "prompt_tokens_details", "cache_write_tokens")
        or _count(usage, "cache_creation_input_tokens"),
        reasoning_tokens=_count(usage, "completion_tokens_details", "reasoning_tokens"),
        input_audio_tokens=_count(usage, "prompt_tokens_details", "audio_tokens"),
        calls=1,
        model=_model(model),
        service_tier=_tier(tier),
    )


def _openai_responses(usage: object, model: Any, tier: Any) -> Usage:
    return Usage(
        input_tokens=_count(usage, "input_tokens"),
        output_tokens=_count(usage, "output_tokens"),
        cache_read_tokens=_count(usage, "input_tokens_details", "cached_tokens"),
        cache_write_tokens=_count(usage, "input_tokens_details", "cache_write_tokens"),
        reasoning_tokens=_count(usage, "output_tokens_details", "reasoning_tokens"),
        calls=1,
        model=_model(model),
        service_tier=_tier(tier),
    )


def _anthropic(usage: object, model: Any, tier: Any) -> Usage:
    cache_write = _count(usage, "cache_creation_input_tokens")
    cache_read = _count(usage, "cache_read_input_tokens")
    return Usage(
        # Anthropic's input_tokens leaves out the cached part: add it back.
        input_tokens=_count(usage, "input_tokens") + cache_write + cache_read,
        output_tokens=_count(usage, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=_count(usage, "cache_creation", "ephemeral_1h_input_tokens"),
        reasoning_tokens=_count(usage, "output_tokens_details", "thinking_tokens"),
        web_search_requests=_count(usage, "server_tool_use", "web_search_requests"),
        calls=1,
        model=_model(model),
        service_tier=_tier(tier) or _tier(_get(usage, "service_tier")),
    )


def _bedrock_converse(usage: object, model: Any, tier: Any) -> Usage:
    cache_read = _count(usage, "cacheReadInputTokens")
    cache_write = _count(usage, "cacheWriteInputTokens")
    return Usage(
        # Like Anthropic's, Bedrock's inputTokens leaves out the cached part.
        input_tokens=_count(usage, "inputTokens") + cache_read + cache_write,
        output_tokens=_count(usage, "outputTokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        calls=1,
        model=_model(model),
        service_tier=_tier(tier),
    )


def _modality(details: Any, modality: str) -> int:
    if not isinstance(details, (list, tuple)):
        return 0
    total = 0
    for entry in details:
        found = _get(entry, "modality")
        name = getattr(found, "value", found)
        if isinstance(name, str) and name.upper() == modality:
            total += _count(entry, "token_count|tokenCount")
    return total


def _gemini(meta: object, model: Any, tier: Any) -> Usage:
    thoughts = _count(meta, "thoughts_token_count|thoughtsTokenCount")
    return Usage(
        input_tokens=_count(meta, "prompt_token_count|promptTokenCount")
        + _count(meta, "tool_use_prompt_token_count|toolUsePromptTokenCount"),
        # Gemini counts thoughts apart from the candidates; both are billed as output.
        output_tokens=_count(meta, "candidates_token_count|candidatesTokenCount") + thoughts,
        cache_read_tokens=_count(meta, "cached_content_token_count|cachedContentTokenCount"),
        reasoning_tokens=thoughts,
        input_audio_tokens=_modality(
            _get(meta, "prompt_tokens_details", "promptTokensDetails"), "AUDIO"
        ),
        calls=1,
        model=_model(model),
        service_tier=_tier(tier),
    )


def _langchain(meta: object, model: Any, tier: Any) -> Usage:
    # langchain-anthropic moves cache writes to ephemeral_5m/1h_input_tokens and
    # may leave cache_creation at 0: the writes are whichever is larger.
    split = _count(meta, "input_token_details", "ephemeral_5m_input_tokens") + _count(
        meta, "input_token_details", "ephemeral_1h_input_tokens"
    )
    return Usage(
        input_tokens=_count(meta, "input_tokens"),
        output_tokens=_count(meta, "output_tokens"),
        cache_read_tokens=_count(meta, "input_token_details", "cache_read"),
        cache_write_tokens=max(_count(meta, "input_token_details", "cache_creation"), split),
        cache_write_1h_tokens=_count(meta, "input_token_details", "ephemeral_1h_input_tokens"),
        input_audio_tokens=_count(meta, "input_token_details", "audio"),
        reasoning_tokens=_count(meta, "output_token_details", "reasoning"),
        calls=1,
        model=_model(model),
        service_tier=_tier(tier),
    )


def _ollama(obj: object, model: Any, tier: Any) -> Usage:
    return Usage(
        input_tokens=_count(obj, "prompt_eval_count"),
        output_tokens=_count(obj, "eval_count"),
        calls=1,
        model=_model(model),
        service_tier=_tier(tier),
    )


# --- Which shape is this? -------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    """A usage read from a response, and what genai-prices needs to read it again."""

    usage: Usage
    raw: RawResponse | None = None
    reported_cost: float | None = None


def _is_gemini_meta(obj: object) -> bool:
    return any(
        _has(obj, name)
        for name in ("prompt_token_count", "promptTokenCount", "candidates_token_count")
    )


def _read_usage_part(
    usage: object, model: Any, tier: Any, *, anthropic_hint: bool = False
) -> tuple[Usage, str | None, str | None] | None:
    """Read a bare usage object or dict: the usage, genai-prices' provider and flavour."""
    if _has(usage, "prompt_tokens"):
        return _openai_chat(usage, model, tier), "openai", "chat"
    if _is_gemini_meta(usage):
        return _gemini(usage, model, tier), None, None
    if _has(usage, "input_token_details") or _has(usage, "output_token_details"):
        return _langchain(usage, model, tier), None, None
    if _has(usage, "inputTokens"):
        return _bedrock_converse(usage, model, tier), None, None
    if _has(usage, "input_tokens"):
        if (
            anthropic_hint
            or _has(usage, "cache_read_input_tokens")
            or _has(usage, "cache_creation_input_tokens")
        ):
            return _anthropic(usage, model, tier), "anthropic", "default"
        # OpenAI Responses, or a details-free shape that reads the same either way.
        return _openai_responses(usage, model, tier), "openai", "responses"
    return None


def _unwrap(obj: object) -> tuple[object, str | None, bool]:
    """Open the envelopes around a response.

    Returns the response inside, the service tier the envelope implies, and
    whether an envelope was found empty (a failed batch request).
    """
    tier: str | None = None
    for _ in range(4):
        parse = getattr(obj, "parse", None)
        if callable(parse) and _has(obj, "http_response"):
            # `client.....with_raw_response.create(...)`: the parsed body.
            try:
                obj = parse()
            except Exception as error:
                raise ArgumentValueError(
                    "obj", obj, f"cannot parse this raw response: {type(error).__name__}: {error}"
                ) from error
            continue
        if _has(obj, "custom_id"):
            # An OpenAI Batch API output line or an Anthropic batch result.
            tier = "batch"
            result = _get(obj, "result")
            if result is not None:
                message = _get(result, "message")
                if message is None:
                    return obj, tier, True
                obj = message
                continue
            response = _get(obj, "response")
            body = _get(response, "body") if response is not None else None
            if body is None:
                return obj, tier, True
            obj = body
            continue
        kind = _get(obj, "type")
        if isinstance(kind, str) and kind.startswith("response.") and _has(obj, "response"):
            # A Responses stream event such as ResponseCompletedEvent.
            obj = _get(obj, "response")
            continue
        metadata = _get(obj, "metadata")
        if metadata is not None and _has(metadata, "usage") and not _has(obj, "usage"):
            # The metadata event that ends a Bedrock ConverseStream.
            obj = metadata
            continue
        break
    return obj, tier, False


def _reported_cost(obj: object) -> float | None:
    hidden = getattr(obj, "_hidden_params", None)
    if hidden is None and isinstance(obj, Mapping):
        hidden = obj.get("_hidden_params")
    cost = hidden.get("response_cost") if isinstance(hidden, Mapping) else None
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        return None
    return float(cost) if math.isfinite(cost) and cost >= 0 else None


def _read(obj: object, model: str | None) -> _Read | None:
    # The common shapes first: a response that carries its usage at the top.
    found = _read_response(obj, model, None, _reported_cost(obj))
    if found is not None:
        return found
    inner, batch_tier, empty = _unwrap(obj)
    if empty or inner is obj:
        return None
    return _read_response(inner, model, batch_tier, None)


def _read_response(
    inner: object, model: str | None, batch_tier: str | None, reported: float | None
) -> _Read | None:
    usage = _get(inner, "usage")
    if usage is not None:
        anthropic_hint = _get(inner, "type") == "message"
        tier = batch_tier or _get(inner, "service_tier")
        part = _read_usage_part(
            usage, _get(inner, "model") or model, tier, anthropic_hint=anthropic_hint
        )
        if part is None:
            return None
        read, provider, flavor = part
        raw = RawResponse(inner, provider, flavor) if provider and flavor else None
        return _Read(read, raw, reported)
    meta = _get(inner, "usage_metadata", "usageMetadata")
    if meta is not None:
        if _is_gemini_meta(meta):
            gemini = _gemini(
                meta, _get(inner, "model_version", "modelVersion") or model, batch_tier
            )
            return _Read(gemini, RawResponse(inner, "google", "default"), reported)
        if _has(meta, "input_tokens"):
            response_metadata = _get(inner, "response_metadata")
            name = (
                _get(response_metadata, "model_name", "model")
                if response_metadata is not None
                else None
            )
            tier = batch_tier or (
                _get(response_metadata, "service_tier") if response_metadata is not None else None
            )
            return _Read(_langchain(meta, name or model, tier), None, reported)
    if _has(inner, "prompt_eval_count") or _has(inner, "eval_count"):
        return _Read(_ollama(inner, _get(inner, "model") or model, batch_tier), None, reported)
    bare = _read_usage_part(inner, model, batch_tier)
    return None if bare is None else _Read(bare[0], None, reported)


# --- Making a usage consistent --------------------------------------------------------


_inconsistent_warned: set[tuple[str, str | None]] = set()
_inconsistent_lock = threading.Lock()


def _consistent(usage: Usage) -> Usage:
    """Correct counts whose parts exceed their totals; see docs/token-accounting.md.

    A part larger than its total means the provider counted it apart from
    the total (as Anthropic counts cached input, or some OpenAI-compatible
    servers count reasoning), so the part is added to the total: cache
    reads and writes to the input, reasoning to the output. A 1-hour cache
    write count larger than all cache writes raises the cache writes to it,
    and audio input larger than the input is cut to the input.
    """
    fixes: dict[str, int] = {}
    problems: list[str] = []
    cache_write = usage.cache_write_tokens
    if usage.cache_write_1h_tokens > cache_write:
        problems.append("1-hour cache writes above all cache writes")
        cache_write = fixes["cache_write_tokens"] = usage.cache_write_1h_tokens
    input_tokens = usage.input_tokens
    if usage.cache_read_tokens + cache_write > input_tokens:
        problems.append(
            f"cached input ({usage.cache_read_tokens + cache_write}) above input ({input_tokens}): "
            "the cached tokens were added to the input"
        )
        input_tokens = fixes["input_tokens"] = input_tokens + usage.cache_read_tokens + cache_write
    if usage.input_audio_tokens > input_tokens:
        problems.append("audio input above input: cut to the input")
        fixes["input_audio_tokens"] = input_tokens
    if usage.reasoning_tokens > usage.output_tokens:
        problems.append(
            f"reasoning ({usage.reasoning_tokens}) above output ({usage.output_tokens}): "
            "the reasoning was added to the output"
        )
        fixes["output_tokens"] = usage.output_tokens + usage.reasoning_tokens
    if not fixes:
        return usage
    for problem in problems:
        key = (problem.split(" (", 1)[0].split(":", 1)[0], usage.model)
        with _inconsistent_lock:
            if key in _inconsistent_warned:
                continue
            _inconsistent_warned.add(key)
        warn_at_caller(
            f"inconsistent usage from model {usage.model!r}: {problem} "
            "(warned once per kind and model)",
            InconsistentUsageWarning,
        )
    return replace(
        usage,
        input_tokens=fixes.get("input_tokens", usage.input_tokens),
        output_tokens=fixes.get("output_tokens", usage.output_tokens),
        cache_write_tokens=fixes.get("cache_write_tokens", usage.cache_write_tokens),
        input_audio_tokens=fixes.get("input_audio_tokens", usage.input_audio_tokens),
    )


def _describe(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


SUPPORTED_SHAPES = (
    "an OpenAI ChatCompletion or the last chunk of a stream made with "
    "stream_options={'include_usage': True} (also LiteLLM's ModelResponse, whose "
    "_hidden_params['response_cost'] is used as its cost)",
    "an OpenAI Responses Response, or a ResponseCompletedEvent from a stream",
    "an OpenAI Batch API output line (priced at the batch tier)",
    "an Anthropic Message, or a MessageBatchIndividualResponse (batch tier)",
    "a Google Gemini GenerateContentResponse",
    "a LangChain AIMessage with usage_metadata",
    "a Bedrock Converse response or ConverseStream metadata event (pass model=...)",
    "an Ollama native response (prompt_eval_count, eval_count)",
    "the `with_raw_response` wrapper of any of these (it is parsed)",
    "a plain dict of any of these shapes, or their bare `usage` part",
    "an agent_resume.Usage",
)


def usage_from(obj: object, *, prices: PriceTable | None = None, model: str | None = None) -> Usage:
    """Read the token usage of one LLM response and price it.

    Reads by duck typing and never imports an SDK, so it works with any
    version whose fields keep their names. The result counts one call, with
    ``input_tokens`` meaning all input (Anthropic's cache reads and writes
    are added to its ``input_tokens``) and ``output_tokens`` all output
    (Gemini's thoughts are added to its candidates). Counts that contradict
    each other (cache above input, reasoning above output) are corrected by
    the rule on the docs page, with one `InconsistentUsageWarning`.

    For a stream, pass the final object: the last chunk of an OpenAI stream
    made with ``stream_options={"include_usage": True}``, the
    ``response.completed`` event of a Responses stream, Anthropic's
    ``stream.get_final_message()``, or the last Gemini chunk.

    Pricing never raises: a price source that fails is skipped with a
    `PriceSourceWarning`, and a model no source knows costs ``None``.

    Args:
        obj: A response object or dict; see the supported shapes in the
            error message below. A `Usage` is returned as it is.
        prices: The price table; the built-in default table when ``None``.
        model: The model, for a response that does not name it (Bedrock
            Converse); ignored when the response names one.

    Returns:
        The usage, with ``cost_usd`` set when the model has a price and
        ``None`` otherwise (with one `UnknownModelWarning` per model).

    Raises:
        ArgumentTypeError: ``obj`` is none of the supported shapes, or
            ``model`` is not a string.
        ArgumentValueError: ``obj`` is a supported response that carries no
            usage, such as a stream chunk before the last or a failed batch
            request.
    """
    if isinstance(obj, Usage):
        return obj
    if model is not None and not isinstance(model, str):
        raise ArgumentTypeError(
            "model", model, f"`model` must be a str or None (got {type(model).__name__})"
        )
    found = _read(obj, model)
    if found is None:
        inner, _tier_found, empty = _unwrap(obj)
        if empty or any(
            _has(inner, name) and _get(inner, name) is None for name in ("usage", "usage_metadata")
        ):
            raise ArgumentValueError(
                "obj",
                obj,
                f"this {_describe(obj)} carries no usage (a failed batch request, or an "
                "OpenAI stream chunk before the last: pass the last chunk and create the "
                "stream with stream_options={'include_usage': True})",
            )
        shapes = "".join(f"\n  - {shape}" for shape in SUPPORTED_SHAPES)
        raise ArgumentTypeError(
            "obj",
            obj,
            f"usage_from() cannot read usage from an object of type {_describe(obj)}; it reads:{shapes}",
        )
    usage = _consistent(found.usage)
    raw = found.raw if usage is found.usage else None
    table = prices if prices is not None else default_prices()
    return table.price(usage, response=raw, reported_cost=found.reported_cost)


def text_and_tools(response: Any) -> tuple[str | None, list[ToolCall]]:
    """Read the model text and tool calls of an OpenAI-chat or Anthropic response, if it is one.

    Args:
        response: A response object or dict of any shape (or a `Usage`).

    Returns:
        The text (``None`` when the shape has none) and the tool calls.
    """
    choices = _get(response, "choices")
    if isinstance(choices, (list, tuple)) and choices:
        message = _get(choices[0], "message")
        if message is None:
            return None, []
        content = _get(message, "content")
        calls = []
        for call in _get(message, "tool_calls") or ():
            function = _get(call, "function")
            if function is not None:
                calls.append(ToolCall.of(str(_get(function, "name")), _get(function, "arguments")))
        return (content if isinstance(content, str) else None), calls
    content = _get(response, "content")
    if isinstance(content, (list, tuple)) and _get(response, "role") == "assistant":
        texts: list[str] = []
        calls = []
        for block in content:
            kind = _get(block, "type")
            if kind == "text":
                texts.append(str(_get(block, "text") or ""))
            elif kind == "tool_use":
                calls.append(ToolCall.of(str(_get(block, "name")), _get(block, "input")))
        # Tool calls alone are no text (as OpenAI's content=None), not an empty output.
        return ("".join(texts) if texts else None), calls
    return None, []
