"""Prices per million tokens, a small dated built-in table, user overrides and genai-prices.

The cost of a call is::

    (input - cache_read - cache_write) * input_price
    + cache_read * cache_read_price
    + cache_write * cache_write_price
    + output * output_price

all over one million. Cached tokens are part of the input count (see
`agent_resume.Usage`), so they are billed once, at their own price, never on
top of the input price. Reasoning tokens are part of the output count and
billed at the output price, as every provider here bills them; they are not
added again.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_resume._accounting._genai import Quote, RawResponse, genai_prices_version, genai_quote
from agent_resume._accounting._model_names import ModelRef, parse_model
from agent_resume._accounting._price_data import BUILTIN, CHECKED
from agent_resume._caller import warn_at_caller
from agent_resume._errors import ArgumentTypeError, ArgumentValueError, UnknownModelWarning

if TYPE_CHECKING:
    from agent_resume._accounting._usage import Usage

__all__ = [
    "SERVICE_TIER_MULTIPLIERS",
    "ModelPrice",
    "PriceTable",
    "UnknownModelWarning",
    "default_prices",
    "tier_multiplier",
]

MIXED_MODEL = "mixed"

_MILLION = 1_000_000


_TOKEN_PRICES = (
    "input",
    "output",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "input_audio",
    "web_search",
    "long_input",
    "long_output",
    "long_cache_read",
    "long_cache_write",
    "long_cache_write_1h",
    "priority_input",
    "priority_output",
    "priority_cache_read",
)
_PRICE_KEYS = (*_TOKEN_PRICES, "long_context_threshold", "source", "date")

SERVICE_TIER_MULTIPLIERS: Mapping[str, float] = {"batch": 0.5, "flex": 0.5, "priority": 2.0}
"""What a service tier multiplies token prices by in the built-in and your own prices.

Any other tier (``default``, ``standard``, ``auto``, ``on_demand``, none)
pays the listed price. Per-request fees (web search) are not multiplied. A
price with ``priority_*`` prices of its own uses them for the priority tier
instead of the multiplier (OpenAI's priority rates are 1.67 to 2 times the
standard ones, by model).
"""


def tier_multiplier(service_tier: str | None) -> float:
    """The factor `SERVICE_TIER_MULTIPLIERS` gives ``service_tier`` (1.0 for any other)."""
    if service_tier is None:
        return 1.0
    return SERVICE_TIER_MULTIPLIERS.get(service_tier.lower(), 1.0)


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """The prices of one model, in US dollars per million tokens.

    Attributes:
        input: Price of uncached input tokens.
        output: Price of output tokens, reasoning included.
        cache_read: Price of input tokens read from the cache; ``None`` bills
            them at the input price.
        cache_write: Price of input tokens written to the cache (Anthropic's
            5-minute write); ``None`` bills them at the input price (OpenAI
            and Gemini charge nothing extra to write).
        cache_write_1h: Price of 1-hour cache writes; ``None`` bills them as
            ``cache_write``.
        input_audio: Price of audio input tokens; ``None`` bills them at the
            input price.
        web_search: Price of 1,000 web searches (a per-request fee, not per
            token); ``None`` charges nothing for them.
        long_context_threshold: Input tokens above which a request is billed
            at the ``long_*`` prices (200,000 for Gemini 2.5 Pro and Claude
            Sonnet 4.5); ``None`` when the model has one tier.
        long_input: ``input`` above the threshold; ``None`` keeps ``input``.
        long_output: ``output`` above the threshold.
        long_cache_read: ``cache_read`` above the threshold.
        long_cache_write: ``cache_write`` above the threshold.
        long_cache_write_1h: ``cache_write_1h`` above the threshold.
        priority_input: ``input`` of the priority tier (OpenAI's priority
            processing); with ``priority_output`` it replaces the tier's
            multiplier (x2) for a call below the context threshold.
        priority_output: ``output`` of the priority tier.
        priority_cache_read: ``cache_read`` of the priority tier; ``None``
            bills cache reads at ``priority_input``.
        source: Where the prices come from, usually the provider's page.
        date: When they were taken from the source, as ``YYYY-MM-DD``.
    """

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    input_audio: float | None = None
    web_search: float | None = None
    long_context_threshold: int | None = None
    long_input: float | None = None
    long_output: float | None = None
    long_cache_read: float | None = None
    long_cache_write: float | None = None
    long_cache_write_1h: float | None = None
    priority_input: float | None = None
    priority_output: float | None = None
    priority_cache_read: float | None = None
    source: str = ""
    date: str = ""

    def __post_init__(self) -> None:
        for name in _TOKEN_PRICES:
            value = getattr(self, name)
            if value is None and name not in ("input", "output"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ArgumentTypeError(
                    name, value, f"price `{name}` must be a number (got {type(value).__name__})"
                )
            if not math.isfinite(value) or value < 0:
                raise ArgumentValueError(
                    name, value, f"price `{name}` must be finite and at least 0 (got {value})"
                )
            object.__setattr__(self, name, float(value))
        threshold = self.long_context_threshold
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1
        ):
            raise ArgumentValueError(
                "long_context_threshold",
                threshold,
                f"`long_context_threshold` must be a positive int or None (got {threshold!r})",
            )
        tiered = [
            name
            for name in _TOKEN_PRICES
            if name.startswith("long_") and getattr(self, name) is not None
        ]
        if tiered and threshold is None:
            raise ArgumentValueError(
                "long_context_threshold",
                threshold,
                f"{tiered} need `long_context_threshold` (the input tokens above which they apply)",
            )
        if (self.priority_input is None) != (self.priority_output is None) or (
            self.priority_cache_read is not None and self.priority_input is None
        ):
            raise ArgumentValueError(
                "priority_input",
                self.priority_input,
                "the priority tier needs both `priority_input` and `priority_output` "
                f"(got {self.priority_input!r} and {self.priority_output!r})",
            )
        for name in ("source", "date"):
            if not isinstance(getattr(self, name), str):
                raise ArgumentTypeError(name, getattr(self, name), f"`{name}` must be a str")

    @classmethod
    def from_dict(cls, data: ModelPrice | Mapping[str, Any], *, model: str = "?") -> ModelPrice:
        """Build a price from ``{"input": ..., "output": ..., "cache_read": ..., ...}``.

        Args:
            data: A `ModelPrice` (returned as it is) or a mapping: ``input``
                and ``output`` are required; the other fields of `ModelPrice`
                are optional.
            model: The model's name, for error messages.

        Returns:
            The price.

        Raises:
            ArgumentTypeError: ``data`` is not a mapping or a value has the
                wrong type.
            ArgumentValueError: A key is unknown or missing, or a price is
                negative.
        """
        if isinstance(data, ModelPrice):
            return data
        if not isinstance(data, Mapping):
            raise ArgumentTypeError(
                "prices", data, f"the price of {model!r} must be a mapping (got {data!r})"
            )
        unknown = sorted(set(data) - set(_PRICE_KEYS))
        if unknown:
            nested = [key for key in unknown if isinstance(data[key], Mapping)]
            hint = (
                f" (a TOML table named [{model}.{nested[0]}] is read as {nested[0]!r} inside "
                f'{model!r}: quote a model name that holds a dot, ["{model}.{nested[0]}"])'
                if nested
                else ""
            )
            raise ArgumentValueError(
                "prices",
                data,
                f"unknown price key(s) {unknown} for {model!r}; the keys are "
                f"{list(_PRICE_KEYS)}{hint}",
            )
        missing = [key for key in ("input", "output") if key not in data]
        if missing:
            raise ArgumentValueError(
                "prices", data, f"the price of {model!r} needs {missing} (per million tokens)"
            )
        return cls(**data)

    def is_long(self, usage: Usage) -> bool:
        """Whether ``usage`` is above the long-context threshold (its ``long_*`` prices apply)."""
        threshold = self.long_context_threshold
        return threshold is not None and usage.input_tokens > threshold

    def cost(self, usage: Usage) -> float:
        """The cost in US dollars of ``usage`` at these prices.

        Tokens are billed once each, at their own price: uncached input,
        cache reads, 5-minute and 1-hour cache writes, audio input, output.
        A request whose input is above ``long_context_threshold`` pays the
        ``long_*`` prices for all its tokens; the service tier multiplies the
        token prices (`SERVICE_TIER_MULTIPLIERS`), except that a priority
        call pays the ``priority_*`` prices where they are given (above the
        context tier: the ``long_*`` prices times ``priority_input / input``);
        web searches are added at ``web_search`` per 1,000.

        Args:
            usage: The tokens to price; its model and cost are ignored.

        Returns:
            The cost, never double-counting cached tokens.
        """
        long = self.is_long(usage)
        multiplier = tier_multiplier(usage.service_tier)

        def pick(base: float | None, above: float | None) -> float | None:
            return above if long and above is not None else base

        input_price = pick(self.input, self.long_input) or 0.0
        output_price = pick(self.output, self.long_output) or 0.0
        read_price = pick(self.cache_read, self.long_cache_read)
        if self.priority_input is not None and (usage.service_tier or "").lower() == "priority":
            if long:
                # Above the context tier: its prices, scaled as the tier scales input.
                multiplier = self.priority_input / self.input if self.input else 1.0
            else:
                # The tier's own rates, not the multiplier (cache writes are OpenAI's: none).
                input_price, multiplier = self.priority_input, 1.0
                output_price = self.priority_output or 0.0
                read_price = self.priority_cache_read
        write_price = pick(self.cache_write, self.long_cache_write)
        write_1h_price = pick(self.cache_write_1h, self.long_cache_write_1h)
        read_price = input_price if read_price is None else read_price
        write_price = input_price if write_price is None else write_price
        write_1h_price = write_price if write_1h_price is None else write_1h_price
        audio_price = input_price if self.input_audio is None else self.input_audio

        cached = usage.cache_read_tokens + usage.cache_write_tokens
        write_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        audio = min(usage.input_audio_tokens, max(usage.input_tokens - cached, 0))
        uncached = max(usage.input_tokens - cached - audio, 0)
        tokens = (
            uncached * input_price
            + usage.cache_read_tokens * read_price
            + (usage.cache_write_tokens - write_1h) * write_price
            + write_1h * write_1h_price
            + audio * audio_price
            + usage.output_tokens * output_price
        )
        fees = usage.web_search_requests * (self.web_search or 0.0) / 1_000
        return tokens / _MILLION * multiplier + fees


# A dated name such as gpt-4o-2024-08-06, claude-3-5-sonnet-20241022,
# gemini-2.0-flash-001, gpt-3.5-turbo-0125, gemini-2.5-flash-preview-05-20 or
# claude-3-5-sonnet-v2@20241022 is priced as its family when what follows the
# family's name is only such suffixes and the table has no entry of its own for it.
_SNAPSHOT_SUFFIX = re.compile(
    r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{3,4}|-latest|-preview(?:-\d{2}-\d{2}(?:-\d{4})?|-\d{2}-\d{4})?"
    r"|-v\d+(?::\d+)?|@\d{8}|@latest)+"
)


def _load_builtin() -> dict[str, ModelPrice]:
    return {name: ModelPrice(**kwargs) for name, kwargs in BUILTIN.items()}


class PriceTable:
    """Model prices: your own first, then genai-prices, then the built-in table.

    A call is priced by the first of these sources that knows its model:

    1. your ``prices``: the entry whose name equals the model's, else the
       longest entry followed in it by a snapshot suffix only (a date,
       ``-latest``, ``-001``, ``-preview-05-20``, ``@20241022``);
    2. the cost LiteLLM reported with the response
       (``_hidden_params["response_cost"]``), when there is one;
    3. genai-prices (the ``prices`` extra), when installed and
       ``genai_prices`` is true, from the whole response where its shape is
       known (context tiers, 1-hour cache writes, service tiers, web
       searches as it computes them);
    4. the built-in table, by the same name rule as your prices. An exact
       entry (``gpt-4o-2024-05-13``, ``gemini-2.5-flash-preview-05-20``)
       wins over its family.

    Model names are read as `agent_resume._model_names` describes: Bedrock
    and Vertex IDs, ``vendor/model`` and ``ft:`` fine-tunes. A fine-tune is
    priced at its fine-tuned rate where a source has one (your entry under
    its full name or ``ft:BASE``, genai-prices, the built-in ``ft:`` entries),
    else at its base model's rate, an estimate (``priced_as`` names the entry
    used). A model found nowhere costs
    ``None``, with one `UnknownModelWarning` per model per table.

    Tables are immutable apart from the record of models already warned
    about; build a new one with `with_prices`.

    Args:
        prices: Your prices, model name to a `ModelPrice` or a mapping of
            its fields (``input`` and ``output`` required, USD per million
            tokens).
        builtin: Whether to include the built-in table.
        genai_prices: Whether to consult genai-prices, when installed, for
            models the table lacks.
        fallback: A price for models no source knows (a `ModelPrice` or a
            mapping of its fields): their calls are priced with it as an
            estimate, ``price_source="fallback"`` and ``priced_as=None``,
            and no `UnknownModelWarning` is given. ``None`` leaves their
            cost unknown.

    Attributes:
        fallback: The fallback price, or ``None``.
    """

    def __init__(
        self,
        prices: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        *,
        builtin: bool = True,
        genai_prices: bool = True,
        fallback: ModelPrice | Mapping[str, Any] | None = None,
    ) -> None:
        if prices is not None and not isinstance(prices, Mapping):
            raise ArgumentTypeError(
                "prices", prices, f"`prices` must be a mapping (got {type(prices).__name__})"
            )
        own: dict[str, ModelPrice] = {}
        for name, price in (prices or {}).items():
            if not isinstance(name, str) or not name.strip():
                raise ArgumentValueError(
                    "prices", name, f"model names must be strings (got {name!r})"
                )
            own[name.strip().lower()] = ModelPrice.from_dict(price, model=name)
        self._own = _Entries(own)
        self._builtin = builtin
        self._genai_prices = genai_prices
        self._base = _Entries(_load_builtin() if builtin else {})
        self._table = {**self._base, **own}
        self._warned: set[str | None] = set()
        self._lock = threading.Lock()
        if fallback is not None and not isinstance(fallback, (ModelPrice, Mapping)):
            raise ArgumentTypeError(
                "fallback",
                fallback,
                f"`fallback` must be a ModelPrice, a mapping or None (got {type(fallback).__name__})",
            )
        self.fallback = (
            None if fallback is None else ModelPrice.from_dict(fallback, model="fallback")
        )

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, builtin: bool = True, genai_prices: bool = True
    ) -> PriceTable:
        """Read prices from a JSON or TOML file of ``model -> {input, output, ...}``.

        TOML needs Python 3.11 or later (``tomllib``), or the ``tomli``
        package on 3.10; JSON works everywhere.

        Args:
            path: A ``.json`` or ``.toml`` file.
            builtin: Whether to include the built-in table.
            genai_prices: Whether to consult genai-prices when installed.

        Returns:
            The table.

        Raises:
            ArgumentValueError: The file has another suffix, cannot be parsed,
                or holds a bad price.
        """
        file = Path(path).expanduser()
        suffix = file.suffix.lower()
        try:
            if suffix == ".json":
                data = json.loads(file.read_text(encoding="utf-8-sig"))
            elif suffix == ".toml":
                data = _read_toml(file)
            else:
                raise ArgumentValueError(
                    "path", path, f"price files must end in .json or .toml (got {file.name!r})"
                )
        except (ValueError, UnicodeDecodeError) as error:
            if isinstance(error, ArgumentValueError):
                raise
            raise ArgumentValueError(
                "path", path, f"{file}: cannot parse prices: {error}"
            ) from error
        if not isinstance(data, Mapping):
            raise ArgumentValueError("path", path, f"{file}: expected a table of models")
        return cls(data, builtin=builtin, genai_prices=genai_prices)

    def with_prices(self, prices: Mapping[str, ModelPrice | Mapping[str, Any]]) -> PriceTable:
        """Return a new table with ``prices`` added over this table's own.

        Args:
            prices: More prices, as for the constructor.

        Returns:
            The new table.
        """
        merged: dict[str, ModelPrice | Mapping[str, Any]] = {**self._own, **prices}
        return PriceTable(
            merged,
            builtin=self._builtin,
            genai_prices=self._genai_prices,
            fallback=self.fallback,
        )

    @property
    def models(self) -> list[str]:
        """The model names in the table (not those genai-prices knows), sorted."""
        return sorted(self._table)

    def __repr__(self) -> str:
        return (
            f"PriceTable(<{len(self._own)} own prices>, builtin={self._builtin}, "
            f"genai_prices={self._genai_prices})"
        )

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of ``model`` in this table (genai-prices aside), or ``None``.

        Your prices are searched before the built-in ones.

        Args:
            model: A model name as a provider reports it, such as
                ``gpt-4o-2024-08-06`` or ``models/gemini-2.5-flash``.

        Returns:
            The price of the model or of its family.
        """
        ref = parse_model(model)
        found = _find(self._own, ref) or _find(self._base, ref)
        return found[1] if found is not None else None

    def owns(self, model: str) -> bool:
        """Whether your own prices (not genai-prices or the built-in table) price ``model``.

        Args:
            model: A model name, read as `lookup` reads it.

        Returns:
            Whether an own entry matches it.
        """
        return _find(self._own, parse_model(model)) is not None

    def cost(self, usage: Usage) -> float | None:
        """The cost in US dollars of ``usage``, or ``None`` when its model has no price.

        Price each call (each response) on its own: a sum over models has
        the model ``"mixed"``, which has no price.

        Args:
            usage: The tokens and model to price.

        Returns:
            The cost, or ``None`` (with one `UnknownModelWarning` per model).
        """
        return self.price(usage).cost_usd

    def price(
        self,
        usage: Usage,
        *,
        response: RawResponse | None = None,
        reported_cost: float | None = None,
    ) -> Usage:
        """Return ``usage`` priced by the first source that knows its model.

        Args:
            usage: The usage of one call.
            response: The response it was read from, with its provider and
                API flavour, for genai-prices to read as a whole.
            reported_cost: A cost the response itself carries (LiteLLM's).

        Returns:
            A copy with ``cost_usd``, ``priced_as`` and ``price_source`` set
            (``None`` when no source knows the model).
        """
        quote = self._quote(usage, response, reported_cost)
        if quote is None and self.fallback is not None and usage.model != MIXED_MODEL:
            return replace(
                usage, cost_usd=self.fallback.cost(usage), priced_as=None, price_source="fallback"
            )
        if quote is None:
            self._warn(usage.model)
            return replace(usage, cost_usd=None, priced_as=None, price_source=None)
        return replace(
            usage, cost_usd=quote.cost, priced_as=quote.priced_as, price_source=quote.source
        )

    def _quote(
        self, usage: Usage, response: RawResponse | None, reported_cost: float | None
    ) -> Quote | None:
        if usage.model is None or usage.model == MIXED_MODEL:
            return None
        ref = parse_model(usage.model)
        own = _find(self._own, ref)
        if own is not None:
            return Quote(own[1].cost(usage), own[0], "own prices")
        if reported_cost is not None:
            return Quote(reported_cost, ref.name, "litellm")
        base = _find(self._base, ref)
        # Above a context tier of the built-in table, the built-in entry prices
        # the call: genai-prices lacks some tiers (0.2.3 bills Claude Sonnet 4's
        # 1M-context requests at its 200k rates, half the bill).
        if self._genai_prices and not (base is not None and base[1].is_long(usage)):
            quote = genai_quote(usage, ref, response)
            if quote is not None:
                return quote
        if base is not None:
            return Quote(base[1].cost(usage), base[0], f"built-in {CHECKED}")
        return None

    def _warn(self, model: str | None) -> None:
        with self._lock:
            if model in self._warned:
                return
            self._warned.add(model)
        if model is None:
            message = "a response without a model name cannot be priced: its cost is None"
        else:
            how = f"PriceTable({{{model!r}: {{'input': ..., 'output': ...}}}})"
            version = genai_prices_version() if self._genai_prices else None
            if version is not None:
                extra = f"genai-prices {version} does not know it either"
            elif self._genai_prices:
                extra = 'or install "agent-resume[prices]" for a broad offline table'
            else:
                extra = "this table does not consult genai-prices"
            message = (
                f"no price for model {model!r}: its cost is None (unknown). Add it with "
                f"{how} or `agent-resume report --prices FILE`; {extra}"
            )
        warn_at_caller(message, UnknownModelWarning)


class _Entries(dict[str, ModelPrice]):
    """Prices by name, with the names longest first for the family rule.

    An entry is found under its name as given and under that name read as a
    model name is read (``openai/gpt-4o`` as ``gpt-4o``, ``claude-sonnet-4.5``
    as ``claude-sonnet-4-5``, a Bedrock ID as the model in it), so that a key
    spelled as a response or the docs spell the model matches its calls. A
    name given as it reads wins over another read as it.
    """

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        super().__init__(prices)
        self.by_name: dict[str, ModelPrice] = dict(prices)
        for key, price in prices.items():
            read = parse_model(key)
            if not read.fine_tune:  # ft:BASE:... keys stay their own (they are no BASE)
                self.by_name.setdefault(read.name, price)
        self.longest_first = sorted(self.by_name, key=len, reverse=True)


def _find(table: _Entries, ref: ModelRef) -> tuple[str, ModelPrice] | None:
    """The entry for ``ref``: the raw name, then its name exactly or as the longest family.

    A fine-tune's name is looked up as ``ft:BASE`` (its own price) before
    ``BASE`` (its base model's, an estimate).
    """
    entries = table.by_name
    price = entries.get(ref.raw)
    if price is not None:
        return ref.raw, price
    for name in (f"ft:{ref.name}", ref.name) if ref.fine_tune else (ref.name,):
        price = entries.get(name)
        if price is not None:
            return name, price
        for key in table.longest_first:
            if name.startswith(key) and _SNAPSHOT_SUFFIX.fullmatch(name[len(key) :]):
                return key, entries[key]
    return None


def _read_toml(file: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise ArgumentValueError(
                "path",
                str(file),
                f"{file}: reading TOML on Python 3.10 needs the tomli package "
                "(pip install tomli); or use a .json file",
            ) from None
    return tomllib.loads(file.read_text(encoding="utf-8-sig"))


_default: PriceTable | None = None
_default_lock = threading.Lock()


def default_prices() -> PriceTable:
    """The table `usage_from` uses when given none: the built-in one, with genai-prices."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PriceTable()
        return _default
