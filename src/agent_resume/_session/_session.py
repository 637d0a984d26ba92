"""A ``Session``: one open job, which yields the items still to do and records what happens to them."""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from agent_resume._errors import (
    ArgumentTypeError,
    ArgumentValueError,
    StoreClosedError,
    add_note,
)
from agent_resume._fingerprint import Fingerprinter
from agent_resume._records import JobState, check_json, error_text, normalize_id, usage_dict
from agent_resume._session._claiming import Claiming
from agent_resume._session._items import KeyFunc, check_input
from agent_resume._session._remaining import Batched, OneByOne
from agent_resume._session._rules import ItemRules, OnChange, Strategy
from agent_resume.stores import SharedStore, Store

__all__ = ["OnChange", "Session", "SessionStats"]

T = TypeVar("T")
_now = time.time

MAX_STATE_BYTES = 65_536
"""The largest job state map, as JSON: it is rewritten whole with each change."""


@dataclass(frozen=True)
class SessionStats:
    """Counts for one session.

    Attributes:
        done: Items marked done in this session.
        failed: Failed attempts recorded in this session.
        quarantined: Items quarantined now (in this session or earlier).
        already_done: Items that were done when the session started.
        duplicates: Repeated IDs seen (and skipped) by ``remaining()``.
        changed: Items done earlier whose content changed (fingerprints).
        bad_lines: Corrupt lines skipped when the checkpoint was loaded.
    """

    done: int = 0
    failed: int = 0
    quarantined: int = 0
    already_done: int = 0
    duplicates: int = 0
    changed: int = 0
    bad_lines: int = 0


class Session:
    """One open job: yields the items still to do and records what happens to them.

    Get one from :meth:`AgentResume.resume_or_start`. Methods may be called
    from several threads.
    """

    def __init__(
        self,
        store: Store,
        state: JobState,
        max_attempts: int,
        fingerprinter: Fingerprinter | None,
        on_change: OnChange,
    ) -> None:
        self.store = store
        self.job_id = state.job_id
        self.max_attempts = max_attempts
        self._state = state
        self._rules = ItemRules(state, max_attempts, fingerprinter, on_change)
        self._done = state.done
        self._failures = state.failures
        self._fingerprinting = fingerprinter is not None
        self._keeps_results = store.keeps_results
        self._dropped_result = False
        self._lock = threading.Lock()
        self._shared = isinstance(store, SharedStore)
        self._already_done = len(state.done)
        self._resumed = state.resumed
        self._n_done = 0
        self._n_failed = 0

    def __repr__(self) -> str:
        state = "closed" if self._rules.closed else "open"
        return f"<Session job_id={self.job_id!r} store={self.store!r} {state}>"

    # -- the context manager -------------------------------------------------

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception as close_error:
            # The error that ended the block is the one to see (a full disk that
            # failed a completion fails the close too): the close's goes with it.
            add_note(exc, f"closing the store failed too: {close_error}")

    def close(self) -> None:
        """Flush and close the store; closing twice is harmless."""
        with self._lock:
            if self._rules.closed:
                return
            self._rules.closed = True
        self.store.close()

    @property
    def closed(self) -> bool:
        """Whether the session was closed."""
        return self._rules.closed

    def _check_open(self) -> None:
        self._rules.check_open()

    # -- reading -------------------------------------------------------------

    def remaining(
        self,
        items: Iterable[T],
        *,
        key: KeyFunc | str | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> Iterator[T]:
        """Yield the items not yet done, in input order, lazily.

        An item's ID is ``key(item)`` if given (``key="doc_id"``, a field
        name, reads ``item["doc_id"]`` or ``item.doc_id``), else ``item.id``,
        else ``item["id"]``, else the item itself when it is a ``str``. Items that
        are quarantined are skipped; a repeated ID is yielded once, counted in
        :attr:`stats` and warned about once (also when the loop marked the
        item done before its repeat came; an ID done before the pass reached
        it is skipped each time and not counted).

        A list or tuple is filtered in batches in C; any other iterable is
        read one item at a time, never ahead of the loop. On a shared store
        (SQLite, PostgreSQL) the input is read whole, enqueued, and items are
        claimed batch by batch under a lease; while other workers hold the
        rest, the iterator waits (``time.sleep``; use :meth:`aremaining` in an
        event loop).

        Args:
            items: The job's items.
            key: How to read an item's ID (see above).
            give_up: Shared stores only: asked before each wait for items
                other workers hold (about once per ``poll_seconds``); when it
                returns true the iterator ends instead of waiting (a run
                passes its budgets and signals here). Other stores never wait.

        Raises:
            ArgumentTypeError: An ID is neither ``str`` nor ``int``,
                ``items`` is a string, a pandas ``DataFrame`` or not
                iterable, or ``key`` is neither a function nor a field name.
            ArgumentValueError: An ID is empty or holds a lone surrogate.
            ItemChangedError: A done item changed and ``on_change="error"``.
        """
        self._check_open()
        return self._strategy(items, key, give_up).iterate()

    def aremaining(
        self,
        items: Iterable[T],
        *,
        key: KeyFunc | str | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> AsyncGenerator[T, None]:
        """The same as :meth:`remaining`, for an ``async for`` loop.

        On a shared store, the claims run in a worker thread and the wait for
        items that other workers hold is an ``asyncio.sleep``, so the event
        loop keeps running (and finishing) this worker's own items meanwhile.
        On other stores it yields what :meth:`remaining` yields.

        Args:
            items: The job's items.
            key: How to read an item's ID, as for :meth:`remaining`.
            give_up: As for :meth:`remaining`.

        Raises:
            ArgumentTypeError: An ID is neither ``str`` nor ``int``,
                ``items`` is a string, a pandas ``DataFrame`` or not
                iterable, or ``key`` is neither a function nor a field name.
            ArgumentValueError: An ID is empty or holds a lone surrogate.
            ItemChangedError: A done item changed and ``on_change="error"``.
        """
        self._check_open()
        return self._strategy(items, key, give_up).aiterate()

    def _strategy(
        self, items: Iterable[T], key: KeyFunc | str | None, give_up: Callable[[], bool] | None
    ) -> Strategy[T]:
        key = check_input(items, key)
        if give_up is not None and not callable(give_up):
            raise ArgumentTypeError(
                "give_up",
                give_up,
                f"`give_up` must be a callable or None (got {type(give_up).__name__} {give_up!r:.60})",
            )
        if self._shared:
            store: SharedStore = self.store  # type: ignore[assignment]
            return Claiming(self._rules, store, items, key, give_up)
        if not self._fingerprinting and isinstance(items, (list, tuple)):
            return Batched(self._rules, items, key)
        return OneByOne(self._rules, items, key)

    def count_left(self, items: Iterable[Any], *, key: KeyFunc | str | None = None) -> int | None:
        """Count the items still to do, claiming nothing and changing nothing.

        On a shared store the store counts the job's items neither done nor
        quarantined, whoever gave them and whoever holds them (items leased by
        live workers included). On other stores, the distinct IDs of ``items``
        neither done nor quarantined; ``None`` when ``items`` is an iterator,
        which cannot be read a second time.

        Args:
            items: The job's items, as given to :meth:`remaining`.
            key: How to read an item's ID, as for :meth:`remaining`.

        Raises:
            StoreClosedError: The session is closed.
        """
        self._check_open()
        key = check_input(items, key)
        if self._shared:
            store: SharedStore = self.store  # type: ignore[assignment]
            return store.pending(self.max_attempts)
        if isinstance(items, Iterator) or not hasattr(items, "__len__"):
            return None
        return self._rules.count_left(items, key)

    def is_done(self, item_id: str | int) -> bool:
        """Whether the item is done (in this session or an earlier one)."""
        return normalize_id(item_id) in self._done

    def is_quarantined(self, item_id: str | int) -> bool:
        """Whether the item failed too often, or failed for good, and is skipped."""
        return self._rules.is_quarantined(normalize_id(item_id))

    def attempts(self, item_id: str | int) -> int:
        """The failed attempts of an item not done, since it was last released."""
        if type(item_id) is not str or not item_id or not item_id.isascii():
            item_id = normalize_id(item_id)
        failure = self._failures.get(item_id)
        return failure.attempts if failure else 0

    def quarantined(self) -> list[str]:
        """The IDs of the quarantined items."""
        is_quarantined = self._rules.is_quarantined
        return [i for i in list(self._failures) if is_quarantined(i)]

    @property
    def stats(self) -> SessionStats:
        """A snapshot of this session's counts."""
        return SessionStats(
            done=self._n_done,
            failed=self._n_failed,
            quarantined=len(self.quarantined()),
            already_done=self._already_done,
            duplicates=self._rules.duplicates,
            changed=self._rules.changed,
            bad_lines=self._state.bad_lines,
        )

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The run records loaded with the job, oldest first."""
        return list(self._state.runs)

    @property
    def resumed(self) -> bool:
        """Whether the job had been started before this session (it had any records)."""
        return self._resumed

    # -- the job's state -------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """The job's state map: a small JSON mapping kept with the checkpoint.

        What a job needs to carry from one run to the next besides its items:
        a nightly sync's cursor or high-water mark, the page it stopped at.
        It is read when the job is opened (empty for a new job). This is a
        copy: change the state with :meth:`set_state`, :meth:`update_state`
        or :meth:`delete_state`.
        """
        with self._lock:
            return copy.deepcopy(self._state.state)

    def set_state(self, key: str, value: Any) -> None:
        """Set one key of the job's state, and record it before returning.

        Args:
            key: A non-empty string.
            value: Any JSON value (a cursor, a timestamp as text, a list of IDs).

        Raises:
            ArgumentTypeError: ``key`` is not a string, or ``value`` cannot be
                stored as JSON.
            ArgumentValueError: ``key`` is empty, ``value`` holds NaN, or the
                whole map would exceed 64 KiB of JSON.
            StoreClosedError: The session is closed.
            StoreWriteError: The write failed; the state is unchanged.
        """
        self.update_state({key: value})

    def update_state(self, changes: Mapping[str, Any]) -> None:
        """Set several keys of the job's state in one record (all or none survive a crash).

        Args:
            changes: Keys (non-empty strings) and their new JSON values.

        Raises:
            ArgumentTypeError: A key is not a string, or a value cannot be stored.
            ArgumentValueError: A key is empty, a value holds NaN, or the map
                would exceed 64 KiB of JSON.
            StoreClosedError: The session is closed.
            StoreWriteError: The write failed; the state is unchanged.
        """
        if not isinstance(changes, Mapping):
            raise ArgumentTypeError(
                "changes", changes, f"`changes` must be a mapping (got {type(changes).__name__})"
            )
        plain: dict[str, Any] = {}
        for key, value in changes.items():
            _check_key(key)
            plain[key] = json.loads(check_json(value, "value"))
        self._write_state(lambda state: {**state, **plain})

    def delete_state(self, key: str) -> None:
        """Remove one key of the job's state (a missing key is not an error), recorded at once."""
        _check_key(key)
        self._write_state(lambda state: {k: v for k, v in state.items() if k != key})

    def _write_state(self, change: Any) -> None:
        with self._lock:
            self._check_open()
            new = change(self._state.state)
            text = check_json(new, "state")
            if len(text.encode("utf-8")) > MAX_STATE_BYTES:
                raise ArgumentValueError(
                    "value",
                    None,
                    f"the job's state would take {len(text.encode('utf-8'))} bytes of JSON, "
                    f"more than the {MAX_STATE_BYTES} allowed; keep large data elsewhere",
                )
            self.store.write_run({"state": new, "ts": int(_now())})
            self._state.state = new

    def results(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(item_id, result)`` for each done item, where the store keeps results."""
        return self.store.iter_results()

    # -- recording -----------------------------------------------------------

    def mark_done(
        self,
        item_id: str | int,
        result: Any = None,
        *,
        usage: Any = None,
        stop: str | None = None,
        turns: int | None = None,
        seconds: float | None = None,
    ) -> bool:
        """Record that an item is done, before returning.

        Args:
            item_id: The item's ID.
            result: A JSON-able result, kept by stores that keep results.
            usage: A :class:`~agent_resume.Usage` or a usage dict, kept with the completion.
            stop: The name of the stop reason that ended the item's loop, if any.
            turns: The model calls (turns) this attempt made, if known (the
                record's ``turns``).
            seconds: How long this attempt took, if known (the record's ``seconds``).

        Returns:
            ``True`` if this call recorded the completion; ``False`` if the item
            was already done (nothing is written).

        Raises:
            ArgumentTypeError: The ID is of a type that cannot be stored, or
                the result is and the store keeps results (a store that
                does not keep them does not check them either).
            ArgumentValueError: The ID is bad, the result holds NaN or
                infinity (stores that keep results), or ``turns`` or
                ``seconds`` is negative or not finite.
            StoreClosedError: The session is closed.
            StoreWriteError: The write failed; nothing was recorded.
        """
        if type(item_id) is not str or not item_id or not item_id.isascii():
            item_id = normalize_id(item_id)
        facts: dict[str, Any] = {}
        if stop is not None:
            facts["stop"] = str(stop)
        if turns is not None or seconds is not None:
            facts.update(_attempt_facts(turns, seconds))
        if usage is not None:
            facts["usage"] = usage_dict(usage)
        return self.record_done(item_id, result, facts)

    def record_done(self, item_id: str, result: Any, facts: dict[str, Any]) -> bool:
        """:meth:`mark_done` from values already checked: what a run calls once per item.

        Args:
            item_id: The item's normalised ID.
            result: A JSON-able result, kept by stores that keep results.
            facts: The record's ``stop`` (a name), ``turns``, ``seconds`` and
                ``usage`` (a usage dict), each only when present and in that
                order, made by the caller from values it checked or made
                itself: they are written as they are. The attempt number
                and the item's fingerprint are added here.

        Returns:
            As for :meth:`mark_done`.

        Raises:
            ArgumentTypeError: The store keeps results and the result is of
                a type that cannot be stored.
            ArgumentValueError: The store keeps results and the result holds
                NaN or infinity.
            StoreClosedError: The session is closed.
            StoreWriteError: The write failed; nothing was recorded.
        """
        result_json = None
        if result is not None:
            if self._keeps_results:
                result_json = check_json(result, "result")
            elif not self._dropped_result:
                # Not checked either: a paid item is not failed for what is never kept.
                self._dropped_result = True
                logging.getLogger("agent_resume").warning(
                    "%s does not keep results; use ResultJsonlStore, SqliteStore or "
                    "PostgresStore to keep them with the checkpoint",
                    type(self.store).__name__,
                )
        failure = self._failures.get(item_id)
        if failure is not None or self._fingerprinting:
            # The writer's key order: the attempt first, the fingerprint before the usage.
            fp = self._rules.take_fingerprint(item_id) if self._fingerprinting else None
            facts = {
                **({} if failure is None else {"attempt": failure.attempts + 1}),
                **{k: v for k, v in facts.items() if k != "usage"},
                **({} if fp is None else {"fp": fp}),
                **({} if "usage" not in facts else {"usage": facts["usage"]}),
            }
        ts = int(_now())
        rules = self._rules
        lock = self._lock
        lock.acquire()  # once per item: half the cost of a `with` block
        try:
            if rules.closed:
                raise StoreClosedError(f"the session for job {self.job_id!r} is closed")
            if item_id in self._done and item_id not in rules.rerun:
                return False
            recorded = self.store.write_done(item_id, ts, facts or None, result_json)
            rules.completed(item_id)
            if not recorded:
                return False
            self._n_done += 1
            return True
        finally:
            lock.release()

    def mark_failed(
        self,
        item_id: str | int,
        error: BaseException | str,
        *,
        retryable: bool = True,
        usage: Any = None,
        turns: int | None = None,
        seconds: float | None = None,
    ) -> bool:
        """Record a failed attempt of an item.

        The item is offered again by :meth:`remaining` in a later session until
        it has failed ``max_attempts`` times; then, or at once when
        ``retryable`` is false, it is quarantined.

        Args:
            item_id: The item's ID.
            error: The exception, or its text (kept up to
                ``MAX_ERROR_CHARS``, 8,000 characters, the rest cut and counted).
            retryable: Whether a later session may try the item again.
            usage: A :class:`~agent_resume.Usage` or a usage dict: what the attempt spent.
            turns: The model calls (turns) the attempt made, if known.
            seconds: How long the attempt took, if known.

        Returns:
            ``True`` if the failure was recorded; ``False`` if the item is done.

        Raises:
            ArgumentTypeError: ``error``, ``turns`` or ``seconds`` has the wrong type.
            ArgumentValueError: ``turns`` or ``seconds`` is negative or not finite.
        """
        item_id = normalize_id(item_id)
        facts = _attempt_facts(turns, seconds)
        if isinstance(error, (BaseException, str)):
            text = error_text(error)
        else:
            raise ArgumentTypeError(
                "error",
                error,
                f"`error` must be an exception or a str (got {type(error).__name__})",
            )
        usage_json = None if usage is None else usage_dict(usage)
        with self._lock:
            self._rules.check_open()
            if self._rules.is_done(item_id):
                return False
            previous = self._failures.get(item_id)
            attempt = (previous.attempts if previous else 0) + 1
            ts = int(time.time())
            if facts:
                self.store.write_failed(
                    item_id, ts, text, attempt, bool(retryable), usage_json, extra=facts
                )
            else:  # a store written before ``extra`` existed still works
                self.store.write_failed(item_id, ts, text, attempt, bool(retryable), usage_json)
            self._state.apply(
                {
                    "id": item_id,
                    "status": "failed",
                    "error": text,
                    "attempt": attempt,
                    "retryable": bool(retryable),
                }
            )
            self._n_failed += 1
            return True

    def retry(self, item_ids: Iterable[str | int]) -> list[str]:
        """Forget the failures of these items so that they run again (``agent-resume retry``).

        A quarantined item is offered again by the next ``remaining()``, with
        its attempts counted from zero; an item that never failed is ignored.

        Returns:
            The IDs whose failures were forgotten.
        """
        ids = [normalize_id(i) for i in item_ids]
        with self._lock:
            self._check_open()
            retried = [i for i in ids if i in self._failures]
            self.store.write_retry(retried, int(time.time()))
            for item_id in retried:
                self._failures.pop(item_id, None)
            return retried

    def release(self, item_ids: Iterable[str | int]) -> list[str]:
        """Deprecated name of `retry` (a *release* gives back a lease on a shared store)."""
        warnings.warn(
            "Session.release() is now Session.retry(); release() will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.retry(item_ids)

    def record_run(self, record: Mapping[str, Any]) -> None:
        """Record a run record (used by :class:`~agent_resume.ResumableRun`)."""
        body = dict(record)
        check_json(body, "record")
        with self._lock:
            self._check_open()
            self.store.write_run(body)
            self._state.runs.append(body)

    def record_call(self, record: Mapping[str, Any]) -> None:
        """Record one LLM call's usage as it returns (``{"call": item_id, "a": ..., "usage": ...}``).

        Written like a run record (``Store.write_run``) but kept out of the
        session's list of runs; readers that do not know the kind skip it.
        """
        body = dict(record)
        check_json(body, "record")
        with self._lock:
            self._check_open()
            self.store.write_run(body)

    def flush(self) -> None:
        """Make everything recorded so far as durable as the store allows."""
        with self._lock:
            self._check_open()
            self.store.flush()


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise ArgumentTypeError(
            "key", key, f"a state key must be a str (got {type(key).__name__} {key!r})"
        )
    if not key:
        raise ArgumentValueError("key", key, "a state key must not be empty (got '')")


def _attempt_facts(turns: int | None, seconds: float | None) -> dict[str, Any]:
    """The ``turns`` and ``seconds`` fields of an attempt's record, checked."""
    facts: dict[str, Any] = {}
    if turns is not None:
        facts["turns"] = _turns(turns)
    if seconds is not None:
        facts["seconds"] = _seconds(seconds)
    return facts


def _turns(turns: object) -> int:
    """``turns`` checked: an int, at least 0."""
    if isinstance(turns, bool) or not isinstance(turns, int):
        raise ArgumentTypeError(
            "turns", turns, f"`turns` must be an int or None (got {type(turns).__name__})"
        )
    if turns < 0:
        raise ArgumentValueError("turns", turns, f"`turns` must be at least 0 (got {turns})")
    return int(turns)


def _seconds(seconds: object) -> float:
    """``seconds`` checked: a finite number, at least 0, as a float."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ArgumentTypeError(
            "seconds",
            seconds,
            f"`seconds` must be a number or None (got {type(seconds).__name__})",
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ArgumentValueError(
            "seconds", seconds, f"`seconds` must be finite and at least 0 (got {seconds})"
        )
    return float(seconds)
