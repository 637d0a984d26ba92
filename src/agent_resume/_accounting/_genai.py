"""Prices from the genai-prices package (the ``prices`` extra), read from the whole response.

When the raw response is known and its provider and API flavour are known
from its shape, genai-prices extracts the usage itself (1-hour cache
writes, web searches, audio tokens, context tiers) and prices it with the
service tier as its price context. When that is not possible (a LangChain
message, a plain `Usage`, a model it matches only under another provider),
agent-resume's own counts are given to it instead. Nothing here raises:
a failure of the package is one warning, and the next source is asked.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent_resume._accounting._model_names import ModelRef
from agent_resume._caller import warn_at_caller
from agent_resume._errors import PriceSourceWarning

if TYPE_CHECKING:
    from agent_resume._accounting._usage import Usage

__all__ = ["Quote", "RawResponse", "genai_prices_version", "genai_quote"]


@dataclass(frozen=True)
class RawResponse:
    """A response whose shape told its provider and API flavour (genai-prices' names).

    Attributes:
        obj: The response object or dict.
        provider: ``openai``, ``anthropic``, ``google``, ...
        flavor: ``chat``, ``responses``, ``default``, ...
    """

    obj: object
    provider: str
    flavor: str


@dataclass(frozen=True)
class Quote:
    """A cost and where it came from.

    Attributes:
        cost: USD.
        priced_as: The name of the price entry used.
        source: The price source, such as ``genai-prices 0.2.3``.
    """

    cost: float
    priced_as: str
    source: str


def _module() -> Any:
    try:
        import genai_prices  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return genai_prices


def genai_prices_version() -> str | None:
    """The installed genai-prices version, or ``None`` when it is not installed."""
    module = _module()
    if module is None:
        return None
    return str(getattr(module, "__version__", "?"))


def _context(usage: Usage) -> dict[str, str] | None:
    tier = usage.service_tier
    if tier is None:
        return None
    tier = tier.lower()
    if tier == "batch":
        return {"processing": "batch", "service_tier": "batch"}
    return {"service_tier": tier}


def _as_json(obj: object) -> Any:
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=True, exclude_none=True)
    return None


_COUNTS = (
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_tokens", "cache_read_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("cache_write_1h_tokens", "cache_write_1h_tokens"),
    ("input_audio_tokens", "input_audio_tokens"),
    ("reasoning_tokens", "output_reasoning_tokens"),
    ("web_search_requests", "web_searches"),
)

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_once(model: str, error: BaseException) -> None:
    key = (model, type(error).__name__)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warn_at_caller(
        f"genai-prices failed to price model {model!r} ({type(error).__name__}: {error}); "
        "the next price source is used",
        PriceSourceWarning,
    )


def genai_quote(usage: Usage, ref: ModelRef, raw: RawResponse | None) -> Quote | None:
    """Price ``usage`` with genai-prices, or ``None`` when absent or the model is unknown.

    Args:
        usage: The usage, already read and made consistent.
        ref: Its model name, parsed.
        raw: The response it was read from, when its shape is known.

    Returns:
        The quote, or ``None``.
    """
    module = _module()
    if module is None:
        return None
    source = f"genai-prices {genai_prices_version()}"
    context = _context(usage)
    if raw is not None and not ref.fine_tune:
        try:
            data = _as_json(raw.obj)
            if data is not None:
                extracted = module.extract_usage(
                    data, provider_id=raw.provider, api_flavor=raw.flavor
                )
                if extracted.model is not None:
                    result = extracted.calc_price(price_context=context)
                    return Quote(float(result.total_price), str(result.model.id), source)
        except (LookupError, ValueError, TypeError, AttributeError):
            pass  # priced from our counts below
        except Exception as error:  # never let a pricing source break accounting
            _warn_once(ref.raw, error)
    counts = {theirs: getattr(usage, ours) for ours, theirs in _COUNTS if getattr(usage, ours)}
    # A fine-tune by its own name only (genai-prices knows some at their
    # fine-tuned rate): its base model's rate is the built-in table's
    # estimate, after the built-in fine-tuned rates.
    attempts: list[tuple[str, str | None]] = (
        [(ref.raw, "openai")] if ref.fine_tune else [(ref.raw, ref.provider), (ref.name, None)]
    )
    for name, provider in attempts:
        try:
            result = module.calc_price(
                module.Usage(**counts), name, provider_id=provider, price_context=context
            )
        except LookupError:
            continue
        except Exception as error:  # never let a pricing source break accounting
            _warn_once(ref.raw, error)
            return None
        return Quote(float(result.total_price), str(result.model.id), source)
    return None
