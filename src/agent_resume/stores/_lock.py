"""A per-job lock that dies with its process: ``flock`` on the checkpoint file itself.

The lock is taken on the checkpoint's open file (so on its device and inode,
whatever name it was opened by: a symlink, a hard link or ``..`` in the path
all reach the same lock), and on a ``.lock`` file beside the resolved path,
which holds the owner's PID for the error message and keeps older versions
of this library out.

A process that forks (``multiprocessing`` with the fork start method, or
``os.fork``) would hand its descriptors, and with them the lock, to the
child, which would then hold the job after the parent died. So the child
closes its copies at once: the lock stays with the process that took it.
The descriptors are also close-on-exec, so a program the job starts never
holds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import weakref
from collections.abc import Callable
from typing import Final

from agent_resume._errors import JobLockedError, StoreError, StoreWriteError

__all__ = ["FileLock", "FileReplacedError", "forget_in_forked_child"]

_PROC_SCAN_LIMIT: Final = 4096


class FileReplacedError(StoreError):
    """The path was renamed over (by ``repair`` or ``compact``) while it was being opened."""


class FileLock:
    """An exclusive, non-blocking lock on a checkpoint file, holding the owner's PID.

    ``flock`` locks belong to an open file description, so a second lock
    from the same process conflicts too, and the kernel drops the lock when
    its process dies, however it dies. The ``.lock`` file stays on disk:
    removing it would race with a process that has just opened it.

    Args:
        path: The checkpoint's path, as given (it may be a symlink).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._target: int | None = None

    def acquire(self, job_id: str, where: str, target_fd: int) -> None:
        """Lock ``target_fd`` (the open checkpoint) and the ``.lock`` file beside its real path.

        The caller keeps ``target_fd`` open while it holds the lock and
        closes it after :meth:`release`.

        Raises:
            JobLockedError: Another open file description holds the lock; the
                message names the PID of the live process that holds it.
            FileReplacedError: The path names another file than ``target_fd``
                (it was replaced while being opened); the caller may retry.
            StoreWriteError: The ``.lock`` file cannot be created or written.
        """
        real = os.path.realpath(self.path)
        try:
            fd = os.open(real + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # a read-only file system or directory, a full disk
            raise StoreWriteError(
                f"cannot create the lock file {real}.lock: {exc.strerror or exc}"
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JobLockedError(job_id, _holder(target_fd, fd), where) from None
            try:
                fcntl.flock(target_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Held through another name (a hard link, or a symlink older versions followed).
                raise JobLockedError(job_id, _holder(target_fd, None), where) from None
            if not _same_file(real, target_fd):
                fcntl.flock(target_fd, fcntl.LOCK_UN)
                raise FileReplacedError(f"{where} was replaced while it was being opened")
            try:
                os.ftruncate(fd, 0)
                data = f"{os.getpid()}\n".encode()
                if os.pwrite(fd, data, 0) != len(data):
                    raise OSError(f"short write of the PID to {real}.lock")
            except OSError as exc:
                fcntl.flock(target_fd, fcntl.LOCK_UN)
                raise StoreWriteError(f"cannot write the lock file {real}.lock: {exc}") from exc
        except BaseException:
            os.close(fd)  # drops the lock with the descriptor
            raise
        self._fd = fd
        self._target = target_fd
        _held.add(self)

    def release(self) -> None:
        """Release the lock; releasing twice is harmless.

        The checkpoint's descriptor is unlocked here and closed by its owner.
        """
        fd, self._fd = self._fd, None
        target, self._target = self._target, None
        _held.discard(self)
        if target is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(target, fcntl.LOCK_UN)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def _forget(self) -> None:
        # In a forked child: close the copy of the .lock descriptor without
        # unlocking (the lock is the parent's; LOCK_UN would drop it for both).
        fd, self._fd = self._fd, None
        self._target = None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _same_file(path: str, fd: int) -> bool:
    try:
        named = os.stat(path)
    except OSError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def _holder(target_fd: int, lock_fd: int | None) -> int | None:
    """The PID of a live process holding the lock, or ``None`` when it cannot be told.

    The PID recorded in the ``.lock`` file is trusted only while that process
    lives; otherwise the kernel's lock table and the processes' open files are
    asked (Linux), since a child that inherited the lock may hold it.
    """
    if lock_fd is not None:
        pid = _read_pid(lock_fd)
        if pid is not None and _alive(pid):
            return pid
    st = os.fstat(target_fd if lock_fd is None else lock_fd)
    return _holder_from_proc(st.st_dev, st.st_ino)


def _holder_from_proc(dev: int, ino: int) -> int | None:
    key = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            table = f.read()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        if "FLOCK" in fields and key in fields:
            with contextlib.suppress(ValueError, IndexError):
                pid = int(fields[fields.index(key) - 1])
                if pid > 0 and _alive(pid):
                    return pid
    # The process that took it is gone: find who still has the file open with a lock.
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    for pid in pids[:_PROC_SCAN_LIMIT]:
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii", errors="replace") as info:
                    if key in info.read():
                        return pid
    return None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# -- forking ---------------------------------------------------------------------------------

_held: weakref.WeakSet[FileLock] = weakref.WeakSet()
_child_hooks: list[Callable[[], None]] = []


def forget_in_forked_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in every child forked from now on, after the locks are let go."""
    _child_hooks.append(hook)


def _after_fork_in_child() -> None:
    for lock in list(_held):
        lock._forget()
    _held.clear()
    for hook in _child_hooks:
        hook()


os.register_at_fork(after_in_child=_after_fork_in_child)
