"""A store that keeps its records in memory: for tests and for jobs that need no checkpoint file."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from agent_resume._errors import JobLockedError, JobMismatchError, StoreClosedError
from agent_resume._records import FORMAT_VERSION, JobState, failure_record
from agent_resume.stores._protocol import StoreDescription, check_start

__all__ = ["InMemoryStore"]


class InMemoryStore:
    """Records held in a list in this process; they outlive sessions but not the process.

    One session at a time may hold the job, as with the file stores.
    Results are kept, and so are the items' saved conversations (as long as
    the store object lives).
    """

    keeps_results: bool = True

    def __init__(self) -> None:
        self.job_id: str | None = None
        self.created: int | None = None
        self.records: list[dict[str, Any]] = []
        self._open = False
        self._lock = threading.Lock()
        self._conversations: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"InMemoryStore(job_id={self.job_id!r}, records={len(self.records)})"

    def open(self, job_id: str) -> JobState:
        """Take the job and fold the records kept so far into a fresh state."""
        with self._lock:
            if self._open:
                raise JobLockedError(job_id, os.getpid(), repr(self))
            if self.job_id is not None and self.job_id != job_id:
                raise JobMismatchError(job_id, self.job_id, "this InMemoryStore")
            self.job_id = job_id
            if self.created is None:
                self.created = int(time.time())
            self._open = True
            state = JobState(job_id=job_id, created=self.created)
            for record in self.records:
                state.apply(record)
            return state

    def _add(self, record: dict[str, Any]) -> None:
        with self._lock:
            if not self._open:
                raise StoreClosedError("the InMemoryStore is closed")
            self.records.append(record)

    def write_done(
        self,
        item_id: str,
        ts: int,
        extra: dict[str, Any] | None,
        result_json: str | None,
    ) -> bool:
        """Keep a completion."""
        record: dict[str, Any] = {"id": item_id, "ts": ts}
        if extra:
            record.update(copy.deepcopy(extra))
        if result_json is not None:
            record["result"] = json.loads(result_json)
        self._add(record)
        with self._lock:
            self._conversations.pop(item_id, None)
        return True

    def write_failed(
        self,
        item_id: str,
        ts: int,
        error: str,
        attempt: int,
        retryable: bool,
        usage: dict[str, Any] | None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Keep a failure."""
        record = failure_record(
            item_id, ts, error, retryable, copy.deepcopy(usage), attempt, copy.deepcopy(extra)
        )
        self._add(record)

    def write_retry(self, item_ids: Sequence[str], ts: int) -> None:
        """Keep one release per item."""
        for item_id in item_ids:
            self._add({"id": item_id, "ts": ts, "status": "retry"})

    def write_run(self, record: dict[str, Any]) -> None:
        """Keep a run record."""
        self._add(copy.deepcopy(record))

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Yield copies of the records kept."""
        for record in list(self.records):
            yield copy.deepcopy(record)

    def iter_results(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(item_id, result)``, latest completion per item."""
        latest: dict[str, Any] = {}
        for record in self.records:
            if "id" in record and record.get("status", "done") == "done":
                latest.pop(record["id"], None)
                latest[record["id"]] = record.get("result")
        for item_id, result in latest.items():
            yield item_id, copy.deepcopy(result)

    def describe(self, max_attempts: int | None = None) -> StoreDescription:
        """Describe the job from the records kept."""
        with self._lock:
            records = list(self.records)
            job_id = self.job_id
        state = JobState(job_id=job_id or "", created=self.created)
        for record in records:
            state.apply(record)
        return StoreDescription.from_state(
            state,
            location="memory:",
            format_version=FORMAT_VERSION,
            max_attempts=max_attempts,
            capabilities=frozenset({"results", "conversations"}),
        )

    def load_conversation(self, item_id: str) -> list[str] | None:
        """The item's saved messages, one ``encode_line`` text each, in order; or ``None``."""
        with self._lock:
            lines = self._conversations.get(item_id)
            return list(lines) if lines else None

    def save_conversation(self, item_id: str, lines: Sequence[str], *, start: int = 0) -> None:
        """Keep the first ``start`` saved messages and ``lines`` after them."""
        check_start(start)
        with self._lock:
            kept = self._conversations.get(item_id, [])[:start]
            self._conversations[item_id] = [*kept, *lines]

    def delete_conversation(self, item_id: str) -> None:
        """Forget the item's conversation."""
        with self._lock:
            self._conversations.pop(item_id, None)

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Let another session take the job."""
        with self._lock:
            self._open = False
