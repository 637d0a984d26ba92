"""Replacing a file atomically: a crash leaves the old file or the new one, never a mixture."""

from __future__ import annotations

import contextlib
import glob
import os
import threading
from collections.abc import Iterable

__all__ = ["atomic_write", "fsync_directory", "remove_with_leftovers"]


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Sync a directory so that a rename or a new file in it survives power loss."""
    fd = os.open(os.fspath(directory) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike[str],
    chunks: Iterable[bytes],
    *,
    backup: str | os.PathLike[str] | None = None,
) -> None:
    """Write ``chunks`` to ``path`` so that readers see the old or the new file.

    The data goes to a temporary file beside ``path``, which is synced and then
    renamed over ``path``; the directory is synced last. With ``backup``, the
    old file is first hard-linked (or copied, where links fail) to that name.

    Args:
        path: The file to replace or create.
        chunks: The new content.
        backup: Where to keep the old file, if anywhere.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb", closefd=True) as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if backup is not None and os.path.exists(path):
            backup = os.fspath(backup)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(backup)
            os.link(path, backup)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def remove_with_leftovers(path: str | os.PathLike[str]) -> None:
    """Delete ``path`` and the temporary files that writers killed mid-way left beside it.

    A process killed during :func:`atomic_write` leaves ``<path>.tmp-<pid>-<thread>``
    behind (the old file is intact); once the file itself is no longer
    wanted, those go too. A missing file is not an error.
    """
    path = os.fspath(path)
    for name in [path, *glob.glob(glob.escape(path) + ".tmp-*")]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
