"""``RunConfig``: every control of a ``ResumableRun`` in one frozen, validated value."""

from __future__ import annotations

import importlib.util
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args, overload

from agent_resume import _validate as validate
from agent_resume._accounting._prices import PriceTable
from agent_resume._deadline import Clock
from agent_resume._errors import ArgumentTypeError, ArgumentValueError, MissingExtraError
from agent_resume._limits import RateLimit
from agent_resume._render import masked_url
from agent_resume._retry import Retry
from agent_resume._run._tracing import RunTracing
from agent_resume._stop import StopCondition, StopLike, as_stop_condition
from agent_resume._validate import Seconds, duration
from agent_resume.stores import Store, store_kind

if TYPE_CHECKING:
    from agent_resume._accounting._usage import Usage
    from agent_resume._fingerprint import Fingerprinter
    from agent_resume._run._report import ItemOutcome
    from agent_resume._stop import StopReason

__all__ = ["OnUnknownPrice", "ProgressMode", "RunConfig"]

ProgressMode = Literal["auto", "rich", "log"]
"""How progress is shown: ``"auto"`` picks rich on a terminal, log lines otherwise."""

OnChange = Literal["rerun", "keep", "error"]

OnUnknownPrice = Literal["stop", "warn", "ignore"]
"""What a run does when a call's model has no price: see ``RunConfig.on_unknown_price``."""

_PROGRESS: dict[str, bool | ProgressMode] = {
    "on": True,
    "off": False,
    "auto": "auto",
    "rich": "rich",
    "log": "log",
}

In = TypeVar("In")
Out = TypeVar("Out")


class _Normalised(Generic[In, Out]):
    """A field that takes one type and holds another, normalised as it is set.

    ``RunConfig(time_budget=timedelta(minutes=1))`` holds ``60.0``: the conversion
    (and its check) runs when the dataclass's ``__init__`` sets the field, so
    ``dataclasses.replace`` converts again, and reading gives the normalised type.
    """

    def __init__(self, default: In, convert: Callable[[str, In], Out]) -> None:
        self.default = default
        self.convert = convert
        self.name = ""
        self.slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.slot = f"_{name}_value"

    @overload
    def __get__(self, obj: None, owner: object) -> In: ...
    @overload
    def __get__(self, obj: object, owner: object) -> Out: ...
    def __get__(self, obj: object | None, owner: object) -> In | Out:
        if obj is None:
            return self.default  # dataclasses reads the default from the class
        value: Out = obj.__dict__[self.slot]
        return value

    def __set__(self, obj: object, value: In) -> None:
        # Set once, from the frozen dataclass's __init__; a later assignment is refused
        # by the dataclass's own __setattr__ before it gets here.
        object.__setattr__(obj, self.slot, self.convert(self.name, value))


def _limit(name: str, value: Seconds | None) -> float:
    """A duration that may be ``None`` (or ``math.inf``) for no limit."""
    return duration(name, value)


def _span(name: str, value: Seconds) -> float:
    """A duration that must be given, greater than 0 and finite."""
    return duration(name, value, allow_none=False, allow_inf=False)


def _grace(name: str, value: Seconds) -> float:
    """A duration that must be given, may be 0 or infinite."""
    return duration(name, value, allow_none=False, allow_zero=True)


def _stop(name: str, value: StopLike | None) -> StopCondition | None:
    return None if value is None else as_stop_condition(value, name)


def _prices(name: str, value: PriceTable | Mapping[str, Any] | None) -> PriceTable | None:
    if value is None or isinstance(value, PriceTable):
        return value
    if isinstance(value, Mapping):
        return PriceTable(value)
    raise ArgumentTypeError(
        name,
        value,
        f"`{name}` must be a PriceTable, a mapping or None (got {type(value).__name__})",
    )


def _progress(name: str, value: bool | ProgressMode | Literal["on", "off"]) -> bool | ProgressMode:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _PROGRESS:
        mode = _PROGRESS[value]
        if mode == "rich" and not _importable("rich"):
            # Found here, not by the display's thread once the run has started.
            raise MissingExtraError("rich", f"{name}='rich'")
        return mode
    given: object = value
    validate.choice(name, given, (True, False, *_PROGRESS))
    raise AssertionError("unreachable: choice() raised")  # pragma: no cover


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or sys.modules[module] = None
        return False


def _cost(name: str, value: float | None) -> float | None:
    return validate.positive_number(name, value)


DEFAULT_RETRY = Retry()
"""The default call retry: 5 tries, backoff capped from 0.5 s up to 30 s."""


def _instance(name: str, value: object, kind: type, what: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise ArgumentTypeError(
            name,
            value,
            f"`{name}` must be {what} or None (got {type(value).__name__} {value!r:.80})",
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class RunConfig:
    """Every control of a :class:`~agent_resume.ResumableRun`, validated once.

    Every setting is checked when the config is made (and again by
    ``dataclasses.replace``), so a mistake is an ``ArgumentTypeError`` or
    ``ArgumentValueError`` naming the field, never an error from inside
    ``run()``. The checks are the ones ``AgentResume.resume_or_start`` makes.

    Durations are given as seconds or a ``timedelta`` and read back as
    ``float`` seconds; for the optional ones ``None`` means no limit and
    reads back as ``math.inf``. ``stop`` reads back as a ``StopCondition``,
    ``prices`` as a ``PriceTable`` and ``progress="on"``/``"off"`` as
    ``True``/``False``. Derive variants with
    ``dataclasses.replace(config, concurrency=16)``, which validates again.

    Attributes:
        job_id: The job's ID, as given to ``AgentResume.resume_or_start``.
        store: Where the checkpoint lives: a ``.jsonl`` path, a URL
            (``sqlite:///...``, ``postgresql://...``, ``memory:``) or a store.
            A path's leading ``~`` is your home directory
            (``~/ck/job.jsonl``, ``sqlite:///~/jobs.db``).
        time_budget: The longest this run may admit items for, from its start.
        finish_by: A wall-clock cut-off for admitting items (``datetime``).
        item_timeout: Each item's own budget, intersected with the run's.
        stop: Stop conditions for each item's LLM loop, read by
            ``ctx.should_stop()``; a condition or a plain callable.
        max_cost_usd: Run budget in US dollars: no item is admitted once the
            run's items have cost this much.
        max_tokens: Run budget in tokens (input plus output).
        max_items: Run budget in items: at most this many are started.
        job_max_cost_usd: Job budget in US dollars: what the job has spent
            in every run so far (killed runs' recorded calls included) counts,
            and no item is admitted once the total reaches it.
        job_max_tokens: Job budget in tokens (input plus output), counted
            like ``job_max_cost_usd``.
        on_unknown_price: What to do when a call's model has no price:
            ``"stop"`` stops admitting items (the stop reason names the
            model), ``"warn"`` logs a warning once per model and goes on,
            ``"ignore"`` goes on. ``None`` (the default) reads as ``"stop"``
            when a cost budget (``max_cost_usd`` or ``job_max_cost_usd``) is
            set and ``"warn"`` otherwise; `unknown_price` gives the value in
            force. A price table's ``fallback`` price prices such calls (as
            an estimate, ``price_source="fallback"``), so they are not unknown.
        max_attempts: Failed attempts after which an item is quarantined.
        concurrency: Items in flight at once: threads for ``run``, tasks for
            ``arun``.
        fail_fast: Re-raise the first exception from ``process`` (after
            recording it) instead of going on with the next item.
        prices: The price table for ``ctx.record_usage``; the built-in one
            when ``None``. A mapping is turned into a ``PriceTable``.
        progress: ``True`` (or ``"auto"``, ``"on"``) for a rich display on a
            terminal and log lines otherwise, ``"rich"`` or ``"log"`` to
            choose, and ``False`` (or ``"off"``) for nothing.
        progress_interval: Seconds between progress log lines.
        on_item_done: Called with an ``ItemOutcome`` after each item is
            recorded (done or failed), from the thread that ran it.
        on_usage: Called with ``(item_id, usage)`` for each ``record_usage``.
        on_stop: Called once with the ``StopReason`` when the run stops
            admitting items early (a budget, the deadline, a signal, an
            error that would fail every item alike: ``access_refused``,
            ``model_not_found``, ``quota_exhausted``; items failing in a
            row on transient errors: ``provider_unavailable``).
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
        rate_limit: The provider's limits for calls made with
            ``ctx.call``/``ctx.acall`` (a ``RateLimit``); ``None`` adopts them
            from the provider's rate-limit headers when it sends them.
        retry: How ``ctx.call``/``ctx.acall`` retry transient errors (a
            ``Retry``), and the backoff before an item that failed with one
            is tried again in the same run; ``None`` retries nothing within
            the run (failed items wait for a later run).
        call_timeout: The longest one call may take, capped by the item's
            deadline; ``None`` for no limit but the item's deadline.
        tracing: Scopes the run loop enters around the run, each item
            attempt and each call (a ``RunTracing``); ``with_otel`` sets it.
        clock: The monotonic clock, ``time.monotonic`` unless a test injects
            a ``MockClock``.
        wall_clock: The wall clock in POSIX seconds, for ``finish_by`` and the
            report's timestamps.
    """

    job_id: str
    store: str | os.PathLike[str] | Store
    time_budget: _Normalised[Seconds | None, float] = _Normalised(None, _limit)
    finish_by: datetime | None = None
    item_timeout: _Normalised[Seconds | None, float] = _Normalised(None, _limit)
    stop: _Normalised[StopLike | None, StopCondition | None] = _Normalised(None, _stop)
    max_cost_usd: _Normalised[float | None, float | None] = _Normalised(None, _cost)
    max_tokens: int | None = None
    max_items: int | None = None
    job_max_cost_usd: _Normalised[float | None, float | None] = _Normalised(None, _cost)
    job_max_tokens: int | None = None
    on_unknown_price: OnUnknownPrice | None = None
    max_attempts: int = 3
    concurrency: int = 1
    fail_fast: bool = False
    prices: _Normalised[PriceTable | Mapping[str, Any] | None, PriceTable | None] = _Normalised(
        None, _prices
    )
    progress: _Normalised[bool | ProgressMode | Literal["on", "off"], bool | ProgressMode] = (
        _Normalised(True, _progress)
    )
    progress_interval: _Normalised[Seconds, float] = _Normalised(10.0, _span)
    on_item_done: Callable[[ItemOutcome], object] | None = None
    on_usage: Callable[[str, Usage], object] | None = None
    on_stop: Callable[[StopReason], object] | None = None
    grace_period: _Normalised[Seconds, float] = _Normalised(30.0, _grace)
    conversation_dir: str | os.PathLike[str] | None = None
    fingerprint: bool | Fingerprinter | None = None
    on_change: OnChange = "rerun"
    handle_signals: bool = True
    rate_limit: RateLimit | None = None
    retry: Retry | None = DEFAULT_RETRY
    call_timeout: _Normalised[Seconds | None, float] = _Normalised(None, _limit)
    tracing: RunTracing | None = None
    clock: Clock = field(default=time.monotonic, compare=False)
    wall_clock: Clock = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_id", validate.job_id(self.job_id))
        kind = store_kind(self.store)  # the store itself is opened by each run
        _instance("rate_limit", self.rate_limit, RateLimit, "a RateLimit")
        if self.rate_limit is not None and self.rate_limit.shared and kind in ("memory", "jsonl"):
            raise ArgumentValueError(
                "rate_limit",
                self.rate_limit,
                "`RateLimit(shared=True)` keeps one budget for every worker in the job's "
                f"database: it needs a SQLite or PostgreSQL store (got a {kind} store)",
            )
        if self.finish_by is not None and not isinstance(self.finish_by, datetime):
            raise ArgumentTypeError(
                "finish_by",
                self.finish_by,
                f"`finish_by` must be a datetime or None (got {type(self.finish_by).__name__})",
            )
        validate.optional_positive_int("max_tokens", self.max_tokens)
        validate.optional_positive_int("max_items", self.max_items)
        validate.optional_positive_int("job_max_tokens", self.job_max_tokens)
        if self.on_unknown_price is not None:
            validate.choice("on_unknown_price", self.on_unknown_price, get_args(OnUnknownPrice))
        validate.positive_int("max_attempts", self.max_attempts)
        validate.positive_int("concurrency", self.concurrency)
        validate.boolean("fail_fast", self.fail_fast)
        validate.boolean("handle_signals", self.handle_signals)
        _instance("retry", self.retry, Retry, "a Retry")
        _instance("tracing", self.tracing, RunTracing, "a RunTracing (see with_otel)")
        for name in ("on_item_done", "on_usage", "on_stop"):
            validate.callable_or_none(name, getattr(self, name))
        validate.function("clock", self.clock)
        validate.function("wall_clock", self.wall_clock)
        if self.conversation_dir is not None and not isinstance(
            self.conversation_dir, (str, os.PathLike)
        ):
            raise ArgumentTypeError(
                "conversation_dir",
                self.conversation_dir,
                f"`conversation_dir` must be a path or None "
                f"(got {type(self.conversation_dir).__name__})",
            )
        validate.fingerprint_setting(self.fingerprint)
        validate.choice("on_change", self.on_change, get_args(OnChange))

    # Aliases kept from earlier versions: the fields themselves hold these values now.

    @property
    def time_budget_seconds(self) -> float:
        """``time_budget`` in seconds, ``math.inf`` for none (the same as ``time_budget``)."""
        return self.time_budget

    @property
    def item_timeout_seconds(self) -> float:
        """``item_timeout`` in seconds, ``math.inf`` for none (the same as ``item_timeout``)."""
        return self.item_timeout

    @property
    def grace_seconds(self) -> float:
        """``grace_period`` in seconds (the same as ``grace_period``)."""
        return self.grace_period

    @property
    def unknown_price(self) -> OnUnknownPrice:
        """``on_unknown_price`` in force: its default depends on the cost budgets."""
        if self.on_unknown_price is not None:
            return self.on_unknown_price
        if self.max_cost_usd is not None or self.job_max_cost_usd is not None:
            return "stop"
        return "warn"

    @property
    def stop_condition(self) -> StopCondition | None:
        """``stop`` as a ``StopCondition``, or ``None`` (the same as ``stop``)."""
        return self.stop

    def __repr__(self) -> str:
        # Only what differs from the defaults, so a log line shows what was configured.
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("job_id", "store") and value == getattr(_DEFAULTS, f.name):
                continue
            if f.name == "store" and isinstance(value, str):
                value = masked_url(value)  # a logged config must not show a password
            parts.append(f"{f.name}={_show(value)}")
        return f"RunConfig({', '.join(parts)})"


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "None"
    if callable(value) and not isinstance(value, StopCondition):
        return getattr(value, "__qualname__", None) or repr(value)
    return repr(value)


_DEFAULTS = RunConfig(job_id="defaults", store="memory:")
