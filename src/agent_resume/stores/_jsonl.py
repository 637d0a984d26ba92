"""The JSONL checkpoint stores: one job per file, one record per line, append-only."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from json.encoder import encode_basestring
from typing import Any, Final, get_args

from agent_resume._atomic import fsync_directory
from agent_resume._errors import (
    ArgumentValueError,
    JobMismatchError,
    NotACheckpointError,
    StoreClosedError,
    StoreError,
    StoreWriteError,
)
from agent_resume._records import (
    FORMAT_VERSION,
    JobState,
    completion_line,
    dumps,
    failure_line,
    retry_line,
)
from agent_resume.stores._jsonl_read import load, read_records
from agent_resume.stores._lock import FileLock, FileReplacedError, forget_in_forked_child
from agent_resume.stores._protocol import Durability, StoreDescription

__all__ = ["JsonlStore", "ResultJsonlStore"]

logger = logging.getLogger("agent_resume")

_GROUP_SECONDS: Final = 0.010
_GROUP_RECORDS: Final = 256
_OPEN_TRIES: Final = 5


class JsonlStore:
    """A checkpoint in an append-only JSONL file: item IDs and usage, not results.

    A ``result`` given to ``mark_done`` is checked (it must encode as JSON)
    and then dropped, as the original library did; use
    :class:`ResultJsonlStore` to keep results.

    Args:
        path: The checkpoint file; it and its missing parent directories are
            created on first use. A leading ``~`` is your home directory.
        durability: ``"flush"`` (default), ``"group"`` or ``"fsync"``; see
            :data:`~agent_resume.stores.Durability`.
        strict: Raise :class:`CorruptCheckpointError` on a corrupt line instead
            of skipping it with a warning.

    Raises:
        ArgumentValueError: ``durability`` is not one of the three modes.
    """

    keeps_results: bool = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "flush",
        strict: bool = False,
    ) -> None:
        if durability not in get_args(Durability):
            raise ArgumentValueError(
                "durability",
                durability,
                f"`durability` must be 'flush', 'group' or 'fsync' (got {durability!r})",
            )
        self.path = os.path.expanduser(os.fspath(path))  # `~/ck.jsonl`, as a shell reads it
        if not self.path:
            raise ArgumentValueError("path", path, "`path` must not be empty")
        self.durability: Durability = durability
        self.strict = strict
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._file_lock = FileLock(self.path)
        self._size = 0
        self._loaded_size = 0
        self._cut_pending = False
        self._forked_from: int | None = None
        self._broken: BaseException | None = None
        self._gated = True
        self._syncing = durability != "flush"
        self._syncer: _GroupSyncer | None = None
        self._fsync: Callable[[int], None] = os.fsync

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, durability={self.durability!r})"

    # -- opening -------------------------------------------------------------

    def open(self, job_id: str) -> JobState:
        """Lock the file, load the job and write the header of a new file.

        The lock is on the file itself: opening the same file through a
        symlink or a hard link while another session holds it raises
        :class:`JobLockedError`.
        """
        if self._fd is not None:
            raise StoreError(f"{self.path} is already open in this store object")
        parent = os.path.dirname(os.path.realpath(self.path))
        created_dirs = _make_parents(parent)
        fd: int | None = None
        try:
            fd = self._open_locked(job_id)
            state = self._load(fd, job_id)
            self._fd = fd
            self._broken = None
            self._gated = True
            if self._size == 0:
                state.created = self._write_header(fd, job_id, parent, created_dirs)
        except BaseException:
            # Nothing half-open survives a failed open: no descriptor, no lock.
            self._fd = None
            self._file_lock.release()
            if fd is not None:
                os.close(fd)
            raise
        self._forked_from = None
        _open_stores.add(self)
        if self.durability == "group":
            self._syncer = _GroupSyncer(self)
        return state

    def _open_locked(self, job_id: str) -> int:
        """Open the file and lock it, again if ``repair`` renamed a new file over it meanwhile."""
        for attempt in range(_OPEN_TRIES):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            try:
                _check_regular(fd, self.path)
                self._file_lock.acquire(job_id, self.path, fd)
            except FileReplacedError:
                os.close(fd)
                if attempt == _OPEN_TRIES - 1:
                    raise
                continue
            except BaseException:
                os.close(fd)
                raise
            return fd
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_header(self, fd: int, job_id: str, parent: str, created_dirs: list[str]) -> int:
        created = int(time.time())
        header = {"agent_resume": FORMAT_VERSION, "job_id": job_id, "created": created}
        self._append((dumps(header, "header") + "\n").encode("utf-8"))
        if self._syncing:
            # A new file survives power loss only once its directory entry
            # does, and a new directory only once its parent's entry does.
            self._sync(fd)
            try:
                fsync_directory(parent)
                for directory in created_dirs:
                    fsync_directory(os.path.dirname(directory))
            except OSError as exc:
                raise StoreWriteError(
                    f"syncing the directory of {self.path} failed ({exc})"
                ) from exc
        return created

    def _load(self, fd: int, job_id: str) -> JobState:
        with open(os.dup(fd), "rb") as f:
            result = load(f, self.path, strict=self.strict)
        found = result.state.job_id
        if result.header is not None and found != job_id:
            raise JobMismatchError(job_id, found, self.path)
        result.state.job_id = job_id
        self._size = result.good_length
        self._loaded_size = result.size
        self._cut_pending = result.torn_tail
        return result.state

    # -- writing ---------------------------------------------------------------

    def _append(self, data: bytes) -> None:
        # No lock here: the session serialises every write (see Store).
        if self._gated:
            self._pass_gate()
        fd: int = self._fd  # type: ignore[assignment]
        try:
            written = os.write(fd, data)
        except OSError as exc:
            self._roll_back(fd, exc)
        if written != len(data):
            self._roll_back(fd, OSError(f"short write: {written} of {len(data)} bytes"))
        self._size += written
        if not self._syncing:
            return
        if self.durability == "fsync":
            self._sync(fd)
        elif self._syncer is not None:
            self._syncer.written()

    def _pass_gate(self) -> None:
        # Everything unusual before a write, kept off the common path.
        fd = self._fd
        if fd is None:
            if self._forked_from is not None:
                raise StoreClosedError(
                    f"{self.path} was opened in process {self._forked_from}; a forked child "
                    "cannot write to it (open the job in the child instead)"
                )
            raise StoreClosedError(f"{self.path} is closed")
        if self._broken is not None:
            raise StoreWriteError(
                f"{self.path} refuses writes after a failed sync ({self._broken}); "
                "reopen it to go on"
            )
        if self._cut_pending:
            # Cut the torn tail only if the file is still as loaded: never cut
            # what another writer (one that ignored the lock) appended since.
            size = os.fstat(fd).st_size
            if size != self._loaded_size:
                raise StoreWriteError(
                    f"{self.path} changed since it was loaded ({self._loaded_size} bytes, now "
                    f"{size}): another process writes to it; nothing was cut or written"
                )
            os.ftruncate(fd, self._size)
            self._cut_pending = False
        self._gated = False

    def _roll_back(self, fd: int, exc: OSError) -> None:
        try:
            os.ftruncate(fd, self._size)
        except OSError as cut_exc:
            self._broken = cut_exc
            self._gated = True
            raise StoreWriteError(
                f"writing to {self.path} failed ({exc}) and cutting the file back to its "
                f"last whole record failed too ({cut_exc}); run `agent-resume repair`"
            ) from exc
        raise StoreWriteError(
            f"writing to {self.path} failed ({exc}); the file was cut back to its last "
            "whole record and nothing was recorded"
        ) from exc

    def _sync(self, fd: int) -> None:
        try:
            self._fsync(fd)
        except OSError as exc:
            # The kernel may have dropped the unsynced pages: never retry.
            self._broken = exc
            self._gated = True
            raise StoreWriteError(
                f"syncing {self.path} failed ({exc}); the store refuses further writes"
            ) from exc

    def write_done(
        self,
        item_id: str,
        ts: int,
        extra: dict[str, Any] | None,
        result_json: str | None,
    ) -> bool:
        """Append a completion line."""
        if not self.keeps_results:
            result_json = None  # a session does not even encode it (Session.record_done)
        if extra is None and result_json is None:
            line = '{"id": ' + encode_basestring(item_id) + ', "ts": ' + str(ts) + "}\n"
        else:
            line = completion_line(item_id, ts, extra, result_json)
        self._append(line.encode("utf-8"))
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
        """Append a failure line."""
        line = failure_line(item_id, ts, error, attempt, retryable, usage, extra)
        self._append(line.encode("utf-8", "backslashreplace"))

    def write_retry(self, item_ids: Sequence[str], ts: int) -> None:
        """Append one release line per item, in a single write."""
        if item_ids:
            self._append("".join(retry_line(i, ts) for i in item_ids).encode("utf-8"))

    def write_run(self, record: dict[str, Any]) -> None:
        """Append a run record."""
        self._append((dumps(record, "record") + "\n").encode("utf-8"))

    # -- reading ---------------------------------------------------------------

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Yield every valid record, header excluded; bad lines are skipped."""
        return self._records(bodies=True)

    def skim_records(self) -> Iterator[dict[str, Any]]:
        """Yield what :meth:`iter_records` yields, completions read as a resume reads them.

        A completion line that the resume reads by its pattern comes as
        ``{"id": ...}`` alone: its usage, result and other fields are not
        decoded (nor checked; a resume counts such a line done). Other
        completions, and every other record, come whole.
        """
        return self._records(bodies=False)

    def _records(self, *, bodies: bool) -> Iterator[dict[str, Any]]:
        try:
            f = open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return
        with f:
            for _, record, _ in read_records(f, self.path, bodies=bodies):
                if isinstance(record, dict) and "agent_resume" not in record:
                    yield record

    def iter_results(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(item_id, result)``, latest completion per item; nothing unless results are kept."""
        if not self.keeps_results:
            return
        latest: dict[str, int] = {}
        for index, record in enumerate(self.iter_records()):
            if "id" in record and record.get("status", "done") == "done":
                latest[record["id"]] = index
        for index, record in enumerate(self.iter_records()):
            if "id" in record and latest.get(record["id"]) == index:
                yield record["id"], record.get("result")

    # -- closing ---------------------------------------------------------------

    def describe(self, max_attempts: int | None = None) -> StoreDescription:
        """Describe the job read-only: the file is read, never locked or created."""
        return self._describe(max_attempts, None)

    def describe_records(
        self, consume: Callable[[dict[str, Any]], object], max_attempts: int | None = None
    ) -> StoreDescription:
        """Describe the job and hand every record to ``consume``, in one read of the file.

        ``consume`` gets what :meth:`iter_records` yields, in the same order;
        the description is what :meth:`describe` returns.
        """
        return self._describe(max_attempts, consume)

    def _describe(
        self, max_attempts: int | None, consume: Callable[[dict[str, Any]], object] | None
    ) -> StoreDescription:
        state = JobState(job_id="")
        torn_tail = False
        try:
            with open(self.path, "rb") as f:
                loaded = load(f, self.path, strict=self.strict, consume=consume)
            state, torn_tail = loaded.state, loaded.torn_tail
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the checkpoint: {exc}") from exc
        capabilities = {"conversation_files"} | ({"results"} if self.keeps_results else set())
        description = StoreDescription.from_state(
            state,
            location=self.path,
            format_version=FORMAT_VERSION,
            max_attempts=max_attempts,
            capabilities=frozenset(capabilities),
        )
        return dataclasses.replace(description, bad_lines=state.bad_lines, torn_tail=torn_tail)

    def conversation_dir(self) -> str:
        """``<checkpoint>.conversations``, beside the file."""
        return self.path + ".conversations"

    def flush(self) -> None:
        """Sync the file unless the durability is ``"flush"`` (whose records reach the OS at once).

        Raises:
            StoreWriteError: A sync failed, now or earlier in the background.
        """
        self._flush(quiet=False)

    def _flush(self, *, quiet: bool) -> None:
        with self._lock:
            fd = self._fd
            if fd is None or self.durability == "flush":
                return
            if self._broken is not None:
                if quiet:
                    return
                raise StoreWriteError(
                    f"{self.path} refuses writes after a failed sync ({self._broken}); "
                    "what was recorded since the last good sync may be lost on power loss"
                )
            self._sync(fd)

    def close(self) -> None:
        """Stop the group syncer, sync, unlock and close; closing twice is harmless."""
        syncer, self._syncer = self._syncer, None
        if syncer is not None:
            syncer.stop()
        try:
            self._flush(quiet=True)
        finally:
            with self._lock:
                fd, self._fd = self._fd, None
                self._gated = True
            if fd is not None:
                _open_stores.discard(self)
                self._file_lock.release()
                os.close(fd)

    def _forget(self) -> None:
        # In a forked child: close the copy of the descriptor (the lock stays
        # the parent's) and refuse every later write from this process.
        fd, self._fd = self._fd, None
        self._gated = True
        self._syncer = None
        self._forked_from = os.getppid()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


_open_stores: weakref.WeakSet[JsonlStore] = weakref.WeakSet()


def _forget_stores_in_child() -> None:
    for store in list(_open_stores):
        store._forget()
    _open_stores.clear()


forget_in_forked_child(_forget_stores_in_child)


def _check_regular(fd: int, path: str) -> None:
    """Refuse a path that is no regular file: ``/dev/null`` would keep nothing, a FIFO hang.

    Raises:
        NotACheckpointError: The path is a device, a FIFO or a socket (or a
            symlink to one).
    """
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or a socket"
        raise NotACheckpointError(
            path, f"it is {kind}, not a regular file, and would not keep what is written"
        )


def _make_parents(directory: str) -> list[str]:
    """Create ``directory`` and its missing parents; return those created, deepest first."""
    missing: list[str] = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for path in reversed(missing):
        os.makedirs(path, exist_ok=True)
    return missing


class ResultJsonlStore(JsonlStore):
    """A JSONL checkpoint that also keeps each item's ``result``."""

    keeps_results = True


class _GroupSyncer:
    """Syncs a store's file at most every 10 ms, or sooner after 256 records."""

    def __init__(self, store: JsonlStore) -> None:
        self._store = store
        self._cond = threading.Condition(threading.Lock())
        self._pending = 0
        self._stopping = False
        self._thread = threading.Thread(
            target=self._loop, name="agent-resume-group-sync", daemon=True
        )
        self._thread.start()

    def written(self) -> None:
        with self._cond:
            self._pending += 1
            if self._pending == 1 or self._pending == _GROUP_RECORDS:
                self._cond.notify()

    def _loop(self) -> None:
        store = self._store
        cond = self._cond
        while True:
            with cond:
                while not self._pending and not self._stopping:
                    cond.wait()
                if self._stopping:
                    return
                cond.wait_for(
                    lambda: self._pending >= _GROUP_RECORDS or self._stopping, _GROUP_SECONDS
                )
                self._pending = 0
            fd = store._fd
            if fd is None or store._broken is not None:
                continue
            try:
                store._fsync(fd)
            except OSError as exc:
                store._broken = exc
                store._gated = True
                logger.error(
                    "syncing %s failed (%s); the store refuses further writes", store.path, exc
                )

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
