"""The `Usage` value: tokens, calls and cost of LLM calls, added with ``+``.

Input tokens always mean *all* input tokens, cached ones included. OpenAI,
Gemini and LangChain already count them that way; Anthropic's
``input_tokens`` leaves out the cache reads and writes, so they are added in.
Output tokens always include reasoning (thinking) tokens, which are also
counted on their own in ``reasoning_tokens``. The per-provider rules are on
the docs page ``docs/token-accounting.md``; `usage_from`, which reads
them from SDK responses, is in `agent_resume._accounting._responses`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent_resume._accounting._prices import MIXED_MODEL
from agent_resume._errors import ArgumentTypeError, ArgumentValueError

__all__ = ["MIXED_MODEL", "Usage", "cost_sum"]

_COUNT_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "calls",
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "web_search_requests",
)
_TEXT_FIELDS = ("model", "service_tier", "priced_as", "price_source")

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
    "cache_write_1h_tokens": "cache_write_1h",
    "input_audio_tokens": "audio_in",
    "web_search_requests": "web_searches",
    "service_tier": "tier",
    "priced_as": "priced_as",
    "price_source": "price_source",
}


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
        cache_write_1h_tokens: The part of ``cache_write_tokens`` written
            with a 1-hour time to live (Anthropic), billed at its own price.
        input_audio_tokens: The part of ``input_tokens`` that is audio
            (Gemini, OpenAI audio models), billed at its own price.
        web_search_requests: Web searches the model ran (Anthropic's
            ``server_tool_use.web_search_requests``), billed per request.
        service_tier: The processing tier the provider reported or the
            shape implies (``"batch"`` for batch results, ``"flex"``,
            ``"priority"``, ``"default"``), ``None`` when not reported.
        priced_as: The name of the price entry the cost came from (a
            fine-tune's base model, a snapshot's family), ``None`` when not
            priced.
        price_source: Where the price came from: ``"own prices"``,
            ``"litellm"``, ``"genai-prices X.Y.Z"`` or ``"built-in DATE"``.

    Sums keep each text field when both sides agree and make it ``"mixed"``
    otherwise, as for ``model``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    calls: int = 0
    cost_usd: float | None = None
    model: str | None = None
    cache_write_1h_tokens: int = 0
    input_audio_tokens: int = 0
    web_search_requests: int = 0
    service_tier: str | None = None
    priced_as: str | None = None
    price_source: str | None = None

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
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ArgumentTypeError(
                    name, value, f"`{name}` must be a str or None (got {type(value).__name__})"
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
            else cost_sum(self.cost_usd + other.cost_usd)
        )
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            calls=self.calls + other.calls,
            cost_usd=cost,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            input_audio_tokens=self.input_audio_tokens + other.input_audio_tokens,
            web_search_requests=self.web_search_requests + other.web_search_requests,
            **{
                name: getattr(self, name)
                if getattr(self, name) == getattr(other, name)
                else MIXED_MODEL
                for name in _TEXT_FIELDS
            },
        )

    def __radd__(self, other: object) -> Usage:
        # Lets sum(usages) start from its default 0.
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def to_dict(self) -> dict[str, Any]:
        """Return the compact JSON form stored in a checkpoint record's ``usage`` field.

        Keys are ``in``, ``out``, ``cache_read``, ``cache_write``,
        ``reasoning``, ``calls``, ``cost``, ``model``, ``cache_write_1h``,
        ``audio_in``, ``web_searches``, ``tier``, ``priced_as`` and
        ``price_source``, in that order; a
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


def cost_sum(total: float) -> float | None:
    """A sum of costs, or ``None`` (unknown) when it overflowed a float.

    Each cost is finite, but two hand-damaged records of ``1e308`` sum to
    infinity, which is no cost: the total is then unknown, as for an
    unpriced call, and reading the job goes on.
    """
    return total if total != math.inf else None
