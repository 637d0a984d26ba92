"""Token and cost accounting: the `Usage` value and `usage_from`, which reads any common response.

Input tokens always mean *all* input tokens, cached ones included. OpenAI,
Gemini and LangChain already count them that way; Anthropic's
``input_tokens`` leaves out the cache reads and writes, so they are added in.
Output tokens always include reasoning (thinking) tokens, which are also
counted on their own in ``reasoning_tokens``. The per-provider rules are on
the docs page ``docs/token-accounting.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_resume._accounting._prices import PriceTable, default_prices
from agent_resume._errors import ArgumentTypeError, ArgumentValueError

__all__ = ["MIXED_MODEL", "Usage", "usage_from"]

MIXED_MODEL = "mixed"
"""The model of a sum of usages whose models differ."""

_COUNT_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "calls",
)

# Field name -> key in the compact checkpoint form, in output order.
_DICT_KEYS = {
    "input_tokens": "in",
    "output_tokens": "out",
    "cache_read_tokens": "cache_read",
    "cache_write_tokens": "cache_write",
    "reasoning_tokens": "reasoning",
    "calls": "calls",
    "cost_usd": "cost",
    "model": "model",
}

SUPPORTED_SHAPES = (
    "an OpenAI ChatCompletion or the last chunk of a stream made with "
    "stream_options={'include_usage': True} (also LiteLLM's ModelResponse)",
    "an OpenAI Responses Response",
    "an Anthropic Message",
    "a Google Gemini GenerateContentResponse",
    "a LangChain AIMessage with usage_metadata",
    "a plain dict of any of these shapes, or their bare `usage` part",
    "an agent_resume.Usage",
)


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Tokens, calls and cost of one or more LLM calls; add them with ``+``.

    ``input_tokens`` counts all input, cached tokens included, and
    ``output_tokens`` all output, reasoning included: ``cache_read_tokens``,
    ``cache_write_tokens`` and ``reasoning_tokens`` are parts of those totals,
    never additions to them.

    Adding two usages adds every count. Costs add when both are known; a
    known cost plus an unknown one (``None``) is unknown, so a total never
    hides a call that could not be priced. The empty ``Usage()`` is the
    identity: ``Usage() + u == u`` and ``u + Usage() == u`` for every ``u``,
    so ``sum(usages, Usage())`` (and plain ``sum(usages)``) works. The model
    is kept when both sides name the same one, and becomes
    ``MIXED_MODEL`` (``"mixed"``) otherwise.

    Attributes:
        input_tokens: All input (prompt) tokens, cached ones included.
        output_tokens: All output tokens, reasoning included.
        cache_read_tokens: Input tokens read from the provider's prompt cache.
        cache_write_tokens: Input tokens written to the prompt cache.
        reasoning_tokens: Output tokens spent on reasoning or thinking.
        calls: The number of LLM calls counted.
        cost_usd: The cost in US dollars, or ``None`` when unknown.
        model: The model name as the provider reported it, ``None`` when not
            reported, ``"mixed"`` for a sum over different models.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    calls: int = 0
    cost_usd: float | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ArgumentTypeError(
                    name, value, f"`{name}` must be an int (got {type(value).__name__})"
                )
            if value < 0:
                raise ArgumentValueError(name, value, f"`{name}` must be at least 0 (got {value})")
        cost = self.cost_usd
        if cost is not None:
            if isinstance(cost, bool) or not isinstance(cost, (int, float)):
                raise ArgumentTypeError(
                    "cost_usd",
                    cost,
                    f"`cost_usd` must be a float or None (got {type(cost).__name__})",
                )
            if not math.isfinite(cost) or cost < 0:
                raise ArgumentValueError(
                    "cost_usd", cost, f"`cost_usd` must be finite and at least 0 (got {cost})"
                )
            object.__setattr__(self, "cost_usd", float(cost))
        if self.model is not None and not isinstance(self.model, str):
            raise ArgumentTypeError(
                "model",
                self.model,
                f"`model` must be a str or None (got {type(self.model).__name__})",
            )

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def is_empty(self) -> bool:
        """Whether this is the empty ``Usage()``, the identity of ``+``."""
        return self == _EMPTY

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        if self.is_empty():
            return other
        if other.is_empty():
            return self
        cost = (
            None
            if self.cost_usd is None or other.cost_usd is None
            else self.cost_usd + other.cost_usd
        )
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            calls=self.calls + other.calls,
            cost_usd=cost,
            model=self.model if self.model == other.model else MIXED_MODEL,
        )

    def __radd__(self, other: object) -> Usage:
        # Lets sum(usages) start from its default 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def to_dict(self) -> dict[str, Any]:
        """Return the compact JSON form stored in a checkpoint record's ``usage`` field.

        Keys are ``in``, ``out``, ``cache_read``, ``cache_write``,
        ``reasoning``, ``calls``, ``cost`` and ``model``, in that order; a
        field at its default (0 or ``None``) is left out, so ``Usage()`` is
        ``{}``. A known cost of 0.0 is kept, since it differs from unknown.
        ``Usage.from_dict(u.to_dict()) == u`` for every ``u``.
        """
        out: dict[str, Any] = {}
        for name, key in _DICT_KEYS.items():
            value = getattr(self, name)
            if value is None or (name in _COUNT_FIELDS and value == 0):
                continue
            out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Read the compact form written by `to_dict`.

        Unknown keys are ignored, so a newer writer's extra fields do not
        stop an older reader.

        Args:
            data: The mapping, as read from JSON.

        Returns:
            The usage it describes.

        Raises:
            ArgumentTypeError: ``data`` is not a mapping, or a value has the
                wrong type.
            ArgumentValueError: A count or the cost is negative.
        """
        if not isinstance(data, Mapping):
            raise ArgumentTypeError(
                "data", data, f"usage data must be a mapping (got {type(data).__name__})"
            )
        kwargs = {name: data[key] for name, key in _DICT_KEYS.items() if key in data}
        return cls(**kwargs)


_EMPTY = Usage()


def _get(obj: object, *names: str) -> Any:
    """Read the first of ``names`` that is present and not None, from a mapping or an object."""
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _has(obj: object, name: str) -> bool:
    return name in obj if isinstance(obj, Mapping) else hasattr(obj, name)


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


def _openai_chat(usage: object, model: Any) -> Usage:
    return Usage(
        input_tokens=_count(usage, "prompt_tokens"),
        output_tokens=_count(usage, "completion_tokens"),
        cache_read_tokens=_count(usage, "prompt_tokens_details", "cached_tokens"),
        # LiteLLM reports Anthropic cache writes at the top level.
        cache_write_tokens=_count(usage, "prompt_tokens_details", "cache_write_tokens")
        or _count(usage, "cache_creation_input_tokens"),
        reasoning_tokens=_count(usage, "completion_tokens_details", "reasoning_tokens"),
        calls=1,
        model=_model(model),
    )


def _openai_responses(usage: object, model: Any) -> Usage:
    return Usage(
        input_tokens=_count(usage, "input_tokens"),
        output_tokens=_count(usage, "output_tokens"),
        cache_read_tokens=_count(usage, "input_tokens_details", "cached_tokens"),
        cache_write_tokens=_count(usage, "input_tokens_details", "cache_write_tokens"),
        reasoning_tokens=_count(usage, "output_tokens_details", "reasoning_tokens"),
        calls=1,
        model=_model(model),
    )


def _anthropic(usage: object, model: Any) -> Usage:
    cache_write = _count(usage, "cache_creation_input_tokens")
    cache_read = _count(usage, "cache_read_input_tokens")
    return Usage(
        # Anthropic's input_tokens leaves out the cached part: add it back.
        input_tokens=_count(usage, "input_tokens") + cache_write + cache_read,
        output_tokens=_count(usage, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_count(usage, "output_tokens_details", "thinking_tokens"),
        calls=1,
        model=_model(model),
    )


def _gemini(meta: object, model: Any) -> Usage:
    thoughts = _count(meta, "thoughts_token_count|thoughtsTokenCount")
    return Usage(
        input_tokens=_count(meta, "prompt_token_count|promptTokenCount")
        + _count(meta, "tool_use_prompt_token_count|toolUsePromptTokenCount"),
        # Gemini counts thoughts apart from the candidates; both are billed as output.
        output_tokens=_count(meta, "candidates_token_count|candidatesTokenCount") + thoughts,
        cache_read_tokens=_count(meta, "cached_content_token_count|cachedContentTokenCount"),
        reasoning_tokens=thoughts,
        calls=1,
        model=_model(model),
    )


def _langchain(meta: object, model: Any) -> Usage:
    return Usage(
        input_tokens=_count(meta, "input_tokens"),
        output_tokens=_count(meta, "output_tokens"),
        cache_read_tokens=_count(meta, "input_token_details", "cache_read"),
        cache_write_tokens=_count(meta, "input_token_details", "cache_creation"),
        reasoning_tokens=_count(meta, "output_token_details", "reasoning"),
        calls=1,
        model=_model(model),
    )


def _model(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_gemini_meta(obj: object) -> bool:
    return any(
        _has(obj, name)
        for name in ("prompt_token_count", "promptTokenCount", "candidates_token_count")
    )


def _read_usage_part(usage: object, model: Any, *, anthropic_hint: bool = False) -> Usage | None:
    """Read a bare usage object or dict, guessing its provider from its fields."""
    if _has(usage, "prompt_tokens"):
        return _openai_chat(usage, model)
    if _is_gemini_meta(usage):
        return _gemini(usage, model)
    if _has(usage, "input_token_details") or _has(usage, "output_token_details"):
        return _langchain(usage, model)
    if _has(usage, "input_tokens"):
        if (
            anthropic_hint
            or _has(usage, "cache_read_input_tokens")
            or _has(usage, "cache_creation_input_tokens")
        ):
            return _anthropic(usage, model)
        # OpenAI Responses, or a details-free shape that reads the same either way.
        return _openai_responses(usage, model)
    return None


def _read(obj: object) -> Usage | None:
    meta = _get(obj, "usage_metadata", "usageMetadata")
    if meta is not None:
        if _is_gemini_meta(meta):
            return _gemini(meta, _get(obj, "model_version", "modelVersion"))
        if _has(meta, "input_tokens"):
            response_metadata = _get(obj, "response_metadata")
            name = (
                _get(response_metadata, "model_name", "model")
                if response_metadata is not None
                else None
            )
            return _langchain(meta, name)
    usage = _get(obj, "usage")
    if usage is not None:
        anthropic_hint = _get(obj, "type") == "message"
        return _read_usage_part(usage, _get(obj, "model"), anthropic_hint=anthropic_hint)
    return _read_usage_part(obj, None)


def _describe(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def usage_from(obj: object, *, prices: PriceTable | None = None) -> Usage:
    """Read the token usage of one LLM response and price it.

    Reads by duck typing and never imports an SDK, so it works with any
    version whose fields keep their names. The result counts one call, with
    ``input_tokens`` meaning all input (Anthropic's cache reads and writes
    are added to its ``input_tokens``) and ``output_tokens`` all output
    (Gemini's thoughts are added to its candidates).

    For a stream, pass the final object: the last chunk of an OpenAI stream
    made with ``stream_options={"include_usage": True}``, Anthropic's
    ``stream.get_final_message()``, or the last Gemini chunk.

    Args:
        obj: A response object or dict; see the supported shapes in the
            error message below. A `Usage` is returned as it is.
        prices: The price table; the built-in default table when ``None``.

    Returns:
        The usage, with ``cost_usd`` set when the model has a price and
        ``None`` otherwise (with one `UnknownModelWarning` per model).

    Raises:
        ArgumentTypeError: ``obj`` is none of the supported shapes.
        ArgumentValueError: ``obj`` is a supported response that carries no
            usage, such as a stream chunk before the last.
    """
    if isinstance(obj, Usage):
        return obj
    usage = _read(obj)
    if usage is None:
        if any(_has(obj, name) and _get(obj, name) is None for name in ("usage", "usage_metadata")):
            raise ArgumentValueError(
                "obj",
                obj,
                f"this {_describe(obj)} carries no usage; for an OpenAI stream, pass its "
                "last chunk and create it with stream_options={'include_usage': True}",
            )
        shapes = "".join(f"\n  - {shape}" for shape in SUPPORTED_SHAPES)
        raise ArgumentTypeError(
            "obj", obj, f"usage_from() cannot read usage from a {_describe(obj)}; it reads:{shapes}"
        )
    table = prices if prices is not None else default_prices()
    return table.price(usage)
