"""``ItemContext``: what ``process(item, ctx)`` gets to see and record about its item."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from agent_resume._accounting._prices import MIXED_MODEL, default_prices
from agent_resume._accounting._responses import text_and_tools, usage_from
from agent_resume._accounting._usage import Usage
from agent_resume._codec import ConversationCodec, Message
from agent_resume._deadline import Deadline
from agent_resume._run._calls import call_async, call_sync, new_token
from agent_resume._run._state import RunState
from agent_resume._stop import LoopState, StopReason, ToolCall

if TYPE_CHECKING:
    from agent_resume._run._calls import CallGate
    from agent_resume._session._session import Session

__all__ = ["NO_USAGE", "ItemContext", "calls_recorded"]

R = TypeVar("R")

logger = logging.getLogger("agent_resume.run")

_RECENT_OUTPUTS = 8
_RECENT_TURNS = 20
_CODEC = ConversationCodec()
NO_USAGE = Usage()
"""Every context's usage until its first call: one shared (immutable) value, not one per item."""
_ITEM_LOCK = threading.Lock()
"""Guards a context's counts against threads of the same item (held for a few lines only)."""


class ItemContext:
    """One attempt at one item, as seen by ``process(item, ctx)``.

    Attributes:
        item_id: The item's normalised ID.
        attempt: Which attempt this is, from 1 (earlier failed attempts + 1).
    """

    # No __slots__: the fields most items never change are class-level
    # defaults, so that a context costs only the few set below (one is made
    # per item); an item that changes one gets its own.
    usage: Usage = NO_USAGE
    """The usage recorded for this item so far (in this attempt)."""
    last_stop: StopReason | None = None
    """The latest reason ``should_stop()`` gave, recorded with the item's completion."""
    # Made when first asked for: most items never look at their deadline.
    _deadline: Deadline | None = None
    _turns = 0
    _errors = 0
    _last_text = ""
    # Tuples, replaced as calls come: most items make no call, and need no list.
    _tool_calls: tuple[ToolCall, ...] = ()
    _recent: tuple[str, ...] = ()
    _turn_seconds: tuple[float, ...] = ()
    _conversation: list[Message] | None = None
    _saved = False
    _logger: logging.LoggerAdapter[logging.Logger] | None = None
    _token: str | None = None
    _uncounted = 0

    def __init__(self, run: RunState, item_id: str, attempt: int, started: float) -> None:
        self._run = run
        self.item_id = item_id
        self.attempt = attempt
        self._started = started
        self._progress_at = started
        self._turn_at = started
        spent = run.spent
        self._before = None if spent is None else spent.item(item_id)

    def __repr__(self) -> str:
        return (
            f"<ItemContext item_id={self.item_id!r} attempt={self.attempt} "
            f"turns={self._turns} left={self.deadline.remaining_seconds():.3f}s>"
        )

    # -- time ------------------------------------------------------------------

    @property
    def deadline(self) -> Deadline:
        """The item's deadline: its timeout intersected with the run's deadline.

        After SIGINT or SIGTERM it is tightened to the end of the grace period,
        so an item that checks it stops in time to be recorded.
        """
        run = self._run
        deadline = self._deadline
        if deadline is None:
            deadline = self._deadline = run.item_deadline(self._started)
        grace = run.grace_at
        if grace < deadline.at:
            return Deadline(at=grace, created_at=self._started, clock=run.clock)
        return deadline

    def time_left(self) -> float:
        """Seconds left before the item's deadline (``math.inf`` for none, ``0.0`` once passed)."""
        return self.deadline.remaining_seconds()

    def next_call_seconds(self) -> float:
        """How long the next call is expected to take, ``0.0`` before any call is seen.

        The 90th percentile of the recent turns (from one ``record_usage`` to
        the next, or from the item's start) of this item and of the whole
        run, whichever is longer.
        """
        return max(_p90(self._turn_seconds), self._run.turn_estimate())

    @property
    def turns(self) -> int:
        """The model calls recorded so far with ``record_usage``."""
        return self._turns

    def loop_state(self) -> LoopState:
        """The snapshot of this item's loop that stop conditions read.

        Its counts are the item's totals over all its attempts: the earlier
        attempts' (from the checkpoint: failed, killed and interrupted
        attempts since the item was last done or released) plus this one's,
        which ``this_attempt`` holds alone.
        """
        u = self.usage
        now = self._run.clock()
        current = LoopState(
            turns=self._turns,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cost_usd=u.cost_usd if self._turns else 0.0,
            elapsed_seconds=now - self._started,
            last_text=self._last_text,
            tool_calls=self._tool_calls,
            recent_outputs=self._recent,
            consecutive_errors=self._errors,
            idle_seconds=now - self._progress_at,
            attempt=self.attempt,
        )
        before = self._before
        if before is None:
            return replace(current, this_attempt=current)
        b = before.usage
        cost: float | None = current.cost_usd
        if b.calls:
            cost = None if cost is None or b.cost_usd is None else cost + b.cost_usd
        return replace(
            current,
            turns=current.turns + b.calls,
            input_tokens=current.input_tokens + b.input_tokens,
            output_tokens=current.output_tokens + b.output_tokens,
            cost_usd=cost,
            elapsed_seconds=current.elapsed_seconds + before.seconds,
            this_attempt=current,
        )

    def mark_progress(self) -> None:
        """Say that the loop made progress now, for ``NoProgress(max_idle=...)``.

        Until the first call, the item's idle time counts from its start.
        """
        self._progress_at = self._run.clock()

    def should_stop(self) -> StopReason | None:
        """Whether the item's loop should end now, and why.

        Checks the run's ``stop`` conditions against this item's loop (its
        totals over all attempts, see `loop_state`), then
        its deadline: passed, or too close for the next call (when the time
        left is shorter than ``next_call_seconds()``), then whether the run is
        being stopped by a second signal. Call it between LLM calls.

        Returns:
            A ``StopReason`` (``"deadline"``, ``"aborted"`` or a condition's
            name), or ``None`` to go on.
        """
        condition = self._run.config.stop_condition
        reason = condition(self.loop_state()) if condition is not None else None
        if reason is None:
            reason = self._deadline_reason()
        if reason is None and self._run.aborted:
            reason = StopReason("aborted", "the run was aborted")
        if reason is not None:
            self.last_stop = reason
        return reason

    def _deadline_reason(self) -> StopReason | None:
        left = self.time_left()
        if left <= 0:
            return StopReason("deadline", "the item's deadline passed")
        if left == math.inf:
            return None
        need = self.next_call_seconds()
        if need > left:
            return StopReason(
                "deadline",
                f"{left:.3f}s left is less than the {need:.3f}s a call takes "
                "(the 90th percentile of recent calls)",
            )
        return None

    # -- accounting ------------------------------------------------------------

    def record_usage(
        self,
        response_or_usage: Any,
        *,
        text: str | None = None,
        tool_calls: Sequence[ToolCall] = (),
    ) -> Usage:
        """Count one model call: its tokens and cost, for the item and the run.

        Args:
            response_or_usage: An SDK response (OpenAI, Anthropic, Gemini,
                LiteLLM, LangChain, or a dict of those shapes) or a ``Usage``;
                a ``Usage`` of one call that names its model and has no cost
                is priced like a response (one with a cost keeps it, and a
                sum of several calls keeps its unknown cost: a context
                tier's price depends on each call's input).
            text: The model's text, for ``StopPhrase`` and ``RepeatedOutput``;
                read from OpenAI-chat and Anthropic responses when not given.
            tool_calls: The tool calls the model asked for, for
                ``RepeatedToolCall``; read like ``text`` when not given.

        Returns:
            The usage of this call, priced with the run's price table.
        """
        run = self._run
        prices = run.config.prices
        usage = usage_from(response_or_usage, prices=prices)
        if (
            usage is response_or_usage
            and usage.cost_usd is None
            and usage.model not in (None, MIXED_MODEL)
            and usage.calls <= 1
        ):
            usage = (prices if prices is not None else default_prices()).price(usage)
        if usage.calls == 0:
            usage = replace(usage, calls=1)
        found_text, found_calls = text_and_tools(response_or_usage)
        if text is None:
            text = found_text
        if not tool_calls:
            tool_calls = found_calls
        now = run.clock()
        # Several threads of one item may count calls at once (a fan-out of ctx.call).
        with _ITEM_LOCK:
            # The usage of a ctx.call that returned none (a stream's last chunk).
            late = self._uncounted > 0
            if late:
                self._uncounted -= 1
            self.usage = self.usage + usage
            self._turns += 1
            self._errors = 0
            turn = now - self._turn_at
            self._turn_at = now
            self._turn_seconds = (*self._turn_seconds, turn)[-_RECENT_TURNS:]
            if text is not None:
                self._last_text = text
                self._recent = (*self._recent, text)[-_RECENT_OUTPUTS:]
            elif tool_calls:
                self._last_text = ""  # the latest output is tool calls, with no text
            if tool_calls:
                self._tool_calls = (*self._tool_calls, *tool_calls)
        run.note_turn(turn)
        if late and run.calls is not None:
            # Written now, as ctx.call writes the usage it reads: a kill before the
            # item ends loses none of it.
            run.calls.write_call(self, usage)
        run.add_usage(usage)
        hook = run.config.on_usage
        if hook is not None:
            hook(self.item_id, usage)
        return usage

    def note_uncounted_call(self) -> None:
        """Count a call through `call`/`acall` that returned no usage (a stream, say).

        Each later `record_usage` takes one off: a stream's last chunk counts
        the call it ends.
        """
        with _ITEM_LOCK:
            self._uncounted += 1

    def take_uncounted(self) -> Usage | None:
        """The calls noted by `note_uncounted_call` that no `record_usage` counted, or ``None``.

        They are added to the item's usage as calls of unknown cost (no
        tokens), so that no total shows them as free, and the count starts
        again from 0.
        """
        with _ITEM_LOCK:
            uncounted, self._uncounted = self._uncounted, 0
            if not uncounted:
                return None
            calls = Usage(calls=uncounted)
            self.usage = self.usage + calls
        return calls

    def record_error(self) -> None:
        """Count a failed model call, for ``ConsecutiveErrors``."""
        with _ITEM_LOCK:
            self._errors += 1

    # -- the job's state ------------------------------------------------------------

    @property
    def job_state(self) -> dict[str, Any]:
        """The job's state map (``session.state``): a copy, shared by every item of the job.

        Change it with :meth:`set_job_state`, which records the change before
        returning; a later run reads it back.
        """
        return self._session().state

    def set_job_state(self, key: str, value: Any) -> None:
        """Set one key of the job's state and record it at once (``session.set_state``).

        Items running at the same time share the map: two items setting the
        same key leave the value of the last to record. To keep the largest
        value, read, compare and set in one place (see the nightly sync recipe).
        """
        self._session().set_state(key, value)

    def _session(self) -> Session:
        session = self._run.session
        if session is None:
            raise RuntimeError("the job's state needs a ResumableRun: this context has no session")
        return session

    # -- calls -------------------------------------------------------------------

    @property
    def gate(self) -> CallGate:
        """The run's limiter, retry policy and call counters (what ``call`` goes through)."""
        gate = self._run.calls
        if gate is None:
            raise RuntimeError("ctx.call needs a ResumableRun: this context has no run gate")
        return gate

    @property
    def call_token(self) -> str:
        """A random token that names this attempt's ``call`` records in the checkpoint."""
        token = self._token
        if token is None:
            with _ITEM_LOCK:  # the item's first calls may start in several threads at once
                token = self._token
                if token is None:
                    token = self._token = new_token()
        return token

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Make one LLM call for this item, through the run's limiter, timeout and retries.

        ``ctx.call(client.chat.completions.create, model=..., messages=[...])``:
        waits for a permit from the run's ``rate_limit``, calls ``fn`` with a
        ``timeout=`` (the smaller of ``call_timeout`` and the item's time
        left) when ``fn`` takes that keyword, records the response's usage
        like ``record_usage`` (and in the checkpoint at once, as a ``call``
        record), and retries transient errors per the run's ``retry``.
        A sync call cannot be interrupted: without a ``timeout`` keyword, the
        item's deadline is only checked before each try.

        Args:
            fn: The SDK method (or any function returning a response).
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``; they are also read to
                estimate the call's tokens (``messages``, ``max_tokens``, ...).

        Returns:
            What ``fn`` returned.

        Raises:
            DeadlineExceeded: The item's deadline passed before or during the call.
            Exception: The call's last error, when it is permanent or no try is left.
        """
        return call_sync(self, fn, args, kwargs)

    async def acall(self, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any) -> R:
        """Make one LLM call for this item from a coroutine: ``call`` for async SDK clients.

        Like `call`, and the call is also cancelled at its timeout (a
        ``CallTimeout``, retried) or at the item's deadline
        (``DeadlineExceeded``, not retried).

        Args:
            fn: The async SDK method (or any coroutine function returning a response).
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returned.

        Raises:
            DeadlineExceeded: The item's deadline passed before or during the call.
            Exception: The call's last error, when it is permanent or no try is left.
        """
        return await call_async(self, fn, args, kwargs)

    # -- conversation ----------------------------------------------------------

    @property
    def conversation(self) -> list[Message]:
        """The messages saved for this item by an earlier, interrupted attempt (or ``[]``).

        After ``save_conversation`` it is what was saved last.
        """
        if self._conversation is None:
            self._conversation = self._run.conversations.load(self.item_id)
        return list(self._conversation)

    def save_conversation(self, messages: Sequence[Any]) -> None:
        """Save the item's conversation so far, atomically, for a resumed attempt.

        It goes where the run keeps conversations: the store itself when it
        can keep them (SQLite, PostgreSQL), else files beside the checkpoint
        or in ``conversation_dir``. It is deleted when the item is recorded
        as done. Save after each turn: a crash leaves the previous or the new
        conversation.

        Args:
            messages: Chat messages (dicts of any shape, or SDK message
                objects with ``model_dump()``).
        """
        self._conversation = self._run.conversations.save(self.item_id, messages)
        self._saved = True

    # -- logging ---------------------------------------------------------------

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger (``agent_resume.run``) that adds the item ID and attempt to each record."""
        if self._logger is None:
            self._logger = logging.LoggerAdapter(
                logger, {"item_id": self.item_id, "attempt": self.attempt}
            )
        return self._logger


def forget_conversation(ctx: ItemContext) -> None:
    """Delete the conversation saved for the item (it is done): the run's side of ``ctx``."""
    ctx._run.conversations.forget(ctx.item_id, saved_here=ctx._saved)


def calls_recorded(ctx: ItemContext) -> bool:
    """Whether the attempt made calls through ``ctx.call``/``ctx.acall`` (each is recorded)."""
    return ctx._token is not None


def _p90(values: Sequence[float]) -> float:
    """The 90th percentile (nearest rank) of ``values``, ``0.0`` for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]
