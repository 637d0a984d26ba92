"""What the SQL stores share: settings, worker IDs, records and the heartbeat thread."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final, Generic, TypeVar

from agent_resume import _validate as validate
from agent_resume._errors import ArgumentValueError, StoreError

__all__ = [
    "GROUP_RECORDS",
    "GROUP_SECONDS",
    "SCHEMA_VERSION",
    "GroupCommit",
    "Heartbeat",
    "LeaseSettings",
    "completion_record",
    "holder_is_dead",
    "new_worker_id",
    "seconds",
]

logger = logging.getLogger("agent_resume")

P = TypeVar("P")

GROUP_SECONDS: Final = 0.010
"""How long a completion waits in ``durability="group"`` before its batch is committed."""

GROUP_RECORDS: Final = 256
"""A batch this large is committed at once."""

SCHEMA_VERSION: Final = 1
"""The version of the SQL schema this library writes; a newer one is refused."""


def _pid_namespace() -> str:
    """This process's PID namespace (Linux), so that a PID is judged only where it means something."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def new_worker_id() -> str:
    """Return a worker ID unique across machines and processes.

    It reads ``hostname:pid:random``, followed on Linux by ``:`` and the
    process's PID namespace, so that :func:`holder_is_dead` can tell whether
    the process that holds a lease is gone.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    namespace = _pid_namespace()
    return f"{worker}:{namespace}" if namespace else worker


def holder_is_dead(worker_id: str) -> bool:
    """Whether the process behind a worker ID is provably gone.

    Only a worker of this host and this PID namespace (Linux) can be judged:
    it is dead when no process has its PID. Anything else (another machine,
    another container, a PID now used by another process, an ID in an
    unknown form) counts as alive, and its leases run out on their own.
    """
    parts = worker_id.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname():
        return False
    namespace = _pid_namespace()
    if not namespace or parts[3] != namespace:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False


def seconds(parameter: str, value: object) -> float:
    """Read a duration given as seconds (any real number) or a ``timedelta``.

    The one duration reader of the library (`agent_resume._validate.to_seconds`).

    Raises:
        ArgumentTypeError: It is neither.
        ArgumentValueError: It is NaN.
    """
    return validate.to_seconds(value, parameter)


class LeaseSettings:
    """Validated lease, heartbeat and batch settings of a shared store.

    Args:
        lease_seconds: How long a claim lasts without a heartbeat.
        heartbeat_seconds: How often a live worker renews its leases; ``None``
            for a third of the lease.
        batch_size: How many items one claim takes.

    Raises:
        ArgumentValueError: A setting is out of range (the heartbeat must be
            shorter than the lease, or the leases of live workers would lapse).
    """

    def __init__(
        self,
        lease_seconds: float | timedelta,
        heartbeat_seconds: float | timedelta | None,
        batch_size: int,
    ) -> None:
        lease = seconds("lease_seconds", lease_seconds)
        if not lease > 0 or lease == float("inf"):
            raise ArgumentValueError(
                "lease_seconds",
                lease_seconds,
                f"`lease_seconds` must be a finite number of seconds above 0 (got {lease_seconds!r})",
            )
        beat = (
            lease / 3
            if heartbeat_seconds is None
            else seconds("heartbeat_seconds", heartbeat_seconds)
        )
        if not 0 < beat < lease:
            raise ArgumentValueError(
                "heartbeat_seconds",
                heartbeat_seconds,
                f"`heartbeat_seconds` must be above 0 and below `lease_seconds` ({lease}) "
                f"(got {heartbeat_seconds!r})",
            )
        validate.positive_int("batch_size", batch_size)
        self.lease_seconds = lease
        self.heartbeat_seconds = beat
        self.batch_size = batch_size
        self.poll_seconds = min(1.0, max(0.02, lease / 10))


def completion_record(item_id: str, ts: int, extra: dict[str, Any] | None) -> dict[str, Any]:
    """Build a completion record without its result."""
    record: dict[str, Any] = {"id": item_id, "ts": ts}
    if extra:
        record.update(extra)
    return record


class Heartbeat:
    """A daemon thread that calls ``beat`` every ``interval`` seconds until stopped.

    A failing beat is logged and tried again at the next tick: a worker that
    cannot reach its database for longer than its lease loses its leases, and
    its late completions are then ignored, which is safe.
    """

    def __init__(self, beat: Callable[[], None], interval: float, name: str) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception as exc:  # keep beating; the next tick may reach the database
                logger.warning("agent-resume heartbeat failed: %s", exc)

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class GroupCommit(Generic[P]):
    """Completions of one worker committed together: ``durability="group"`` of the SQL stores.

    :meth:`add` queues a completion and returns at once; a daemon thread
    commits the queue in one transaction :data:`GROUP_SECONDS` after its first
    entry, or at once when it holds :data:`GROUP_RECORDS`. :meth:`drain`
    commits the queue in the caller's thread (the store calls it before any
    other statement, and on flush and close). A completion is recorded once
    its commit returned; one queued when the process dies is not, and its
    item runs again once its lease runs out (at least once, never twice).

    A commit that fails makes the group refuse every later :meth:`add` and
    :meth:`drain` with the same :class:`~agent_resume.StoreError`: completions
    were acknowledged and then lost, and the worker must not go on as if not.

    Args:
        commit: Commits a batch in one transaction (and is safe to retry).
        lost: Called with a batch whose commit failed (to give its leases up).
        name: The thread's name.
    """

    def __init__(
        self, commit: Callable[[list[P]], None], lost: Callable[[list[P]], None], name: str
    ) -> None:
        self._commit = commit
        self._lost = lost
        self._queue: list[P] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._commit_lock = threading.Lock()
        self._error: StoreError | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _check(self) -> None:
        if self._error is not None:
            raise StoreError(
                f"{self._error}; the completions of that batch were acknowledged but not "
                "recorded (their items will run again), and the store refuses further writes"
            ) from self._error

    def check(self) -> None:
        """Raise the error of an earlier failed commit, if any.

        Raises:
            StoreError: An earlier batch failed to commit.
        """
        with self._lock:
            self._check()

    def add(self, entry: P) -> None:
        """Queue a completion for the next commit.

        Raises:
            StoreError: An earlier batch failed to commit.
        """
        with self._lock:
            self._check()
            self._queue.append(entry)
            if len(self._queue) == 1 or len(self._queue) >= GROUP_RECORDS:
                self._wake.notify()

    def drain(self) -> None:
        """Commit the queue now, in this thread.

        Raises:
            StoreError: This commit, or an earlier one, failed.
        """
        with self._commit_lock:
            with self._lock:
                self._check()
                batch, self._queue = self._queue, []
            if not batch:
                return
            try:
                self._commit(batch)
            except BaseException as exc:
                error = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                with self._lock:
                    self._error = error
                self._lost(batch)
                raise

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                if len(self._queue) < GROUP_RECORDS:
                    self._wake.wait(GROUP_SECONDS)
                if self._stopped:
                    return
            try:
                self.drain()
            except Exception as exc:  # raised again to the worker at its next write
                logger.warning("agent-resume group commit failed: %s", exc)
                return

    def stop(self) -> None:
        """Stop the thread (without committing: call :meth:`drain` first)."""
        with self._lock:
            self._stopped = True
            self._wake.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
