"""One LLM call made through the run: a permit, a timeout, the usage recorded, retries.

``ctx.call(fn, ...)`` and ``await ctx.acall(fn, ...)`` land here. `CallGate` is the
run's side (the limiter, the retry policy, the counters the progress display
and the report read, and the ``call`` records written as each call returns);
`call_sync` and `call_async` are one call's loop:

1. estimate the call's tokens and reserve a permit from the limiter, waiting
   for it (never past the item's deadline);
2. take a slot among the calls allowed in flight (fewer after a 429);
3. call ``fn`` with a timeout, the smaller of ``call_timeout`` and the item's
   time left: the SDK's ``timeout=`` keyword where ``fn`` takes one, and for
   ``acall`` a cancellation as well;
4. on success, record the usage (``ctx.record_usage``, and a ``call`` record in
   the store) and correct the limiter's estimate;
5. on an error, adopt any rate-limit headers, pause the whole run after a 429,
   and retry a transient error after the provider's ``retry-after`` or a
   jittered backoff, while tries and the item's time are left.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, TypeVar

from agent_resume._accounting._usage import Usage
from agent_resume._errors import (
    ArgumentTypeError,
    ArgumentValueError,
    BudgetExhausted,
    CallTimeout,
    DeadlineExceeded,
    StoreClosedError,
)
from agent_resume._limits import Cost, Limiter
from agent_resume._records import usage_dict
from agent_resume._retry import (
    Retry,
    classify_error,
    error_headers,
    error_status,
    error_wait,
)
from agent_resume._run._spent import SECONDS_KEY
from agent_resume._run._tracing import call_span
from agent_resume._stop_base import StopReason

if TYPE_CHECKING:
    from agent_resume._limits import Buckets
    from agent_resume._run._context import ItemContext
    from agent_resume._run._state import RunState
    from agent_resume._session._session import Session

__all__ = ["CallGate", "call_async", "call_sync"]

logger = logging.getLogger("agent_resume.run")

R = TypeVar("R")

_NO_RETRY = Retry(attempts=1)
_SLOT_POLL = 0.005  # how often a call waiting for a slot in flight looks again
_BACKSTOP = 0.25  # seconds after the SDK's own timeout before acall cancels the call
_RATE_LIMITED = frozenset({429})


class CallGate:
    """The run's side of ``ctx.call``: limiter, retry policy, counters and call records.

    Args:
        state: The run's state (its config, clocks and stop flags).
        session: The run's session, through which ``call`` records are written.
        buckets: Where the rate buckets live; in this process when ``None``.
    """

    def __init__(self, state: RunState, session: Session, buckets: Buckets | None = None) -> None:
        config = state.config
        self._state = state
        self._session = session
        self.wall_clock = config.wall_clock
        # Permits are waited for with real sleeps, so the limiter keeps real time
        # even when a test injects a MockClock for deadlines.
        self.limiter = Limiter(config.rate_limit, config.concurrency, time.monotonic, buckets)
        self.retry = config.retry if config.retry is not None else _NO_RETRY
        self.call_timeout: float = config.call_timeout
        self.tracing = config.tracing
        self._lock = threading.Lock()
        self.started = 0
        """Calls started (tries, retries included)."""
        self.returned = 0
        """Calls that returned a response."""
        self.errors = 0
        """Calls that raised."""
        self.in_flight = 0
        """Calls started and not yet returned or raised."""
        self.rate_limited = 0
        self._told_sdk_retries = False  # the SDK's own retries are warned of once a run
        """Calls answered with HTTP 429."""
        self.retries = 0
        """Calls tried again after a transient error."""
        self._accepts: dict[Any, bool] = {}

    # -- counters ----------------------------------------------------------------

    def _begin(self) -> None:
        with self._lock:
            self.started += 1
            self.in_flight += 1

    def _end(self, ok: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            if ok:
                self.returned += 1
            else:
                self.errors += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters and the limiter's state, for progress lines and the report."""
        with self._lock:
            out: dict[str, Any] = {
                "started": self.started,
                "returned": self.returned,
                "errors": self.errors,
                "in_flight": self.in_flight,
                "rate_limited": self.rate_limited,
                "retries": self.retries,
            }
        out["limiter"] = self.limiter.state()
        return out

    def report_fields(self) -> dict[str, int]:
        """The counters the run's report carries."""
        with self._lock:
            return {
                "call_retries": self.retries,
                "rate_limited": self.rate_limited,
                "calls_in_flight": self.in_flight,
            }

    # -- steps ---------------------------------------------------------------------

    def accepts_timeout(self, fn: Callable[..., Any]) -> bool:
        """Whether ``fn`` takes a ``timeout`` keyword (the SDKs' create methods do)."""
        key = getattr(fn, "__func__", fn)
        try:
            known = self._accepts.get(key)
        except TypeError:  # unhashable callable
            key, known = None, None
        if known is not None:
            return known
        try:
            parameters = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            accepts = False
        else:
            found = parameters.get("timeout")
            accepts = found is not None and found.kind in (
                inspect.Parameter.KEYWORD_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            )
        if key is not None:
            self._accepts[key] = accepts
        return accepts

    def check_budget(self) -> None:
        """Refuse a new call once a job budget is spent (or a price unknown under a cost budget).

        Raises:
            BudgetExhausted: The run stopped for one of those.
        """
        reason = self._state.spend_stop
        if reason is not None:
            raise BudgetExhausted(reason.name, reason.message)

    def timeout_for(self, ctx: ItemContext) -> tuple[float, bool]:
        """This call's timeout and whether it is the item's deadline (not ``call_timeout``)."""
        left = ctx.deadline.remaining_seconds()
        if self.call_timeout < left:
            return self.call_timeout, False
        return left, True

    def succeeded(self, ctx: ItemContext, result: Any, cost: Cost) -> Usage | None:
        """Record a call's usage for the item and the run, write its ``call`` record, settle.

        Returns:
            The call's usage, or ``None`` when the response carries none to read.
        """
        headers = _response_headers(result)
        if headers:
            self.limiter.adopt(headers)
        parsed = _parsed(result)
        try:
            usage = ctx.record_usage(parsed)
        except (ArgumentTypeError, ArgumentValueError) as exc:
            # A stream (its usage comes with its last chunk) or a response without
            # usage (usage_from read nothing, and nothing was counted): returned as
            # it is, for the caller to count with record_usage. One left uncounted
            # when the item ends is a call of unknown cost (RunState.add_uncounted);
            # a plain value (None, text, a dict of no response's shape) is no LLM
            # response, and costs nothing we could know of.
            self.limiter.settle(cost, cost)
            if isinstance(exc, ArgumentValueError) or _is_stream(parsed):
                ctx.note_uncounted_call()
            return None
        self.limiter.settle(
            cost,
            Cost(
                1.0,
                float(usage.input_tokens + usage.output_tokens),
                usage.input_tokens,
                usage.output_tokens,
            ),
        )
        self.write_call(ctx, usage)
        return usage

    def write_call(self, ctx: ItemContext, usage: Usage) -> None:
        """Write one call's ``call`` record for the item's attempt (none once the run aborted)."""
        if self._state.aborted:
            return
        record = {
            "call": ctx.item_id,
            "a": ctx.call_token,
            "ts": int(self.wall_clock()),
            # The attempt's seconds so far: per-item limits count them over attempts.
            "usage": {**usage_dict(usage), SECONDS_KEY: round(ctx.deadline.elapsed_seconds(), 3)},
        }
        try:
            self._session.record_call(record)
        except StoreClosedError:
            if not self._state.aborted:
                raise

    def failed(
        self, ctx: ItemContext, error: BaseException, cost: Cost, tries: int
    ) -> float | None:
        """Handle a call's error: returns the seconds to wait before the next try, or ``None`` to give up.

        Raises:
            DeadlineExceeded: The error is worth another try, but not before
                the item's deadline (a provider's ``retry-after`` longer than
                the time left): the deadline, not the call, ended the item, so
                a run's own deadline interrupts it and uses no attempt.
        """
        completion = _paid_completion(error)
        if completion is not None:
            # Answered, then refused by the SDK (structured outputs cut at max_tokens):
            # the call was paid for, and counts like any other before the error is handled.
            self.succeeded(ctx, completion, cost)
        else:
            self.limiter.settle(cost, None)
        headers = error_headers(error)
        if headers:
            self.limiter.adopt(headers)
        status = error_status(error)
        sdk_retries = 0 if self._told_sdk_retries else _sdk_retries(error)
        if sdk_retries:
            self._told_sdk_retries = True
            logger.warning(
                "the SDK retried a call %d time(s) itself before raising %s: set "
                "max_retries=0 on the client, so that ctx.call retries, sees every 429 and "
                "keeps to the deadline (each of its tries is the SDK's max_retries + 1 requests)",
                sdk_retries,
                type(error).__name__,
            )
        told = error_wait(error, self.wall_clock(), headers)
        longest = self.retry.longest_told()  # a longer ask is cut to it, once past the deadlines
        if status in _RATE_LIMITED and classify_error(error) == "transient":
            # (Not a used-up quota: a 429 too, which no pause cures.)
            pause = told if told is not None else self.retry.backoff(tries)
            with self._lock:
                self.rate_limited += 1
            self.limiter.pause(min(pause, longest))
            state = self._state
            left = state.deadline.at - state.clock()
            if pause >= left:
                # Every call waits past the run's deadline: admitting more items would only cut them.
                state.stop(
                    "time_budget",
                    StopReason(
                        "time_budget",
                        f"the provider paused every call for {pause:.1f}s (HTTP {status}), "
                        f"and the run's deadline is in {max(left, 0.0):.1f}s",
                    ),
                )
            logger.info(
                "HTTP 429 for item %r: every call waits %.3fs; calls in flight now at most %d",
                ctx.item_id,
                pause,
                self.limiter.allowed,
            )
        if tries >= self.retry.attempts or not self.retry.retryable(error):
            return None
        wait = told if told is not None else self.retry.backoff(tries)
        left = ctx.deadline.remaining_seconds()
        if wait >= left:
            ctx.record_error()
            what = type(error).__name__ if status is None else f"HTTP {status}"
            raise _deadline_error(
                ctx,
                error,
                f"{what}: the next try would be in {wait:.1f}s, and the item has {left:.1f}s left",
            )
        if wait > longest:
            logger.warning(
                "%s for item %r: the provider asked to wait %.0fs; waiting %.0fs "
                "(Retry.maximum sets the longest wait followed)",
                type(error).__name__ if status is None else f"HTTP {status}",
                ctx.item_id,
                wait,
                longest,
            )
            wait = longest
        with self._lock:
            self.retries += 1
        return wait


def _sdk_retries(error: BaseException) -> int:
    """How often the openai or anthropic SDK retried the request of ``error`` itself.

    Their clients send the count with every request (``x-stainless-retry-count``);
    the error's response carries the request it answered.
    """
    request = getattr(getattr(error, "response", None), "request", None)
    headers = getattr(request, "headers", None)
    if headers is None:
        return 0
    try:
        return int(headers.get("x-stainless-retry-count") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def _paid_completion(error: BaseException) -> Any:
    """The answer an error carries with its usage, or ``None``.

    openai's ``LengthFinishReasonError`` and ``ContentFilterFinishReasonError``
    (raised by ``chat.completions.parse`` when the answer was cut at
    ``max_tokens`` or filtered) hold the completion the provider billed.
    """
    completion = getattr(error, "completion", None)
    return completion if getattr(completion, "usage", None) is not None else None


def _is_stream(result: object) -> bool:
    """Whether a call's result looks like a stream (chunks to iterate, or a stream manager)."""
    if isinstance(result, (str, bytes, bytearray, Mapping, Sequence, AbstractSet)):
        return False
    kind = type(result)
    return any(hasattr(kind, name) for name in ("__iter__", "__aiter__", "__enter__", "__aenter__"))


class _NotAwaitable(ArgumentTypeError):
    """``acall`` was given a function that does not return an awaitable (never retried)."""


class _OwnTimeout(Exception):
    """A ``TimeoutError`` that ``fn`` raised itself, carried past the handler of ``wait_for``'s."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


async def _own_timeouts(awaitable: Awaitable[R]) -> R:
    """Await ``fn``'s call; a ``TimeoutError`` of its own (an SDK's, ``asyncio.timeout``) is carried.

    On Python 3.11 and later ``asyncio.TimeoutError`` is ``TimeoutError``:
    without this, a transient timeout raised inside ``fn`` read as the call's
    own limit (``DeadlineExceeded`` with no deadline set, never retried).
    """
    try:
        return await awaitable
    except asyncio.TimeoutError as error:
        raise _OwnTimeout(error) from error


def _check_fn(fn: object, method: str) -> None:
    if not callable(fn):
        raise ArgumentTypeError(
            "fn",
            fn,
            f"ctx.{method}'s `fn` must be callable, such as client.chat.completions.create "
            f"(got {type(fn).__name__} {fn!r:.60})",
        )


def _response_headers(result: Any) -> Mapping[str, str]:
    """Headers of a raw response (``with_raw_response``), lower-cased; empty otherwise."""
    if not callable(getattr(result, "parse", None)):
        return {}
    raw = getattr(result, "headers", None)
    if raw is None:
        return {}
    try:
        return {str(k).lower(): str(v) for k, v in raw.items()}
    except Exception:  # headers we cannot read are no headers
        return {}


def _parsed(result: Any) -> Any:
    """The parsed response of a raw one (``with_raw_response``), else the result itself."""
    parse = getattr(result, "parse", None)
    if callable(parse) and hasattr(result, "headers") and not inspect.iscoroutinefunction(parse):
        try:
            return parse()
        except Exception:  # not an SDK raw response after all
            return result
    return result


def _deadline_error(
    ctx: ItemContext, cause: BaseException | None, why: str = ""
) -> DeadlineExceeded:
    deadline = ctx.deadline
    error = DeadlineExceeded(deadline, deadline.elapsed_seconds(), why)
    if cause is not None:
        error.__cause__ = cause
    return error


def _kwargs(
    gate: CallGate, fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float
) -> dict[str, Any]:
    if math.isinf(timeout) or "timeout" in kwargs or not gate.accepts_timeout(fn):
        return kwargs
    return {**kwargs, "timeout": max(timeout, 0.001)}


def _permit_wait(gate: CallGate, ctx: ItemContext, cost: Cost) -> float:
    wait = gate.limiter.reserve(cost)
    left = ctx.deadline.remaining_seconds()
    if wait > 0 and wait >= left:
        gate.limiter.settle(cost, None)
        raise _deadline_error(
            ctx,
            None,
            f"the rate limit allows the next call in {wait:.1f}s, and the item has {left:.1f}s "
            "left (a provider's retry-after pauses every call of the run)",
        )
    return wait


def call_sync(
    ctx: ItemContext, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> R:
    """One call from a thread: see the module docstring."""
    _check_fn(fn, "call")
    guesses: list[Cost] = []
    try:
        return _call_sync(ctx, fn, args, kwargs, guesses)
    finally:
        _drop_guesses(ctx.gate.limiter, guesses)


def _drop_guesses(limiter: Limiter, guesses: list[Cost]) -> None:
    """Give back the turn of a call whose output was a guess (`Limiter.take_guess`)."""
    for cost in guesses:
        limiter.drop_guess(cost)
    guesses.clear()


def _call_sync(
    ctx: ItemContext,
    fn: Callable[..., R],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    guesses: list[Cost],
) -> R:
    gate = ctx.gate
    limiter = gate.limiter
    tries = 0
    while True:
        tries += 1
        _drop_guesses(limiter, guesses)  # the try before is over
        if ctx.deadline.is_expired():
            raise _deadline_error(ctx, None)
        gate.check_budget()
        cost = limiter.estimate(kwargs)
        while not limiter.take_guess(cost):
            if ctx.deadline.is_expired():
                raise _deadline_error(ctx, None)
            time.sleep(_SLOT_POLL)
            cost = limiter.estimate(kwargs)
        guesses.append(cost)
        wait = _permit_wait(gate, ctx, cost)
        if wait > 0:
            limiter.waiting_for_permit(1)
            try:
                time.sleep(wait)
            finally:
                limiter.waiting_for_permit(-1)
        while not limiter.try_enter():
            if ctx.deadline.is_expired():
                limiter.settle(cost, None)
                raise _deadline_error(ctx, None)
            time.sleep(_SLOT_POLL)
        timeout, is_deadline = gate.timeout_for(ctx)
        call_kwargs = _kwargs(gate, fn, kwargs, timeout)
        gate._begin()
        span = _CallSpan(gate, kwargs)
        try:
            result = fn(*args, **call_kwargs)
        except Exception as error:
            span.fail(error)
            limiter.leave()
            gate._end(False)
            if is_deadline and ctx.deadline.is_expired():
                raise _deadline_error(ctx, error) from error
            delay = gate.failed(ctx, error, cost, tries)
            if delay is None:
                ctx.record_error()
                raise
            time.sleep(delay)
            continue
        except BaseException as error:
            span.fail(error)
            raise
        limiter.leave()
        gate._end(True)
        if inspect.iscoroutine(result):
            result.close()
            limiter.settle(cost, None)
            wrong = ArgumentTypeError(
                "fn",
                fn,
                "ctx.call's `fn` returned a coroutine: await async functions with ctx.acall",
            )
            span.fail(wrong)
            raise wrong
        span.done(gate.succeeded(ctx, result, cost), result)
        return result


async def call_async(
    ctx: ItemContext, fn: Callable[..., Awaitable[R]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> R:
    """One call from a task: see the module docstring."""
    _check_fn(fn, "acall")
    guesses: list[Cost] = []
    try:
        return await _call_async(ctx, fn, args, kwargs, guesses)
    finally:
        _drop_guesses(ctx.gate.limiter, guesses)


async def _call_async(
    ctx: ItemContext,
    fn: Callable[..., Awaitable[R]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    guesses: list[Cost],
) -> R:
    gate = ctx.gate
    limiter = gate.limiter
    tries = 0
    while True:
        tries += 1
        _drop_guesses(limiter, guesses)  # the try before is over
        if ctx.deadline.is_expired():
            raise _deadline_error(ctx, None)
        gate.check_budget()
        cost = limiter.estimate(kwargs)
        while not limiter.take_guess(cost):
            if ctx.deadline.is_expired():
                raise _deadline_error(ctx, None)
            await asyncio.sleep(_SLOT_POLL)
            cost = limiter.estimate(kwargs)
        guesses.append(cost)
        wait = _permit_wait(gate, ctx, cost)
        if wait > 0:
            limiter.waiting_for_permit(1)
            try:
                await asyncio.sleep(wait)
            finally:
                limiter.waiting_for_permit(-1)
        while not limiter.try_enter():
            if ctx.deadline.is_expired():
                limiter.settle(cost, None)
                raise _deadline_error(ctx, None)
            await asyncio.sleep(_SLOT_POLL)
        timeout, is_deadline = gate.timeout_for(ctx)
        call_kwargs = _kwargs(gate, fn, kwargs, timeout)
        passed = call_kwargs is not kwargs
        gate._begin()
        span = _CallSpan(gate, kwargs)
        entered = True
        try:
            try:
                awaitable = fn(*args, **call_kwargs)
                if not inspect.isawaitable(awaitable):
                    raise _NotAwaitable(
                        "fn",
                        fn,
                        f"ctx.acall's `fn` must return an awaitable (got "
                        f"{type(awaitable).__name__}); call sync functions with ctx.call",
                    )
                guarded = _own_timeouts(awaitable)
                if math.isinf(timeout):
                    result = await guarded
                else:
                    # The SDK times out on its own when it took `timeout=`; the
                    # cancellation is the backstop (and the only limit otherwise).
                    limit = timeout + _BACKSTOP if passed and not is_deadline else timeout
                    result = await asyncio.wait_for(guarded, max(limit, 0.0))
            except asyncio.TimeoutError as error:
                # Only the wait_for above (fn's own are _OwnTimeout): DeadlineExceeded
                # is no TimeoutError, so an item's deadline raised inside ``fn`` goes
                # to the handler below.
                span.fail(error)
                limiter.leave()
                gate._end(False)
                entered = False
                if is_deadline:
                    raise _deadline_error(ctx, error) from error
                raise CallTimeout(timeout) from error
        except _NotAwaitable as error:
            span.fail(error)
            limiter.leave()
            gate._end(False)
            # A sync function made its call already: the response's usage counts
            # (it was paid for) before the mistake is raised.
            gate.succeeded(ctx, awaitable, cost)
            raise
        except Exception as caught:
            failure: Exception = caught.error if isinstance(caught, _OwnTimeout) else caught
            span.fail(failure)
            if entered:
                limiter.leave()
                gate._end(False)
            if is_deadline and ctx.deadline.is_expired():
                if isinstance(failure, DeadlineExceeded):
                    raise
                raise _deadline_error(ctx, failure) from failure
            delay = gate.failed(ctx, failure, cost, tries)
            if delay is None:
                ctx.record_error()
                if failure is not caught:
                    raise failure from None  # fn's own timeout, as fn raised it
                raise
            await asyncio.sleep(delay)
            continue
        except BaseException as error:
            # Cancelled (the item's deadline, or the run ending): the call never returned.
            span.fail(error)
            if entered:
                limiter.leave()
                gate._end(False)
            raise
        limiter.leave()
        gate._end(True)
        span.done(gate.succeeded(ctx, result, cost), result)
        return result


class _CallSpan:
    """The tracing scope of one try of a call, closed exactly once (a no-op when untraced)."""

    __slots__ = ("_open", "_scope", "_span")

    def __init__(self, gate: CallGate, kwargs: dict[str, Any]) -> None:
        model = kwargs.get("model")
        self._scope = call_span(gate.tracing, model=model if isinstance(model, str) else None)
        self._span = self._scope.__enter__()
        self._open = True

    def fail(self, error: BaseException) -> None:
        """End the span with the error (``error.type``)."""
        if self._open:
            self._open = False
            self._scope.__exit__(type(error), error, error.__traceback__)

    def done(self, usage: Usage | None, result: Any) -> None:
        """End the span with the call's usage and the model that answered."""
        if self._open:
            self._open = False
            model = getattr(_parsed(result), "model", None)
            self._span.record(usage, response_model=model if isinstance(model, str) else None)
            self._scope.__exit__(None, None, None)


def new_token() -> str:
    """A short random token naming one attempt's calls in the checkpoint."""
    return secrets.token_hex(4)
