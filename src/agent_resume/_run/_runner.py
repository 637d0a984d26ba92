"""``ResumableRun``: a session, deadlines, budgets, accounting and signals around one loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from types import CoroutineType
from typing import Any, Literal, NoReturn, TypeVar

from agent_resume._accounting._usage import Usage
from agent_resume._errors import (
    ArgumentTypeError,
    BudgetExhausted,
    DeadlineExceeded,
    StoreClosedError,
)
from agent_resume._records import usage_dict
from agent_resume._retry import JOB_WIDE_ADVICE, classify_error, job_wide_error
from agent_resume._run._admission import END, Admission
from agent_resume._run._batch import BatchEngine, combine_reports, fallback_config
from agent_resume._run._calls import CallGate
from agent_resume._run._config import DEFAULT_RETRY, RunConfig
from agent_resume._run._context import NO_USAGE, ItemContext, calls_recorded, forget_conversation
from agent_resume._run._conversations import conversations_for
from agent_resume._run._progress import open_progress
from agent_resume._run._report import (
    ItemOutcome,
    RunReport,
    ended_by,
    left_for_later,
    record_end_of,
)
from agent_resume._run._requeue import Requeue, Wait
from agent_resume._run._signals import RunSignals
from agent_resume._run._spent import SECONDS_KEY, JobSpent
from agent_resume._run._state import RunState
from agent_resume._run._threads import Feeder, Pool
from agent_resume._run._tracing import item_scope, run_scope
from agent_resume._session._agent import AgentResume
from agent_resume._session._items import IdReader, KeyFunc, check_input
from agent_resume._session._session import Session
from agent_resume._stop import StopReason
from agent_resume.stores import SharedStore, SkimmingStore
from agent_resume.stores._shared_limits import shared_buckets

__all__ = ["ResumableRun"]

T = TypeVar("T")
Process = Callable[[T, ItemContext], Any]
AsyncProcess = Callable[[T, ItemContext], Awaitable[Any]]

_POLL = 0.1  # how often a waiting main thread looks up, so that signals are seen

OUTAGE_STREAK = 5
"""Items failed in a row on transient errors that stop a run (at least ``concurrency``)."""


class ResumableRun:
    """Runs ``process(item, ctx)`` over the items a job still has to do.

    One ``ResumableRun`` may be run many times (each call opens the job,
    runs, records a report and closes it); runs of one job must not overlap.

    Args:
        config: Every control of the run.

    Example:
        >>> config = RunConfig(job_id="demo", store="memory:", max_items=2)
        >>> report = ResumableRun(config).run(lambda item, ctx: item.upper(), ["a", "b", "c"])
        >>> (report.done, report.stop_reason)
        (2, 'item_budget')
    """

    def __init__(self, config: RunConfig) -> None:
        if not isinstance(config, RunConfig):
            raise ArgumentTypeError(
                "config", config, f"`config` must be a RunConfig (got {type(config).__name__})"
            )
        self.config = config

    def __repr__(self) -> str:
        return f"ResumableRun({self.config!r})"

    # -- batch mode ------------------------------------------------------------

    def run_batch(
        self,
        *,
        request: Callable[[T], dict[str, Any]],
        items: Iterable[T],
        client: Any,
        parse: Callable[[T, Any], Any],
        fallback: Process[T] | None = None,
        key: KeyFunc | str | None = None,
        poll_interval: float = 30.0,
        batch_margin: float | None = None,
        max_batch_requests: int | None = None,
        endpoint: str = "/v1/chat/completions",
    ) -> RunReport:
        """Run the items not done through the provider's batch API, at half the price.

        The requests go to OpenAI's Batch API or Anthropic's Message Batches
        (chosen by ``client``), each submission exactly once across crashes;
        a later run polls the batches this one left in flight instead of
        submitting again. Each succeeded request is recorded as its item's
        completion, priced at the batch rate; an errored one as a failed
        attempt; an expired or cancelled one goes back to the queue. With a
        time budget or ``finish_by``, batches still running ``batch_margin``
        seconds before the deadline are cancelled, their finished requests
        are recorded, and the rest runs online through ``fallback``. A
        provider call that fails does not raise: a poll is tried again at the
        next poll while the failure is transient, and any other failure (or a
        batch the provider rejects whole) stops the run with ``failures``,
        its batches left recorded for the next run and no item run online.
        See the batch mode page of the docs.

        Args:
            request: ``request(item)`` returns the request body (the keyword
                arguments of ``chat.completions.create`` or
                ``messages.create``, ``model`` included).
            items: All the job's items; those done earlier are skipped.
            client: ``openai.OpenAI()`` or ``anthropic.Anthropic()`` (the
                async clients go with ``arun_batch``).
            parse: ``parse(item, response)`` returns the item's result from
                the provider's response (an SDK object for Anthropic, the
                response body dict for OpenAI).
            fallback: ``process(item, ctx)`` to run online what the batches
                could not finish in time; ``None`` leaves it for a later run.
            key: How to read an item's ID, as for ``Session.remaining``.
            poll_interval: Seconds between polls (shorter as the deadline nears).
            batch_margin: Seconds before the deadline at which running
                batches are cancelled; by default the poll interval plus the
                time the online fallback needs for the items in flight, at
                the job's online throughput so far.
            max_batch_requests: At most this many requests per batch (the
                provider's own limits always apply).
            endpoint: OpenAI's endpoint for the requests
                (``/v1/chat/completions`` or ``/v1/responses``).

        Returns:
            The run's report (batch and online parts together), also recorded.
        """
        key = check_input(items, key)
        engine = BatchEngine(
            self.config,
            request=request,
            parse=parse,
            client=client,
            key=key,
            poll_interval=poll_interval,
            batch_margin=batch_margin,
            max_batch_requests=max_batch_requests,
            loop=None,
            endpoint=endpoint,
        )
        report, left = engine.run(items)
        if fallback is None or not left:
            return report
        online = ResumableRun(fallback_config(self.config, engine)).run(fallback, left, key=key)
        return combine_reports(report, online)

    async def arun_batch(
        self,
        *,
        request: Callable[[T], dict[str, Any]],
        items: Iterable[T],
        client: Any,
        parse: Callable[[T, Any], Any],
        fallback: AsyncProcess[T] | None = None,
        key: KeyFunc | str | None = None,
        poll_interval: float = 30.0,
        batch_margin: float | None = None,
        max_batch_requests: int | None = None,
        endpoint: str = "/v1/chat/completions",
    ) -> RunReport:
        """`run_batch` for async clients (``openai.AsyncOpenAI()``, ``anthropic.AsyncAnthropic()``).

        The bookkeeping runs in a worker thread; the client's calls are awaited
        on this event loop, which stays free meanwhile. ``fallback`` is a
        coroutine function, run with `arun`. Arguments as for `run_batch`.
        """
        key = check_input(items, key)
        engine = BatchEngine(
            self.config,
            request=request,
            parse=parse,
            client=client,
            key=key,
            poll_interval=poll_interval,
            batch_margin=batch_margin,
            max_batch_requests=max_batch_requests,
            loop=asyncio.get_running_loop(),
            endpoint=endpoint,
        )
        running = asyncio.ensure_future(asyncio.to_thread(engine.run, items))
        try:
            report, left = await asyncio.shield(running)
        except asyncio.CancelledError:
            # The thread would poll on for hours, and hold up the loop's
            # shutdown: it stops at its next wait and records its end first.
            engine.cancelled.set()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            raise
        if fallback is None or not left:
            return report
        config = fallback_config(self.config, engine)
        online = await ResumableRun(config).arun(fallback, left, key=key)
        return combine_reports(report, online)

    # -- the sync run ----------------------------------------------------------

    def run(
        self,
        process: Process[T],
        items: Iterable[T],
        *,
        key: KeyFunc | str | None = None,
    ) -> RunReport:
        """Process every item not yet done, and return what this run did.

        ``process(item, ctx)`` returns the item's result (kept by stores that
        keep results) or raises; a raised exception is recorded as a failed
        attempt and the run goes on (unless ``fail_fast``). With
        ``concurrency > 1`` items run in that many threads, and ``process``
        and the hooks are called from them.

        Args:
            process: The function to run on each item.
            items: All the job's items; those done earlier are skipped.
            key: How to read an item's ID, as for ``Session.remaining``.

        Returns:
            The run's report, also recorded in the store.

        Raises:
            ArgumentTypeError: ``process`` is a coroutine function (use
                ``arun``), or returned a coroutine; ``items`` is a string, a
                pandas ``DataFrame`` or not iterable (nothing is written).
            Exception: With ``fail_fast=True``, the first exception from
                ``process``, after it was recorded and the report written.
            BaseException: Whatever escaped an item's bookkeeping: a hook
                that raised, a store that could not write
                (``StoreWriteError``), ``KeyboardInterrupt`` or ``SystemExit``
                from ``process``. Items in flight are let finish (within
                ``grace_period``) and recorded first; no end-of-run record
                is written.
        """
        _check_sync_process(process)
        key = check_input(items, key)
        session, state = self._open()
        with (
            run_scope(self.config.tracing, session.job_id),
            session,
            RunSignals(state, None),
            open_progress(state, session, items),
        ):
            gave_up = _GiveUp(state)
            try:
                it = session.remaining(
                    _first_in_line(items, session, key), key=key, give_up=gave_up
                )
                if self.config.concurrency == 1:
                    state.alone = True
                    exhausted = self._serial(process, it, state, session, key)
                else:
                    exhausted = self._threaded(process, it, state, session, key)
            except BaseException as exc:
                self._record_escape(state, session, exc)
                raise
            return self._close(state, session, items, key, exhausted, gave_up.fired)

    def _serial(
        self,
        process: Process[T],
        it: Iterator[T],
        state: RunState,
        session: Session,
        key: KeyFunc | None,
    ) -> bool:
        ids = IdReader(key)
        requeue = state.requeue
        # Untraced, an item's attempt is inlined: this loop runs once per item.
        traced = self.config.tracing is not None
        blocked = state.blocked
        attempts = session.attempts
        admit = state.admit
        track = requeue.track if requeue.enabled else None
        left = state.left
        clock = state.clock
        for item in requeue.feed(it):
            if isinstance(item, Wait):
                if blocked():
                    break
                time.sleep(requeue.delay())
                continue
            if blocked():
                return False
            item_id = ids(item)
            started = admit()
            ctx = ItemContext(state, item_id, attempts(item_id) + 1, started)
            if track is not None:
                track(item_id, item)
            try:
                if traced:
                    self._traced(process, item, ctx, state, session)
                    continue
                try:
                    result = process(item, ctx)
                except Exception as exc:
                    self._failed(state, session, ctx, exc, clock() - started)
                    continue
                if result is not None and inspect.iscoroutine(result):
                    _refuse_coroutine(process, result)
                self._done(state, session, ctx, result, clock() - started)
            finally:
                left()
        return True

    def _traced(
        self, process: Process[T], item: T, ctx: ItemContext, state: RunState, session: Session
    ) -> None:
        """Run ``process`` on one item and record the outcome, in the item's tracing scope.

        Untraced runs call `_attempt` (or its steps inlined) instead: no
        scope at all, not even an empty one, once per item.
        """
        tracing = self.config.tracing
        assert tracing is not None  # called for traced runs only
        with item_scope(tracing, ctx.item_id, ctx.attempt):
            self._attempt(process, item, ctx, state, session)

    def _attempt(
        self, process: Process[T], item: T, ctx: ItemContext, state: RunState, session: Session
    ) -> None:
        clock = state.clock
        started = clock()
        try:
            result = process(item, ctx)
        except Exception as exc:
            self._failed(state, session, ctx, exc, clock() - started)
        else:
            if result is not None and inspect.iscoroutine(result):
                _refuse_coroutine(process, result)
            self._done(state, session, ctx, result, clock() - started)

    def _threaded(
        self,
        process: Process[T],
        it: Iterator[T],
        state: RunState,
        session: Session,
        key: KeyFunc | None,
    ) -> bool:
        # Each worker takes its own next item (under one lock) and runs it: no
        # hand-off through the main thread, which would cost two thread
        # switches per item. Workers whose items are quick rest while another
        # is free (see _threads). The main thread only waits, so that it sees signals.
        feeder = Feeder(
            state,
            state.requeue.feed(it),
            IdReader(key),
            functools.partial(self._begin, state, session),
        )
        pool = Pool(self.config.concurrency, state, feeder)

        def worker(index: int, job: tuple[Any, ItemContext] | Wait | None) -> None:
            # Once per item: names looked up once, the pool's slot set in place.
            since = pool.since
            monotonic = time.monotonic
            take = feeder.take
            one = self._attempt if self.config.tracing is None else self._traced
            left = state.left
            try:
                while job is not None:
                    if isinstance(job, Wait):
                        state.wait_change(min(_POLL, state.requeue.delay()))
                    else:
                        item, ctx = job
                        started = since[index] = monotonic()
                        try:
                            one(process, item, ctx, state, session)
                        finally:
                            since[index] = 0.0
                            left()
                        if pool.live - pool.rested > 1:
                            pool.rest(started)
                    job = take()
            except BaseException as exc:
                state.escaped(exc)
            finally:
                pool.gone()

        try:
            # The first items are admitted here, all before any starts, one per
            # worker: a signal that comes once an item has started finds them all in flight.
            firsts: list[tuple[Any, ItemContext] | Wait] = []
            while len(firsts) < self.config.concurrency:
                first = feeder.take()
                if first is None:
                    break  # the input has ended (or the run stopped): no more workers needed
                firsts.append(first)
            for i, first in enumerate(firsts):
                thread = threading.Thread(
                    target=worker, args=(i, first), name=f"agent-resume-{i}", daemon=True
                )
                pool.live += 1
                try:
                    thread.start()
                except BaseException:
                    pool.live -= 1
                    raise
            pool.watch()
            # Read to its end only if a worker reached it: workers abandoned in long
            # items after a stop (a signal, the deadline) never asked for the rest.
            read = feeder.ended and feeder.exhausted
        finally:
            feeder.ended = True
            pool.wake_all()
            state.abandon()
        state.raise_escaped()
        return read

    # -- the async run ---------------------------------------------------------

    async def arun(
        self,
        aprocess: AsyncProcess[T],
        items: Iterable[T],
        *,
        key: KeyFunc | str | None = None,
    ) -> RunReport:
        """Process every item not yet done with ``await aprocess(item, ctx)``.

        Up to ``concurrency`` items run at once, in as many worker tasks,
        each taking its next item as it finishes one (the items of one task
        share its context). An item still running at its deadline is
        cancelled and recorded as a retryable failure.

        Args:
            aprocess: The coroutine function to run on each item.
            items: All the job's items; those done earlier are skipped.
            key: How to read an item's ID, as for ``Session.remaining``.

        Returns:
            The run's report, also recorded in the store.

        Raises:
            ArgumentTypeError: ``aprocess`` is not callable, or returned
                something that cannot be awaited (use ``run``); ``items`` is
                a string, a pandas ``DataFrame`` or not iterable (nothing is
                written).
            Exception: With ``fail_fast=True``, the first exception from
                ``aprocess``, after it was recorded and the report written.
            BaseException: Whatever escaped an item's bookkeeping, as for
                ``run``: it is raised here, never left in a task.
        """
        _check_callable("aprocess", aprocess)
        key = check_input(items, key)
        session, state = self._open()
        state.alone = True  # the worker tasks all run in this loop's thread
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()  # set when a worker ends, and by a signal

        def on_signal() -> None:
            loop.call_soon_threadsafe(wake.set)

        with (
            run_scope(self.config.tracing, session.job_id),
            session,
            RunSignals(state, on_signal),
            open_progress(state, session, items),
        ):
            gave_up = _GiveUp(state)
            try:
                exhausted = await self._adrain(aprocess, items, key, state, session, gave_up, wake)
            except BaseException as exc:
                self._record_escape(state, session, exc)
                raise
            return self._close(state, session, items, key, exhausted, gave_up.fired)

    async def _adrain(
        self,
        aprocess: AsyncProcess[T],
        items: Iterable[T],
        key: KeyFunc | None,
        state: RunState,
        session: Session,
        gave_up: _GiveUp,
        wake: asyncio.Event,
    ) -> bool:
        """Run the worker tasks until the input ends or the run stops; whether it ended."""
        source = _first_in_line(items, session, key)
        requeue = state.requeue
        begin = functools.partial(self._begin, state, session)
        if isinstance(session.store, SharedStore):
            # Waiting for items other workers hold must not block the loop.
            shared = session.aremaining(source, key=key, give_up=gave_up)
            feeder = _TaskFeeder(
                state, session, begin, IdReader(key), None, requeue.afeed(shared), wake
            )
        else:
            # Nothing to wait for but our own items: a plain iterator, no coroutine per item.
            it = session.remaining(source, key=key, give_up=gave_up)
            feeder = _TaskFeeder(state, session, begin, IdReader(key), requeue.feed(it), None, wake)
            shared = None
        workers: list[asyncio.Task[None]] = []
        try:
            await self._start_workers(aprocess, feeder, workers)
            await _drain(feeder, wake, state)
        finally:
            feeder.closing = True
            state.abandon()
            for task in workers:
                task.cancel()
            if feeder.live:
                await asyncio.wait(workers, timeout=1.0)
            if shared is not None and not feeder.taking:
                await shared.aclose()  # gives back the claimed items not handed out
        state.raise_escaped()
        # Workers cancelled from outside may have left the input unread.
        return feeder.ended and feeder.exhausted

    async def _start_workers(
        self,
        aprocess: AsyncProcess[T],
        feeder: _TaskFeeder,
        workers: list[asyncio.Task[None]],
    ) -> None:
        """Take the first items and start one worker task for each, up to ``concurrency``.

        Each worker runs its item, then takes the next one itself: no task
        per item, no hand-off. With a plain input every first item is
        admitted before any starts (the tasks start when this returns).
        """
        loop = asyncio.get_running_loop()
        state = feeder.state
        try:
            while len(workers) < self.config.concurrency:
                job = feeder.take() if feeder.feed is not None else await feeder.atake()
                if job is None:
                    return
                worker = self._aworker(aprocess, feeder, job)
                feeder.live += 1
                workers.append(loop.create_task(worker))
                if isinstance(job, Wait):
                    return  # the input has ended: only retries are left, which the workers take
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # The input raised (a bad ID, a store error): the items started
            # finish first, as when an item's bookkeeping raises.
            state.escaped(exc)

    async def _aworker(self, aprocess: AsyncProcess[T], feeder: _TaskFeeder, job: Any) -> None:
        """Run items one after another until the input ends or the run stops admitting.

        Nothing but our own cancellation leaves this task: whatever else
        escapes an item's bookkeeping goes to the run, which raises it to
        ``arun``'s caller.
        """
        state = feeder.state
        session = feeder.session
        tracing = self.config.tracing
        task = asyncio.current_task()
        assert task is not None  # a coroutine run as a task
        sync = feeder.feed is not None
        clock = state.clock
        # No item timeout and no run deadline: an item's deadline is made
        # (it is lazy) only once a signal or an escape sets the grace period.
        untimed = self.config.item_timeout == math.inf and state.cut_at == math.inf
        try:
            while job is not None:
                if isinstance(job, Wait):
                    await feeder.wait_change(state.requeue.delay())
                else:
                    item, ctx = job
                    started = clock()
                    try:
                        if tracing is not None:
                            with item_scope(tracing, ctx.item_id, ctx.attempt):
                                await self._aattempt(aprocess, item, ctx, state, session, task)
                        else:
                            # Untraced, the steps of `_aattempt` are inlined: no
                            # scope, and one coroutine level less each time the item resumes.
                            timer = None
                            try:
                                if not untimed or state.grace_at != math.inf:
                                    deadline = ctx.deadline
                                    if deadline.at != math.inf:
                                        timeout = deadline.remaining_seconds()
                                        if timeout <= 0:  # it passed before the item started
                                            raise DeadlineExceeded(deadline, 0.0)
                                        timer = _Timer(task, timeout)
                                pending = aprocess(item, ctx)
                                if type(pending) is not CoroutineType:
                                    self._check_awaitable(
                                        aprocess, pending, state, session, ctx, started
                                    )
                                result = await pending
                            except asyncio.CancelledError as exc:
                                if timer is None or not timer.fired:
                                    raise
                                error = _deadline_error(ctx, exc)
                                self._failed(state, session, ctx, error, clock() - started)
                            except _NotAwaitable:
                                raise
                            except Exception as exc:
                                self._failed(state, session, ctx, exc, clock() - started)
                            else:
                                self._done(state, session, ctx, result, clock() - started)
                            finally:
                                if timer is not None:
                                    timer.close()
                    except asyncio.CancelledError as exc:
                        if feeder.closing:
                            raise  # the run's end
                        # Not the run's: the item raised it, or cancelled its own
                        # task. A failed attempt, and the worker goes on (the run's
                        # end cancels it again).
                        _uncancel(task)
                        self._failed(state, session, ctx, _stray_cancel(exc), clock() - started)
                    finally:
                        state.left()
                        if feeder.waiting:
                            feeder.changed()
                job = feeder.take() if sync else await feeder.atake()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            state.escaped(exc)
        finally:
            feeder.ended_worker()

    async def _aattempt(
        self,
        aprocess: AsyncProcess[T],
        item: T,
        ctx: ItemContext,
        state: RunState,
        session: Session,
        task: asyncio.Task[None],
    ) -> None:
        """One attempt at an item, recorded (the worker inlines the same steps when untraced)."""
        clock = state.clock
        started = clock()
        deadline = ctx.deadline
        timer = None
        try:
            if deadline.at != math.inf:
                timeout = deadline.remaining_seconds()
                if timeout <= 0:  # it passed before the item started
                    raise DeadlineExceeded(deadline, 0.0)
                # Cheaper than wait_for (no second task): cancel this task at the deadline.
                timer = _Timer(task, timeout)
            pending = aprocess(item, ctx)
            if type(pending) is not CoroutineType:
                self._check_awaitable(aprocess, pending, state, session, ctx, started)
            result = await pending
        except asyncio.CancelledError as exc:
            if timer is None or not timer.fired:
                raise
            self._failed(state, session, ctx, _deadline_error(ctx, exc), clock() - started)
        except _NotAwaitable:
            raise
        except Exception as exc:
            self._failed(state, session, ctx, exc, clock() - started)
        else:
            self._done(state, session, ctx, result, clock() - started)
        finally:
            if timer is not None:
                timer.close()

    def _check_awaitable(
        self,
        aprocess: object,
        pending: object,
        state: RunState,
        session: Session,
        ctx: ItemContext,
        started: float,
    ) -> None:
        """Raise ``_NotAwaitable`` when ``aprocess`` returned no awaitable: a plain function.

        It ran the whole item, and what it returned is the item's result: that
        is recorded first (its calls are paid for), then the run stops.
        """
        if inspect.isawaitable(pending):
            return
        self._done(state, session, ctx, pending, state.clock() - started)
        raise _NotAwaitable(
            "aprocess",
            aprocess,
            f"`aprocess` must return an awaitable (got {type(pending).__name__}); "
            "run plain functions with `ResumableRun(config).run(process, items)` "
            "(the item's result was kept)",
        )

    # -- shared steps ----------------------------------------------------------

    def _open(self) -> tuple[Session, RunState]:
        config = self.config
        agent = AgentResume(config.store)
        session = agent.resume_or_start(
            config.job_id,
            max_attempts=config.max_attempts,
            fingerprint=config.fingerprint,
            on_change=config.on_change,
        )
        try:
            spent = None
            job_budget = config.job_max_cost_usd is not None or config.job_max_tokens is not None
            if job_budget or config.stop is not None:
                # One read of the checkpoint: each item's spending over its attempts,
                # and the job's (summed only for a job budget).
                store = session.store
                records = (
                    store.skim_records()
                    if not job_budget and isinstance(store, SkimmingStore)
                    else store.iter_records()
                )
                spent = JobSpent(records, config.prices, job_total=job_budget)
            state = RunState(config, conversations_for(config.conversation_dir, agent.store), spent)
            limit = config.rate_limit
            buckets = shared_buckets(agent.store) if limit is not None and limit.shared else None
            state.calls = CallGate(state, session, buckets)
            state.session = session
            state.requeue = Requeue(
                state,
                config.retry or DEFAULT_RETRY,
                enabled=config.retry is not None
                and not config.fail_fast
                and not isinstance(agent.store, SharedStore),
            )
            session.record_run(
                {
                    "run": "start",
                    "ts": int(state.started_wall),
                    "pid": os.getpid(),
                    "max_attempts": self.config.max_attempts,
                }
            )
        except BaseException:
            session.close()
            raise
        return session, state

    def _begin(self, state: RunState, session: Session, item_id: str) -> ItemContext:
        attempt = session.attempts(item_id) + 1
        return ItemContext(state, item_id, attempt, state.admit())

    def _done(
        self, state: RunState, session: Session, ctx: ItemContext, result: Any, duration: float
    ) -> None:
        if state.aborted:
            return
        _check_counted(state, ctx)
        usage = ctx.usage
        stop = ctx.last_stop
        # The record's facts, made here and so not checked again (Session.record_done),
        # in the writer's order; `_milliseconds` inlined: this runs once per item.
        facts: dict[str, Any] = {} if stop is None else {"stop": str(stop.name)}
        facts["turns"] = ctx.turns
        facts["seconds"] = int(duration * 1000.0 + 0.5) / 1000 if duration > 0.0 else 0.0
        if usage is not NO_USAGE or calls_recorded(ctx):
            facts["usage"] = _outcome_usage(ctx, usage, None)
        try:
            recorded = session.record_done(ctx.item_id, result, facts)
        except StoreClosedError:
            if state.aborted:
                return
            raise
        except (TypeError, ValueError) as exc:
            # The result cannot be stored: the same code would pay for the same
            # result again, so the item is quarantined until `retry` after a fix.
            self._failed(state, session, ctx, exc, duration, retryable=False)
            return
        forget_conversation(ctx)
        state.requeue.done(ctx.item_id)
        state.item_done(duration, recorded)
        hook = self.config.on_item_done
        if hook is not None:
            stop_name = None if stop is None else stop.name
            hook(
                ItemOutcome(
                    ctx.item_id, "done", ctx.attempt, duration, usage, None, stop_name, result
                )
            )

    def _failed(
        self,
        state: RunState,
        session: Session,
        ctx: ItemContext,
        exc: Exception,
        duration: float,
        *,
        retryable: bool = True,
    ) -> None:
        if state.aborted:
            return
        _check_counted(state, ctx)
        if isinstance(exc, TimeoutError) and ctx.deadline.is_expired():
            exc = _deadline_error(ctx, exc)
        if (isinstance(exc, DeadlineExceeded) and state.cut_by_run(ctx.deadline)) or isinstance(
            exc, BudgetExhausted
        ):
            self._interrupted(state, session, ctx, exc, duration)
            return
        usage = ctx.usage
        try:
            # The attempt's seconds ride with its usage: per-item limits count them over attempts.
            session.mark_failed(
                ctx.item_id,
                exc,
                retryable=retryable,
                usage=_outcome_usage(ctx, usage, duration),
                turns=ctx.turns,
                seconds=_milliseconds(duration),
            )
        except StoreClosedError:
            if state.aborted:
                return
            raise
        # Per-item limits (`stop`) count this attempt when the run tries the item again.
        state.attempt_failed(ctx.item_id, usage, duration)
        streak = state.item_failed(
            ctx.item_id, duration, transient=classify_error(exc) == "transient"
        )
        quarantined = not retryable or ctx.attempt >= self.config.max_attempts
        if self.config.fail_fast:
            state.fail_fast(exc)
        else:
            alike = job_wide_error(exc)
            if alike is not None:  # a refused key, an unknown model: every item would fail alike
                state.stop("failures", _job_wide_stop(*alike, exc))
            elif streak >= max(OUTAGE_STREAK, self.config.concurrency):
                state.stop("failures", _outage_stop(streak, exc))
            state.requeue.failed(ctx, exc)
        hook = self.config.on_item_done
        if hook is not None:
            status: Literal["failed", "quarantined"] = "quarantined" if quarantined else "failed"
            hook(ItemOutcome(ctx.item_id, status, ctx.attempt, duration, usage, exc, None, None))

    def _interrupted(
        self,
        state: RunState,
        session: Session,
        ctx: ItemContext,
        exc: DeadlineExceeded | BudgetExhausted,
        duration: float,
    ) -> None:
        """Record an item the run cut (its soft deadline, a signal, a job budget): no attempt used.

        Its usage is kept: calls made through ``ctx.call`` are already in the
        checkpoint; usage recorded otherwise is written as one ``call`` record.
        """
        _check_counted(state, ctx)
        usage = ctx.usage
        if not usage.is_empty() and not calls_recorded(ctx):
            record = {
                "call": ctx.item_id,
                "a": ctx.call_token,
                "ts": int(self.config.wall_clock()),
                "usage": {**usage_dict(usage), SECONDS_KEY: round(duration, 3)},
            }
            try:
                session.record_call(record)
            except StoreClosedError:
                if state.aborted:
                    return
                raise
        state.item_interrupted(ctx.item_id)
        hook = self.config.on_item_done
        if hook is not None:
            hook(
                ItemOutcome(
                    ctx.item_id, "interrupted", ctx.attempt, duration, usage, exc, None, None
                )
            )

    def _close(
        self,
        state: RunState,
        session: Session,
        items: Iterable[Any],
        key: KeyFunc | None,
        exhausted: bool,
        gave_up: bool,
    ) -> RunReport:
        retry_later = sum(
            1 for i in state.failed_ids if not session.is_done(i) and not session.is_quarantined(i)
        )
        remaining: int | None = retry_later + state.abandoned + state.interrupted
        requeue = state.requeue
        # A stop while failed items waited to be retried left the input itself read to its end.
        exhausted = exhausted or requeue.input_done
        # A shared store's pass that gave up waiting for other workers' items
        # (a budget or a signal) ended the input early.
        exhausted = exhausted and not gave_up
        if not exhausted:
            # Counted, not drained: on a shared store draining would claim the rest.
            remaining = session.count_left(items, key=key)
        name = state.stop_name or "completed"
        reason = state.stop_reason
        cut = state.interrupted + state.abandoned
        if state.stop_name is None and cut:
            # Every item was admitted before the deadline, which then cut those
            # still running: the run ended on its time budget, not complete.
            name = "time_budget"
            reason = StopReason(
                "time_budget",
                f"the run's deadline passed with {cut:,} item(s) still running: cut, "
                "and first in line next run",
            )
        if exhausted and not state.abandoned and not state.interrupted and name != "fail_fast":
            if retry_later == 0:
                # Everything was processed: a budget or signal reached at the very end changed nothing.
                name, reason = "completed", None
            elif state.stop_name is None or requeue.pending() == 0:
                # Gone through, but failed items are left for a later run: not "completed".
                name = "failures"
                reason = StopReason("failures", left_for_later(retry_later, "failed item"))
        report = self._record_end(state, session, name, reason, remaining)
        if state.fail_fast_error is not None:
            raise state.fail_fast_error
        return report

    def _record_end(
        self,
        state: RunState,
        session: Session,
        name: str,
        reason: StopReason | None,
        remaining: int | None,
    ) -> RunReport:
        """Write the run's end record, with its report, and return the report."""
        stats = session.stats
        report = RunReport(
            job_id=session.job_id,
            started_at=state.started_wall,
            ended_at=self.config.wall_clock(),
            done=state.done,
            already_done=stats.already_done,
            failed=state.failed,
            quarantined=stats.quarantined,
            remaining=remaining,
            stop_reason=name,  # type: ignore[arg-type]
            stop_message="" if reason is None else reason.message,
            abandoned=state.abandoned,
            interrupted=state.interrupted,
            usage=state.usage if state.usage.calls else Usage(cost_usd=0.0),
            retried=state.requeue.retried,
            **(state.calls.report_fields() if state.calls is not None else {}),
        )
        end: dict[str, Any] = {
            "run": "end",
            "ts": int(report.ended_at),
            "pid": os.getpid(),  # which start it ends, when workers share the job
            "report": report.to_dict(),
        }
        cut = state.interrupted_ids
        if cut:
            end["interrupted"] = cut  # first in line next run
        session.record_run(end)
        return report

    def _record_escape(self, state: RunState, session: Session, error: BaseException) -> None:
        """Write the end record of a run that ``error`` ends, before ``error`` goes on up.

        Its items left are not counted (the input may be what raised). Not
        after a second signal: that abort records nothing more.
        """
        if state.signals > 1:
            return
        name, message = ended_by(error)
        record_end_of(
            error, lambda: self._record_end(state, session, name, StopReason(name, message), None)
        )


class _GiveUp:
    """Asked by a shared store's pass before it waits for other workers' items.

    Gives up once the run must stop admitting (a budget, the deadline, a
    signal), so that a run never waits past its budget for items it would
    not start anyway; ``fired`` tells the run that its input was cut short.
    """

    __slots__ = ("fired", "state")

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.fired = False

    def __call__(self) -> bool:
        if self.state.blocked():
            self.fired = True
        return self.fired


class _Timer:
    """Cancels a task after ``seconds``; closing it takes that cancellation back."""

    __slots__ = ("fired", "handle", "task")

    def __init__(self, task: asyncio.Task[None], seconds: float) -> None:
        self.fired = False
        self.task = task
        self.handle = task.get_loop().call_later(seconds, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self.task.cancel()

    def close(self) -> None:
        """Stop the timer; if it fired, take back its cancellation.

        A worker task runs item after item: a cancellation left counted
        (Python 3.11+ counts them) would be seen by the next items'
        ``asyncio.timeout`` and task groups.
        """
        self.handle.cancel()
        if self.fired:
            self.fired = False
            uncancel = getattr(self.task, "uncancel", None)
            if uncancel is not None:
                uncancel()


class _TaskFeeder(Admission):
    """The async run's input, shared by its worker tasks.

    All of them run on one event loop, so taking a plain input's next item
    needs no lock (and no ``await``); an async input (a shared store's
    claims) is read by one worker at a time. Also counts the live workers,
    and wakes the workers waiting for a retry when an item ends.
    """

    __slots__ = (
        "_afeed",
        "_change",
        "_lock",
        "_wake",
        "closing",
        "feed",
        "live",
        "session",
        "taking",
        "waiting",
    )

    def __init__(
        self,
        state: RunState,
        session: Session,
        begin: Callable[[str], ItemContext],
        ids: IdReader,
        feed: Iterator[Any] | None,
        afeed: AsyncIterator[Any] | None,
        wake: asyncio.Event,
    ) -> None:
        super().__init__(state, ids, begin)
        self.session = session
        self.feed = feed
        """The plain input (``Requeue.feed``), or ``None`` for an async one."""
        self._afeed = afeed
        self._lock = asyncio.Lock()
        self._wake = wake
        self._change: asyncio.Future[None] | None = None
        self.waiting = 0
        """Workers waiting for a retry to be ready (or for an item to end)."""
        self.live = 0
        """Workers started and not ended."""
        self.taking = False
        """Whether a worker is reading the async input now."""
        self.closing = False
        """Set when the run ends: its cancellations of the workers are meant."""

    def take(self) -> tuple[Any, ItemContext] | Wait | None:
        """The plain input's next item with its context (admitted), a `Wait`, or ``None``."""
        if self.ended or self.state.aborted:
            return None
        return self.admit(next(self.feed, END))  # type: ignore[arg-type]

    async def atake(self) -> tuple[Any, ItemContext] | Wait | None:
        """`take` for an async input, one worker at a time."""
        async with self._lock:
            if self.ended or self.state.aborted:
                return None
            self.taking = True
            try:
                item = await anext(self._afeed, END)  # type: ignore[arg-type]
            finally:
                self.taking = False
            return self.admit(item)

    async def wait_change(self, seconds: float) -> None:
        """Wait up to ``seconds``, or until an item ends (it may have been queued for a retry)."""
        change = self._change
        if change is None or change.done():
            change = self._change = asyncio.get_running_loop().create_future()
        self.waiting += 1
        try:
            await asyncio.wait((change,), timeout=seconds)
        finally:
            self.waiting -= 1

    def changed(self) -> None:
        """An item ended: wake the workers waiting in `wait_change`."""
        change = self._change
        if change is not None and not change.done():
            change.set_result(None)

    def ended_worker(self) -> None:
        """A worker ended: the run's drain looks again."""
        self.live -= 1
        self._wake.set()


class _NotAwaitable(ArgumentTypeError):
    """``aprocess`` returned something that cannot be awaited: a mistake, not a failed item."""


def _first_in_line(items: Iterable[T], session: Session, key: KeyFunc | None) -> Iterable[T]:
    """The items, those the latest run cut (interrupted) first, when the input is a list.

    The latest run's end record names them. An iterator is read in its own
    order (it cannot be read ahead), and a shared store hands items out in
    its queue's order.
    """
    if not isinstance(items, (list, tuple)) or isinstance(session.store, SharedStore):
        return items
    runs = session.runs
    last = next((r for r in reversed(runs) if r.get("run") == "end"), None)
    cut = last.get("interrupted") if last is not None else None
    if not isinstance(cut, list) or not cut:
        return items
    wanted = {i for i in cut if isinstance(i, str)}
    read = IdReader(key)
    first: list[T] = []
    rest: list[T] = []
    for item in items:
        try:
            ahead = read(item) in wanted
        except (TypeError, ValueError):
            ahead = False  # a bad ID is refused by remaining() in its turn
        (first if ahead else rest).append(item)
    return first + rest if first else items


def _outcome_usage(ctx: ItemContext, usage: Usage, seconds: float | None) -> dict[str, Any] | None:
    """The usage of an attempt's outcome record, naming the attempt (``"a"``).

    The ledger lets an outcome cover the ``call`` records of its own attempt
    only (``""``: it wrote none), so calls of an earlier, killed or
    interrupted attempt keep counting beside it. ``seconds`` (``"s"``) is
    how long the attempt ran, for per-item limits over attempts. A
    completion that used nothing has no usage (``None``), which covers no
    call either.
    """
    recorded = calls_recorded(ctx)
    if usage is NO_USAGE and not recorded and seconds is None:
        return None
    body = {} if usage is NO_USAGE else usage_dict(usage)
    body["a"] = ctx.call_token if recorded else ""
    if seconds is not None:
        body[SECONDS_KEY] = round(seconds, 3)
    return body


# What a `job_wide_error` says, and what to do about it.
def _check_counted(state: RunState, ctx: ItemContext) -> None:
    """Hand the run the item's calls that returned no usage and were never counted."""
    uncounted = ctx.take_uncounted()
    if uncounted is not None:
        state.add_uncounted(uncounted)


def _job_wide_stop(name: str, what: str, error: BaseException) -> StopReason:
    """The stop of a run whose every item would fail alike (``job_wide_error``)."""
    said, fix = JOB_WIDE_ADVICE[name]
    return StopReason(
        name,
        f"{said} ({what}: {str(error)[:200]}): every item would fail alike, so the run "
        f"stopped admitting items; {fix} and run again",
    )


def _outage_stop(streak: int, error: BaseException) -> StopReason:
    """The stop of a run whose last items all failed on transient errors (a provider down)."""
    return StopReason(
        "provider_unavailable",
        f"{streak:,} items in a row failed on transient errors, their calls' retries "
        f"spent ({type(error).__name__}: {str(error)[:200]}): the provider (or what the "
        "job calls) looks unavailable, so the run stopped admitting items before their "
        "attempts ran out; run again once it answers",
    )


def _milliseconds(duration: float) -> float:
    """``duration`` in seconds to the millisecond, at least 0 (``round`` takes 7 times as long)."""
    return int(duration * 1000.0 + 0.5) / 1000 if duration > 0.0 else 0.0


def _refuse_coroutine(process: object, result: Coroutine[Any, Any, Any]) -> NoReturn:
    result.close()
    raise ArgumentTypeError(
        "process",
        process,
        "`process` returned a coroutine; run async functions with "
        "`await ResumableRun(config).arun(aprocess, items)`",
    )


def is_async_process(process: object) -> bool:
    """Whether ``process`` is an async function, or an object whose ``__call__`` is one."""
    call = getattr(process, "__call__", None)  # noqa: B004 - a callable object's async __call__
    return inspect.iscoroutinefunction(process) or inspect.iscoroutinefunction(call)


def _check_sync_process(process: object) -> None:
    _check_callable("process", process)
    call = getattr(process, "__call__", None)  # noqa: B004 - a callable object's async __call__
    name = getattr(process, "__qualname__", process)
    # A generator function's generator would be the item's result: never run,
    # and no result a store can keep.
    for wrong, what, fix in (
        (
            inspect.iscoroutinefunction,
            "an async function",
            "run it with `await ResumableRun(config).arun(aprocess, items)`",
        ),
        (inspect.isgeneratorfunction, "a generator function", "return the result, not yield it"),
    ):
        if wrong(process) or wrong(call):
            raise ArgumentTypeError("process", process, f"`process` is {what} ({name!r}); {fix}")


def _check_callable(name: str, value: object) -> None:
    """Refuse a ``process`` that is not callable, or cannot be called as ``process(item, ctx)``.

    A wrong signature (``def process(item)``, an unbound method) would fail
    every item with a ``TypeError``, each failure an attempt used, run after
    run, until all are quarantined.
    """
    if not callable(value):
        raise ArgumentTypeError(
            name, value, f"`{name}` must be callable (got {type(value).__name__})"
        )
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # a builtin or an extension: nothing to check
        return
    try:
        signature.bind(None, None)
    except TypeError as exc:
        label = getattr(value, "__qualname__", type(value).__name__)
        raise ArgumentTypeError(
            name,
            value,
            f"`{name}` is called as {name}(item, ctx), which {label}{signature} cannot take "
            f"({exc})",
        ) from None


def _stray_cancel(cause: asyncio.CancelledError) -> RuntimeError:
    """The failure an item's own ``CancelledError`` is recorded as (the run did not cancel it)."""
    error = RuntimeError(
        f"the item raised asyncio.CancelledError({', '.join(map(repr, cause.args))}) "
        "or cancelled its own task; the run did not cancel it"
    )
    error.__cause__ = cause
    return error


def _deadline_error(ctx: ItemContext, cause: BaseException) -> DeadlineExceeded:
    deadline = ctx.deadline
    error = DeadlineExceeded(deadline, deadline.elapsed_seconds())
    error.__cause__ = cause
    return error


async def _drain(feeder: _TaskFeeder, wake: asyncio.Event, state: RunState) -> None:
    """Wait for the workers to end, until the grace period ends after a stop (or an abort)."""
    while feeder.live and not state.aborted:
        wake.clear()
        left = state.grace_at - state.clock()
        if left <= 0:
            return
        if left == math.inf:
            await wake.wait()
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), left)


def _uncancel(task: asyncio.Task[None]) -> None:
    """Take back the cancellations counted on ``task`` (Python 3.11+ counts them)."""
    cancelling = getattr(task, "cancelling", None)
    while cancelling is not None and cancelling() > 0:
        task.uncancel()  # type: ignore[attr-defined]
