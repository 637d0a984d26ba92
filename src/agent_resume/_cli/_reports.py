"""What ``status`` and ``report`` say about a job, as documents of the report schema.

Both commands fold the store's records into the documents of
:data:`agent_resume._schema.SCHEMA` here; their JSON output is these
documents, and their tables and CSV are renderings of the same values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent_resume._accounting._ledger import Ledger
from agent_resume._accounting._prices import PriceTable
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._run._report import RunReport
from agent_resume._schema import (
    SCHEMA_VERSION,
    USAGE_FIELDS,
    seconds_json,
    timestamp_json,
    usage_json,
)

__all__ = ["ITEM_COLUMNS", "KILLED_MESSAGE", "item_rows", "report_document", "run_documents"]

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


def _is_item(record: Mapping[str, Any]) -> bool:
    return "id" in record and "run" not in record


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _killed(start: Mapping[str, Any], window: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A run with a start record and no end, from the records written after its start."""
    ledger = Ledger.from_records(window)
    done = sum(1 for r in window if _is_item(r) and r.get("status") in (None, "done"))
    failed = sum(1 for r in window if _is_item(r) and r.get("status") == "failed")
    ts = start.get("ts")
    return {
        "job_id": None,
        "started_at": timestamp_json(ts if isinstance(ts, (int, float)) else None),
        "ended_at": None,
        "duration_seconds": None,
        "stop_reason": "killed",
        "stop_message": KILLED_MESSAGE,
        "done": done,
        "already_done": None,
        "failed": failed,
        "quarantined": None,
        "remaining": None,
        "abandoned": None,
        "interrupted": None,
        "retried": None,
        "call_retries": None,
        "rate_limited": None,
        "calls_in_flight": None,
        "usage": usage_json(ledger.total),
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
    """Every run of a job as a run object of the schema, oldest first.

    A run with an end record is its report. A run with a start record and no
    end (killed, or still running) gets ``stop_reason`` ``"killed"`` and what
    its records say: the items it recorded done and failed, and the usage of
    those records and of its calls (so its spending is counted).
    """
    runs: list[dict[str, Any]] = []
    start: Mapping[str, Any] | None = None
    window: list[Mapping[str, Any]] = []
    for record in records:
        kind = record.get("run")
        if kind == "start":
            if start is not None:
                runs.append(_killed(start, window))
            start, window = record, []
        elif kind == "end":
            document = _ended(record)
            if document is not None:
                runs.append(document)
            elif start is not None:
                runs.append(_killed(start, window))
            start, window = None, []
        elif start is not None:
            window.append(record)
    if start is not None:
        runs.append(_killed(start, window))
    return runs


class _ItemFacts:
    """What an item's records say beyond usage: attempts, stop reason, turns, duration."""

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
        self.turns = _count(record.get("turns"))
        duration = record.get("duration_seconds", record.get("duration"))
        self.duration = seconds_json(duration)


def item_rows(
    records: Iterable[Mapping[str, Any]],
    *,
    quarantined: Iterable[str] = (),
    order: Sequence[str] | None = None,
    prices: PriceTable | None = None,
) -> tuple[list[dict[str, Any]], Ledger]:
    """One row per item (:data:`ITEM_COLUMNS`), and the ledger they were summed in.

    Args:
        records: The store's records, oldest first.
        quarantined: The items to show as ``quarantined`` rather than ``failed``.
        order: The item IDs in input order; rows follow it (items the input
            does not name come after, sorted by ID). ``None`` sorts by ID.
        prices: A price table to re-price the records with.
    """
    facts: dict[str, _ItemFacts] = {}

    def remember(found: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
        for record in found:
            if _is_item(record) and isinstance(record.get("id"), str):
                facts.setdefault(record["id"], _ItemFacts()).add(record)
            yield record

    ledger = Ledger.from_records(remember(records), prices=prices)
    held = set(quarantined)
    rows = {}
    for item in ledger.items():
        fact = facts.get(item.item_id) or _ItemFacts()
        status = item.status
        if status == "failed" and item.item_id in held:
            status = "quarantined"
        usage = usage_json(item.usage)
        if usage["cost_usd"] is None and not any(usage[name] for name in USAGE_FIELDS[:-1]):
            usage["cost_usd"] = 0.0  # no call, no token: it cost nothing (known, not unknown)
        rows[item.item_id] = {
            "item_id": item.item_id,
            "status": status,
            "attempts": fact.attempts,
            "stop_reason": fact.stop,
            "turns": fact.turns,
            "duration_seconds": fact.duration,
            **usage,
        }
    if order is None:
        ids = sorted(rows)
    else:
        named = list(dict.fromkeys(i for i in order if i in rows))
        ids = named + sorted(set(rows) - set(named))
    return [rows[i] for i in ids], ledger


def report_document(
    job_id: str | None, rows: list[dict[str, Any]], ledger: Ledger
) -> dict[str, Any]:
    """The ``report --format json`` document: the items, the total and the usage by model."""
    return {
        "schema_version": SCHEMA_VERSION,
        "job_id": job_id,
        "items": rows,
        "total": {"items": len(rows), **usage_json(ledger.total)},
        "by_model": {str(model): usage_json(u) for model, u in ledger.by_model().items()},
    }
