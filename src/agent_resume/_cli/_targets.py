"""Reading a store from the command line: which job it holds and what state it is in.

Nothing here opens the job (no lock is taken, no lease, nothing written), so
``status``, ``report`` and ``export`` may look at a job while it runs. Every
way a target can be wrong (missing, a directory, not a database, unreadable)
becomes a :class:`~agent_resume._cli._exits.CliError` or a
:class:`~agent_resume.StoreError` here, before any command reads it.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from agent_resume._cli._exits import CliError
from agent_resume._cli._output import STDIO
from agent_resume._errors import (
    AgentResumeError,
    ArgumentTypeError,
    ArgumentValueError,
    StoreError,
)
from agent_resume._records import JobState, collector_paused, normalize_id
from agent_resume._render import masked_url
from agent_resume._session._items import id_getter
from agent_resume.stores import OnePassStore, Store, StoreDescription, open_store, store_kind

__all__ = [
    "StoreView",
    "check_store_file",
    "file_of",
    "inspect_store",
    "item_key",
    "job_max_attempts",
    "open_cli_store",
    "open_described",
    "open_input",
    "quarantined_ids",
    "read_items",
    "reading",
    "records_of",
    "results_of",
    "store_url",
]

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def file_of(target: str) -> str | None:
    """The file a store target names (``~`` expanded, as the stores do), or ``None`` for a server URL."""
    if target.startswith("sqlite:///"):
        return os.path.expanduser(target[len("sqlite:///") :])
    if target.startswith(("postgresql://", "postgres://")):
        return None
    return os.path.expanduser(target)


def store_url(target: str) -> str:
    """The URL of the store a command-line argument names (for ``open_store``).

    A plain path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` names a SQLite
    store; anything else is given to :func:`~agent_resume.open_store` as it is.

    Raises:
        CliError: The argument is ``-`` or ``memory:``, or names no kind of store.
    """
    if target == STDIO:
        raise CliError(
            "a store cannot be read from standard input: give its path or URL "
            "(`-` means stdin only for --items, --config and --prices)"
        )
    if target == "memory:":
        raise CliError("an in-memory store lives only inside its process; give a file or a URL")
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", target)
    if scheme and scheme[1].lower() not in ("sqlite", "postgresql", "postgres"):
        raise CliError(
            f"unknown URL scheme {scheme[1]!r} in {masked_url(target)!r}: give a .jsonl path, "
            "a .db path, sqlite:///path.db or postgresql://..."
        )
    if not target.startswith(("sqlite://", "postgresql://", "postgres://")) and target.endswith(
        _SQLITE_SUFFIXES
    ):
        return "sqlite:///" + target
    if not target.endswith(".jsonl") and not target.startswith(
        ("sqlite://", "postgresql://", "postgres://")
    ):
        raise CliError(
            f"cannot tell what kind of store {masked_url(target)!r} is: give a .jsonl path, "
            "a .db path, sqlite:///path.db or postgresql://..."
        )
    return target


def check_store_file(target: str, *, must_exist: bool = True) -> None:
    """Refuse a store file that cannot be a checkpoint, before anything opens it.

    Raises:
        StoreError: ``must_exist`` and the file does not exist; the path is a
            directory or not a regular file; a SQLite path holds something
            that is not a SQLite database; the file cannot be read.
    """
    path = file_of(target)
    if path is None:
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if must_exist:
            raise StoreError(f"{path}: no such checkpoint") from None
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the checkpoint: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{path}: is a directory, not a checkpoint")
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path}: not a regular file, so not a checkpoint")
    if store_url(target).startswith("sqlite:"):
        try:
            with open(path, "rb") as f:
                magic = f.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the database: {exc.strerror or exc}") from None
        if magic and magic != _SQLITE_MAGIC:
            raise StoreError(f"{path}: not a SQLite database")


def open_described(target: str) -> tuple[Store, StoreDescription]:
    """Build the store a command-line argument names, and describe it (read-only).

    Raises:
        StoreError: The store does not exist, is not a store, or cannot be read.
        UnsupportedFormatError: The store was written by a newer version.
        CliError: The argument names no kind of store.
    """
    url = store_url(target)
    check_store_file(target)
    store = open_store(url)
    with reading(store), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what describe() finds, the commands report
        description = store.describe()
    if (
        description.job_id is None
        and description.format_version is None
        and store_kind(url) in ("sqlite", "postgresql")
    ):
        # A database (or a schema of one) where no job was ever opened: most
        # likely a typo in the URL's ?schema=, which must not read as an empty job.
        # (A JSONL file without a header is a checkpoint of the original format.)
        raise StoreError(
            f"{masked_url(target)}: holds no job (no agent-resume tables there; "
            "check the path, the database and ?schema=)"
        )
    return store, description


def open_cli_store(target: str) -> Store:
    """Build the store a command-line argument names, after checking that it is one.

    Accepts what :func:`~agent_resume.open_store` accepts, and also a plain
    path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` for a SQLite store.

    Raises:
        StoreError: See :func:`open_described`.
        CliError: The argument names no kind of store.
    """
    return open_described(target)[0]


@dataclass
class StoreView:
    """A store and what it holds, read without opening the job.

    Attributes:
        target: The store as given on the command line.
        store: The store object (not open).
        job_id: The job the store holds, or ``None`` (an original-format
            file without a header, or an empty store).
        state: The job's state, folded from its records.
        torn_tail: Whether a JSONL file ends with a torn line.
    """

    target: str
    store: Store
    job_id: str | None
    state: JobState
    torn_tail: bool = False


def inspect_store(
    target: str, also: Sequence[Callable[[dict[str, Any]], object]] = ()
) -> StoreView:
    """Read a store's job ID and state without opening the job, through the Store API.

    The records are read once, as a stream: each is folded into the state
    and handed to every function of ``also`` (a ledger's ``add``, say), so
    that a command needs no second pass and no list of every record. A store
    that reads its records to describe itself (an ``OnePassStore``: a JSONL
    file) does both in the same read.

    Raises:
        StoreError: The store does not exist or cannot be read.
        UnsupportedFormatError: The store was written by a newer version.
    """
    state = JobState(job_id="")
    apply = state.apply

    def fold(record: dict[str, Any]) -> None:
        apply(record)
        for consume in also:
            consume(record)

    with collector_paused():
        store, description = _described_reading(target, fold)
    state.job_id = description.job_id or ""
    state.created = description.created
    state.bad_lines = description.bad_lines
    return StoreView(target, store, description.job_id, state, description.torn_tail)


def _described_reading(
    target: str, fold: Callable[[dict[str, Any]], None]
) -> tuple[Store, StoreDescription]:
    """Describe a store and fold every record, in one read where the store can (a JSONL file)."""
    url = store_url(target)
    check_store_file(target)
    store = open_store(url)
    if isinstance(store, OnePassStore):
        with reading(store), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the view counts bad lines itself
            return store, store.describe_records(fold)
    store, description = open_described(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for record in records_of(store):
            fold(record)
    return store, description


def _unreadable(store: Store, exc: BaseException) -> StoreError:
    where = getattr(store, "path", None) or repr(store)
    if isinstance(exc, RecursionError):
        return StoreError(f"{where}: a record is nested too deeply to read")
    return StoreError(f"{where}: cannot read the store: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def reading(store: Store) -> Iterator[None]:
    """Turn any failure of a store while the command line reads it into a ``StoreError``.

    The stores raise ``StoreError`` for what they foresee; this catches the
    rest (a driver's own error on a damaged or read-only database, a record
    too deeply nested to decode), so that a command never ends in a
    traceback. Errors of the library pass through as they are.
    """
    try:
        yield
    except AgentResumeError:
        raise
    except (Exception, RecursionError) as exc:
        raise _unreadable(store, exc) from exc


def records_of(store: Store) -> Iterator[dict[str, Any]]:
    """Every record of a store, for reading; any failure is a ``StoreError``."""
    with reading(store):
        yield from store.iter_records()


def results_of(store: Store) -> Iterator[tuple[str, Any]]:
    """Every ``(item ID, result)`` of a store; any failure is a ``StoreError``."""
    with reading(store):
        yield from store.iter_results()


def job_max_attempts(state: JobState, given: int | None) -> int:
    """The ``max_attempts`` to judge quarantine by.

    ``given`` (a flag) wins; else the value the latest run recorded in its
    start record, when it did; else the default, 3.

    Raises:
        CliError: ``given`` is less than 1.
    """
    if given is not None:
        if given < 1:
            raise CliError(f"--max-attempts must be at least 1 (got {given})")
        return given
    for record in reversed(state.runs):
        value = record.get("max_attempts")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 3


def quarantined_ids(state: JobState, max_attempts: int) -> list[str]:
    """The items a session with this ``max_attempts`` would skip as quarantined."""
    return [
        item_id
        for item_id, info in state.failures.items()
        if not info.retryable or info.attempts >= max_attempts
    ]


def open_input(path: str, what: str) -> IO[bytes]:
    """Open a file the command reads, in binary; ``-`` is standard input.

    The caller closes what it gets (standard input is given as a duplicate of
    its descriptor, so closing it leaves ``sys.stdin`` alone).

    Raises:
        CliError: The file cannot be opened.
    """
    if path == STDIO:
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def read_items(path: str, key_field: str | None) -> list[tuple[str, Any]]:
    """Read a JSONL input, ``-`` for standard input: one JSON value per line (blank lines skipped).

    A UTF-8 byte-order mark at the start of the file is skipped.

    Each item's ID is read as a run reads it: from ``key_field`` (``--key``)
    or by the default rules. A bad one is refused here, with its line.

    Args:
        path: The file, or ``-``.
        key_field: The field holding each item's ID; ``None`` for the default rules.

    Returns:
        Each item's ID and the item, in the file's order.

    Raises:
        CliError: The file cannot be read, a line is not a JSON value, or an
            item has no usable ID.
    """
    name = "<stdin>" if path == STDIO else path
    read_id = _id_reader(key_field)
    items: list[tuple[str, Any]] = []
    with open_input(path, "items file") as f:
        number = 0
        while True:
            try:
                raw = f.readline()
            except OSError as exc:
                raise CliError(
                    f"cannot read the items file {name}: {exc.strerror or exc}"
                ) from None
            if not raw:
                break
            number += 1
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]  # a file saved by Notepad or Excel
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CliError(f"{name}:{number}: not UTF-8 (byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except RecursionError:
                raise CliError(f"{name}:{number}: a JSON value nested too deeply") from None
            except ValueError as exc:
                raise CliError(f"{name}:{number}: not a JSON value ({exc})") from None
            try:
                items.append((read_id(item), item))
            except (CliError, ArgumentTypeError, ArgumentValueError) as exc:
                raise CliError(f"{name}:{number}: {exc}") from None
    return items


def _id_reader(field: str | None) -> Callable[[Any], str]:
    """Read an input item's ID as a run will, with errors that name the flag, not ``key=``."""
    key = item_key(field)

    def read_id(item: Any) -> str:
        try:
            getter = id_getter(item, key)
        except ArgumentTypeError:
            raise CliError(
                f"no ID in {item!r:.60}: give each item an 'id' field, or name "
                "the field that holds it with --key"
            ) from None
        raw = item if getter is None else getter(item)
        if type(raw) not in (str, int):
            where = f"field {field!r}" if field is not None else "the ID"
            raise CliError(
                f"{where} must be a string or an integer, got {type(raw).__name__} ({raw!r:.60})"
            )
        return normalize_id(raw, "item ID")

    return read_id


def item_key(field: str | None) -> Any:
    """The ``key=`` function for ``--key FIELD``, or ``None`` for the default ID rules."""
    if field is None:
        return None

    def key(item: Any) -> Any:
        try:
            return item[field]
        except (KeyError, TypeError, IndexError):
            raise CliError(f"an item has no field {field!r}: {item!r:.80}") from None

    return key
