"""What the SQL stores share: settings, worker IDs, records and the heartbeat thread."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

from agent_resume import _validate as validate
from agent_resume._errors import ArgumentValueError

__all__ = [
    "SCHEMA_VERSION",
    "Heartbeat",
    "LeaseSettings",
    "completion_record",
    "holder_is_dead",
    "new_worker_id",
    "seconds",
]

logger = logging.getLogger("agent_resume")

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
