"""A ``Session``: one open job, which yields the items still to do and records what happens to them."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress, filterfalse
from operator import not_
from types import TracebackType
from typing import Any, Literal, TypeVar

from agent_resume._errors import (
    ArgumentTypeError,
    DuplicateItemWarning,
    ItemChangedError,
    StoreClosedError,
)
from agent_resume._fingerprint import Fingerprinter
from agent_resume._records import JobState, check_json, normalize_id, usage_dict
from agent_resume._session._items import KeyFunc, id_batches, normalized_ids
from agent_resume.stores import Store
from agent_resume.stores._protocol import SharedStore

__all__ = ["DuplicateItemWarning", "OnChange", "Session", "SessionStats"]

T = TypeVar("T")
OnChange = Literal["rerun", "keep", "error"]
_now = time.time


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
        self._done = state.done
        self._failures = state.failures
        self._fingerprinter = fingerprinter
        self._on_change = on_change
        self._pending_fp: dict[str, str] = {}
        self._rerun: set[str] = set()
        self._watchers: list[set[str]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._shared = isinstance(store, SharedStore)
        self._already_done = len(state.done)
        self._n_done = 0
        self._n_failed = 0
        self._duplicates = 0
        self._changed = 0
        self._warned_duplicates = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
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
        self.close()

    def close(self) -> None:
        """Flush and close the store; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.store.close()

    @property
    def closed(self) -> bool:
        """Whether the session was closed."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the session for job {self.job_id!r} is closed")

    # -- reading -------------------------------------------------------------

    def remaining(self, items: Iterable[T], *, key: KeyFunc | None = None) -> Iterator[T]:
        """Yield the items not yet done, in input order, lazily.

        An item's ID is ``key(item)`` if given, else ``item.id``, else
        ``item["id"]``, else the item itself when it is a ``str``. Items that
        are quarantined are skipped; a repeated ID is yielded once, counted in
        :attr:`stats` and warned about once.

        Raises:
            ArgumentTypeError: An ID is neither ``str`` nor ``int``.
            ArgumentValueError: An ID is empty or holds a lone surrogate.
            ItemChangedError: A done item changed and ``on_change="error"``.
        """
        self._check_open()
        if self._shared:
            from agent_resume._session._claiming import claimed_items

            return claimed_items(self, items, key)
        if self._fingerprinter is None and isinstance(items, (list, tuple)):
            return self._remaining_batched(items, key)
        return self._remaining_one_by_one(items, key)

    def _remaining_one_by_one(self, items: Iterable[T], key: KeyFunc | None) -> Iterator[T]:
        done = self._done
        failures = self._failures
        fingerprinter = self._fingerprinter
        seen: set[str] = set()
        for item, item_id in normalized_ids(items, key):
            if item_id in done and (
                fingerprinter is None or not self._changed_and_rerun(item, item_id)
            ):
                continue
            if item_id in seen:
                self._duplicate(item_id)
                continue
            seen.add(item_id)
            if failures and item_id in failures and self._is_quarantined(item_id):
                continue
            if fingerprinter is not None:
                self._pending_fp[item_id] = fingerprinter(item)
            if self._closed:
                raise StoreClosedError(f"the session for job {self.job_id!r} is closed")
            if item_id in done and item_id not in self._rerun:
                continue
            yield item

    def _remaining_batched(self, items: Sequence[T], key: KeyFunc | None) -> Iterator[T]:
        # The rules of the general loop, with the set work done in C per batch.
        # Items marked done while a batch is yielded land in `marked` (a small
        # set, so the lazy re-check at yield time stays cheap).
        is_done = self._done.__contains__
        marked: set[str] = set()
        is_marked = marked.__contains__
        seen: set[str] = set()
        kept_ids: list[list[str]] = []
        careful = False
        self._watchers.append(marked)
        try:
            for chunk, ids in id_batches(items, key, check_empty=False):
                if self._closed:
                    raise StoreClosedError(f"the session for job {self.job_id!r} is closed")
                marked.clear()
                if chunk is ids:
                    todo_ids = list(filterfalse(is_done, ids))
                    todo: list[T] = todo_ids  # type: ignore[assignment]
                else:
                    keep = list(map(not_, map(is_done, ids)))
                    todo_ids = list(compress(ids, keep))
                    todo = list(compress(chunk, keep))
                if careful:
                    todo, todo_ids = self._drop_duplicates(todo, todo_ids, seen)
                else:
                    before = len(seen)
                    seen.update(todo_ids)
                    if len(seen) - before != len(todo_ids):
                        # A repeated ID: rebuild what was seen before this batch
                        # and check every later batch one ID at a time.
                        careful = True
                        seen = set(chain.from_iterable(kept_ids))
                        todo, todo_ids = self._drop_duplicates(todo, todo_ids, seen)
                    else:
                        kept_ids.append(todo_ids)
                if "" in seen:
                    normalize_id("", "item ID")  # raises: no item can be done under ""
                if self._failures:
                    pairs = [
                        (item, item_id)
                        for item, item_id in zip(todo, todo_ids, strict=True)
                        if not self._is_quarantined(item_id)
                    ]
                    todo = [pair[0] for pair in pairs]
                    todo_ids = [pair[1] for pair in pairs]
                if todo is todo_ids:
                    yield from filterfalse(is_marked, todo)
                else:
                    yield from compress(todo, map(not_, map(is_marked, todo_ids)))
        finally:
            self._watchers.remove(marked)

    def _drop_duplicates(
        self, todo: list[T], todo_ids: list[str], seen: set[str]
    ) -> tuple[list[T], list[str]]:
        kept: list[T] = []
        kept_ids: list[str] = []
        for item, item_id in zip(todo, todo_ids, strict=True):
            if item_id in seen:
                self._duplicate(item_id, stacklevel=4)
                continue
            seen.add(item_id)
            kept.append(item)
            kept_ids.append(item_id)
        return kept, kept_ids

    def _changed_and_rerun(self, item: Any, item_id: str) -> bool:
        assert self._fingerprinter is not None
        old = self._state.fingerprints.get(item_id)
        if old is None or item_id in self._rerun:
            return item_id in self._rerun
        new = self._fingerprinter(item)
        if new == old:
            return False
        self._changed += 1
        if self._on_change == "error":
            raise ItemChangedError(item_id, old, new)
        if self._on_change == "keep":
            return False
        self._rerun.add(item_id)
        return True

    def _duplicate(self, item_id: str, stacklevel: int = 3) -> None:
        # stacklevel points the warning at the caller's loop over remaining().
        self._duplicates += 1
        if not self._warned_duplicates:
            self._warned_duplicates = True
            warnings.warn(
                DuplicateItemWarning(
                    f"item ID {item_id!r:.80} appears more than once in the input of job "
                    f"{self.job_id!r}; each ID is yielded once (see session.stats.duplicates)"
                ),
                stacklevel=stacklevel,
            )

    def _is_quarantined(self, item_id: str) -> bool:
        failure = self._failures.get(item_id)
        return failure is not None and (
            not failure.retryable or failure.attempts >= self.max_attempts
        )

    def is_done(self, item_id: str | int) -> bool:
        """Whether the item is done (in this session or an earlier one)."""
        return normalize_id(item_id) in self._done

    def is_quarantined(self, item_id: str | int) -> bool:
        """Whether the item failed too often, or failed for good, and is skipped."""
        return self._is_quarantined(normalize_id(item_id))

    def attempts(self, item_id: str | int) -> int:
        """The failed attempts of an item not done, since it was last released."""
        failure = self._failures.get(normalize_id(item_id))
        return failure.attempts if failure else 0

    def quarantined(self) -> list[str]:
        """The IDs of the quarantined items."""
        return [i for i in list(self._failures) if self._is_quarantined(i)]

    @property
    def stats(self) -> SessionStats:
        """A snapshot of this session's counts."""
        return SessionStats(
            done=self._n_done,
            failed=self._n_failed,
            quarantined=len(self.quarantined()),
            already_done=self._already_done,
            duplicates=self._duplicates,
            changed=self._changed,
            bad_lines=self._state.bad_lines,
        )

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The run records loaded with the job, oldest first."""
        return list(self._state.runs)

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
    ) -> bool:
        """Record that an item is done, before returning.

        Args:
            item_id: The item's ID.
            result: A JSON-able result, kept by stores that keep results.
            usage: A :class:`~agent_resume.Usage` or a usage dict, kept with the completion.
            stop: The name of the stop reason that ended the item's loop, if any.

        Returns:
            ``True`` if this call recorded the completion; ``False`` if the item
            was already done (nothing is written).

        Raises:
            ArgumentTypeError: The ID or the result is of a type that cannot be stored.
            ArgumentValueError: The ID is bad, or the result holds NaN or infinity.
            StoreClosedError: The session is closed.
            StoreWriteError: The write failed; nothing was recorded.
        """
        if type(item_id) is not str or not item_id or not item_id.isascii():
            item_id = normalize_id(item_id)
        result_json = None if result is None else check_json(result, "result")
        extra = None
        if (
            usage is not None
            or stop is not None
            or self._fingerprinter is not None
            or item_id in self._failures
        ):
            extra = self._extra(item_id, usage, stop)
        ts = int(_now())
        with self._lock:
            if self._closed:
                raise StoreClosedError(f"the session for job {self.job_id!r} is closed")
            done = self._done
            if item_id in done and item_id not in self._rerun:
                return False
            recorded = self.store.write_done(item_id, ts, extra, result_json)
            done.add(item_id)
            for watcher in self._watchers:
                watcher.add(item_id)
            if self._rerun:
                self._rerun.discard(item_id)
            if self._failures:
                self._failures.pop(item_id, None)
            if not recorded:
                return False
            self._n_done += 1
            return True

    def _extra(self, item_id: str, usage: Any, stop: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        failure = self._failures.get(item_id)
        if failure is not None:
            extra["attempt"] = failure.attempts + 1
        if stop is not None:
            extra["stop"] = str(stop)
        fp = self._pending_fp.pop(item_id, None)
        if fp is not None:
            extra["fp"] = fp
        if usage is not None:
            extra["usage"] = usage_dict(usage)
        return extra

    def mark_failed(
        self,
        item_id: str | int,
        error: BaseException | str,
        *,
        retryable: bool = True,
        usage: Any = None,
    ) -> bool:
        """Record a failed attempt of an item.

        The item is offered again by :meth:`remaining` in a later session until
        it has failed ``max_attempts`` times; then, or at once when
        ``retryable`` is false, it is quarantined.

        Returns:
            ``True`` if the failure was recorded; ``False`` if the item is done.
        """
        item_id = normalize_id(item_id)
        if isinstance(error, BaseException):
            text = f"{type(error).__name__}: {error}"
        elif isinstance(error, str):
            text = error
        else:
            raise ArgumentTypeError(
                "error",
                error,
                f"`error` must be an exception or a str (got {type(error).__name__})",
            )
        usage_json = None if usage is None else usage_dict(usage)
        with self._lock:
            if self._closed:
                raise StoreClosedError(f"the session for job {self.job_id!r} is closed")
            if item_id in self._done and item_id not in self._rerun:
                return False
            previous = self._failures.get(item_id)
            attempt = (previous.attempts if previous else 0) + 1
            self.store.write_failed(
                item_id, int(time.time()), text, attempt, bool(retryable), usage_json
            )
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

    def release(self, item_ids: Iterable[str | int]) -> list[str]:
        """Forget the failures of these items so that they run again; returns the IDs released."""
        ids = [normalize_id(i) for i in item_ids]
        with self._lock:
            self._check_open()
            released = [i for i in ids if i in self._failures]
            self.store.write_release(released, int(time.time()))
            for item_id in released:
                self._failures.pop(item_id, None)
            return released

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
