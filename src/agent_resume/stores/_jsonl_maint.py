"""Rewriting a JSONL checkpoint: ``repair`` drops bad lines, ``compact`` keeps the latest record per item.

Both hold the job's lock while they work, write the new file beside the old
one, sync it, rename it over the old one and sync the directory, so a crash
at any moment leaves the old file or the new one. The old file is kept as a
backup named ``<path>.bak-<UTC time>``.

A symlink is followed: the file it points to is locked and rewritten, and the
link is left as it is. A file with more than one hard link is refused, since
the rename would leave the other names on the old file (its own backups, one
of which a rewrite killed before its rename leaves linked, do not count). A file that is not a
checkpoint is refused (:class:`NotACheckpointError`) and left untouched.
"""

from __future__ import annotations

import os
import stat
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent_resume._atomic import atomic_write
from agent_resume._errors import StoreError, StoreWriteError
from agent_resume.stores._jsonl_read import check_header, load, read_records
from agent_resume.stores._lock import FileLock

__all__ = ["CompactReport", "RepairReport", "compact", "repair"]


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` found and did.

    Attributes:
        path: The checkpoint.
        lines: Lines read, a torn last line included.
        kept: Records kept (the header included).
        dropped: ``(line_number, reason)`` of each line dropped.
        backup: Where the old file was kept, or ``None`` when nothing was rewritten.
    """

    path: str
    lines: int
    kept: int
    dropped: list[tuple[int, str]] = field(default_factory=list)
    backup: str | None = None

    @property
    def rewritten(self) -> bool:
        """Whether the file was rewritten."""
        return self.backup is not None


@dataclass(frozen=True)
class CompactReport:
    """What :func:`compact` did.

    Attributes:
        path: The checkpoint.
        lines_before: Lines in the old file.
        lines_after: Lines in the new file.
        dropped_corrupt: Corrupt or torn lines dropped on the way.
        backup: Where the old file was kept.
    """

    path: str
    lines_before: int
    lines_after: int
    dropped_corrupt: int
    backup: str | None


def _backup_name(path: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{path}.bak-{stamp}"
    n = 1
    while os.path.exists(name):
        n += 1
        name = f"{path}.bak-{stamp}-{n}"
    return name


def _own_backups(path: str, info: os.stat_result) -> int:
    """How many ``<path>.bak-*`` files beside ``path`` are links to its file.

    A rewrite links the old file to its backup name before it renames the new
    one into place, so one killed between the two leaves such a link.
    """
    directory, name = os.path.split(path)
    count = 0
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return 0
    for other in names:
        if other.startswith(name + ".bak-"):
            try:
                found = os.stat(os.path.join(directory, other))
            except OSError:
                continue
            if (found.st_dev, found.st_ino) == (info.st_dev, info.st_ino):
                count += 1
    return count


class _Locked:
    """A checkpoint opened and locked for maintenance, by its real path.

    Args:
        path: The checkpoint.
        writing: Whether the caller rewrites it. A caller that only reads
            (``repair(dry_run=True)``) goes on without the lock where the
            lock file cannot be created (a read-only file system).
    """

    def __init__(self, path: str, *, writing: bool = True) -> None:
        self.path = os.path.realpath(path)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StoreError(f"{path}: no such checkpoint file") from None
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the checkpoint: {exc}") from exc
        self.lock = FileLock(self.path)
        try:
            info = os.fstat(self.fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"{path}: not a checkpoint file (a directory or a device)")
            try:
                self.lock.acquire("", path, self.fd)  # the job is not read yet
            except StoreWriteError:
                if writing:
                    raise
            others = info.st_nlink - 1 - _own_backups(self.path, info)
            if others > 0:
                self.lock.release()
                raise StoreError(
                    f"{path} has {others + 1} hard links; rewriting it would leave the other "
                    "names on the old file: remove the other links (or copy the file) first"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the reports say what is wrong
                with open(os.dup(self.fd), "rb") as f:
                    load(f, self.path)  # refuses a file that is not a checkpoint
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.lock.release()
        os.close(self.fd)


def _scan(path: str) -> Iterator[tuple[int, dict[str, Any] | str, bytes]]:
    with open(path, "rb") as f:
        for line_number, record, raw in read_records(f, path):
            if line_number == 1 and isinstance(record, dict) and "agent_resume" in record:
                check_header(record, path)
            yield line_number, record, raw


def repair(path: str | os.PathLike[str], *, dry_run: bool = False) -> RepairReport:
    """Validate a checkpoint and rewrite it without its torn or corrupt lines.

    Every valid line is kept byte for byte, in order. A file with nothing to
    drop is left untouched.

    Args:
        path: The JSONL checkpoint.
        dry_run: Report what would be dropped without changing anything.

    Raises:
        JobLockedError: A live session holds the job, through any name.
        UnsupportedFormatError: The file was written by a newer version.
        NotACheckpointError: The file is not a checkpoint.
        StoreError: The file does not exist, is not a regular file, or has
            more than one hard link.
    """
    locked = _Locked(os.path.expanduser(os.fspath(path)), writing=not dry_run)
    path = locked.path
    try:
        kept: list[bytes] = []
        dropped: list[tuple[int, str]] = []
        lines = 0
        for line_number, record, raw in _scan(path):
            lines = line_number
            if isinstance(record, dict):
                kept.append(raw + b"\n")
            else:
                dropped.append((line_number, record))
        if not dropped or dry_run:
            return RepairReport(path, lines, len(kept), dropped, None)
        backup = _backup_name(path)
        atomic_write(path, kept, backup=backup)
        return RepairReport(path, lines, len(kept), dropped, backup)
    finally:
        locked.close()


def compact(path: str | os.PathLike[str]) -> CompactReport:
    """Rewrite a checkpoint with only the latest record per item.

    Kept: the header; each done item's latest completion; for each item not
    done, its latest failure since it was last released (which carries the
    attempt count); the latest record of the job's state; every run record
    and every record of a kind this version does not know. Dropped: superseded records and corrupt lines.

    Raises:
        JobLockedError: A live session holds the job, through any name.
        UnsupportedFormatError: The file was written by a newer version.
        NotACheckpointError: The file is not a checkpoint.
        StoreError: The file does not exist, is not a regular file, or has
            more than one hard link.
    """
    locked = _Locked(os.path.expanduser(os.fspath(path)))
    path = locked.path
    try:
        latest: dict[str, int] = {}
        latest_state = 0
        done: set[str] = set()
        keep_always: set[int] = set()
        lines = 0
        corrupt = 0
        for line_number, record, _ in _scan(path):
            lines = line_number
            if not isinstance(record, dict):
                corrupt += 1
                continue
            item_id = record.get("id")
            if item_id is None:
                if "run" not in record and isinstance(record.get("state"), dict):
                    latest_state = line_number  # the job's state: only the latest counts
                else:
                    keep_always.add(line_number)
                continue
            status = record.get("status")
            if status is None or status == "done":
                done.add(item_id)
                latest[item_id] = line_number
            elif status == "failed":
                if item_id not in done:
                    latest[item_id] = line_number
            elif status == "retry":
                if item_id not in done:
                    latest.pop(item_id, None)
            else:
                keep_always.add(line_number)
        wanted = keep_always | set(latest.values()) | ({latest_state} if latest_state else set())

        def chunks() -> Iterator[bytes]:
            for line_number, record, raw in _scan(path):
                if isinstance(record, dict) and line_number in wanted:
                    yield raw + b"\n"

        backup = _backup_name(path)
        atomic_write(path, chunks(), backup=backup)
        return CompactReport(path, lines, len(wanted), corrupt, backup)
    finally:
        locked.close()
