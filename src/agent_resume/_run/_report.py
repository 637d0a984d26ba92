"""``RunReport``, what one run did, and ``ItemOutcome``, what happened to one item."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from agent_resume._accounting._usage import Usage
from agent_resume._errors import ArgumentTypeError, ArgumentValueError, add_note
from agent_resume._records import error_text
from agent_resume._render import format_cost, format_duration, format_timestamp, parse_timestamp
from agent_resume._schema import SCHEMA_VERSION, seconds_json, timestamp_json, usage_json

__all__ = [
    "STOP_REASONS",
    "ItemOutcome",
    "RunReport",
    "RunStopReason",
    "ended_by",
    "left_for_later",
    "record_end_of",
]

RunStopReason = Literal[
    "completed",
    "time_budget",
    "cost_budget",
    "token_budget",
    "item_budget",
    "signal",
    "fail_fast",
    "failures",
    "error",
]
"""Why a run stopped admitting items (``failures``: it went through its input,
but failed items are left for a later run; ``error``: an exception escaped the
run, and was raised to its caller after this was recorded)."""

STOP_REASONS: tuple[str, ...] = (
    "completed",
    "time_budget",
    "cost_budget",
    "token_budget",
    "item_budget",
    "signal",
    "fail_fast",
    "failures",
    "error",
)


@dataclass(frozen=True)
class ItemOutcome:
    """What happened to one item in a run, as given to ``on_item_done``.

    Attributes:
        item_id: The item's ID.
        status: ``"done"``, ``"failed"`` (will be retried in a later run),
            ``"quarantined"`` (failed too often, or for good) or
            ``"interrupted"`` (cut by the run's soft deadline or a signal's
            grace period: no attempt used, run again next time).
        attempt: Which attempt this was, from 1.
        duration_seconds: How long ``process`` ran.
        usage: The usage recorded for the item in this attempt.
        error: The exception, for a failure.
        stop: The name of the stop reason the item's loop ended with, if any.
        result: What ``process`` returned, for a done item.
    """

    item_id: str
    status: Literal["done", "failed", "quarantined", "interrupted"]
    attempt: int
    duration_seconds: float
    usage: Usage
    error: BaseException | None = None
    stop: str | None = None
    result: Any = None


def _moment(value: Any, key: str) -> float:
    if value is None:
        return 0.0
    try:
        return parse_timestamp(value, key).timestamp()
    except (ArgumentTypeError, ArgumentValueError):
        raise ArgumentValueError(
            key, value, f"report field `{key}` must be an ISO-8601 time (got {value!r:.60})"
        ) from None


def _usage_from_json(value: Any) -> Usage:
    if not isinstance(value, Mapping):
        return Usage()

    def count(name: str) -> int:
        found = value.get(name)
        return found if isinstance(found, int) and not isinstance(found, bool) else 0

    cost = value.get("cost_usd")
    return Usage(
        calls=count("calls"),
        input_tokens=count("input_tokens"),
        output_tokens=count("output_tokens"),
        cache_read_tokens=count("cache_read_tokens"),
        cache_write_tokens=count("cache_write_tokens"),
        reasoning_tokens=count("reasoning_tokens"),
        cost_usd=float(cost)
        if isinstance(cost, (int, float)) and not isinstance(cost, bool)
        else None,
    )


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(
            key, value, f"report field `{key}` must be an int (got {type(value).__name__})"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """What one run of a job did; returned by ``run``/``arun`` and recorded in the store.

    Attributes:
        job_id: The job.
        started_at: When the run started, POSIX seconds.
        ended_at: When it returned, POSIX seconds.
        done: Items completed in this run.
        already_done: Items that were done before this run started.
        failed: Failed attempts recorded in this run (retried later, or quarantined).
        quarantined: Items quarantined in the job at the end of this run.
        remaining: Items of the input still to do (not done, not quarantined)
            at the end, or ``None`` when the input was an iterator the run did
            not read to its end.
        stop_reason: Why the run stopped admitting items: ``completed``,
            ``time_budget``, ``cost_budget``, ``token_budget``, ``item_budget``,
            ``signal`` or ``fail_fast``.
        stop_message: The details of the stop reason, for people.
        abandoned: Items in flight when the run returned that were not
            recorded (a grace period ran out); they run again next time.
        interrupted: Items cut by the run (at its deadline plus the grace
            period, or at the end of a signal's grace period) and recorded
            as interrupted: their usage is kept, no attempt is used, and
            they run again next time.
        usage: Usage totals of this run's items, with cost (``None`` when a
            model could not be priced).
        retried: Items that failed an attempt in this run and were then done
            in this run (their failed attempts are in ``failed`` too).
        call_retries: Calls made through ``ctx.call``/``ctx.acall`` that were
            tried again after a transient error.
        rate_limited: Calls answered with HTTP 429.
        calls_in_flight: Calls started and never returned when the run ended
            (their usage is unknown: ``usage`` is then a lower bound).
    """

    job_id: str
    started_at: float
    ended_at: float
    done: int = 0
    already_done: int = 0
    failed: int = 0
    quarantined: int = 0
    remaining: int | None = None
    stop_reason: RunStopReason = "completed"
    stop_message: str = ""
    abandoned: int = 0
    usage: Usage = field(default_factory=Usage)
    interrupted: int = 0
    retried: int = 0
    call_retries: int = 0
    rate_limited: int = 0
    calls_in_flight: int = 0

    def __post_init__(self) -> None:
        if self.stop_reason not in STOP_REASONS:
            raise ArgumentValueError(
                "stop_reason",
                self.stop_reason,
                f"`stop_reason` must be one of {', '.join(STOP_REASONS)} (got {self.stop_reason!r})",
            )

    @property
    def duration_seconds(self) -> float:
        """Seconds from start to end."""
        return max(0.0, self.ended_at - self.started_at)

    @property
    def start(self) -> datetime:
        """The start as an aware UTC ``datetime``."""
        return datetime.fromtimestamp(self.started_at, tz=timezone.utc)

    @property
    def end(self) -> datetime:
        """The end as an aware UTC ``datetime``."""
        return datetime.fromtimestamp(self.ended_at, tz=timezone.utc)

    @property
    def usage_is_lower_bound(self) -> bool:
        """Whether calls were in flight when the run ended, so that ``usage`` misses them."""
        return self.calls_in_flight > 0

    @property
    def completed(self) -> bool:
        """Whether the run went through its whole input."""
        return self.stop_reason == "completed"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form recorded in the store and printed by ``run --json``.

        It follows the report schema (``agent_resume._schema.SCHEMA``, its
        ``run_document``): ``schema_version``, ISO-8601 UTC times with a
        ``Z``, ``duration_seconds``, ``stop_reason`` and a usage object with
        ``input_tokens``/``output_tokens``/``cost_usd`` (``null`` when a
        model could not be priced). ``from_dict`` reads it back, and also the
        form written before the schema (``job``, ``start``, ``stop``, ...).
        """
        return {
            "schema_version": SCHEMA_VERSION,
            "job_id": self.job_id,
            "started_at": timestamp_json(self.started_at),
            "ended_at": timestamp_json(self.ended_at),
            "duration_seconds": seconds_json(self.duration_seconds),
            "stop_reason": self.stop_reason,
            "stop_message": self.stop_message,
            "done": self.done,
            "already_done": self.already_done,
            "failed": self.failed,
            "quarantined": self.quarantined,
            "remaining": self.remaining,
            "abandoned": self.abandoned,
            "interrupted": self.interrupted,
            "retried": self.retried,
            "call_retries": self.call_retries,
            "rate_limited": self.rate_limited,
            "calls_in_flight": self.calls_in_flight,
            "usage": usage_json(self.usage),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """Read a report written by ``to_dict``, in the schema or the older form.

        Unknown keys are ignored.

        Raises:
            ArgumentTypeError: ``data`` is not a mapping or a field has the wrong type.
            ArgumentValueError: The stop reason is not one this library writes.
        """
        if not isinstance(data, Mapping):
            raise ArgumentTypeError(
                "data", data, f"a report must be a mapping (got {type(data).__name__})"
            )
        remaining = data.get("remaining")
        if remaining is not None:
            remaining = _count(data, "remaining")
        if "schema_version" in data:
            started = _moment(data.get("started_at"), "started_at")
            ended = _moment(data.get("ended_at"), "ended_at")
            usage = _usage_from_json(data.get("usage"))
            job_id, stop = data.get("job_id"), data.get("stop_reason", "completed")
        else:  # written before the schema
            started = float(data.get("start", 0.0))
            ended = float(data.get("end", started + float(data.get("duration", 0.0))))
            usage = Usage.from_dict(data.get("usage") or {})
            job_id, stop = data.get("job"), data.get("stop", "completed")
        return cls(
            job_id=str(job_id or ""),
            started_at=started,
            ended_at=ended,
            done=_count(data, "done"),
            already_done=_count(data, "already_done"),
            failed=_count(data, "failed"),
            quarantined=_count(data, "quarantined"),
            remaining=remaining,
            stop_reason=stop,
            stop_message=str(data.get("stop_message", "")),
            abandoned=_count(data, "abandoned"),
            usage=usage,
            interrupted=_count(data, "interrupted"),
            retried=_count(data, "retried"),
            call_retries=_count(data, "call_retries"),
            rate_limited=_count(data, "rate_limited"),
            calls_in_flight=_count(data, "calls_in_flight"),
        )

    def rows(self) -> list[tuple[str, str]]:
        """Deprecated name of `summary` (``rows()`` gives one dict per item elsewhere)."""
        warnings.warn(
            "RunReport.rows() is now RunReport.summary()", DeprecationWarning, stacklevel=2
        )
        return self.summary()

    def summary(self) -> list[tuple[str, str]]:
        """The report as ``(label, value)`` pairs, as ``format()`` prints them."""
        u = self.usage
        cost = format_cost(u.cost_usd)
        stop = self.stop_reason + (f" ({self.stop_message})" if self.stop_message else "")
        rows = [
            ("job", self.job_id),
            ("started", format_timestamp(self.started_at)),
            ("duration", format_duration(self.duration_seconds)),
            ("stopped", stop),
            ("done", f"{self.done:,}"),
            ("already done", f"{self.already_done:,}"),
            (
                "failed",
                f"{self.failed:,}"
                + (f" ({self.retried:,} retried and done in this run)" if self.retried else ""),
            ),
            ("quarantined", f"{self.quarantined:,}"),
            ("remaining", "unknown" if self.remaining is None else f"{self.remaining:,}"),
        ]
        if self.abandoned:
            rows.append(("abandoned", f"{self.abandoned:,}"))
        if self.interrupted:
            rows.append(("interrupted", f"{self.interrupted:,}"))
        bound = " (at least: calls were in flight at the end)" if self.calls_in_flight else ""
        rows += [
            ("calls", f"{u.calls:,}{bound}"),
            ("tokens", f"{u.input_tokens:,} in / {u.output_tokens:,} out"),
            ("cost", cost + bound),
        ]
        if self.call_retries or self.rate_limited:
            rows.append(("call retries", f"{self.call_retries:,} ({self.rate_limited:,} HTTP 429)"))
        return rows

    def format(self) -> str:
        """Return the report as a two-column table for people."""
        rows = self.summary()
        width = max(len(label) for label, _ in rows)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)

    def __str__(self) -> str:
        return self.format()


def left_for_later(count: int, noun: str) -> str:
    """The message of a ``failures`` stop: ``"1 failed item is left for a later run"``."""
    if count == 1:
        return f"1 {noun} is left for a later run"
    return f"{count} {noun}s are left for a later run"


def ended_by(error: BaseException) -> tuple[RunStopReason, str]:
    """The stop reason and message of a run that ``error`` ended (it escaped the run).

    A ``KeyboardInterrupt`` (Ctrl-C where the run does not handle signals)
    and the cancellation of ``arun``'s task are a ``signal``; any other
    exception an ``error``, named in the message.
    """
    text = error_text(error)
    if isinstance(error, KeyboardInterrupt):
        return "signal", f"interrupted ({text})"
    if isinstance(error, asyncio.CancelledError):
        return "signal", f"cancelled ({text})"
    return "error", text


def record_end_of(error: BaseException, record_end: Callable[[], object]) -> None:
    """Write the end record of a run that ``error`` ended, before it goes on up.

    ``error`` is never replaced: a store that cannot write the record either
    (``error`` may be its own) is named in a note on it.
    """
    try:
        record_end()
    except Exception as failed:
        add_note(error, f"agent-resume: the run's end record was not written: {failed}")
