"""The SQLite store: an embedded database that several processes on one machine may share.

One job per database file. The file is in WAL mode, so readers never wait
for the writer; every write is one short ``BEGIN IMMEDIATE`` transaction,
and a writer that finds the database busy waits up to ``busy_timeout``
before raising :class:`~agent_resume.StoreError`. Completions are rows keyed
by the item, so the first writer wins; claims carry a lease judged by
SQLite's clock (the machine's), renewed by a heartbeat thread.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Final, TypeVar, get_args

from agent_resume._errors import (
    ArgumentValueError,
    CheckpointWarning,
    JobMismatchError,
    StoreClosedError,
    StoreError,
    UnsupportedFormatError,
)
from agent_resume._records import FailureInfo, JobState, dumps, failure_record
from agent_resume.stores._protocol import (
    Durability,
    StoreDescription,
    check_start,
    default_max_attempts,
)
from agent_resume.stores._sql import (
    GroupCommit,
    Heartbeat,
    LeaseSettings,
    completion_record,
    holder_is_dead,
    logger,
    new_worker_id,
)
from agent_resume.stores._sqlite_sql import DROPPED as _DROPPED
from agent_resume.stores._sqlite_sql import INSERT_DONE as _INSERT_DONE
from agent_resume.stores._sqlite_sql import NEW_FILE as _NEW_FILE
from agent_resume.stores._sqlite_sql import NOW as _NOW
from agent_resume.stores._sqlite_sql import SCHEMA as _SCHEMA
from agent_resume.stores._sqlite_sql import TRIGGERS as _TRIGGERS
from agent_resume.stores._sqlite_sql import UPGRADE as _UPGRADE
from agent_resume.stores._sqlite_sql import VERSION as _VERSION

__all__ = ["SqliteStore"]

T = TypeVar("T")

_SYNCHRONOUS: Final = {"flush": "NORMAL", "fsync": "FULL", "group": "FULL"}
_CORE_TABLES: Final = frozenset({"meta", "items", "completions", "events"})

# What `_decoded` gives for a damaged value (it warned): None is a JSON value.
_DAMAGED: Final = object()


class SqliteStore:
    """A job in a SQLite database file; results are kept.

    Several processes on one machine may open the same file and share the
    job: each claims batches of items under a lease, and a completion is
    recorded once. Do not put the file on a network file system: SQLite's
    locks are not reliable there; use :class:`PostgresStore` across machines.

    Args:
        path: The database file; it and its missing parent directories are
            created on first use. A leading ``~`` is your home directory.
        lease_seconds: How long a claim lasts without a heartbeat.
        heartbeat_seconds: How often a live worker renews its leases; a third
            of the lease by default.
        busy_timeout: Seconds a write waits for another process's write
            before raising :class:`~agent_resume.StoreError`.
        batch_size: Items per claim.
        durability: ``"flush"`` (default: ``synchronous=NORMAL``; a commit
            survives a crash of the process, and the last commits may be lost
            to a power cut) or ``"fsync"`` (``synchronous=FULL``; a commit
            survives a power cut once it returns), or ``"group"``
            (``synchronous=FULL``, and a worker's completions are queued and
            committed together within about 10 ms, or at once by 256, or
            before any other statement, ``flush`` and ``close``: a completion
            is recorded once its commit returned; one lost with the process
            runs again). See ``docs/sqlite.md``.

    Raises:
        ArgumentValueError: A setting is out of range.
    """

    keeps_results: bool = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease_seconds: float | timedelta = 30.0,
        heartbeat_seconds: float | timedelta | None = None,
        busy_timeout: float = 10.0,
        batch_size: int = 64,
        durability: Durability = "flush",
    ) -> None:
        if durability not in get_args(Durability):
            raise ArgumentValueError(
                "durability",
                durability,
                f"`durability` must be 'flush', 'group' or 'fsync' (got {durability!r})",
            )
        self.durability: Durability = durability
        self.path = os.path.expanduser(os.fspath(path))  # `~/jobs.db`, as a shell reads it
        if not self.path:
            raise ArgumentValueError("path", path, "`path` must not be empty")
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, (int, float))
            or not (busy_timeout >= 0)
        ):
            raise ArgumentValueError(
                "busy_timeout",
                busy_timeout,
                f"`busy_timeout` must be seconds, 0 or more (got {busy_timeout!r})",
            )
        settings = LeaseSettings(lease_seconds, heartbeat_seconds, batch_size)
        self.lease_seconds = settings.lease_seconds
        self.heartbeat_seconds = settings.heartbeat_seconds
        self.batch_size = settings.batch_size
        self.poll_seconds = settings.poll_seconds
        self.busy_timeout = float(busy_timeout)
        self.worker_id = new_worker_id()
        self.late_completions = 0
        self.job_id: str | None = None
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._held: set[str] = set()
        self._heartbeat: Heartbeat | None = None
        self._group: GroupCommit[tuple[str, int, str, str | None]] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteStore:
        """Build a store from ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

        Raises:
            ArgumentValueError: The URL names no file.
        """
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ArgumentValueError(
                "store",
                url,
                f"`store` as a SQLite URL must look like sqlite:///path.db (got {url!r})",
            )
        return cls(url[len("sqlite:///") :], **options)

    def __repr__(self) -> str:
        return (
            f"SqliteStore({self.path!r}, lease_seconds={self.lease_seconds}, "
            f"durability={self.durability!r})"
        )

    # -- connections -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """Connect for writing: check that the file is a store (or empty) before changing it."""
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._check_one_name()
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._check_is_store(conn)
            conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.durability]}")
            conn.execute("PRAGMA cache_size=-16384")
            self._into_wal(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _into_wal(self, conn: sqlite3.Connection) -> None:
        """Put the database in WAL mode, waiting up to ``busy_timeout`` for the other openers.

        Workers that open a new file at the same moment all ask for the
        switch, and SQLite answers "database is locked" at once, without its
        busy handler, to all but one (6 workers: 7 of 240 opens failed).
        """
        give_up = time.monotonic() + max(self.busy_timeout, 1.0)
        pause = 0.002
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= give_up:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _check_is_store(self, conn: sqlite3.Connection) -> None:
        """Refuse a database that is not an agent-resume store, before anything writes to it.

        Raises:
            StoreError: The file is not a SQLite database, or holds tables of
                something else.
        """
        try:
            tables = {
                str(name)
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            }
            version = job = None
            if tables >= _CORE_TABLES:
                version, job = _meta(conn, "version"), _meta(conn, "job_id")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: not an agent-resume SQLite store ({exc})") from exc
        if not tables:
            return  # a new or empty database
        if version is not None and job is not None and not _is_number(version):
            raise StoreError(
                f"{self.path}: the store is damaged: its format version (meta.version) is "
                f"{version!r:.40}, not a number; nothing was changed"
            )
        if version is None or job is None:
            raise StoreError(
                f"{self.path}: not an agent-resume SQLite store (it holds the tables "
                f"{', '.join(sorted(tables))}); nothing was changed"
            )

    def _check_one_name(self) -> None:
        """Refuse a database file that has more than one name (a hard link).

        SQLite finds a database's write-ahead log and shared memory by the
        name it was opened by (``NAME-wal``, ``NAME-shm``): two processes that
        open one file by two names each write their own log, neither sees the
        other's leases or completions, items run twice and one side's
        acknowledged completions are lost. SQLite's documentation ("How To
        Corrupt An SQLite Database File", section 2.5) says not to link a
        database file. A bind mount of the file itself cannot be seen from
        here; mount its directory instead.

        Raises:
            StoreError: The file has more than one hard link.
        """
        try:
            links = os.stat(self.path).st_nlink
        except FileNotFoundError:
            return  # a new file: SQLite creates it with one name
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the database: {exc}") from exc
        if links > 1:
            raise StoreError(
                f"{self.path}: refusing to open a SQLite store whose file has {links} names "
                "(hard links): SQLite keeps the write-ahead log and shared memory beside "
                "each name (-wal, -shm), so processes opening it by different names would "
                "not see each other's writes, and SQLite's own documentation says never to "
                "link a database file; use one name for it everywhere, or make a separate "
                "copy (`cp`, or `sqlite3 FILE .backup COPY`) and remove the other link"
            )

    def _connect_read(self) -> sqlite3.Connection:
        """Connect read-only, for a store that is not open: nothing is created or changed.

        A database in WAL mode needs its ``-shm`` file, which SQLite creates
        beside it even to read; where it cannot (a read-only file system or
        directory) and no write-ahead log is left beside the file (a store
        closed cleanly leaves none), the file is read as ``immutable``:
        nothing can be writing it there. A log left beside it holds commits
        that an immutable read would miss, so that case is an error that says so.
        """
        self._check_one_name()
        uri = pathlib.Path(os.path.abspath(self.path)).as_uri()
        try:
            return self._open_read(uri + "?mode=ro")
        except StoreError as exc:
            cannot_open = isinstance(exc.__cause__, sqlite3.OperationalError)
            if not cannot_open or not self._unwritable_place():
                raise
            if _has_log(self.path):
                raise StoreError(
                    f"{self.path}: cannot read the database: it is in a directory this process "
                    "cannot write, and its write-ahead log (-wal) is beside it, which SQLite can "
                    "read only by creating its -shm file there; read it where it is writable, "
                    "or let a writer open and close it first"
                ) from exc
        return self._open_read(uri + "?mode=ro&immutable=1")

    def _open_read(self, uri: str) -> sqlite3.Connection:
        """Open a SQLite URI and check that it is a store.

        Raises:
            StoreError: It cannot be opened or is not a store (the ``sqlite3``
                error, if any, is its ``__cause__``).
        """
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the database: {exc}") from exc
        try:
            self._check_is_store(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _unwritable_place(self) -> bool:
        """Whether the database's directory cannot be written (a read-only file system)."""
        return not os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK)

    def _run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        what: str,
        *,
        write: bool = True,
        drain: bool = True,
    ) -> T:
        """Run ``fn`` in one transaction (``BEGIN IMMEDIATE`` for writes).

        Queued completions (``durability="group"``) are committed first,
        unless ``drain`` is false (the group's own commit, and callers that
        hold the store's lock).
        """
        group = self._group
        if drain and group is not None:
            group.drain()
        with self._lock:
            conn = self._conn
            if conn is None:
                if write:
                    raise StoreClosedError(f"{self!r} is closed")
                conn = self._connect_read()
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    value = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return value
            except sqlite3.Error as exc:
                raise self._failed(what, exc) from exc
            finally:
                if conn is not self._conn:
                    conn.close()

    def _write_one(self, sql: str, parameters: tuple[Any, ...], what: str) -> int:
        """Run one writing statement as a transaction of its own; the rows it changed.

        No ``BEGIN``/``COMMIT`` around it: SQLite runs a lone statement in a
        transaction of its own, taking the write lock when the statement
        starts (waiting up to ``busy_timeout``, as ``BEGIN IMMEDIATE`` does)
        and committing before ``execute`` returns, the statements of the
        triggers it fires included. Queued completions are not drained: only
        :meth:`write_done` calls it, and only without a group.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreClosedError(f"{self!r} is closed")
            try:
                return conn.execute(sql, parameters).rowcount
            except sqlite3.Error as exc:
                raise self._failed(what, exc) from exc

    def _failed(self, what: str, exc: sqlite3.Error) -> StoreError:
        """The error that says ``what`` failed, and why."""
        if isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc)
        ):
            return StoreError(
                f"{self.path}: {what} failed: the database stayed busy for more than "
                f"busy_timeout={self.busy_timeout}s (another process holds a long write)"
            )
        return StoreError(f"{self.path}: {what} failed: {exc}")

    # -- opening -----------------------------------------------------------------

    def open(self, job_id: str) -> JobState:
        """Create the schema if needed, take or check the job, and load its state."""
        with self._lock:
            if self._conn is not None:
                raise StoreError(f"{self.path} is already open in this store object")
            try:
                self._conn = self._connect()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot open the database: {exc}") from exc
            try:
                state = self._run(lambda c: self._open_job(c, job_id), "opening the job")
            except BaseException:
                self._conn.close()
                self._conn = None
                raise
        self.job_id = job_id
        self._heartbeat = Heartbeat(
            self._beat, self.heartbeat_seconds, f"agent-resume-heartbeat {self.worker_id}"
        )
        if self.durability == "group":
            self._group = GroupCommit(
                self._commit_group, self._lost_group, f"agent-resume-group {self.worker_id}"
            )
        return state

    def _open_job(self, conn: sqlite3.Connection, job_id: str) -> JobState:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        version = self._version(conn)
        if version is not None and version > _VERSION:
            raise UnsupportedFormatError(self.path, version, _VERSION)
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if version is None:
            conn.execute(_NEW_FILE)
        elif version < _VERSION:
            _upgrade(conn)
        for trigger in _TRIGGERS:
            conn.execute(trigger)
        insert = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING"
        conn.execute(insert, ("version", str(_VERSION)))
        conn.execute(insert, ("job_id", job_id))
        conn.execute(insert, ("created", str(int(time.time()))))
        found = _meta(conn, "job_id") or job_id
        if found != job_id:
            raise JobMismatchError(job_id, found, self.path)
        state = JobState(job_id=job_id, created=_created(conn))
        for item_id, fp in conn.execute(
            "SELECT item_id, json_extract(record, '$.fp') FROM completions UNION ALL "
            "SELECT item_id, json_extract(record, '$.fp') FROM items WHERE record IS NOT NULL"
        ):
            state.done.add(item_id)
            state.done_order.append(item_id)
            if isinstance(fp, str):
                state.fingerprints[item_id] = fp
        for item_id, attempts, error, retryable in conn.execute(
            "SELECT item_id, attempts, error, retryable FROM items WHERE attempts > 0 AND done = 0"
        ):
            state.failures[item_id] = FailureInfo(attempts, error or "", bool(retryable))
        for record in self._run_records(conn):
            state.apply(record)  # run records, and the job's state records
        _take_back_from_the_dead(conn)
        return state

    # -- claiming ----------------------------------------------------------------

    def enqueue(self, item_ids: Sequence[str]) -> None:
        """Add the items in input order; items already known are left as they are."""

        def insert(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM items").fetchone()
            base = int(row[0])
            conn.executemany(
                "INSERT INTO items (item_id, seq) VALUES (?, ?) ON CONFLICT DO NOTHING",
                ((item_id, base + n) for n, item_id in enumerate(item_ids, 1)),
            )

        if item_ids:
            self._run(insert, "enqueueing items")

    def claim(self, limit: int, max_attempts: int, exclude: Sequence[str] = ()) -> list[str]:
        """Lease up to ``limit`` claimable items, oldest enqueued first."""
        excluded = _hex_list(exclude)

        def select(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"""SELECT item_id FROM items
                    WHERE done = 0 AND retryable = 1 AND attempts < ?
                      AND (leased_until IS NULL OR leased_until < {_NOW})
                      AND hex(item_id) NOT IN (SELECT value FROM json_each(?))
                    ORDER BY seq LIMIT ?""",
                (max_attempts, excluded, limit),
            ).fetchall()
            return [r[0] for r in rows]

        def take(conn: sqlite3.Connection) -> list[str]:
            ids = select(conn)
            if not ids and _take_back_from_the_dead(conn):
                ids = select(conn)
            conn.executemany(
                f"UPDATE items SET leased_by = ?, leased_until = {_NOW} + ? WHERE item_id = ?",
                ((self.worker_id, self.lease_seconds, i) for i in ids),
            )
            return ids

        ids = self._run(take, "claiming items")
        self._held.update(ids)
        return ids

    def pending(self, max_attempts: int, exclude: Sequence[str] = ()) -> int:
        """Count the items not done, not quarantined and not excluded."""

        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                """SELECT count(*) FROM items WHERE done = 0 AND retryable = 1 AND attempts < ?
                   AND hex(item_id) NOT IN (SELECT value FROM json_each(?))""",
                (max_attempts, _hex_list(exclude)),
            ).fetchone()
            return int(row[0])

        return self._run(count, "counting items", write=False)

    def release(self, item_ids: Sequence[str]) -> None:
        """Give back this worker's leases on these items."""
        ids = list(item_ids)

        def give_back(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE items SET leased_by = NULL, leased_until = NULL "
                "WHERE leased_by = ? AND item_id = ?",
                ((self.worker_id, i) for i in ids),
            )

        if ids:
            self._run(give_back, "releasing leases")
            self._held.difference_update(ids)

    def _beat(self) -> None:
        with self._lock:
            held = list(self._held)
            if not held or self._conn is None:
                return

            def renew(conn: sqlite3.Connection) -> None:
                conn.executemany(
                    f"UPDATE items SET leased_until = {_NOW} + ? "
                    "WHERE leased_by = ? AND done = 0 AND item_id = ?",
                    ((self.lease_seconds, self.worker_id, i) for i in held),
                )

            self._run(renew, "renewing leases", drain=False)

    # -- writing -----------------------------------------------------------------

    def write_done(
        self,
        item_id: str,
        ts: int,
        extra: dict[str, Any] | None,
        result_json: str | None,
    ) -> bool:
        """Record the completion unless another process recorded one first.

        Returns:
            ``False`` for a late completion (counted in :attr:`late_completions`).
        """
        record = dumps(completion_record(item_id, ts, extra), "extra")
        group = self._group
        if group is not None and self._conn is not None:
            group.add((item_id, ts, record, result_json))
            return True
        try:
            recorded = (
                self._write_one(
                    _INSERT_DONE,
                    (item_id, ts, self.worker_id, record, result_json),
                    "recording a completion",
                )
                == 1
            )
        finally:
            # Recorded, late or failed: this worker renews the lease no more, so
            # that an item whose completion could not be written goes back to
            # the queue once the lease runs out.
            self._held.discard(item_id)
        if not recorded:
            self.late_completions += 1
        return recorded

    def _insert_done(
        self, conn: sqlite3.Connection, item_id: str, ts: int, record: str, result: str | None
    ) -> bool:
        """Insert one completion in the open transaction (a group's); whether it was the first."""
        return (
            conn.execute(_INSERT_DONE, (item_id, ts, self.worker_id, record, result)).rowcount == 1
        )

    def _commit_group(self, batch: list[tuple[str, int, str, str | None]]) -> None:
        """Commit queued completions in one transaction; count the late ones."""
        try:
            recorded = self._run(
                lambda conn: sum(self._insert_done(conn, *entry) for entry in batch),
                "recording completions",
                drain=False,
            )
        finally:
            self._lost_group(batch)
        self.late_completions += len(batch) - recorded

    def _lost_group(self, batch: list[tuple[str, int, str, str | None]]) -> None:
        """Renew the leases of these items no more (recorded, late, or lost)."""
        self._held.difference_update(entry[0] for entry in batch)

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
        """Count a failed attempt across all processes and give the lease back."""
        record = failure_record(item_id, ts, error, retryable, usage, extra=extra)
        dumps(record, "usage")

        def insert(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT done, attempts FROM items WHERE item_id = ?", (item_id,)
            ).fetchone()
            if row is not None and row[0]:
                return
            attempts = (row[1] if row else 0) + 1
            conn.execute(
                "INSERT INTO items (item_id, seq, attempts, retryable, error) "
                "VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM items), ?, ?, ?) "
                "ON CONFLICT (item_id) DO UPDATE SET attempts = excluded.attempts, "
                "retryable = excluded.retryable, error = excluded.error, "
                "leased_by = CASE WHEN leased_by = ? THEN NULL ELSE leased_by END, "
                "leased_until = CASE WHEN leased_by = ? THEN NULL ELSE leased_until END",
                (item_id, attempts, int(retryable), error, self.worker_id, self.worker_id),
            )
            record["attempt"] = attempts
            conn.execute(
                "INSERT INTO events (kind, item_id, ts, record) VALUES ('failed', ?, ?, ?)",
                (item_id, ts, dumps(record, "usage")),
            )

        try:
            self._run(insert, "recording a failure")
        finally:
            self._held.discard(item_id)

    def write_retry(self, item_ids: Sequence[str], ts: int) -> None:
        """Forget the failures of these items, so that any process runs them again."""
        ids = list(item_ids)

        def release(conn: sqlite3.Connection) -> None:
            for item_id in ids:
                conn.execute(
                    "UPDATE items SET attempts = 0, retryable = 1, error = NULL "
                    "WHERE item_id = ? AND done = 0",
                    (item_id,),
                )
                body = dumps({"id": item_id, "ts": ts, "status": "retry"})
                conn.execute(
                    "INSERT INTO events (kind, item_id, ts, record) VALUES ('retry', ?, ?, ?)",
                    (item_id, ts, body),
                )

        if ids:
            self._run(release, "releasing failures")

    def write_run(self, record: dict[str, Any]) -> None:
        """Keep a run record."""
        body = dumps(record, "record")
        # Per-call usage records ({"call": ...}) are kept apart from the runs opening loads.
        kind = "call" if "call" in record else "run"
        self._run(
            lambda c: c.execute("INSERT INTO events (kind, record) VALUES (?, ?)", (kind, body)),
            "recording a run",
        )

    # -- reading -----------------------------------------------------------------

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Yield every record of the job, oldest first (completions with their result)."""
        if not os.path.exists(self.path):
            return
        rows = self._run(
            lambda c: _in_order(
                c,
                """SELECT e.seq, e.kind, e.record, c.record, c.result
                   FROM events e LEFT JOIN completions c
                     ON e.kind = 'done' AND c.item_id = e.item_id {version_1}
                   ORDER BY e.seq""",
                "'done', NULL, record, result",
            ),
            "reading records",
            write=False,
        )
        for kind, record, done_record, result in rows:
            if kind == "done":
                if done_record is None:
                    continue
                body = self._record(done_record, "a completion record")
                if body is None:
                    continue
                if result is not None:
                    value = self._decoded(result, f"the result of item {body.get('id')!r:.80}")
                    if value is _DAMAGED:
                        continue
                    body["result"] = value
                yield body
            elif record is not None:
                body = self._record(record, f"a {kind!r:.20} record")
                if body is not None:
                    yield body

    def iter_results(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(item_id, result)`` for each item done, in the order they were done."""
        if not os.path.exists(self.path):
            return
        rows = self._run(
            lambda c: _in_order(
                c,
                """SELECT e.seq, c.item_id, c.result FROM completions c
                   JOIN events e ON e.kind = 'done' AND e.item_id = c.item_id {version_1}
                   ORDER BY e.seq""",
                "item_id, result",
            ),
            "reading results",
            write=False,
        )
        for item_id, result in rows:
            if not isinstance(item_id, str):
                raise StoreError(
                    f"{self.path}: the store is damaged: an item ID is a "
                    f"{_sql_type(item_id)} ({item_id!r:.60}), not text; a store keeps "
                    "every item ID as text"
                )
            value = None if result is None else self._decoded(result, f"the result of {item_id!r}")
            if value is not _DAMAGED:
                yield item_id, value

    def describe(self, max_attempts: int | None = None) -> StoreDescription:
        """Describe the job read-only (a file that does not exist is not created).

        Raises:
            StoreError: The file is not an agent-resume SQLite store or cannot be read.
            UnsupportedFormatError: The store was written by a newer version.
        """
        capabilities = frozenset({"results", "shared", "conversations"})
        empty = StoreDescription(
            location=self.path,
            job_id=None,
            created=None,
            format_version=None,
            done=0,
            failed=0,
            quarantined=0,
            max_attempts=3 if max_attempts is None else max_attempts,
            capabilities=capabilities,
        )
        if not os.path.exists(self.path) and self._conn is None:
            return empty

        def read(conn: sqlite3.Connection) -> StoreDescription:
            if (
                conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
                ).fetchone()
                is None
            ):
                return empty
            version = self._version(conn)
            if version is not None and version > _VERSION:
                raise UnsupportedFormatError(self.path, version, _VERSION)
            limit = max_attempts
            if limit is None:
                limit = default_max_attempts(self._run_records(conn))
            (done,) = conn.execute(
                "SELECT count(*) FROM completions"
                if "record" not in _columns(conn, "items")
                else "SELECT (SELECT count(*) FROM completions) + "
                "(SELECT count(*) FROM items WHERE record IS NOT NULL)"
            ).fetchone()
            failed, quarantined = conn.execute(
                "SELECT count(*), coalesce(sum(retryable = 0 OR attempts >= ?), 0) "
                "FROM items WHERE attempts > 0 AND done = 0",
                (limit,),
            ).fetchone()
            return StoreDescription(
                location=self.path,
                job_id=_meta(conn, "job_id"),
                created=_created(conn),
                format_version=version,
                done=int(done),
                failed=int(failed),
                quarantined=int(quarantined),
                max_attempts=limit,
                capabilities=capabilities,
            )

        return self._run(read, "describing the job", write=False)

    # -- damaged values ------------------------------------------------------------

    def _version(self, conn: sqlite3.Connection) -> int | None:
        """The store's format version, or ``None`` for a new file.

        Raises:
            StoreError: It is not a number (the store is damaged).
        """
        version = _meta(conn, "version")
        if version is None:
            return None
        if not _is_number(version):
            raise StoreError(
                f"{self.path}: the store is damaged: its format version (meta.version) is "
                f"{version!r:.40}, not a number"
            )
        return int(version)

    def _run_records(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        """The run records (and the job's state records), oldest first; damaged ones skipped."""
        records = []
        for seq, text in conn.execute(
            "SELECT seq, record FROM events WHERE kind = 'run' ORDER BY seq"
        ):
            record = self._record(text, f"a 'run' record (events.seq {seq})")
            if record is not None:
                records.append(record)
        return records

    def _record(self, text: object, what: str) -> dict[str, Any] | None:
        """A record's JSON as an object, or ``None`` (with a warning) when it is damaged."""
        value = self._decoded(text, what)
        if value is _DAMAGED:
            return None
        if not isinstance(value, dict):
            self._skipped(what, f"a JSON {type(value).__name__}, not an object")
            return None
        return value

    def _decoded(self, text: object, what: str) -> Any:
        """A stored JSON value, or :data:`_DAMAGED` (with a warning) when it is not JSON.

        As a corrupt line of a JSONL checkpoint is: the record is skipped, with
        a :class:`~agent_resume.CheckpointWarning` naming the file and the
        record, and the rest of the job is read.
        """
        if not isinstance(text, (str, bytes)):
            self._skipped(what, f"a SQL {_sql_type(text)}, not JSON text")
            return _DAMAGED
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, or bytes not UTF-8
            self._skipped(what, f"not JSON: {exc}")
            return _DAMAGED

    def _skipped(self, what: str, reason: str) -> None:
        warnings.warn(
            CheckpointWarning(f"{self.path}: skipped {what}, which is damaged ({reason:.120})"),
            stacklevel=4,
        )

    # -- conversations -------------------------------------------------------------

    def load_conversation(self, item_id: str) -> list[str] | None:
        """The item's saved messages, one ``encode_line`` text each, in order; or ``None``."""
        rows = self._run(
            lambda c: c.execute(
                "SELECT message FROM conversations WHERE item_id = ? ORDER BY seq", (item_id,)
            ).fetchall(),
            "reading a conversation",
            write=False,
        )
        return [str(row[0]) for row in rows] or None

    def save_conversation(self, item_id: str, lines: Sequence[str], *, start: int = 0) -> None:
        """Keep the first ``start`` saved messages and store ``lines`` after them, in one transaction.

        Only the rows from ``start`` on are written: appending costs the new
        messages, not the conversation.
        """
        check_start(start)
        rows = [(item_id, start + i, line) for i, line in enumerate(lines)]

        def write(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM conversations WHERE item_id = ? AND seq >= ?", (item_id, start))
            c.executemany(
                "INSERT INTO conversations (item_id, seq, message) VALUES (?, ?, ?)", rows
            )

        self._run(write, "saving a conversation")

    def delete_conversation(self, item_id: str) -> None:
        """Forget the item's saved conversation."""
        self._run(
            lambda c: c.execute("DELETE FROM conversations WHERE item_id = ?", (item_id,)),
            "deleting a conversation",
        )

    # -- closing -----------------------------------------------------------------

    def flush(self) -> None:
        """Commit the queued completions (``durability="group"``); otherwise nothing to do.

        Raises:
            StoreError: A batch of completions could not be committed.
        """
        group = self._group
        if group is not None:
            group.drain()

    def close(self) -> None:
        """Commit queued completions, stop the heartbeat, give back leases and close the file.

        Raises:
            StoreError: Queued completions could not be committed (the rest
                of the closing is done all the same).
        """
        group, self._group = self._group, None
        error: StoreError | None = None
        if group is not None:
            try:
                group.drain()
            except StoreError as exc:
                error = exc
            finally:
                group.stop()
        try:
            self._close()
        finally:
            if error is not None:
                raise error

    def _close(self) -> None:
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()
        with self._lock:
            if self._conn is None:
                return
            try:
                self._run(
                    lambda c: c.execute(
                        "UPDATE items INDEXED BY items_todo SET leased_by = NULL, "
                        "leased_until = NULL WHERE done = 0 AND leased_by = ?",
                        (self.worker_id,),
                    ),
                    "releasing leases",
                    drain=False,
                )
            finally:
                self._held.clear()
                self._conn.close()
                self._conn = None


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _has_log(path: str) -> bool:
    """Whether a write-ahead log with content lies beside the database."""
    try:
        return os.path.getsize(path + "-wal") > 0
    except OSError:
        return False


def _is_number(text: str) -> bool:
    """Whether ``text`` is a whole number in ASCII digits (``int()`` reads any script's)."""
    return text.isascii() and text.isdigit()


def _created(conn: sqlite3.Connection) -> int | None:
    """When the job was created, POSIX seconds; ``None`` when unknown or damaged (as in JSONL)."""
    created = _meta(conn, "created")
    return int(created) if created and _is_number(created) else None


def _sql_type(value: object) -> str:
    """The SQL storage class of a value read from SQLite, for a message."""
    names = {bytes: "BLOB", int: "INTEGER", float: "REAL", str: "TEXT", type(None): "NULL"}
    return names.get(type(value), type(value).__name__)


def _hex_list(item_ids: Sequence[str]) -> str:
    """The IDs as a JSON list of SQLite ``hex()`` values.

    ``json_each`` cuts a string at a NUL character; hex digits have none, so
    an ID such as ``"a\\0b"`` is excluded as itself, not as ``"a"``.
    """
    return json.dumps([i.encode("utf-8").hex().upper() for i in item_ids])


def _take_back_from_the_dead(conn: sqlite3.Connection) -> bool:
    """End the leases of workers whose process is provably dead (this host); whether any were."""
    dead = [
        holder
        for (holder,) in conn.execute(
            "SELECT DISTINCT leased_by FROM items INDEXED BY items_todo "
            "WHERE done = 0 AND leased_by IS NOT NULL"
        )
        if holder_is_dead(str(holder))
    ]
    for holder in dead:
        cur = conn.execute(
            "UPDATE items INDEXED BY items_todo SET leased_by = NULL, leased_until = NULL "
            "WHERE done = 0 AND leased_by = ?",
            (holder,),
        )
        logger.info(
            "agent-resume: took back %d item(s) leased by %s, a process that is gone",
            cur.rowcount,
            holder,
        )
    return bool(dead)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The names of the table's columns (none for a table that does not exist)."""
    return {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring a file of an older schema to this version, in the opening transaction."""
    for table, column, kind in _UPGRADE:
        if column not in _columns(conn, table):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for statement in _DROPPED:
        conn.execute(statement)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(_VERSION),))


def _in_order(conn: sqlite3.Connection, with_events: str, placed: str) -> list[tuple[Any, ...]]:
    """Rows of a record per event and per completion, in the order they were written.

    ``with_events`` selects the events (and the version 1 completions, which
    have a ``'done'`` event), ordered by ``seq``, that first; its join on
    ``completions`` ends with ``{version_1}``, which this fills in so that it
    reads the version 1 completions only (through their key, or the index
    ``completions_v1``). ``placed`` names the columns to read of each
    completion placed by ``after_seq``: those of version 2 (rows of
    ``completions``) and of version 3 (rows of ``items`` with a record). A
    completion comes after the event whose ``seq`` is its ``after_seq`` and
    before the next one; those after the same event in ``done_at`` order
    (those written before version 3 have none: first, in ``rowid`` order).
    A file of version 1 that no store has opened since has no
    ``after_seq``: it has only the events.
    """
    if "after_seq" not in _columns(conn, "completions"):
        return [row[1:] for row in _fetch_if_exists(conn, with_events.format(version_1=""))]
    events = _fetch_if_exists(conn, with_events.format(version_1="AND c.after_seq IS NULL"))
    upgraded = "record" in _columns(conn, "items")
    sources = [
        f"SELECT after_seq, {'coalesce(done_at, 0)' if upgraded else '0'}, 0, rowid, {placed} "
        "FROM completions WHERE after_seq IS NOT NULL"
    ]
    if upgraded:
        sources.append(
            f"SELECT after_seq, done_at, 1, rowid, {placed} FROM items WHERE record IS NOT NULL"
        )
    done = sorted(conn.execute(" UNION ALL ".join(sources)).fetchall(), key=lambda r: r[:4])
    rows: list[tuple[Any, ...]] = []
    k = 0
    for event in events:
        while k < len(done) and done[k][0] < event[0]:
            rows.append(done[k][4:])
            k += 1
        rows.append(event[1:])
    rows.extend(row[4:] for row in done[k:])
    return rows


def _fetch_if_exists(conn: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
