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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_resume._errors import ArgumentTypeError, ArgumentValueError, UnknownModelWarning

if TYPE_CHECKING:
    from agent_resume._accounting._usage import Usage

__all__ = ["ModelPrice", "PriceTable", "UnknownModelWarning", "default_prices"]

_MILLION = 1_000_000


_PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "source", "date")


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """The prices of one model, in US dollars per million tokens.

    Attributes:
        input: Price of uncached input tokens.
        output: Price of output tokens, reasoning included.
        cache_read: Price of input tokens read from the cache; ``None`` bills
            them at the input price.
        cache_write: Price of input tokens written to the cache; ``None``
            bills them at the input price (OpenAI and Gemini charge nothing
            extra to write).
        source: Where the prices come from, usually the provider's page.
        date: When they were taken from the source, as ``YYYY-MM-DD``.
    """

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    source: str = ""
    date: str = ""

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_read", "cache_write"):
            value = getattr(self, name)
            if value is None and name in ("cache_read", "cache_write"):
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
        for name in ("source", "date"):
            if not isinstance(getattr(self, name), str):
                raise ArgumentTypeError(name, getattr(self, name), f"`{name}` must be a str")

    @classmethod
    def from_dict(cls, data: ModelPrice | Mapping[str, Any], *, model: str = "?") -> ModelPrice:
        """Build a price from ``{"input": ..., "output": ..., "cache_read": ..., ...}``.

        Args:
            data: A `ModelPrice` (returned as it is) or a mapping: ``input`` and ``output`` are required; ``cache_read``,
                ``cache_write``, ``source`` and ``date`` are optional.
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
            raise ArgumentValueError(
                "prices",
                data,
                f"unknown price key(s) {unknown} for {model!r}; the keys are {list(_PRICE_KEYS)}",
            )
        missing = [key for key in ("input", "output") if key not in data]
        if missing:
            raise ArgumentValueError(
                "prices", data, f"the price of {model!r} needs {missing} (per million tokens)"
            )
        return cls(**data)

    def cost(self, usage: Usage) -> float:
        """The cost in US dollars of ``usage`` at these prices.

        Args:
            usage: The tokens to price; its model and cost are ignored.

        Returns:
            The cost, never double-counting cached tokens.
        """
        cache_read_price = self.input if self.cache_read is None else self.cache_read
        cache_write_price = self.input if self.cache_write is None else self.cache_write
        uncached = max(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens, 0)
        total = (
            uncached * self.input
            + usage.cache_read_tokens * cache_read_price
            + usage.cache_write_tokens * cache_write_price
            + usage.output_tokens * self.output
        )
        return total / _MILLION


# A dated name such as gpt-4o-2024-08-06, claude-3-5-sonnet-20241022,
# gemini-2.0-flash-001, gemini-2.5-flash-preview-05-20 or claude-3-5-sonnet-v2@20241022
# is priced as its family when what follows the family's name is only such suffixes.
_SNAPSHOT_SUFFIX = re.compile(
    r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{3}|-latest|-preview(?:-\d{2}-\d{2}(?:-\d{4})?)?"
    r"|-v\d+(?::\d+)?|@\d{8}|@latest)+"
)
# Prefixes that routers and clouds put before a model's own name.
_ROUTE_PREFIX = re.compile(r"^(?:.*/)?(?:(?:[a-z]{2}\.)?anthropic\.)?")


def _canonical(model: str) -> str:
    return _ROUTE_PREFIX.sub("", model.strip().lower(), count=1)


_OPENAI = "https://platform.openai.com/docs/pricing"
_ANTHROPIC = "https://docs.anthropic.com/en/docs/about-claude/pricing"
_GOOGLE = "https://ai.google.dev/gemini-api/docs/pricing"
_CHECKED = "2026-11-27"

# name: (input, output, cache_read, cache_write), USD per million tokens, standard
# tier, prompts up to 200k tokens (Gemini 2.5 Pro and the Claude Sonnet 4 family
# charge more above). Anthropic's cache write is the 5-minute one. Checked on
# _CHECKED against the genai-prices 0.2.3 data set, which follows these pages.
_BUILTIN: dict[str, tuple[tuple[float, float, float | None, float | None], str]] = {
    "gpt-4o": ((2.50, 10.00, 1.25, None), _OPENAI),
    "gpt-4o-mini": ((0.15, 0.60, 0.075, None), _OPENAI),
    "gpt-4.1": ((2.00, 8.00, 0.50, None), _OPENAI),
    "gpt-4.1-mini": ((0.40, 1.60, 0.10, None), _OPENAI),
    "gpt-4.1-nano": ((0.10, 0.40, 0.025, None), _OPENAI),
    "gpt-5": ((1.25, 10.00, 0.125, None), _OPENAI),
    "gpt-5-mini": ((0.25, 2.00, 0.025, None), _OPENAI),
    "gpt-5-nano": ((0.05, 0.40, 0.005, None), _OPENAI),
    "gpt-5.1": ((1.25, 10.00, 0.125, None), _OPENAI),
    "o1": ((15.00, 60.00, 7.50, None), _OPENAI),
    "o1-mini": ((1.10, 4.40, 0.55, None), _OPENAI),
    "o3": ((2.00, 8.00, 0.50, None), _OPENAI),
    "o3-mini": ((1.10, 4.40, 0.55, None), _OPENAI),
    "o4-mini": ((1.10, 4.40, 0.275, None), _OPENAI),
    "claude-opus-4-5": ((5.00, 25.00, 0.50, 6.25), _ANTHROPIC),
    "claude-opus-4-1": ((15.00, 75.00, 1.50, 18.75), _ANTHROPIC),
    "claude-opus-4": ((15.00, 75.00, 1.50, 18.75), _ANTHROPIC),
    "claude-opus-4-0": ((15.00, 75.00, 1.50, 18.75), _ANTHROPIC),
    "claude-sonnet-4-5": ((3.00, 15.00, 0.30, 3.75), _ANTHROPIC),
    "claude-sonnet-4": ((3.00, 15.00, 0.30, 3.75), _ANTHROPIC),
    "claude-sonnet-4-0": ((3.00, 15.00, 0.30, 3.75), _ANTHROPIC),
    "claude-3-7-sonnet": ((3.00, 15.00, 0.30, 3.75), _ANTHROPIC),
    "claude-3-5-sonnet": ((3.00, 15.00, 0.30, 3.75), _ANTHROPIC),
    "claude-haiku-4-5": ((1.00, 5.00, 0.10, 1.25), _ANTHROPIC),
    "claude-3-5-haiku": ((0.80, 4.00, 0.08, 1.00), _ANTHROPIC),
    "claude-3-haiku": ((0.25, 1.25, 0.03, 0.30), _ANTHROPIC),
    "claude-3-opus": ((15.00, 75.00, 1.50, 18.75), _ANTHROPIC),
    "gemini-2.5-pro": ((1.25, 10.00, 0.125, None), _GOOGLE),
    "gemini-2.5-flash": ((0.30, 2.50, 0.03, None), _GOOGLE),
    "gemini-2.5-flash-lite": ((0.10, 0.40, 0.01, None), _GOOGLE),
    "gemini-2.0-flash": ((0.10, 0.40, 0.025, None), _GOOGLE),
    "gemini-2.0-flash-lite": ((0.075, 0.30, None, None), _GOOGLE),
}


def _load_builtin() -> dict[str, ModelPrice]:
    return {
        name: ModelPrice(
            input=inp, output=out, cache_read=read, cache_write=write, source=src, date=_CHECKED
        )
        for name, ((inp, out, read, write), src) in _BUILTIN.items()
    }


class PriceTable:
    """Model prices: the built-in table, your own prices on top, genai-prices behind.

    Lookup takes, in order: an entry of ``prices`` or of the built-in table
    (yours win on the same name) whose name equals the model's or is
    followed in it by a snapshot suffix only (a date, ``-latest``, ``-001``,
    ``-preview-05-20``, ``@20241022``), the longest such name first; then,
    when the ``prices`` extra is installed and ``genai_prices`` is true, the
    genai-prices package's offline table. A model found nowhere costs
    ``None``, with one `UnknownModelWarning` per model per table.

    Tables are immutable apart from the record of models already warned
    about; build a new one with `with_prices`.

    Args:
        prices: Your prices, model name to a `ModelPrice` or a mapping with
            ``input``, ``output`` and optionally ``cache_read``,
            ``cache_write``, ``source``, ``date`` (USD per million tokens).
        builtin: Whether to include the built-in table.
        genai_prices: Whether to consult genai-prices, when installed, for
            models the table lacks.
    """

    def __init__(
        self,
        prices: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        *,
        builtin: bool = True,
        genai_prices: bool = True,
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
            own[_canonical(name)] = ModelPrice.from_dict(price, model=name)
        self._own = own
        self._builtin = builtin
        self._genai_prices = genai_prices
        self._table = {**(_load_builtin() if builtin else {}), **own}
        self._longest_first = sorted(self._table, key=len, reverse=True)
        self._warned: set[str | None] = set()
        self._lock = threading.Lock()

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
        file = Path(path)
        suffix = file.suffix.lower()
        try:
            if suffix == ".json":
                data = json.loads(file.read_text(encoding="utf-8"))
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
        return PriceTable(merged, builtin=self._builtin, genai_prices=self._genai_prices)

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

        Args:
            model: A model name as a provider reports it, such as
                ``gpt-4o-2024-08-06`` or ``models/gemini-2.5-flash``.

        Returns:
            The price of the model or of its family.
        """
        name = _canonical(model)
        price = self._table.get(name)
        if price is not None:
            return price
        for key in self._longest_first:
            if name.startswith(key) and _SNAPSHOT_SUFFIX.fullmatch(name[len(key) :]):
                return self._table[key]
        return None

    def cost(self, usage: Usage) -> float | None:
        """The cost in US dollars of ``usage``, or ``None`` when its model has no price.

        Price each call (each response) on its own: a sum over models has
        the model ``"mixed"``, which has no price.

        Args:
            usage: The tokens and model to price.

        Returns:
            The cost, or ``None`` (with one `UnknownModelWarning` per model).
        """
        model = usage.model
        if model is not None:
            price = self.lookup(model)
            if price is not None:
                return price.cost(usage)
            if self._genai_prices:
                cost = _genai_cost(usage, model)
                if cost is not None:
                    return cost
        self._warn(model)
        return None

    def price(self, usage: Usage) -> Usage:
        """Return ``usage`` with ``cost_usd`` set from this table (``None`` when unknown).

        Args:
            usage: The usage of one call.

        Returns:
            A copy with the cost filled in.
        """
        return replace(usage, cost_usd=self.cost(usage))

    def _warn(self, model: str | None) -> None:
        with self._lock:
            if model in self._warned:
                return
            self._warned.add(model)
        if model is None:
            message = "a response without a model name cannot be priced: its cost is None"
        else:
            message = (
                f"no price for model {model!r}: its cost is None (unknown). Add it with "
                f"PriceTable({{{model!r}: {{'input': ..., 'output': ...}}}}) or install "
                '"agent-resume[prices]" for a broad offline table'
            )
        warnings.warn(message, UnknownModelWarning, stacklevel=4)


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
    with file.open("rb") as handle:
        return tomllib.load(handle)


def _genai_cost(usage: Usage, model: str) -> float | None:
    """Price ``usage`` with the genai-prices package, or ``None`` when absent or unknown."""
    try:
        import genai_prices  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    # genai-prices counts cached tokens inside input_tokens, as we do.
    counts = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    try:
        result = genai_prices.calc_price(counts, model)
    except LookupError:
        return None
    return float(result.total_price)


_default: PriceTable | None = None
_default_lock = threading.Lock()


def default_prices() -> PriceTable:
    """The table `usage_from` uses when given none: the built-in one, with genai-prices."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PriceTable()
        return _default
