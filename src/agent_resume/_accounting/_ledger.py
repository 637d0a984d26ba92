"""Usage per item and per run, summed from a checkpoint's records.

Each completion and each failed attempt may carry the usage of the calls it
made (the ``usage`` field, in the compact form of `Usage.to_dict`). An item's
total is the sum over all its records, failed attempts included, since they
cost money too; the run total is the sum over items. Records of other kinds
(the header, run records) are skipped. A checkpoint rewritten by ``compact``
keeps only each item's latest record, and so only that record's usage.

Calls made through ``ctx.call``/``ctx.acall`` are also recorded one by one as
they return (``{"call": item_id, "a": token, "usage": ...}``, ``a`` naming the
attempt). Once the attempt records its outcome, that outcome's usage covers
them (the outcome's usage names its attempt in ``"a"``, ``""`` when it made
no ``call`` record; a usage without ``"a"`` covers the item's latest calls,
and an outcome without usage covers none); the calls of an attempt that never recorded one (killed, or cut off at
the end of a run) count on their own, so money spent is never lost from the
totals. Calls in flight when a process died were never recorded: while a run
has a start record and no end record, `Ledger.lower_bound` is true.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import reduce
from operator import add, attrgetter, itemgetter
from typing import Any, TextIO

from agent_resume._accounting._prices import MIXED_MODEL, PriceTable
from agent_resume._accounting._usage import Usage, cost_sum
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._records import kind_of
from agent_resume._render import round_cost
from agent_resume._validate import boolean

__all__ = ["CSV_FIELDS", "ItemUsage", "Ledger"]

CSV_FIELDS = (
    "item_id",
    "status",
    "calls",
    "input",
    "output",
    "cache_read",
    "cache_write",
    "reasoning",
    "cost_usd",
)
"""The columns of `Ledger.rows` and `Ledger.write_csv`, in order."""


@dataclass(frozen=True)
class ItemUsage:
    """The usage of one item over all its records.

    Attributes:
        item_id: The item's ID.
        status: ``"done"`` once the item has a completion, else ``"failed"``,
            or ``"interrupted"`` for an item with only ``call`` records (its
            attempt never recorded an outcome).
        usage: The sum of the usage of every record of the item.
        records: How many records (failed attempts and completions) were summed.
    """

    item_id: str
    status: str
    usage: Usage
    records: int


class Ledger:
    """Sums the usage of checkpoint records per item and for the run.

    Build one with `Ledger.from_records`, or create an empty one and feed it
    records with `add` as they are written.

    Each record's usage is checked as `Usage.from_dict` checks it (a
    malformed one is refused with the same error, or with
    ``skip_malformed=True`` counted without its usage), then added into plain
    integer and float counters; `Usage` values are built only when asked for
    (`item`, `items`, `total`, `by_model`, `rows`). The sums are the ones
    `Usage` addition gives, in the same order, so every figure is the same.

    Args:
        prices: A table to re-price records with, as the module docstring
            describes; ``None`` keeps every recorded cost.
        skip_malformed: Count a record whose usage is malformed without that
            usage (its item still counts it: a completion with a malformed
            usage is done), and list its item in `malformed`, instead of
            raising. What the CLI's reports do: a hand-damaged record does
            not hide the rest of the bill.
    """

    def __init__(self, *, prices: PriceTable | None = None, skip_malformed: bool = False) -> None:
        if prices is not None and not isinstance(prices, PriceTable):
            raise ArgumentTypeError(
                "prices",
                prices,
                f"`prices` must be a PriceTable or None (got {type(prices).__name__})",
            )
        self._prices = prices
        self._owned: dict[str, bool] = {}  # model -> whether your own prices name it
        self._skip_malformed = boolean("skip_malformed", skip_malformed)
        self._malformed: list[str] = []
        self._items: dict[str, _Item] = {}
        # Call records of attempts with no outcome yet: item -> attempt token -> (usage, calls).
        self._pending: dict[str, dict[str, _Item]] = {}
        self._latest: dict[str, str] = {}
        self._starts = 0
        self._ends = 0

    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        *,
        prices: PriceTable | None = None,
        skip_malformed: bool = False,
    ) -> Ledger:
        """Build a ledger from checkpoint records, in file order.

        Args:
            records: Record dicts as read from a store; records that are
                neither completions nor failures are skipped.
            prices: A table to re-price the records with (see the class).
            skip_malformed: Count a record whose usage is malformed without
                it, instead of raising (see the class).

        Returns:
            The ledger.

        Raises:
            ArgumentValueError: A record's usage is malformed (unless skipped).
        """
        ledger = cls(prices=prices, skip_malformed=skip_malformed)
        add = ledger.add
        for record in records:
            add(record)
        return ledger

    def add(self, record: Mapping[str, Any]) -> bool:
        """Count one record.

        Args:
            record: A completion (``{"id": ..., "ts": ..., "usage": {...}}``,
                no ``status`` or ``"done"``), a failure (``{"id": ...,
                "status": "failed", ...}``) or any other record (the header,
                run records, releases), which is skipped.

        Returns:
            Whether the record was counted.

        Raises:
            ArgumentTypeError: ``record`` is not a mapping.
            ArgumentValueError: The record's ``usage`` field is malformed
                (unless the ledger skips such usage).
        """
        if type(record) is not dict and not isinstance(record, Mapping):  # a dict: the common case
            raise ArgumentTypeError(
                "record", record, f"a record must be a mapping (got {type(record).__name__})"
            )
        kind = kind_of(record)
        if kind == "call":
            return self._add_call(record)
        if kind == "run":
            run = record.get("run")
            self._starts += run == "start"
            self._ends += run == "end"
        if kind != "done" and kind != "failed":
            return False
        item_id = str(record["id"])
        raw = record.get("usage")
        if self._pending:
            # An outcome covers the calls of its own attempt: the one its usage names
            # ("a", "" for none), else (a usage written without "a") the latest
            # calls. An outcome without usage covers none: its calls count on their own.
            latest = self._latest.pop(item_id, None)
            named = raw.get("a") if isinstance(raw, Mapping) else None
            token = named if isinstance(named, str) else None if raw is None else latest
            if token is not None:
                pending = self._pending.get(item_id)
                if pending is not None:
                    pending.pop(token, None)
                    if not pending:
                        del self._pending[item_id]
        usage = None if raw is None else self._parse(raw, record, "the usage of item")
        found = self._items.get(item_id)
        if found is None:
            found = self._items[item_id] = _Item(kind, usage)
        else:
            if kind == "done":
                # A completion is final: a failure recorded after it does not undo it.
                found.status = "done"
            if usage is not None:
                found.add(usage)
        found.records += 1
        return True

    def _parse(self, raw: Any, record: Mapping[str, Any], what: str) -> _Parsed | None:
        """A record's usage as counters, checked as `Usage` checks it.

        ``None`` for the empty usage, and for a malformed one the ledger skips.
        """
        prices = self._prices
        if type(raw) is dict:
            parsed = _parse_plain(raw)
            if parsed is None or (
                parsed is not _SLOW and (prices is None or self._priced(parsed))  # type: ignore[arg-type]
            ):
                return parsed  # type: ignore[return-value]
        try:
            usage = Usage.from_dict(raw)
        except (TypeError, ValueError) as error:
            item_id = record.get("id", record.get("call"))
            if self._skip_malformed:
                self._malformed.append(str(item_id))
                return None
            raise ArgumentValueError(
                "record", record, f"{what} {str(item_id)!r} is malformed: {error}"
            ) from error
        if prices is not None:
            usage = _reprice(usage, prices)
        return _parsed(usage)

    def _priced(self, parsed: _Parsed) -> bool:
        """Whether a record's counters keep their recorded cost (`_reprice` would not change it).

        Its model is looked up in your prices once per model: a record is
        read this way on every open of a job budget, a million at a time.
        """
        _, cost, texts = parsed
        if cost is None:
            return False
        model = texts[0]
        if model is None or model == MIXED_MODEL:
            return True
        owned = self._owned.get(model)
        if owned is None:
            assert self._prices is not None  # asked only with a price table
            owned = self._owned[model] = self._prices.owns(model)
        return not owned

    def _add_call(self, record: Mapping[str, Any]) -> bool:
        item_id = str(record["call"])
        token = str(record.get("a", ""))
        raw = record.get("usage")
        usage = None if raw is None else self._parse(raw, record, "the usage of a call of item")
        pending = self._pending.setdefault(item_id, {})
        found = pending.get(token)
        if found is None:
            found = pending[token] = _Item("interrupted")
        found.records += 1
        if usage is not None:
            found.add(usage)
        self._latest[item_id] = token
        return True

    def _view(self) -> dict[str, _Item]:
        """Items with the usage of their outcomes plus the calls no outcome covers."""
        if not self._pending:
            return self._items
        view = dict(self._items)
        for item_id, attempts in self._pending.items():
            extra = _Item("interrupted")
            for attempt in attempts.values():
                extra.merge(attempt)
                extra.records += attempt.records
            found = view.get(item_id)
            if found is None:
                view[item_id] = extra
            else:
                joined = _Item(found.status)
                joined.merge(found)
                joined.merge(extra)
                joined.records = found.records + extra.records
                view[item_id] = joined
        return view

    @property
    def malformed(self) -> list[str]:
        """The items of the records counted without their malformed usage, in record order.

        Empty unless the ledger was made with ``skip_malformed=True``; an
        item appears once per such record.
        """
        return list(self._malformed)

    @property
    def lower_bound(self) -> bool:
        """Whether a run started and did not end (it died, or is still running).

        Calls it had in flight were never recorded, so the totals are a lower bound.
        """
        return self._starts > self._ends

    def __len__(self) -> int:
        if not self._pending:
            return len(self._items)
        return len(self._items.keys() | self._pending.keys())

    def __repr__(self) -> str:
        return f"<Ledger of {len(self)} items, total {self.total!r}>"

    def item(self, item_id: str | int) -> ItemUsage | None:
        """The usage of one item, or ``None`` when it has no record.

        Args:
            item_id: The item's ID; an int names the same item as its decimal string.

        Returns:
            The item's usage.
        """
        key = str(item_id)
        found = self._view().get(key)
        return None if found is None else found.item_usage(key)

    def items(self) -> list[ItemUsage]:
        """Every item, in the order of its first record."""
        return [found.item_usage(key) for key, found in self._view().items()]

    @property
    def total(self) -> Usage:
        """The run total: the sum over all items (its cost is ``None`` if any is unknown)."""
        return _summed([found for found in self._view().values() if found.texts is not None])

    def by_model(self) -> dict[str | None, Usage]:
        """The usage per item model (``"mixed"`` for items that used several), sorted."""
        groups: dict[str | None, list[_Item]] = {}
        for found in self._view().values():
            texts = found.texts
            group = groups.setdefault(None if texts is None else texts[0], [])
            if texts is not None:  # an empty usage adds nothing to its group
                group.append(found)
        return {
            model: _summed(group)
            for model, group in sorted(groups.items(), key=lambda p: (p[0] is None, p[0] or ""))
        }

    def rows(self) -> list[dict[str, Any]]:
        """One dict per item with the `CSV_FIELDS` as keys; an unknown cost is ``None``."""
        return [_row(key, found.status, found.usage()) for key, found in self._view().items()]

    def write_csv(self, file: TextIO, *, total: bool = True) -> None:
        """Write the rows as CSV with a header line; an unknown cost is an empty cell.

        Costs are rounded to 10 significant digits, as every report shows them.

        Args:
            file: A text file opened with ``newline=""``.
            total: Whether to end with a row of status ``total`` and an empty item ID.
        """
        writer = csv.DictWriter(file, fieldnames=CSV_FIELDS)
        writer.writeheader()
        rows = self.rows()
        if total:
            rows.append(_row("", "total", self.total))
        for row in rows:
            row["cost_usd"] = round_cost(row["cost_usd"])  # no float noise (0.30000000000000004)
            writer.writerow({key: "" if value is None else value for key, value in row.items()})


# A record's usage as counters: (the nine counts in _COUNT_KEYS order, the cost, the
# four texts in _TEXT_KEYS order). ``None`` stands for the empty ``Usage()``.
_Parsed = tuple[list[int], float | None, list[str | None]]

_COUNT_KEYS = (
    "in",
    "out",
    "cache_read",
    "cache_write",
    "reasoning",
    "calls",
    "cache_write_1h",
    "audio_in",
    "web_searches",
)
_COUNT_NAMES = (
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
_TEXT_KEYS = ("model", "tier", "priced_as", "price_source")
_TEXT_NAMES = ("model", "service_tier", "priced_as", "price_source")
_COUNT_INDEX = {key: index for index, key in enumerate(_COUNT_KEYS)}
_TEXT_INDEX = {key: index for index, key in enumerate(_TEXT_KEYS)}
_SLOW = object()
_INF = float("inf")


def _parse_plain(raw: dict[str, Any]) -> _Parsed | object | None:
    """Counters from a usage dict of the plain types a store decodes, or ``_SLOW``.

    Anything else (a bool, a negative count, a non-finite cost, an int
    subclass) is left to `Usage.from_dict`, which refuses it or reads it.
    """
    counts = [0] * 9
    cost: float | None = None
    texts: list[str | None] = [None, None, None, None]
    empty = True
    for key, value in raw.items():
        index = _COUNT_INDEX.get(key)
        if index is not None:
            if type(value) is not int or value < 0:
                return _SLOW
            if value:
                counts[index] = value
                empty = False
        elif key == "cost":
            if value is None:
                continue
            kind = type(value)
            if kind is int:
                value = float(value)
            elif kind is not float:
                return _SLOW
            if not 0.0 <= value < _INF:
                return _SLOW
            cost = value
            empty = False
        else:
            index = _TEXT_INDEX.get(key)
            if index is None or value is None:
                continue
            if type(value) is not str:
                return _SLOW
            texts[index] = value
            empty = False
    return None if empty else (counts, cost, texts)


def _parsed(usage: Usage) -> _Parsed | None:
    if usage.is_empty():
        return None
    return (
        [getattr(usage, name) for name in _COUNT_NAMES],
        usage.cost_usd,
        [getattr(usage, name) for name in _TEXT_NAMES],
    )


class _Item:
    """An item's (or a group's) running sum: what `Usage` addition would give, in counters.

    ``texts`` is ``None`` while the sum is the empty ``Usage()``, the identity.
    """

    __slots__ = ("cost", "counts", "records", "status", "texts")

    def __init__(self, status: str, parsed: _Parsed | None = None) -> None:
        """An empty sum, or one that takes a freshly parsed usage (its lists kept, not copied)."""
        self.status = status
        self.records = 0
        self.cost: float | None
        self.texts: list[str | None] | None
        if parsed is None:
            self.counts = [0] * 9
            self.cost = None
            self.texts = None
        else:
            self.counts, self.cost, self.texts = parsed

    def add(self, parsed: _Parsed) -> None:
        counts, cost, texts = parsed
        mine = self.texts
        if mine is None:  # empty + u == u
            self.counts = list(counts)
            self.cost = cost
            self.texts = list(texts)
            return
        own = self.counts
        for index in range(9):
            own[index] += counts[index]
        self.cost = None if self.cost is None or cost is None else cost_sum(self.cost + cost)
        for index in range(4):
            if mine[index] != texts[index]:
                mine[index] = MIXED_MODEL

    def merge(self, other: _Item) -> None:
        """Add another sum's usage (not its records)."""
        if other.texts is not None:
            self.add((other.counts, other.cost, other.texts))

    def usage(self) -> Usage:
        texts = self.texts
        if texts is None:
            return Usage()
        fields: dict[str, Any] = dict(zip(_COUNT_NAMES, self.counts, strict=True))
        fields.update(zip(_TEXT_NAMES, texts, strict=True))
        return Usage(cost_usd=self.cost, **fields)

    def item_usage(self, item_id: str) -> ItemUsage:
        return ItemUsage(item_id, self.status, self.usage(), self.records)


def _summed(items: list[_Item]) -> Usage:
    """The sum of non-empty items' usage, exactly as adding them one by one in order gives.

    Each column is summed in C: counts are integers (any order gives the
    same sum), costs are added left to right as `_Item.add` adds them, and a
    text is kept where every item has the same, else it becomes ``"mixed"``.
    """
    if not items:
        return Usage()
    counts = list(map(attrgetter("counts"), items))
    costs = list(map(attrgetter("cost"), items))
    texts = list(map(attrgetter("texts"), items))
    summed: list[str | None] = []
    for index in range(4):
        column = list(map(itemgetter(index), texts))
        first = column[0]
        summed.append(first if column.count(first) == len(column) else MIXED_MODEL)
    return _Item(
        "total",
        (
            [sum(map(itemgetter(index), counts)) for index in range(9)],
            None if None in costs else cost_sum(reduce(add, costs)),
            summed,
        ),
    ).usage()


def _reprice(usage: Usage, table: PriceTable) -> Usage:
    model = usage.model
    if model is None or model == MIXED_MODEL or usage.is_empty():
        return usage
    if usage.cost_usd is None or table.owns(model):
        return table.price(usage)
    return usage


def _row(item_id: str, status: str, usage: Usage) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "status": status,
        "calls": usage.calls,
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cache_read": usage.cache_read_tokens,
        "cache_write": usage.cache_write_tokens,
        "reasoning": usage.reasoning_tokens,
        "cost_usd": usage.cost_usd,
    }
