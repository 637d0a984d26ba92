"""Progress of a run: a rich live display on a terminal, log lines otherwise.

The display reads the run's counters from a background thread, so items pay
nothing for it. ``rich`` is imported only when the display is used.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from agent_resume._render import format_cost
from agent_resume._run._state import RunState
from agent_resume._session._session import Session

__all__ = ["ProgressSnapshot", "open_progress"]

logger = logging.getLogger("agent_resume.progress")

_RICH_INTERVAL = 0.25


@dataclass(frozen=True)
class ProgressSnapshot:
    """What a progress line shows.

    Attributes:
        done: Items done, earlier runs included.
        total: Items in the input, when it has a length.
        failed: Failed attempts in this run.
        rate: Items done per second in this run.
        eta_seconds: Seconds to go at that rate, when known.
        tokens: Tokens used in this run.
        cost_usd: Cost of this run, ``None`` when unknown.
        calls: What ``ctx.call``/``ctx.acall`` did: calls in flight, 429s,
            retries, and the limiter when it holds calls back (``""`` when
            no call was made through the run).
        in_flight: Items running now.
        stopping: Why the run stopped admitting items (``""`` while it
            admits them): the budget, the deadline or the signal, with the
            items still in flight.
    """

    done: int
    total: int | None
    failed: int
    rate: float
    eta_seconds: float | None
    tokens: int
    cost_usd: float | None
    calls: str = ""
    in_flight: int = 0
    stopping: str = ""

    def line(self) -> str:
        """The snapshot as one log line."""
        total = "?" if self.total is None else f"{self.total:,}"
        eta = "?" if self.eta_seconds is None else f"{self.eta_seconds:,.0f}s"
        cost = format_cost(self.cost_usd)
        line = (
            f"{self.done:,}/{total} done, {self.failed:,} failed, {self.rate:,.1f} items/s, "
            f"ETA {eta}, {self.tokens:,} tokens, {cost}, {self.in_flight:,} in flight"
        )
        if self.calls:
            line = f"{line}; {self.calls}"
        return f"{line}; {self.stopping}" if self.stopping else line


def stopping_text(state: RunState) -> str:
    """What the run is doing about a stop, for people; ``""`` while it admits items.

    ``"stopping: 7 in flight, Ctrl-C again to abort"`` while a signal drains
    the run; ``"stopped admitting (cost_budget: ...): 3 in flight finishing"``
    for a budget or the deadline.
    """
    name = state.stop_name
    if name is None:
        return ""
    in_flight = max(state.in_flight, 0)
    if name == "signal":
        return f"stopping: {in_flight:,} in flight, Ctrl-C again to abort"
    reason = state.stop_reason
    why = name if reason is None else f"{name}: {reason.message}"
    return f"stopped admitting ({why}): {in_flight:,} in flight finishing"


def _calls(state: RunState) -> str:
    """Calls in flight, 429s and retries, and the limiter when it is the bottleneck."""
    gate = state.calls
    if gate is None:
        return ""
    snap = gate.snapshot()
    if not snap["started"]:
        return ""
    text = (
        f"calls {snap['in_flight']:,} in flight, {snap['rate_limited']:,} HTTP 429, "
        f"{snap['retries']:,} retried"
    )
    limiter = snap["limiter"]
    if limiter["paused"] > 0:
        text += f"; paused {limiter['paused']:.1f}s after a 429"
    if limiter["allowed"] < gate.limiter.max_in_flight:
        text += f"; at most {limiter['allowed']} calls in flight after 429s"
    if limiter["waiting"]:
        limits = ", ".join(f"{name} {rate:,.0f}/min" for name, rate in limiter["limits"].items())
        text += f"; {limiter['waiting']:,} waiting for the rate limit ({limits})"
    return text


def snapshot(state: RunState, already: int, total: int | None) -> ProgressSnapshot:
    """Read the run's counters into a ``ProgressSnapshot``."""
    elapsed = max(state.clock() - state.started, 1e-9)
    rate = state.done / elapsed
    done = already + state.done
    eta = None
    if total is not None and rate > 0:
        eta = max(total - done, 0) / rate
    usage = state.usage
    return ProgressSnapshot(
        done=done,
        total=total,
        failed=state.failed,
        rate=rate,
        eta_seconds=eta,
        tokens=usage.total_tokens,
        cost_usd=usage.cost_usd if usage.calls else 0.0,
        calls=_calls(state),
        in_flight=max(state.in_flight, 0),
        stopping=stopping_text(state),
    )


def _mode(setting: object) -> str | None:
    if setting is False:
        return None
    if setting in ("rich", "log"):
        return str(setting)
    try:
        is_tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        is_tty = False
    if not is_tty:
        return "log"
    try:
        import rich  # noqa: F401
    except ImportError:
        return "log"
    return "rich"


@contextlib.contextmanager
def open_progress(state: RunState, session: Session, items: Iterable[Any]) -> Iterator[None]:
    """Show the run's progress while the block runs, as ``config.progress`` asks."""
    mode = _mode(state.config.progress)
    if mode is None:
        yield
        return
    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    already = session.stats.already_done
    stop = threading.Event()
    target: Any = _rich_loop if mode == "rich" else _log_loop
    args: tuple[Any, ...] = (state, already, total, stop)
    if mode == "log":
        args += (state.config.progress_interval,)
    thread = threading.Thread(target=target, args=args, name="agent-resume-progress", daemon=True)
    with _own_handler() if mode == "log" else contextlib.nullcontext():
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2.0)


@contextlib.contextmanager
def _own_handler() -> Iterator[None]:
    """Send progress lines to stderr when the application configured no logging.

    Only when no handler would show them: the ``agent_resume.progress``
    logger and its ancestors have no handler (Python would otherwise drop
    INFO lines). An application that configured logging keeps full control.
    """
    if logger.hasHandlers():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("agent-resume: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _log_loop(
    state: RunState, already: int, total: int | None, stop: threading.Event, interval: float
) -> None:
    job = state.config.job_id
    clock = state.clock
    next_at = clock() + interval
    told = ""
    # Wake often enough to say at once when the run stops admitting items.
    while not stop.wait(min(interval, _RICH_INTERVAL)):
        now = clock()
        stopping = stopping_text(state)
        said = stopping.split(":", 1)[0] if stopping else ""
        if said != told or now >= next_at:
            told = said
            next_at = now + interval
            logger.info("%s: %s", job, snapshot(state, already, total).line())
    logger.info("%s: %s", job, snapshot(state, already, total).line())


def _rich_loop(state: RunState, already: int, total: int | None, stop: threading.Event) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[extra]}"),
    )
    progress = Progress(*columns, console=Console(stderr=True), transient=False)
    with progress:
        task = progress.add_task(state.config.job_id, total=total, completed=already, extra="")
        while True:
            finished = stop.wait(_RICH_INTERVAL)
            snap = snapshot(state, already, total)
            cost = "cost ?" if snap.cost_usd is None else format_cost(snap.cost_usd)
            extra = f"{snap.rate:,.1f}/s  {snap.tokens:,} tok  {cost}"
            if snap.failed:
                extra += f"  {snap.failed:,} failed"
            if snap.in_flight:
                extra += f"  {snap.in_flight:,} in flight"
            if snap.calls:
                extra += f"  {snap.calls}"
            if snap.stopping:
                extra += f"  [yellow]{snap.stopping}[/]"
            progress.update(task, completed=snap.done, extra=extra)
            if finished:
                return
