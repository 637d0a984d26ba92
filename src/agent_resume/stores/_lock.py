"""A per-job lock that dies with its process: ``flock`` on a ``.lock`` file beside the checkpoint."""

from __future__ import annotations

import contextlib
import fcntl
import os

from agent_resume._errors import JobLockedError, StoreWriteError

__all__ = ["FileLock"]


class FileLock:
    """An exclusive, non-blocking lock on ``path``, holding the owner's PID.

    ``flock`` locks belong to an open file description, so a second lock
    from the same process conflicts too, and the kernel drops the lock when
    its process dies, however it dies. The lock file stays on disk: removing
    it would race with a process that has just opened it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, job_id: str, where: str) -> None:
        """Take the lock or raise :class:`JobLockedError` naming the holder's PID."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise JobLockedError(job_id, pid, where) from None
        try:
            os.ftruncate(fd, 0)
            data = f"{os.getpid()}\n".encode()
            if os.pwrite(fd, data, 0) != len(data):
                raise OSError(f"short write of the PID to {self.path}")
        except OSError as exc:
            os.close(fd)  # drops the lock with the descriptor
            raise StoreWriteError(f"cannot write the lock file {self.path}: {exc}") from exc
        self._fd = fd

    def release(self) -> None:
        """Release the lock; releasing twice is harmless."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
