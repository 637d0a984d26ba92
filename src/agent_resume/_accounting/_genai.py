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
from collections.abc import Callable, Mapping
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


# The tiers every provider that offers them bills at half the token rates.
# genai-prices lacks them for some models (0.2.3: Claude Sonnet 4, Opus 4
# and the 3.x models, gpt-5.3, o1-mini, several Gemini models) and then quotes
# the standard rate, twice the bill of a batch job.
_HALF_RATE_TIERS = frozenset({"batch", "flex"})

# (model, provider, tier) -> whether genai-prices has a rate of its own for it.
_knows_tier: dict[tuple[str, str, str], bool] = {}


def _has_tier_rate(module: Any, model: str, provider: str, usage: Usage) -> bool:
    """Whether genai-prices rates ``model``'s tokens differently at ``usage``'s tier.

    Asked with a fixed probe (a million input and a million output tokens),
    never with the call's own counts: a call whose tokens all sit at a rate the
    tier leaves alone (cache reads, in genai-prices' batch entries) would
    otherwise look like a model without a rate for the tier, and every later
    call would be halved twice.
    """
    key = (model, provider, (usage.service_tier or "").lower())
    knows = _knows_tier.get(key)
    if knows is None:
        probe = module.Usage(input_tokens=1_000_000, output_tokens=1_000_000)

        def rate(ctx: dict[str, str] | None) -> float:
            found = module.calc_price(probe, model, provider_id=provider, price_context=ctx)
            return float(found.total_price)

        knows = _knows_tier[key] = rate(_context(usage)) != rate(None)
    return knows


def _total(calc: Callable[[dict[str, str] | None], Any], usage: Usage) -> tuple[float, str]:
    """The cost genai-prices gives at ``usage``'s tier, at half rate where it has no rate for it.

    Args:
        calc: Prices the call with a price context (``None`` for the standard tier).
        usage: The call, for its service tier.

    Returns:
        The cost and the price entry's name.
    """
    result = calc(_context(usage))
    cost = float(result.total_price)
    tier = (usage.service_tier or "").lower()
    if tier in _HALF_RATE_TIERS and not _has_tier_rate(
        _module(), str(result.model.id), str(result.provider.id), usage
    ):
        # Half the token rates; per-request fees (web searches) are not discounted.
        tokens = float(result.input_price) + float(result.output_price)
        cost = tokens * 0.5 + (cost - tokens)
    return cost, str(result.model.id)


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
    if raw is not None and not ref.fine_tune:
        try:
            data = _as_json(raw.obj)
            if data is not None:
                extracted = module.extract_usage(
                    data, provider_id=raw.provider, api_flavor=raw.flavor
                )
                if extracted.model is not None:
                    cost, name = _total(lambda ctx: extracted.calc_price(price_context=ctx), usage)
                    return Quote(cost, name, source)
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

        def calc(
            ctx: dict[str, str] | None, name: str = name, provider: str | None = provider
        ) -> Any:
            return module.calc_price(
                module.Usage(**counts), name, provider_id=provider, price_context=ctx
            )

        try:
            cost, priced_as = _total(calc, usage)
        except LookupError:
            continue
        except Exception as error:  # never let a pricing source break accounting
            _warn_once(ref.raw, error)
            return None
        return Quote(cost, priced_as, source)
    return None
