"""Batch mode: the items not done go to the provider's batch API, at half the price.

The engine keeps the checkpoint's guarantees around a submission that takes
hours. Its bookkeeping lives in the job's own records (a ``batch`` record
kind, read back by every store's ``iter_records``):

- ``{"batch": "intent", "key": K, "provider": P, "ids": {custom_id: item_id},
  "estimate": USD}`` is written (and flushed) *before* the provider is called
  (``estimate``, the batch's cost as estimated for the budgets, when every
  request's model has a price);
- ``{"batch": "submitted", "key": K, "batch_id": B}`` once the provider
  answered;
- ``{"batch": "ended", "key": K, "status": S}`` once every result was recorded
  (with ``"error"``, the provider's reason, for a batch it rejected whole).

On resume, an intent without a batch ID is looked up among the provider's
batches by its key before anything is submitted again; a batch in flight is
polled, not resubmitted. Exactly one batch is created per intent, whatever
moment a crash picks.

A provider call that fails stops the run cleanly instead of raising: a poll
that fails for a transient reason is tried again at the next poll (up to
:data:`POLL_FAILURES` in a row); any other failure ends the run with
``failures`` and what failed. Its records stay as they are (an intent whose
``batches.create`` failed may still have created the batch), so the next run
finds and polls what is in flight, and the online fallback does not run items
a live batch may still answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from agent_resume._accounting._prices import PriceTable, default_prices
from agent_resume._accounting._responses import usage_from
from agent_resume._accounting._usage import Usage
from agent_resume._errors import (
    AgentResumeError,
    ArgumentTypeError,
    ArgumentValueError,
    CheckpointWarning,
    JobLockedError,
    UnknownModelWarning,
)
from agent_resume._limits import estimate_cost, max_output
from agent_resume._records import kind_of
from agent_resume._render import format_cost
from agent_resume._retry import (
    JOB_WIDE_ADVICE,
    TRANSIENT_STATUS,
    classify_error,
    job_wide_error,
)
from agent_resume._run._batch_providers import Adapter, BatchResult, BatchState, adapter_for
from agent_resume._run._config import RunConfig
from agent_resume._run._report import RunReport, ended_by, left_for_later, record_end_of
from agent_resume._run._spent import JobSpent
from agent_resume._session._agent import AgentResume
from agent_resume._session._items import IdReader, KeyFunc
from agent_resume._validate import duration, optional_positive_int

if TYPE_CHECKING:
    from agent_resume._session._session import Session

T = TypeVar("T")


DEFAULT_OUTPUT_TOKENS = 1000
"""Output tokens a request that gives no ``max_tokens`` is estimated at, for a cost budget,
before the job has any call whose output tells its mean."""
DEFAULT_ITEM_SECONDS = 5.0
"""Seconds one item is assumed to take online when the job has no online run yet."""

ROUNDS = 3
"""Submissions one run makes for the same items (expired ones are submitted again)."""

POLL_FAILURES = 20
"""Polls in a row that may fail for a transient reason before the run stops
(ten minutes at the default 30-second interval)."""

logger = logging.getLogger("agent_resume.run")


class _ProviderFailed(Exception):
    """A call to the provider failed: the run stops, and its records stay for the next.

    Attributes:
        error: The exception the call raised.
    """

    def __init__(self, what: str, error: Exception) -> None:
        alike = job_wide_error(error)
        advice = ""
        if alike is not None:
            said, fix = JOB_WIDE_ADVICE[alike[0]]
            advice = f": {said}; {fix} and run again"
        super().__init__(
            f"{what} failed ({type(error).__name__}: {str(error)[:200]}){advice}; the job's "
            "batches stay recorded, and the next run polls those in flight"
        )
        self.error = error


@dataclass
class Submission:
    """One batch submission of a job, as its ``batch`` records tell it."""

    key: str
    provider: str
    ids: dict[str, str]
    ts: float
    batch_id: str | None = None
    ended: bool = False
    status: str | None = None
    error: str | None = None
    estimate: float | None = None
    answered: set[str] = field(default_factory=set)
    """Items a failure was recorded for after the intent: answered by this batch already.

    A run that stopped part-way through the batch's results (a crash, a lost
    connection) reads them all again: those answers are not recorded twice.
    """


@dataclass
class _Tally:
    done: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "completed"
    stop_message: str = ""


def submissions(records: Iterable[dict[str, Any]]) -> list[Submission]:
    """The job's batch submissions, folded from its ``batch`` records, oldest first."""
    found: dict[str, Submission] = {}
    open_items: dict[str, Submission] = {}  # each item of an open submission, to its submission
    for record in records:
        record_kind = kind_of(record)
        if record_kind == "failed" and open_items:
            sub = open_items.get(record["id"])
            if sub is not None:
                sub.answered.add(record["id"])
            continue
        if record_kind != "batch":
            continue
        kind, key = record["batch"], record.get("key")
        if not isinstance(key, str):
            continue
        if kind == "intent":
            ids, ts = record.get("ids") or {}, record.get("ts")
            if (
                not isinstance(ids, dict)
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in ids.items())
                or isinstance(ts, bool)
                or not isinstance(ts, (int, float))
            ):
                warnings.warn(
                    f"a batch record is malformed and skipped (key {key!r}: `ids` must map "
                    f"request IDs to item IDs and `ts` be a number): {record!r:.200}",
                    CheckpointWarning,
                    stacklevel=2,
                )
                continue
            found[key] = sub = Submission(key, str(record.get("provider")), dict(ids), ts)
            open_items.update(dict.fromkeys(ids.values(), sub))
            estimate = record.get("estimate")
            if isinstance(estimate, (int, float)) and math.isfinite(estimate) and estimate >= 0:
                sub.estimate = float(estimate)
        elif key in found and kind == "submitted":
            found[key].batch_id = str(record.get("batch_id"))
        elif key in found and kind == "ended":
            for item_id in found[key].ids.values():
                if open_items.get(item_id) is found[key]:
                    del open_items[item_id]
            found[key].ended = True
            found[key].status = str(record.get("status"))
            if isinstance(record.get("error"), str):
                found[key].error = record["error"]
    return list(found.values())


def seconds_per_item(runs: Iterable[dict[str, Any]], concurrency: int) -> float:
    """Wall seconds per item of the job's online runs so far (their throughput).

    Judged from the run records' reports (duration over items done), so it
    already includes the concurrency those runs had; without one, 5 seconds
    an item divided by ``concurrency``.
    """
    seconds = done = 0.0
    for record in runs:
        report = record.get("report")
        if (
            record.get("run") != "end"
            or record.get("mode") == "batch"
            or not isinstance(report, dict)
        ):
            continue
        duration, count = report.get("duration"), report.get("done")
        if isinstance(duration, (int, float)) and isinstance(count, int) and count > 0:
            seconds += float(duration)
            done += count
    if done:
        return seconds / done
    return DEFAULT_ITEM_SECONDS / max(1, concurrency)


class BatchEngine:
    """One batch-mode run: submit, poll, record, and cancel before the deadline."""

    def __init__(
        self,
        config: RunConfig,
        *,
        request: Callable[[Any], dict[str, Any]],
        parse: Callable[[Any, Any], Any],
        client: Any,
        key: KeyFunc | None,
        poll_interval: float,
        batch_margin: float | None,
        max_batch_requests: int | None,
        loop: asyncio.AbstractEventLoop | None,
        endpoint: str,
    ) -> None:
        for name, value in (("request", request), ("parse", parse)):
            if not callable(value):
                raise ArgumentTypeError(
                    name, value, f"`{name}` must be callable (got {type(value).__name__})"
                )
        self.config = config
        self.request = request
        self.parse = parse
        self.adapter: Adapter = adapter_for(client, loop, endpoint, time_left=self._time_left)
        self.key = key
        self.read_id = IdReader(key)
        self.poll_interval = duration(
            "poll_interval", poll_interval, allow_none=False, allow_inf=False
        )
        self.batch_margin = (
            None
            if batch_margin is None
            else duration(
                "batch_margin", batch_margin, allow_none=False, allow_zero=True, allow_inf=False
            )
        )
        self.max_requests = min(
            optional_positive_int("max_batch_requests", max_batch_requests)
            or self.adapter.max_requests,
            self.adapter.max_requests,
        )
        self.started = config.wall_clock()
        self.end_at = self._end_at()
        self.cut_at = self.end_at
        """When the batches in flight are cancelled (moved up by `_collect` as they are polled)."""
        self.tally = _Tally()
        self.seconds_per_item = DEFAULT_ITEM_SECONDS / max(1, config.concurrency)
        self.usual_output: float = DEFAULT_OUTPUT_TOKENS
        """The output a request without ``max_tokens`` is estimated at: the job's mean, once known."""
        self.known: list[Submission] = []
        """Every submission of the job, as its records tell (the batches it knows as its own)."""
        self.unclear: list[Submission] = []
        """Interrupted submissions that match several batches: their items wait."""
        self.cancelled = threading.Event()
        """Set when ``arun_batch``'s task is cancelled: the run stops at its next wait."""

    def _time_left(self) -> float:
        """Seconds a call to the provider may take: until the cut, then until the deadline.

        A poll on a silent connection ends by the cut, in time to cancel the
        batches and run the rest online.
        """
        now = self.config.wall_clock()
        return (self.cut_at if now < self.cut_at else self.end_at) - now

    def _end_at(self) -> float:
        end = math.inf
        if self.config.time_budget != math.inf:
            end = self.started + self.config.time_budget
        if self.config.finish_by is not None:
            end = min(end, self.config.finish_by.timestamp())
        return end

    # -- the run ---------------------------------------------------------------

    def run(self, items: Iterable[Any]) -> tuple[RunReport, list[Any]]:
        """Submit and collect; return the report and the items left for the online fallback."""
        items = list(items)
        config = self.config
        session = AgentResume(config.store).resume_or_start(
            config.job_id,
            max_attempts=config.max_attempts,
            fingerprint=config.fingerprint,
            on_change=config.on_change,
        )
        with session:
            holder = _live_batch_run(session.runs)
            if holder is not None:
                # Its intent without a batch ID yet would look never created to this
                # run, whose submission would pay for the same items again.
                raise JobLockedError(config.job_id, holder, "its store (a run_batch)")
            session.record_run(
                {
                    "run": "start",
                    "ts": int(self.started),
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "mode": "batch",
                }
            )
            self.seconds_per_item = seconds_per_item(session.runs, config.concurrency)
            pairs = [(item, self.read_id(item)) for item in items]
            by_id: dict[str, Any] = {}
            for item, item_id in pairs:  # a repeated ID: the first, as was submitted
                by_id.setdefault(item_id, item)
            self.known = submissions(session.store.iter_records())
            open_ = [s for s in self.known if not s.ended]
            try:
                self._batches(session, items, open_, by_id)
            except _ProviderFailed as failure:
                # Whatever stopped the run before, batches may now be left in flight.
                self.tally.stop_reason, self.tally.stop_message = "failures", str(failure)
            except BaseException as exc:
                # A bad request body, Ctrl-C while polling: the batches in
                # flight stay recorded for the next run, and so does this end.
                self.tally.stop_reason, self.tally.stop_message = ended_by(exc)
                record_end_of(exc, lambda: self._record_end(session, None))
                raise
            left = [
                item
                for item, item_id in pairs
                if not session.is_done(item_id) and not session.is_quarantined(item_id)
            ]
            # After the provider's failure, or its rejection of a batch, no item
            # goes online: a batch left in flight may still answer it, and a
            # rejected batch's requests would fail there too.
            # Nor does an item in a batch still open (its cancel had not landed
            # at the deadline): the next run collects that batch.
            in_flight = {item_id for s in open_ for item_id in s.ids.values()}
            # Nor after a budget stop: the items the budget left out are for a later
            # run, not for the fallback at the online price.
            online = (
                []
                if self.tally.stop_reason in ("failures", "cost_budget")
                else [item for item in left if self.read_id(item) not in in_flight]
            )
            if left and self.tally.stop_reason == "completed":
                # Gone through, with failed requests left for a later run (or
                # the fallback): not "completed", as for an online run.
                self.tally.stop_reason = "failures"
                self.tally.stop_message = left_for_later(len(left), "item")
            report = self._record_end(session, len(left))
        return report, online

    def _record_end(self, session: Session, remaining: int | None) -> RunReport:
        """Write the run's end record, with its report, and return the report."""
        tally = self.tally
        report = RunReport(
            job_id=session.job_id,
            started_at=self.started,
            ended_at=self.config.wall_clock(),
            done=tally.done,
            already_done=session.stats.already_done,
            failed=tally.failed,
            quarantined=session.stats.quarantined,
            remaining=remaining,
            stop_reason=tally.stop_reason,  # type: ignore[arg-type]
            stop_message=tally.stop_message,
            usage=tally.usage if tally.usage.calls else Usage(cost_usd=0.0),
        )
        end = {
            "run": "end",
            "ts": int(report.ended_at),
            "pid": os.getpid(),
            "mode": "batch",
            "report": report.to_dict(),
        }
        session.record_run(end)
        return report

    def _batches(
        self, session: Session, items: list[Any], open_: list[Submission], by_id: dict[str, Any]
    ) -> None:
        """Recover, submit and collect, for at most :data:`ROUNDS` submissions of the same items."""
        self._recover(session, open_)
        in_flight = {i for s in [*open_, *self.unclear] for i in s.ids.values()}
        todo = [
            item
            for item in session.remaining(items, key=self.key)
            if self.read_id(item) not in in_flight
        ]
        # Requests that expired, or sat in a batch cancelled from outside, are
        # submitted again while the run has time.
        for _ in range(ROUNDS):
            self._submit(session, todo, open_, by_id)
            if not open_:
                break
            returned = self._collect(session, open_, by_id)
            if self.tally.stop_reason != "completed":
                break
            todo = [by_id[i] for i in returned if i in by_id and not session.is_done(i)]

    def _ask(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Call the provider through the adapter; its failure becomes :class:`_ProviderFailed`."""
        try:
            return fn(*args)
        except AgentResumeError:
            raise  # a misuse (an async client in run_batch), not the provider's failure
        except Exception as exc:
            raise _ProviderFailed(what, exc) from exc

    def _recover(self, session: Session, open_: list[Submission]) -> None:
        # An intent without a batch ID: the crash came between the intent and
        # the record. Find the batch by its key before anything is resubmitted.
        known = {s.batch_id for s in self.known if s.batch_id is not None}
        unclear: list[Submission] = []
        for sub in open_:
            if sub.batch_id is None:
                found = self._ask(
                    f"looking for batch {sub.key[:12]} at the provider",
                    self.adapter.find,
                    sub.key,
                    sub.ts,
                    len(sub.ids),
                    known,
                )
                if not found:
                    sub.ended = True  # never created: its items go back to the queue
                    self._record(session, "ended", sub.key, status="never_created")
                elif len(found) == 1:
                    sub.batch_id = found[0]
                    known.add(found[0])
                    self._record(session, "submitted", sub.key, batch_id=found[0])
                else:
                    unclear.append(sub)
                    logger.warning(
                        "batch %s: %d batches of %d requests were created at the provider "
                        "since its intent (%s), and none can be told for its own: its items "
                        "are not submitted again; cancel the ones that are not this job's, "
                        "and run again",
                        sub.key[:12],
                        len(found),
                        len(sub.ids),
                        ", ".join(found),
                    )
        if unclear:
            # Submitting them again could pay for them twice: they wait, out of this run.
            held = sum(len(s.ids) for s in unclear)
            self._stop(
                "failures",
                f"{len(unclear)} interrupted submission(s) ({held} items) match several "
                "batches at the provider: their items wait until it is clear",
            )
        open_[:] = [s for s in open_ if not s.ended and s not in unclear]
        self.unclear = unclear

    def _record(self, session: Session, kind: str, key: str, **fields: Any) -> None:
        session.record_run(
            {"batch": kind, "key": key, "ts": int(self.config.wall_clock()), **fields}
        )
        session.flush()

    # -- submission ------------------------------------------------------------

    def _submit(
        self, session: Session, todo: list[Any], open_: list[Submission], by_id: dict[str, Any]
    ) -> None:
        """Submit ``todo`` in batches within the budget, adding each to ``open_`` at its intent.

        Nothing is submitted when the deadline is nearer than the margin for
        these items and those in flight: the batch would be cancelled at its
        first poll, and the online fallback needs that time.
        """
        in_flight = sum(len(sub.ids) for sub in open_ if not sub.ended)
        if todo and self.config.wall_clock() >= self.end_at - self.margin(len(todo) + in_flight):
            self._stop(
                "time_budget",
                "too close to the deadline for a batch: the items not done run online",
            )
            return
        budget = self._budget_left(session, open_, by_id)
        chunk: list[tuple[str, dict[str, Any]]] = []
        chunk_cost: float | None = 0.0
        size = 0
        spent = 0.0
        for item in todo:
            item_id = self.read_id(item)
            body = self._body(session, item, item_id)
            if body is None:
                continue
            cost = self._estimate(body)
            if budget is not None:
                if cost is None:
                    self._stop(
                        "cost_budget",
                        f"no price for model {body.get('model')!r} under a cost budget",
                    )
                    break
                if spent + cost > budget:
                    unbounded = (
                        ""
                        if max_output(body) is not None
                        else f"; it gives no max_tokens, so its output is estimated at "
                        f"{self.usual_output:,.0f} tokens (the job's mean, or "
                        f"{DEFAULT_OUTPUT_TOKENS:,} before any call)"
                    )
                    self._stop(
                        "cost_budget",
                        f"the next request would pass the cost budget "
                        f"({format_cost(budget - spent)} left){unbounded}",
                    )
                    break
                spent += cost
            # The custom ID of the sizing line is as long as the real one.
            line = self.adapter.line(f"{'0' * 12}-{len(chunk)}", body)
            if chunk and (
                len(chunk) >= self.max_requests or size + len(line) > self.adapter.max_bytes
            ):
                self._send(session, chunk, open_, chunk_cost)
                chunk, chunk_cost, size = [], 0.0, 0
            chunk.append((item_id, body))
            chunk_cost = None if cost is None or chunk_cost is None else chunk_cost + cost
            size += len(line)
        if chunk:
            self._send(session, chunk, open_, chunk_cost)

    def _body(self, session: Session, item: Any, item_id: str) -> dict[str, Any] | None:
        """The item's request body; ``None`` when ``request`` failed (recorded as its attempt).

        Raises:
            ArgumentTypeError: The body is not a dict.
            ArgumentValueError: The body lacks what every request needs: the
                provider would refuse them all alike, one quarantined item at
                a time.
        """
        try:
            body = self.request(item)
        except Exception as exc:
            # This item's own failure (a malformed input row): the others go on.
            logger.warning("request(item) failed for item %r: %r", item_id, exc)
            session.mark_failed(item_id, exc)
            self.tally.failed += 1
            return None
        if not isinstance(body, dict):
            raise ArgumentTypeError(
                "request",
                body,
                f"`request(item)` must return the request body as a dict (got {type(body).__name__})",
            )
        missing = [name for name in self.adapter.required if body.get(name) is None]
        if missing:
            raise ArgumentValueError(
                "request",
                body,
                f"`request(item)` gave item {item_id!r} a body without {missing[0]!r}, "
                f"which every {self.adapter.provider} batch request needs",
            )
        return body

    def _send(
        self,
        session: Session,
        chunk: list[tuple[str, dict[str, Any]]],
        open_: list[Submission],
        estimate: float | None,
    ) -> None:
        if self.cancelled.is_set():
            raise asyncio.CancelledError  # between submissions: those made stay recorded
        key = uuid.uuid4().hex
        ids = {f"{key[:12]}-{n}": item_id for n, (item_id, _) in enumerate(chunk)}
        lines = [self.adapter.line(cid, body) for cid, (_, body) in zip(ids, chunk, strict=True)]
        sub = Submission(key, self.adapter.provider, ids, self.config.wall_clock())
        sub.estimate = estimate
        fields: dict[str, Any] = {"provider": sub.provider, "ids": ids}
        if estimate is not None:
            fields["estimate"] = estimate
        self._record(session, "intent", key, **fields)
        # Open from its intent on: a failed create may still have made the batch.
        open_.append(sub)
        sub.batch_id = self._ask(f"submitting batch {key[:12]}", self.adapter.submit, key, lines)
        self._record(session, "submitted", key, batch_id=sub.batch_id)

    def _budget_left(
        self, session: Session, open_: list[Submission], by_id: dict[str, Any]
    ) -> float | None:
        """The dollars this submission may cost: what the run and the job budgets have left.

        Both count the batches still in flight at their estimated cost (an
        earlier run's, left by a crash or a failure, whose results this run
        will record). The run budget counts what this run recorded; the job
        budget everything the job's records show (every run, earlier batches'
        results, killed attempts' calls), as an online run does.
        """
        run_cap, job_cap = self.config.max_cost_usd, self.config.job_max_cost_usd
        if run_cap is None and job_cap is None:
            return None
        total = JobSpent(session.store.iter_records(), self.config.prices).total
        if total.calls:
            self.usual_output = total.output_tokens / total.calls
        committed = sum(self._in_flight_cost(sub, by_id) for sub in open_ if not sub.ended)
        caps: list[float] = []
        if run_cap is not None:
            caps.append(float(run_cap) - (self.tally.usage.cost_usd or 0.0) - committed)
        if job_cap is not None:
            caps.append(float(job_cap) - (total.cost_usd or 0.0) - committed)
        return max(min(caps), 0.0)

    def _in_flight_cost(self, sub: Submission, by_id: dict[str, Any]) -> float:
        """A batch's estimated cost: from its intent, else from its items' requests now.

        A request whose item is not in this run's input, or whose model has
        no price, counts as nothing: it cannot be estimated.
        """
        if sub.estimate is not None:
            return sub.estimate
        total = 0.0
        for item_id in sub.ids.values():
            if item_id in by_id:
                try:
                    body = self.request(by_id[item_id])
                except Exception:  # its failure is for the submission to record
                    continue
                cost = self._estimate(body) if isinstance(body, dict) else None
                total += cost or 0.0
        return total

    def _estimate(self, body: dict[str, Any]) -> float | None:
        model = body.get("model")
        if not isinstance(model, str):
            return None
        tokens = estimate_cost(body, self.usual_output)
        usage = Usage(
            input_tokens=int(tokens.input_tokens),
            output_tokens=int(tokens.output_tokens),
            calls=1,
            model=model,
            service_tier="batch",
        )
        with warnings.catch_warnings():
            # An unknown model stops the submission with a reason naming it.
            warnings.simplefilter("ignore", UnknownModelWarning)
            priced = (self.config.prices or default_prices()).price(usage)
        return priced.cost_usd

    def _stop(self, name: str, message: str) -> None:
        if self.tally.stop_reason == "completed":
            self.tally.stop_reason, self.tally.stop_message = name, message

    # -- polling and results -----------------------------------------------------

    def margin(self, in_flight: int) -> float:
        """Seconds before the deadline at which batches still running are cancelled."""
        if self.batch_margin is not None:
            return self.batch_margin
        return self.poll_interval + in_flight * self.seconds_per_item

    def _collect(
        self, session: Session, open_: list[Submission], by_id: dict[str, Any]
    ) -> list[str]:
        """Poll until every open batch ended; return the IDs that came back unanswered."""
        returned: list[str] = []
        cancelled = False
        running: set[str] = set()  # batches this run saw running, not being cancelled
        failures = 0
        while open_:
            now = self.config.wall_clock()
            in_flight = sum(len(s.ids) for s in open_)
            cut = self.end_at - self.margin(in_flight)
            self.cut_at = self.end_at if cancelled else cut
            if not cancelled and now >= cut:
                for sub in open_:
                    self._ask(
                        f"cancelling batch {sub.batch_id}", self.adapter.cancel, str(sub.batch_id)
                    )
                cancelled = True
                self._stop(
                    "time_budget", "the deadline was near: batches cancelled, the rest runs online"
                )
            for sub in list(open_):
                state = self._poll(sub, failures)
                if state is None:
                    failures += 1
                    break  # the provider is not answering: wait for the next poll
                failures = 0
                if not state.ended and state.status not in ("cancelling", "canceling"):
                    running.add(sub.key)
                if state.ended:
                    returned += self._ask(
                        f"reading the results of batch {sub.batch_id}",
                        self._results,
                        session,
                        sub,
                        by_id,
                    )
                    self._ended(session, sub, state)
                    open_.remove(sub)
                    if not cancelled and sub.key in running and _cancelled(state):
                        # Cancelled from outside while this run polled it (`agent-resume
                        # batch cancel`, the console): to stop spending, not to be
                        # submitted again now. (One cancelled between runs is, by the next.)
                        self._stop(
                            "failures",
                            f"batch {sub.batch_id} was cancelled from outside the run: "
                            "its unanswered items wait for the next run",
                        )
            if open_ and cancelled and now >= self.end_at:
                # A cancel can take the provider minutes (OpenAI's "cancelling"):
                # the run ends on time, and the batches stay recorded. The next
                # run collects what they answered; their items do not go online
                # now (their batch may still answer them, and be paid for).
                held = sum(len(s.ids) for s in open_)
                message = (
                    f"the deadline came before the provider ended {len(open_)} cancelled "
                    f"batch(es) ({held} items): the next run collects their answers"
                )
                logger.warning("%s", message)
                if self.tally.stop_reason == "time_budget":
                    self.tally.stop_message = message
                break
            if open_:
                until = self.end_at if cancelled else cut
                wait = min(self.poll_interval, max(0.0, until - now))
                if self.cancelled.wait(max(wait, 0.01)):
                    # The batches in flight stay recorded: the next run polls them.
                    raise asyncio.CancelledError
        return returned

    def _poll(self, sub: Submission, failures: int) -> BatchState | None:
        """The batch's state; ``None`` after a transient failure that the next poll may retry."""
        try:
            return self._ask(f"polling batch {sub.batch_id}", self.adapter.state, str(sub.batch_id))
        except _ProviderFailed as failed:
            error = failed.error
            if classify_error(error) != "transient" or failures + 1 >= POLL_FAILURES:
                raise
            logger.warning(
                "polling batch %s failed (%s: %s); trying again at the next poll",
                sub.batch_id,
                type(error).__name__,
                error,
            )
            return None

    def _ended(self, session: Session, sub: Submission, state: BatchState) -> None:
        """Record that the batch ended; a batch the provider rejected whole stops the run."""
        if state.error is None:
            self._record(session, "ended", sub.key, status=state.status)
            return
        self._record(session, "ended", sub.key, status=state.status, error=state.error)
        self._stop(
            "failures",
            f"the provider rejected batch {sub.batch_id} ({state.error}): none of its "
            f"{len(sub.ids)} requests ran, and its items stay for a later run",
        )

    def _results(self, session: Session, sub: Submission, by_id: dict[str, Any]) -> list[str]:
        prices = self.config.prices
        returned: list[str] = []
        for result in self.adapter.results(str(sub.batch_id)):
            item_id = sub.ids.get(result.custom_id)
            if item_id is None or session.is_done(item_id) or item_id in sub.answered:
                continue  # (answered before a crash or a lost connection: recorded once)
            if result.outcome == "succeeded":
                usage = _batch_usage(result.response, prices)
                failure: Exception | None = None
                retryable = True
                try:
                    value = self.parse(by_id.get(item_id), result.response)
                except Exception as exc:
                    failure = exc  # a paid answer `parse` could not read: the next may differ
                else:
                    try:
                        recorded = session.mark_done(item_id, result=value, usage=usage)
                    except (TypeError, ValueError) as exc:
                        # A result that cannot be stored (not JSON): the same code would
                        # pay for it again, so the item is quarantined until `retry`.
                        failure, retryable = exc, False
                if failure is not None:
                    # A failed attempt, usage kept. Raised, it would stop this run,
                    # and every next one, at the same result of the same batch.
                    session.mark_failed(item_id, failure, retryable=retryable, usage=usage)
                    sub.answered.add(item_id)
                    self.tally.failed += 1
                    self.tally.usage += usage
                    continue
                if recorded:
                    self.tally.done += 1
                    self.tally.usage += usage
            elif result.outcome == "errored":
                reason = result.error or "the provider gave no reason"
                session.mark_failed(
                    item_id, f"BatchRequestError: {reason}", retryable=_retryable(result)
                )
                sub.answered.add(item_id)
                self.tally.failed += 1
            else:  # expired or cancelled: back to the queue, nothing recorded
                returned.append(item_id)
        return returned


def _batch_usage(response: Any, prices: PriceTable | None) -> Usage:
    """The usage of a batch request's answer, read and priced at the batch tier.

    The answer's own ``service_tier`` (``"default"`` in an OpenAI body) is not
    the tier it was billed at: read as the result line it came in, it is a
    ``batch`` call, recorded so (a later ``report --prices`` or job budget
    prices it at the batch rate too).
    """
    return usage_from({"custom_id": "", "result": {"message": response}}, prices=prices)


def _live_batch_run(runs: Iterable[dict[str, Any]]) -> int | None:
    """The process of another batch-mode run of the job still running on this host, if any.

    A start record without its end, written on this host by a process that is
    alive. Runs on other hosts of a shared database cannot be seen: run one
    batch worker per job.
    """
    host = socket.gethostname()
    started: dict[Any, dict[str, Any]] = {}
    for record in runs:
        if record.get("mode") != "batch":
            continue
        if record.get("run") == "start":
            started[record.get("pid")] = record
        elif record.get("run") == "end":
            started.pop(record.get("pid"), None)
    for pid, record in started.items():
        if record.get("host") != host or not isinstance(pid, int) or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue  # killed: its batches are recovered
        except OSError:
            pass  # alive, another user's
        return pid
    return None


def _cancelled(state: BatchState) -> bool:
    """Whether a batch ended by a cancel (OpenAI's status, Anthropic's canceled requests)."""
    return state.status in ("cancelled", "canceled") or state.counts.get("canceled", 0) > 0


def _retryable(result: BatchResult) -> bool:
    status = result.status_code
    return status is None or status in TRANSIENT_STATUS or status >= 500


def fallback_config(config: RunConfig, engine: BatchEngine) -> RunConfig:
    """The configuration of the online fallback: the same job, budgets and deadline."""
    spent = engine.tally.usage.cost_usd or 0.0
    cost = None if config.max_cost_usd is None else max(config.max_cost_usd - spent, 1e-9)
    finish_by = None
    if engine.end_at != math.inf:
        finish_by = datetime.fromtimestamp(engine.end_at, tz=timezone.utc)
    return replace(config, time_budget=None, finish_by=finish_by, max_cost_usd=cost)


def combine_reports(batch: RunReport, online: RunReport) -> RunReport:
    """One report for a batch-mode run and its online fallback."""
    return replace(
        online,
        started_at=batch.started_at,
        done=batch.done + online.done,
        already_done=batch.already_done,
        failed=batch.failed + online.failed,
        usage=batch.usage + online.usage,
    )
