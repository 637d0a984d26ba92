"""What ``status`` and ``report`` say about a job, as documents of the report schema.

Both commands fold the store's records into the documents of
:data:`agent_resume._schema.SCHEMA` here; their JSON output is these
documents, and their tables and CSV are renderings of the same values.

A record whose usage is malformed (a hand-edited or damaged line that is
still valid JSON) is counted without that usage: its item is still done or
failed, the totals are then a lower bound, and the command warns, naming the
items (:func:`warn_malformed`). One damaged record does not hide the rest of
the bill.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent_resume._accounting._ledger import Ledger
from agent_resume._accounting._prices import MIXED_MODEL, PriceTable
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._run._report import RunReport
from agent_resume._schema import (
    SCHEMA_VERSION,
    USAGE_FIELDS,
    seconds_json,
    timestamp_json,
    usage_json,
)

__all__ = [
    "ITEM_COLUMNS",
    "KILLED_MESSAGE",
    "ItemFolder",
    "RunFolder",
    "report_document",
    "run_documents",
    "warn_malformed",
    "warn_unpriced",
]

ITEM_COLUMNS = (
    "item_id",
    "status",
    "attempts",
    "stop_reason",
    "turns",
    "duration_seconds",
    *USAGE_FIELDS,
)
"""The fields of an item row, in order: the CSV columns of ``report``."""

KILLED_MESSAGE = "no end record: the run was killed, or is still running"


# How many items a warning about malformed usage names.
_NAMED = 5


def warn_malformed(ledger: Ledger) -> None:
    """Warn once about the records the ledger counted without their malformed usage."""
    items = ledger.malformed
    if not items:
        return
    named = ", ".join(repr(i) for i in dict.fromkeys(items[:_NAMED]))
    more = f" and {len(items) - _NAMED:,} more" if len(items) > _NAMED else ""
    warnings.warn(
        f"the usage of {len(items):,} record(s) is malformed and not counted (item {named}"
        f"{more}): the totals are a lower bound",
        stacklevel=2,
    )


def warn_unpriced(ledger: Ledger, prices: PriceTable) -> None:
    """Warn once, after ``--prices``, about the models whose cost is still unknown."""
    unknown = [
        model
        for model, usage in ledger.by_model().items()
        if model not in (None, MIXED_MODEL) and usage.cost_usd is None
    ]
    if not unknown:
        return
    named = ", ".join(repr(m) for m in unknown[:_NAMED])
    more = f" and {len(unknown) - _NAMED:,} more" if len(unknown) > _NAMED else ""
    warnings.warn(
        f"no price for model {named}{more}, in the price file or elsewhere: its cost stays "
        "unknown (an entry prices the model of its name, or that name followed by a date "
        "or version suffix such as -2024-08-06, -001 or @20241022)",
        stacklevel=2,
    )


def _is_item(record: Mapping[str, Any]) -> bool:
    return "id" in record and "run" not in record


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class _OpenRun:
    """A run whose start record was read and whose end was not (yet)."""

    __slots__ = ("done", "failed", "ledger", "order", "start")

    def __init__(self, start: Mapping[str, Any], order: int) -> None:
        self.start = start
        self.order = order
        self.ledger = Ledger(skip_malformed=True)
        self.done = 0
        self.failed = 0

    def ends_with(self, record: Mapping[str, Any], document: Mapping[str, Any] | None) -> bool:
        """Whether an end record is this run's: the same process and start time where known."""
        pid = record.get("pid")
        if pid is not None and self.start.get("pid") != pid:
            return False
        started = None if document is None else document.get("started_at")
        ts = self.start.get("ts")
        return (
            started is None
            or not isinstance(ts, (int, float))
            or started[:19] == str(timestamp_json(ts))[:19]
        )


class RunFolder:
    """Every run of a job as a run object of the schema, folded from its records one by one.

    A run with an end record is its report. A run with a start record and no
    end (killed, or still running) gets ``stop_reason`` ``"killed"`` and what
    its records say: the items it recorded done and failed, and the usage of
    those records and of its calls (so its spending is counted). Several runs
    may be open at once (workers sharing a SQLite or PostgreSQL job): an end
    record closes the start of its own process and start time, and the
    records in between count for the run started last.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[int, dict[str, Any]]] = []
        self._open: list[_OpenRun] = []
        self._order = 0

    def add(self, record: Mapping[str, Any]) -> None:
        """Fold one record, in store order."""
        kind = record.get("run")
        if kind == "start":
            self._open.append(_OpenRun(record, self._order))
            self._order += 1
        elif kind == "end":
            document = _ended(record)
            run = next((r for r in reversed(self._open) if r.ends_with(record, document)), None)
            if run is None and self._open and record.get("pid") is None:
                run = self._open[-1]  # an end record of an older version names no process
            if run is not None:
                self._open.remove(run)
            order = run.order if run is not None else self._order
            if run is None:
                self._order += 1
            if document is not None:
                self._runs.append((order, document))
            elif run is not None:
                self._runs.append((order, _killed(run)))
        elif self._open:
            run = self._open[-1]
            run.ledger.add(record)
            if _is_item(record):
                status = record.get("status")
                run.done += status in (None, "done")
                run.failed += status == "failed"

    def finish(self) -> list[dict[str, Any]]:
        """The runs, oldest first (by their start), those with no end closed as killed."""
        runs = self._runs + [(run.order, _killed(run)) for run in self._open]
        self._open = []
        return [document for _, document in sorted(runs, key=lambda pair: pair[0])]


def _killed(run: _OpenRun) -> dict[str, Any]:
    """The run object of a run with a start record and no end."""
    ts = run.start.get("ts")
    return {
        "job_id": None,
        "started_at": timestamp_json(ts if isinstance(ts, (int, float)) else None),
        "ended_at": None,
        "duration_seconds": None,
        "stop_reason": "killed",
        "stop_message": KILLED_MESSAGE,
        "done": run.done,
        "already_done": None,
        "failed": run.failed,
        "quarantined": None,
        "remaining": None,
        "abandoned": None,
        "interrupted": None,
        "retried": None,
        "call_retries": None,
        "rate_limited": None,
        "calls_in_flight": None,
        "usage": usage_json(run.ledger.total),
    }


def _ended(record: Mapping[str, Any]) -> dict[str, Any] | None:
    report = record.get("report")
    if not isinstance(report, Mapping):
        return None
    try:
        parsed = RunReport.from_dict(report)  # checks it, and reads the older form
    except (ArgumentTypeError, ArgumentValueError, TypeError, ValueError):
        return None
    # A report in the schema is shown as recorded (its times and durations exactly).
    document = dict(report) if "schema_version" in report else parsed.to_dict()
    document.pop("schema_version", None)
    return document


def run_documents(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every run of a job as a run object of the schema, oldest first (see :class:`RunFolder`)."""
    folder = RunFolder()
    for record in records:
        folder.add(record)
    return folder.finish()


class _ItemFacts:
    """What an item's records say beyond usage: attempts, stop reason, turns, duration.

    ``turns`` and ``duration`` are totals over the item's records that hold
    them (every recorded attempt, failed ones included, like its usage), or
    ``None`` when none does (records written before they were recorded).
    """

    __slots__ = ("attempts", "duration", "stop", "turns")

    def __init__(self) -> None:
        self.attempts = 0
        self.stop: str | None = None
        self.turns: int | None = None
        self.duration: float | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        status = record.get("status")
        if status == "retry":  # released: its attempts start over
            self.attempts = 0
            return
        attempt = _count(record.get("attempt"))
        self.attempts = attempt if attempt else self.attempts + 1
        stop = record.get("stop")
        self.stop = stop if isinstance(stop, str) else None
        turns = _count(record.get("turns"))
        if turns is not None:
            self.turns = turns + (self.turns or 0)
        seconds = seconds_json(record.get("seconds"))
        if seconds is not None:
            self.duration = seconds + (self.duration or 0.0)


class ItemFolder:
    """One row per item (:data:`ITEM_COLUMNS`), folded from the records one by one.

    Args:
        prices: A price table to re-price the records with.
    """

    def __init__(self, *, prices: PriceTable | None = None) -> None:
        self.ledger = Ledger(prices=prices, skip_malformed=True)
        self._facts: dict[str, _ItemFacts] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        """Fold one record, in store order."""
        self.ledger.add(record)
        if _is_item(record) and isinstance(record.get("id"), str):
            facts = self._facts.get(record["id"])
            if facts is None:
                facts = self._facts[record["id"]] = _ItemFacts()
            facts.add(record)

    def rows(
        self, *, quarantined: Iterable[str] = (), order: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The rows: sorted by ID, or in ``order`` (the input's IDs; the rest after, sorted).

        Args:
            quarantined: The items to show as ``quarantined`` rather than ``failed``.
            order: The item IDs in input order, or ``None``.
        """
        held = set(quarantined)
        rows = {}
        for item in self.ledger.items():
            fact = self._facts.get(item.item_id) or _ItemFacts()
            status = item.status
            if status == "failed" and item.item_id in held:
                status = "quarantined"
            usage = usage_json(item.usage)
            rows[item.item_id] = {
                "item_id": item.item_id,
                "status": status,
                "attempts": fact.attempts,
                "stop_reason": fact.stop,
                "turns": fact.turns,
                "duration_seconds": seconds_json(fact.duration),
                **usage,
            }
        if order is None:
            ids = sorted(rows)
        else:
            named = list(dict.fromkeys(i for i in order if i in rows))
            ids = named + sorted(set(rows) - set(named))
        return [rows[i] for i in ids]


def report_document(
    job_id: str | None, rows: list[dict[str, Any]], ledger: Ledger
) -> dict[str, Any]:
    """The ``report --format json`` document: the items, the total and the usage by model.

    Items that recorded no usage are in no model's group: they used none.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "job_id": job_id,
        "items": rows,
        "total": {"items": len(rows), **usage_json(ledger.total)},
        "by_model": {
            str(model): usage_json(u) for model, u in ledger.by_model().items() if not u.is_empty()
        },
    }
