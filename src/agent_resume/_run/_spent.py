"""What a job spent before this run: its total, and each unfinished item's over its attempts.

Read once when a run opens, from the checkpoint's records, when a job budget
(``job_max_cost_usd``, ``job_max_tokens``) or per-item ``stop`` conditions
need it. The job total is the `Ledger`'s (completions, failed attempts, and
the ``call`` records of attempts that never recorded an outcome: killed or
interrupted ones), so a budget counts exactly what ``agent-resume report``
shows; it is summed only for a job budget (per-item conditions need only
the items' totals, and the ledger is most of the cost of the read). An
item's totals are summed the same way over the records since its last
completion or release: a changed item run again, or a released one, starts
a fresh allowance.

Each failure and ``call`` record may carry ``"s"`` in its usage: the seconds
the attempt had run when it was written. An attempt's seconds are the
largest such figure among its records.

A record whose usage is malformed (a hand-damaged line that is still valid
JSON) counts nothing, in the job's total or in its item's; a completion with
one still ends its item's spending. The run warns once when the job's total
skipped such records: the budget then counts at least what the job spent
less theirs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent_resume._accounting._ledger import Ledger
from agent_resume._accounting._prices import PriceTable
from agent_resume._accounting._usage import Usage
from agent_resume._records import collector_paused

__all__ = ["NO_MODEL", "SECONDS_KEY", "ItemSpent", "JobSpent"]

logger = logging.getLogger("agent_resume.run")

SECONDS_KEY = "s"
"""The key of an attempt's seconds in the usage of failure and ``call`` records."""

NO_MODEL = "(no model name)"
"""How an unknown price names a usage that gives no model."""


@dataclass(frozen=True)
class ItemSpent:
    """An item's totals over its earlier attempts.

    Attributes:
        usage: Tokens, calls (turns) and cost of every earlier attempt.
        seconds: The seconds those attempts ran, as far as recorded.
        attempts: How many earlier attempts had records.
    """

    usage: Usage
    seconds: float
    attempts: int


class _Item:
    __slots__ = ("attempts", "pending", "seconds", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self.seconds = 0.0
        self.attempts = 0
        # Calls of attempts with no outcome yet: token -> (usage, seconds); the latest last.
        self.pending: dict[str, tuple[Usage, float]] = {}

    def total(self) -> ItemSpent:
        usage, seconds, attempts = self.usage, self.seconds, self.attempts
        for extra, spent in self.pending.values():
            usage, seconds, attempts = usage + extra, seconds + spent, attempts + 1
        return ItemSpent(usage, seconds, attempts)


def _usage(raw: object) -> tuple[Usage, float] | None:
    """A record's usage and seconds; ``None`` when the usage is malformed.

    The job's ledger counts such a record without its usage; it is not counted here either.
    """
    if raw is None:
        return Usage(), 0.0
    try:
        usage = Usage.from_dict(raw)  # type: ignore[arg-type]  # it checks the type itself
    except (TypeError, ValueError):
        return None
    seconds = raw.get(SECONDS_KEY)  # type: ignore[attr-defined]  # a mapping: from_dict took it
    if (
        isinstance(seconds, (int, float))
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and seconds > 0
    ):
        return usage, float(seconds)
    return usage, 0.0


class JobSpent:
    """The job's spending before a run, read from its records.

    Args:
        records: The checkpoint's records, oldest first.
        prices: The run's price table: records whose cost was unknown are
            priced with it (as `Ledger` does), so a price added since counts.
        job_total: Whether to sum the job's total (for a job budget); without
            it ``total`` is the empty `Usage` and ``unpriced`` is empty.

    Attributes:
        total: Everything the job spent, in every run (when summed).
    """

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]],
        prices: PriceTable | None,
        *,
        job_total: bool = True,
    ) -> None:
        ledger = Ledger(prices=prices, skip_malformed=True) if job_total else None
        items: dict[str, _Item] = {}
        with collector_paused():
            for record in records:
                if type(record) is not dict and not isinstance(record, Mapping):
                    continue  # (a dict is checked first: this runs once per record)
                if ledger is not None:
                    ledger.add(record)
                self._fold(items, record)
        malformed = [] if ledger is None else ledger.malformed
        if malformed:
            logger.warning(
                "the usage of %d earlier record(s) is malformed and not counted (item %r first): "
                "the job budget counts the rest",
                len(malformed),
                malformed[0],
            )
        self.total = Usage() if ledger is None else ledger.total
        self.unpriced = (
            []
            if ledger is None or self.total.cost_usd is not None  # then every model was priced
            else sorted(
                {
                    NO_MODEL if model is None else str(model)
                    for model, usage in ledger.by_model().items()
                    if usage.cost_usd is None and not usage.is_empty()
                }
            )
        )
        """Models of earlier calls no price table knows (``"mixed"`` for an item of several).

        Items that recorded no usage (a process that called no model) cost
        nothing and are not among them.
        """
        self.priced_cost = (
            0.0
            if ledger is None
            else self.total.cost_usd
            if self.total.cost_usd is not None
            else math.fsum(u.cost_usd for u in ledger.by_model().values() if u.cost_usd is not None)
        )
        """The cost of the earlier calls that have a price (all of ``total``'s when known)."""
        self._items = {item_id: item.total() for item_id, item in items.items()}

    @staticmethod
    def _fold(items: dict[str, _Item], record: Mapping[str, Any]) -> None:
        call = record.get("call")
        item_id = record.get("id")
        if call is not None and item_id is None:
            parsed = _usage(record.get("usage"))
            if parsed is None:
                return  # a malformed usage: not counted, as by the ledger
            usage, seconds = parsed
            item = items.setdefault(str(call), _Item())
            token = str(record.get("a", ""))
            before, spent = item.pending.pop(token, (Usage(), 0.0))
            item.pending[token] = (before + usage, max(spent, seconds))  # latest last
            return
        if item_id is None or "run" in record or "agent_resume" in record:
            return
        status = record.get("status")
        if status is None or status in ("done", "retry"):
            items.pop(str(item_id), None)  # done or released: a new run starts afresh
            return
        if status != "failed":
            return
        raw = record.get("usage")
        parsed = _usage(raw)
        if parsed is None:
            return  # a malformed usage: not counted, as by the ledger
        usage, seconds = parsed
        item = items.setdefault(str(item_id), _Item())
        named = raw.get("a") if isinstance(raw, Mapping) else None
        # The outcome covers its own attempt's calls (as the Ledger counts).
        if isinstance(named, str):
            covered: str | None = named
        else:
            covered = None if raw is None else next(reversed(item.pending), None)
        if covered is not None and covered in item.pending:
            _, spent = item.pending.pop(covered)
            seconds = max(seconds, spent)
        item.usage = item.usage + usage
        item.seconds += seconds
        item.attempts += 1

    def item(self, item_id: str) -> ItemSpent | None:
        """The item's totals over its earlier attempts, or ``None`` when it has none."""
        return self._items.get(item_id)

    def add_attempt(self, item_id: str, usage: Usage, seconds: float) -> None:
        """Count an attempt this run recorded as failed, for the item's next attempt in the run.

        (``total`` stays what the job spent before the run: the run counts its own.)
        """
        before = self._items.get(item_id)
        self._items[item_id] = (
            ItemSpent(usage, seconds, 1)
            if before is None
            else ItemSpent(before.usage + usage, before.seconds + seconds, before.attempts + 1)
        )
