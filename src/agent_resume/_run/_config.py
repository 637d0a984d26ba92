"""``RunConfig``: every control of a ``ResumableRun`` in one frozen, validated value."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from agent_resume._deadline import Clock, to_seconds
from agent_resume._errors import ArgumentTypeError, ArgumentValueError
from agent_resume._stop import StopCondition, StopLike, as_stop_condition
from agent_resume.stores import Store

if TYPE_CHECKING:
    from agent_resume._accounting._prices import PriceTable
    from agent_resume._accounting._usage import Usage
    from agent_resume._fingerprint import Fingerprinter
    from agent_resume._run._report import ItemOutcome
    from agent_resume._stop import StopReason

__all__ = ["ProgressMode", "RunConfig"]

ProgressMode = Literal["auto", "rich", "log"]
"""How progress is shown: ``"auto"`` picks rich on a terminal, log lines otherwise."""

_ON_CHANGE = ("rerun", "keep", "error")


def _duration(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Normalise an optional duration; ``None`` and ``math.inf`` both mean no limit."""
    if value is None:
        return math.inf
    seconds = to_seconds(value, name)  # type: ignore[arg-type]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        rule = "at least 0" if allow_zero else "greater than 0"
        raise ArgumentValueError(
            name, value, f"`{name}` must be {rule} seconds, or None for no limit (got {value!r})"
        )
    return seconds


def _positive_int(name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(
            name, value, f"`{name}` must be an int (got {type(value).__name__} {value!r})"
        )
    if value < 1:
        raise ArgumentValueError(name, value, f"`{name}` must be at least 1 (got {value!r})")
    return value


def _callable_or_none(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise ArgumentTypeError(
            name, value, f"`{name}` must be callable or None (got {type(value).__name__})"
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class RunConfig:
    """Every control of a :class:`~agent_resume.ResumableRun`, validated once.

    Durations accept seconds or a ``timedelta``; ``None`` (or ``math.inf``)
    means no limit and is stored as ``math.inf``. Derive variants with
    ``dataclasses.replace(config, concurrency=16)``, which validates again.

    Attributes:
        job_id: The job's ID, as given to ``AgentResume.resume_or_start``.
        store: Where the checkpoint lives: a ``.jsonl`` path, a URL
            (``sqlite:///...``, ``postgresql://...``, ``memory:``) or a store.
        time_budget: The longest this run may admit items for, from its start.
        finish_by: A wall-clock cut-off for admitting items (``datetime``).
        item_timeout: Each item's own budget, intersected with the run's.
        stop: Stop conditions for each item's LLM loop, read by
            ``ctx.should_stop()``; a condition or a plain callable.
        max_cost_usd: Run budget in US dollars: no item is admitted once the
            run's items have cost this much.
        max_tokens: Run budget in tokens (input plus output).
        max_items: Run budget in items: at most this many are started.
        max_attempts: Failed attempts after which an item is quarantined.
        concurrency: Items in flight at once: threads for ``run``, tasks for
            ``arun``.
        fail_fast: Re-raise the first exception from ``process`` (after
            recording it) instead of going on with the next item.
        prices: The price table for ``ctx.record_usage``; the built-in one
            when ``None``.
        progress: ``True`` (or ``"auto"``) for a rich display on a terminal
            and log lines otherwise, ``"rich"`` or ``"log"`` to choose, and
            ``False`` for nothing.
        progress_interval: Seconds between progress log lines.
        on_item_done: Called with an ``ItemOutcome`` after each item is
            recorded (done or failed), from the thread that ran it.
        on_usage: Called with ``(item_id, usage)`` for each ``record_usage``.
        on_stop: Called once with the ``StopReason`` when the run stops
            admitting items early (a budget, the deadline, a signal).
        grace_period: After SIGINT or SIGTERM, how long in-flight items may
            take to finish before the run returns without them.
        conversation_dir: Where ``ctx.save_conversation`` writes. ``None``
            puts it beside a file checkpoint (``<checkpoint>.conversations``)
            and keeps it in memory for stores without a path.
        fingerprint: Passed to the session: hash item contents (``True`` or
            a callable) to detect changed items.
        on_change: Passed to the session: ``"rerun"``, ``"keep"`` or ``"error"``.
        handle_signals: Whether to install SIGINT and SIGTERM handlers (only
            ever done in the main thread, and restored afterwards).
        clock: The monotonic clock, ``time.monotonic`` unless a test injects
            a ``MockClock``.
        wall_clock: The wall clock in POSIX seconds, for ``finish_by`` and the
            report's timestamps.
    """

    job_id: str
    store: str | os.PathLike[str] | Store
    time_budget: float | timedelta | None = None
    finish_by: datetime | None = None
    item_timeout: float | timedelta | None = None
    stop: StopLike | None = None
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    max_items: int | None = None
    max_attempts: int = 3
    concurrency: int = 1
    fail_fast: bool = False
    prices: PriceTable | None = None
    progress: bool | ProgressMode = True
    progress_interval: float | timedelta = 10.0
    on_item_done: Callable[[ItemOutcome], object] | None = None
    on_usage: Callable[[str, Usage], object] | None = None
    on_stop: Callable[[StopReason], object] | None = None
    grace_period: float | timedelta = 30.0
    conversation_dir: str | os.PathLike[str] | None = None
    fingerprint: bool | Fingerprinter | None = None
    on_change: Literal["rerun", "keep", "error"] = "rerun"
    handle_signals: bool = True
    clock: Clock = field(default=time.monotonic, compare=False)
    wall_clock: Clock = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        if not isinstance(self.job_id, str) or not self.job_id:
            raise ArgumentValueError(
                "job_id", self.job_id, f"`job_id` must be a non-empty str (got {self.job_id!r})"
            )
        if not isinstance(self.store, (str, os.PathLike, Store)):
            raise ArgumentTypeError(
                "store",
                self.store,
                "`store` must be a path, a URL or a Store "
                f"(got {type(self.store).__name__} {self.store!r:.60})",
            )
        setattr_(self, "time_budget", _duration("time_budget", self.time_budget))
        setattr_(self, "item_timeout", _duration("item_timeout", self.item_timeout))
        setattr_(
            self, "grace_period", _duration("grace_period", self.grace_period, allow_zero=True)
        )
        setattr_(self, "progress_interval", _duration("progress_interval", self.progress_interval))
        if self.finish_by is not None and not isinstance(self.finish_by, datetime):
            raise ArgumentTypeError(
                "finish_by",
                self.finish_by,
                f"`finish_by` must be a datetime or None (got {type(self.finish_by).__name__})",
            )
        if self.stop is not None:
            setattr_(self, "stop", as_stop_condition(self.stop, "stop"))
        cost = self.max_cost_usd
        if cost is not None:
            if isinstance(cost, bool) or not isinstance(cost, (int, float)):
                raise ArgumentTypeError(
                    "max_cost_usd",
                    cost,
                    f"`max_cost_usd` must be a number or None (got {type(cost).__name__})",
                )
            if not cost > 0 or math.isinf(cost):
                raise ArgumentValueError(
                    "max_cost_usd",
                    cost,
                    f"`max_cost_usd` must be finite and greater than 0 (got {cost!r})",
                )
            setattr_(self, "max_cost_usd", float(cost))
        _positive_int("max_tokens", self.max_tokens, optional=True)
        _positive_int("max_items", self.max_items, optional=True)
        _positive_int("max_attempts", self.max_attempts)
        _positive_int("concurrency", self.concurrency)
        for name in ("fail_fast", "handle_signals"):
            if not isinstance(getattr(self, name), bool):
                value = getattr(self, name)
                raise ArgumentTypeError(
                    name, value, f"`{name}` must be a bool (got {type(value).__name__} {value!r})"
                )
        if self.progress not in (True, False, "auto", "rich", "log"):
            raise ArgumentValueError(
                "progress",
                self.progress,
                f"`progress` must be True, False, 'auto', 'rich' or 'log' (got {self.progress!r})",
            )
        if self.prices is not None:
            from agent_resume._accounting._prices import PriceTable

            if isinstance(self.prices, Mapping):
                setattr_(self, "prices", PriceTable(self.prices))
            elif not isinstance(self.prices, PriceTable):
                raise ArgumentTypeError(
                    "prices",
                    self.prices,
                    f"`prices` must be a PriceTable, a mapping or None "
                    f"(got {type(self.prices).__name__})",
                )
        for name in ("on_item_done", "on_usage", "on_stop", "clock", "wall_clock"):
            _callable_or_none(name, getattr(self, name))
        if self.conversation_dir is not None and not isinstance(
            self.conversation_dir, (str, os.PathLike)
        ):
            raise ArgumentTypeError(
                "conversation_dir",
                self.conversation_dir,
                f"`conversation_dir` must be a path or None "
                f"(got {type(self.conversation_dir).__name__})",
            )
        if self.on_change not in _ON_CHANGE:
            raise ArgumentValueError(
                "on_change",
                self.on_change,
                f"`on_change` must be 'rerun', 'keep' or 'error' (got {self.on_change!r})",
            )

    # The normalised values, typed as what they are after __post_init__.

    @property
    def time_budget_seconds(self) -> float:
        """``time_budget`` in seconds, ``math.inf`` for none."""
        return self.time_budget  # type: ignore[return-value]

    @property
    def item_timeout_seconds(self) -> float:
        """``item_timeout`` in seconds, ``math.inf`` for none."""
        return self.item_timeout  # type: ignore[return-value]

    @property
    def grace_seconds(self) -> float:
        """``grace_period`` in seconds."""
        return self.grace_period  # type: ignore[return-value]

    @property
    def stop_condition(self) -> StopCondition | None:
        """``stop`` as a ``StopCondition``, or ``None``."""
        return self.stop  # type: ignore[return-value]

    def __repr__(self) -> str:
        # Only what differs from the defaults, so a log line shows what was configured.
        parts = []
        for f in fields(self):
            if not f.repr or f.name in ("clock", "wall_clock"):
                continue
            value = getattr(self, f.name)
            if f.name not in ("job_id", "store") and value == _DEFAULTS.get(f.name):
                continue
            parts.append(f"{f.name}={_show(value)}")
        for name in ("clock", "wall_clock"):
            value = getattr(self, name)
            if value is not _DEFAULTS[name]:
                parts.append(f"{name}={_show(value)}")
        return f"RunConfig({', '.join(parts)})"


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "None"
    if callable(value) and not isinstance(value, StopCondition):
        return getattr(value, "__qualname__", None) or repr(value)
    return repr(value)


_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(RunConfig) if f.name not in ("job_id", "store")
}
for _name in ("time_budget", "item_timeout"):
    _DEFAULTS[_name] = math.inf
