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
no ``call`` record; an outcome without ``"a"`` covers the item's latest
calls); the calls of an attempt that never recorded one (killed, or cut off at
the end of a run) count on their own, so money spent is never lost from the
totals. Calls in flight when a process died were never recorded: while a run
has a start record and no end record, `Ledger.lower_bound` is true.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from agent_resume._accounting._prices import MIXED_MODEL, PriceTable
from agent_resume._accounting._usage import Usage
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._records import kind_of

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

    Args:
        prices: A table to re-price records with, as the module docstring
            describes; ``None`` keeps every recorded cost.
    """

    def __init__(self, *, prices: PriceTable | None = None) -> None:
        if prices is not None and not isinstance(prices, PriceTable):
            raise ArgumentTypeError(
                "prices",
                prices,
                f"`prices` must be a PriceTable or None (got {type(prices).__name__})",
            )
        self._prices = prices
        self._items: dict[str, ItemUsage] = {}
        # Call records of attempts with no outcome yet: item -> attempt token -> (usage, calls).
        self._pending: dict[str, dict[str, tuple[Usage, int]]] = {}
        self._latest: dict[str, str] = {}
        self._starts = 0
        self._ends = 0

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], *, prices: PriceTable | None = None
    ) -> Ledger:
        """Build a ledger from checkpoint records, in file order.

        Args:
            records: Record dicts as read from a store; records that are
                neither completions nor failures are skipped.
            prices: A table to re-price the records with (see the class).

        Returns:
            The ledger.
        """
        ledger = cls(prices=prices)
        for record in records:
            ledger.add(record)
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
            ArgumentValueError: The record's ``usage`` field is malformed.
        """
        if not isinstance(record, Mapping):
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
        # An outcome covers the calls of its own attempt: the one its usage names
        # ("a", "" for none), else (records written before "a") the latest calls.
        latest = self._latest.pop(item_id, None)
        named = raw.get("a") if isinstance(raw, Mapping) else None
        token = named if isinstance(named, str) else latest
        if token is not None:
            pending = self._pending.get(item_id)
            if pending is not None:
                pending.pop(token, None)
                if not pending:
                    del self._pending[item_id]
        try:
            usage = Usage() if raw is None else Usage.from_dict(raw)
        except (TypeError, ValueError) as error:
            raise ArgumentValueError(
                "record", record, f"the usage of item {item_id!r} is malformed: {error}"
            ) from error
        if self._prices is not None:
            usage = _reprice(usage, self._prices)
        previous = self._items.get(item_id)
        if previous is None:
            self._items[item_id] = ItemUsage(item_id, kind, usage, 1)
        else:
            # A completion is final: a failure recorded after it does not undo it.
            status = "done" if "done" in (kind, previous.status) else kind
            self._items[item_id] = ItemUsage(
                item_id, status, previous.usage + usage, previous.records + 1
            )
        return True

    def _add_call(self, record: Mapping[str, Any]) -> bool:
        item_id = str(record["call"])
        token = str(record.get("a", ""))
        raw = record.get("usage")
        try:
            usage = Usage() if raw is None else Usage.from_dict(raw)
        except (TypeError, ValueError) as error:
            raise ArgumentValueError(
                "record", record, f"the usage of a call of item {item_id!r} is malformed: {error}"
            ) from error
        if self._prices is not None:
            usage = _reprice(usage, self._prices)
        pending = self._pending.setdefault(item_id, {})
        previous, count = pending.get(token, (Usage(), 0))
        pending[token] = (previous + usage, count + 1)
        self._latest[item_id] = token
        return True

    def _view(self) -> dict[str, ItemUsage]:
        """Items with the usage of their outcomes plus the calls no outcome covers."""
        if not self._pending:
            return self._items
        view = dict(self._items)
        for item_id, attempts in self._pending.items():
            extra = sum((usage for usage, _ in attempts.values()), Usage())
            records = sum(count for _, count in attempts.values())
            found = view.get(item_id)
            if found is None:
                view[item_id] = ItemUsage(item_id, "interrupted", extra, records)
            else:
                view[item_id] = ItemUsage(
                    item_id, found.status, found.usage + extra, found.records + records
                )
        return view

    @property
    def lower_bound(self) -> bool:
        """Whether a run started and did not end (it died, or is still running).

        Calls it had in flight were never recorded, so the totals are a lower bound.
        """
        return self._starts > self._ends

    def __len__(self) -> int:
        return len(self._view())

    def __repr__(self) -> str:
        return f"<Ledger of {len(self)} items, total {self.total!r}>"

    def item(self, item_id: str | int) -> ItemUsage | None:
        """The usage of one item, or ``None`` when it has no record.

        Args:
            item_id: The item's ID; an int names the same item as its decimal string.

        Returns:
            The item's usage.
        """
        return self._view().get(str(item_id))

    def items(self) -> list[ItemUsage]:
        """Every item, in the order of its first record."""
        return list(self._view().values())

    @property
    def total(self) -> Usage:
        """The run total: the sum over all items (its cost is ``None`` if any is unknown)."""
        return sum((item.usage for item in self._view().values()), Usage())

    def by_model(self) -> dict[str | None, Usage]:
        """The usage per item model (``"mixed"`` for items that used several), sorted."""
        out: dict[str | None, Usage] = {}
        for item in self._view().values():
            out[item.usage.model] = out.get(item.usage.model, Usage()) + item.usage
        return dict(sorted(out.items(), key=lambda pair: (pair[0] is None, pair[0] or "")))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per item with the `CSV_FIELDS` as keys; an unknown cost is ``None``."""
        return [_row(item.item_id, item.status, item.usage) for item in self._view().values()]

    def write_csv(self, file: TextIO, *, total: bool = True) -> None:
        """Write the rows as CSV with a header line; an unknown cost is an empty cell.

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
            writer.writerow({key: "" if value is None else value for key, value in row.items()})


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
