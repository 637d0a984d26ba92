"""Reading a store from the command line: which job it holds and what state it is in.

Nothing here opens the job (no lock is taken, no lease, nothing written), so
``status``, ``report`` and ``export`` may look at a job while it runs.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

from agent_resume._errors import StoreError
from agent_resume._records import JobState
from agent_resume.stores import Store, open_store
from agent_resume.stores._jsonl_read import load

__all__ = [
    "CliError",
    "StoreView",
    "inspect_store",
    "item_key",
    "job_max_attempts",
    "open_cli_store",
    "quarantined_ids",
    "read_items",
]

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


class CliError(Exception):
    """A command-line error: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _file_of(target: str) -> str | None:
    """The file a store target names, or ``None`` for a server URL."""
    if target.startswith("sqlite:///"):
        return target[len("sqlite:///") :]
    if target.startswith(("postgresql://", "postgres://")):
        return None
    return target


def open_cli_store(target: str, *, must_exist: bool = True) -> Store:
    """Build the store a command-line argument names.

    Accepts what :func:`~agent_resume.open_store` accepts, and also a plain
    path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` for a SQLite store.

    Raises:
        StoreError: ``must_exist`` and the file does not exist.
        CliError: The argument names no kind of store.
    """
    if target == "memory:":
        raise CliError("an in-memory store lives only inside its process; give a file or a URL")
    path = _file_of(target)
    if must_exist and path is not None and not os.path.exists(path):
        raise StoreError(f"{path}: no such checkpoint")
    if path is not None and path == target and target.endswith(_SQLITE_SUFFIXES):
        target = "sqlite:///" + target
    if not target.endswith(".jsonl") and not target.startswith(
        ("sqlite://", "postgresql://", "postgres://")
    ):
        raise CliError(
            f"cannot tell what kind of store {target!r} is: give a .jsonl path, "
            "a .db path, sqlite:///path.db or postgresql://..."
        )
    return open_store(target)


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


def inspect_store(target: str) -> StoreView:
    """Read a store's job ID and state without opening the job.

    Raises:
        StoreError: The store does not exist or cannot be read.
        UnsupportedFormatError: The store was written by a newer version.
    """
    store = open_cli_store(target)
    path = getattr(store, "path", None)
    if target.endswith(".jsonl") and isinstance(path, str):
        with warnings.catch_warnings():
            # The view reports bad lines and torn tails itself.
            warnings.simplefilter("ignore")
            try:
                with open(path, "rb") as f:
                    result = load(f, path)
            except OSError as exc:
                raise StoreError(f"{path}: cannot read the checkpoint: {exc}") from exc
        job_id = result.state.job_id or None
        return StoreView(target, store, job_id, result.state, result.torn_tail)
    meta = read_meta(store)
    job_id = meta.get("job_id")
    created = meta.get("created")
    state = JobState(job_id=job_id or "", created=int(created) if created else None)
    for record in store.iter_records():
        state.apply(record)
    return StoreView(target, store, job_id, state)


def read_meta(store: Store) -> dict[str, str]:
    """The ``meta`` table of a SQLite or PostgreSQL store (``job_id``, ``created``, ...).

    Empty when the store holds no job yet.
    """
    path = getattr(store, "path", None)
    if isinstance(path, str):
        import sqlite3

        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc
        try:
            rows = conn.execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return {}
            raise StoreError(f"{path}: cannot read the job ID: {exc}") from exc
        finally:
            conn.close()
        return {str(k): str(v) for k, v in rows}
    read = getattr(store, "_read", None)
    schema = getattr(store, "schema", None)
    if read is None or schema is None:
        return {}

    def query(conn: Any) -> dict[str, str]:
        exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.meta",)).fetchone()
        if exists is None or exists[0] is None:
            return {}
        rows = conn.execute(f"SELECT key, value FROM {schema}.meta").fetchall()
        return {str(k): str(v) for k, v in rows}

    value: dict[str, str] = read(query, "reading the job ID")
    return value


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


def read_items(path: str) -> list[Any]:
    """Read a JSONL input: one JSON value per line (blank lines skipped).

    Raises:
        CliError: The file cannot be read or a line is not JSON.
    """
    import json

    items: list[Any] = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    items.append(json.loads(line))
                except ValueError as exc:
                    raise CliError(f"{path}:{number}: not a JSON value ({exc})") from None
                except RecursionError:
                    raise CliError(
                        f"{path}:{number}: nested too deeply to read as an item"
                    ) from None
    except OSError as exc:
        raise CliError(f"cannot read the items file: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 ({exc})") from None
    return items


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
