"""The PostgreSQL store: many workers on many machines share one job.

One job lives in one schema (``agent_resume`` unless told otherwise). Every
worker gives the same items; the first to enqueue a batch of them adds it
(with its digest), the others find the digest and skip it; claims take batches
with ``FOR UPDATE SKIP LOCKED`` under a lease judged by the database clock,
without waiting for the disk; a heartbeat thread
renews the leases this worker holds; a completion is one row in a table keyed
by the item, so the first writer wins. Every statement runs in its own
transaction and is retried on a new connection when the connection is lost;
writes carry a token so that a retry after an unknown commit never doubles
a record.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar, get_args
from urllib.parse import unquote

from agent_resume._errors import (
    ArgumentValueError,
    JobMismatchError,
    MissingExtraError,
    StoreClosedError,
    StoreError,
    UnsupportedFormatError,
)
from agent_resume._records import FailureInfo, JobState, dumps, failure_record
from agent_resume._render import masked_url, url_passwords
from agent_resume.stores._pg_link import PgLink
from agent_resume.stores._postgres_sql import (
    CLAIM,
    CLAIM_PLAN,
    COMPLETE,
    COMPLETE_MANY,
    CONVERSATIONS,
    ENQUEUE,
    ENQUEUED,
    FAIL,
    MIGRATE_1,
    RECORDS,
    RECORDS_1,
    RELEASE,
    RESULTS,
    RESULTS_1,
    SCHEMA_VERSION,
    TABLES,
)
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
    logger,
    new_worker_id,
    seconds,
)

try:
    import psycopg
except ImportError:  # pragma: no cover - exercised without the extra
    psycopg = None  # type: ignore[assignment]

if TYPE_CHECKING:
    Connection = psycopg.Connection[tuple[Any, ...]]

__all__ = ["PostgresStore"]

T = TypeVar("T")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CHUNK: Final = 5000
# A NUL character's escape in JSON text: `\u0000` after an even run of backslashes
# (an odd run would make it an escaped backslash followed by "u0000").
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


class PostgresStore:
    """A job in a PostgreSQL database, shared by any number of workers.

    Run the same script on several machines against one database: each
    worker enqueues the items (idempotently), claims batches under a lease,
    and records completions once. A worker that dies stops renewing its
    leases; once they expire (by the database clock) other workers claim its
    items. See ``docs/postgres.md``.

    Args:
        dsn: A ``postgresql://`` URL or a libpq connection string. A URL may
            carry ``?schema=name`` to choose the schema; that parameter is
            taken out and the rest of the URL given to libpq as it is.
        schema: The schema that holds the job's tables (one job per schema);
            created when missing.
        lease_seconds: How long a claim lasts without a heartbeat.
        heartbeat_seconds: How often the leases of a live worker are renewed;
            a third of the lease by default.
        batch_size: Items per claim.
        connect_timeout: Seconds to wait for a connection.
        statement_timeout: Seconds one statement may take before it counts as
            failed: the server cancels it (``statement_timeout``), and a
            connection that stays silent that long (the server or the network
            gone quiet) is dropped and the statement retried on a new one; a
            statement that cannot be done within this time, reconnections
            included, raises :class:`~agent_resume.StoreError`. TCP
            keepalives and ``tcp_user_timeout`` are set from it too. Reading a
            whole job (``iter_records``, ``iter_results``) is not limited.
        durability: ``"flush"`` (default) or ``"fsync"``: each completion is
            committed before ``mark_done`` returns (what a commit guarantees
            is the server's ``synchronous_commit``). ``"group"``: a worker's
            completions are queued and committed together, in one statement,
            within about 10 ms (or at once by 256, or before any other write,
            ``flush`` and ``close``); a completion is recorded once its commit
            returned, and one lost with the process runs again (at least
            once). See ``docs/postgres.md``.

    Raises:
        MissingExtraError: psycopg is not installed (the ``postgres`` extra).
        ArgumentValueError: A setting is out of range, the schema name is
            not a plain lower-case identifier, or ``dsn`` is not a connection
            string libpq can read (its message hides a password).
    """

    keeps_results: bool = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        lease_seconds: float | timedelta = 30.0,
        heartbeat_seconds: float | timedelta | None = None,
        batch_size: int = 64,
        connect_timeout: float = 10.0,
        statement_timeout: float | timedelta = 30.0,
        durability: Durability = "flush",
    ) -> None:
        if psycopg is None:
            raise MissingExtraError("postgres", "PostgresStore")
        if durability not in get_args(Durability):
            raise ArgumentValueError(
                "durability",
                durability,
                f"`durability` must be 'flush', 'group' or 'fsync' (got {durability!r})",
            )
        self.durability: Durability = durability
        timeout = seconds("statement_timeout", statement_timeout)
        if not 0 < timeout < math.inf:
            raise ArgumentValueError(
                "statement_timeout",
                statement_timeout,
                f"`statement_timeout` must be a finite number of seconds above 0 "
                f"(got {statement_timeout!r})",
            )
        wait = seconds("connect_timeout", connect_timeout)
        if not 0 < wait < math.inf:
            raise ArgumentValueError(
                "connect_timeout",
                connect_timeout,
                f"`connect_timeout` must be a finite number of seconds above 0 "
                f"(got {connect_timeout!r})",
            )
        dsn, url_schema = _split_schema(dsn)
        _check_dsn(dsn)
        schema = schema if schema is not None else url_schema or "agent_resume"
        if not _IDENT.match(schema):
            raise ArgumentValueError(
                "schema",
                schema,
                f"`schema` must be a lower-case SQL identifier such as 'agent_resume' (got {schema!r})",
            )
        settings = LeaseSettings(lease_seconds, heartbeat_seconds, batch_size)
        self.dsn = dsn
        self.schema = schema
        self.lease_seconds = settings.lease_seconds
        self.heartbeat_seconds = settings.heartbeat_seconds
        self.batch_size = settings.batch_size
        self.poll_seconds = settings.poll_seconds
        self.connect_timeout = wait
        self.statement_timeout = timeout
        self.worker_id = new_worker_id()
        self.late_completions = 0
        self.job_id: str | None = None
        self._link = PgLink(self._connect, repr(self), timeout, self._set_up)
        self._beat_link = PgLink(self._connect, repr(self) + " heartbeat", timeout, self._set_up)
        # Claims of a group worker run on their own connection, beside the commits.
        self._claim_link = PgLink(self._connect, repr(self) + " claims", timeout, self._set_up)
        # Completion tokens: unique to this store object, without a system call each
        # (uuid4 reads the system's random source and lets other threads run).
        self._token_prefix = secrets.token_hex(8) + "-"
        self._tokens = itertools.count()
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        self._heartbeat: Heartbeat | None = None
        self._group: GroupCommit[tuple[str, int, str, str, str | None]] | None = None
        self._ahead: Future[list[str]] | None = None  # the next batch, claimed ahead (group)
        self._open = False

    def __repr__(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        where = f"{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"
        return (
            f"PostgresStore({where!r}, schema={self.schema!r}, lease_seconds={self.lease_seconds})"
        )

    # -- connections -----------------------------------------------------------

    def _connect(self) -> Connection:
        # TCP settings the DSN gives win. The statement timeout is a SET on the
        # new connection, not a startup option, which poolers such as
        # PgBouncer refuse.
        given = psycopg.conninfo.conninfo_to_dict(self.dsn)
        timeout_ms = self._timeout_ms()
        idle = max(1, min(60, round(self.statement_timeout / 3)))
        options: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": idle,
            "keepalives_interval": max(1, idle // 3),
            "keepalives_count": 3,
            "tcp_user_timeout": timeout_ms,
        }
        options = {k: v for k, v in options.items() if k not in given}
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(1, math.ceil(self.connect_timeout)),
            application_name=f"agent-resume {self.worker_id}"[:63],
            **options,
        )

    def _set_up(self, conn: Connection) -> None:
        """Session settings of a new connection (run by the link, under its watchdog)."""
        conn.execute(f"SET statement_timeout = {self._timeout_ms()}")

    def _run(self, fn: Callable[[Connection], T], what: str, *, watch: bool = True) -> T:
        return self._link.run(fn, what, watch=watch)

    @property
    def reconnects(self) -> int:
        """Statements retried on a new connection after a lost one."""
        return self._link.reconnects

    def _read(self, fn: Callable[[Connection], T], what: str, *, long: bool = False) -> T:
        """Run a read; a store that is not open connects for it alone.

        A ``long`` read (a whole job) runs without the statement timeout.
        """
        call = _unlimited(fn) if long else fn
        if self._open:
            self._drain()
            return self._run(call, what, watch=not long)
        try:
            return self._run(call, what, watch=not long)
        finally:
            self._disconnect()

    def _disconnect(self) -> None:
        self._link.close()
        self._beat_link.close()
        self._claim_link.close()

    def _timeout_ms(self) -> int:
        return max(1, round(self.statement_timeout * 1000))

    def _sql(self, text: str) -> str:
        return text.replace("{s}", self.schema)

    def _writable(self) -> None:
        if not self._open:
            raise StoreClosedError(f"{self!r} is closed")
        self._drain()

    def _drain(self) -> None:
        """Commit the queued completions (``durability="group"``) before anything else."""
        group = self._group
        if group is not None:
            group.drain()

    # -- opening ---------------------------------------------------------------

    def open(self, job_id: str) -> JobState:
        """Create the schema if needed, take or check the job, and load its state."""
        if self._open:
            raise StoreError(f"{self!r} is already open in this store object")
        try:
            state = self._run(
                _unlimited(lambda c: self._open_job(c, job_id)), "opening the job", watch=False
            )
        except BaseException:
            self._disconnect()
            raise
        self.job_id = job_id
        self._open = True
        self._heartbeat = Heartbeat(
            self._beat, self.heartbeat_seconds, f"agent-resume-heartbeat {self.worker_id}"
        )
        if self.durability == "group":
            self._group = GroupCommit(
                self._commit_group, self._lost_group, f"agent-resume-group {self.worker_id}"
            )
        return state

    def _open_job(self, conn: Connection, job_id: str) -> JobState:
        s = self.schema
        with conn.transaction():
            conn.execute(f"SET LOCAL statement_timeout = {self._timeout_ms()}")
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"agent_resume schema {s}",)
            )
            conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
            conn.execute(
                self._sql("CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text)")
            )
            version = self._meta(conn, "version")
            if version is not None and int(version) > SCHEMA_VERSION:
                raise UnsupportedFormatError(repr(self), int(version), SCHEMA_VERSION)
            for ddl in (*TABLES, CONVERSATIONS):
                conn.execute(self._sql(ddl))
            if version is not None and int(version) < SCHEMA_VERSION:
                for ddl in MIGRATE_1:
                    conn.execute(self._sql(ddl))
                conn.execute(
                    self._sql("UPDATE {s}.meta SET value = %s WHERE key = 'version'"),
                    (str(SCHEMA_VERSION),),
                )
            insert = self._sql(
                "INSERT INTO {s}.meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING"
            )
            conn.execute(insert, ("version", str(SCHEMA_VERSION)))
            conn.execute(insert, ("job_id", job_id))
            conn.execute(insert, ("created", str(int(time.time()))))
            found = self._meta(conn, "job_id") or job_id
            if found != job_id:
                raise JobMismatchError(job_id, found, f"{self!r}")
            created = self._meta(conn, "created")
        conn.execute("SET LOCAL statement_timeout = 0")
        state = JobState(job_id=job_id, created=int(created) if created else None)
        for item_id, fp in conn.execute(
            self._sql("SELECT item_id, record->>'fp' FROM {s}.completions")
        ):
            state.done.add(item_id)
            state.done_order.append(item_id)
            if fp is not None:
                state.fingerprints[item_id] = fp
        for item_id, attempts, error, retryable in conn.execute(
            self._sql(
                "SELECT item_id, attempts, error, retryable FROM {s}.items "
                "WHERE attempts > 0 AND NOT done"
            )
        ):
            state.failures[item_id] = FailureInfo(attempts, error or "", retryable)
        for (record,) in conn.execute(
            self._sql("SELECT record FROM {s}.events WHERE kind = 'run' ORDER BY seq")
        ):
            state.apply(record)  # run records, and the job's state records
        return state

    def _meta(self, conn: Connection, key: str) -> str | None:
        row = conn.execute(
            self._sql("SELECT value FROM {s}.meta WHERE key = %s"), (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- claiming --------------------------------------------------------------

    def enqueue(self, item_ids: Sequence[str]) -> None:
        """Add the items in batches; items already known are left as they are.

        Each batch of 5,000 IDs is kept with its digest: a batch whose digest
        is there (another worker enqueued the same IDs) costs one lookup, not
        an insert per ID, and a worker enqueueing it at the same moment as
        another waits for that one's commit and adds nothing.

        Raises:
            ArgumentValueError: An ID holds a NUL character, which PostgreSQL
                cannot keep (nothing is enqueued).
        """
        self._writable()
        _check_ids(item_ids)
        known = self._sql(ENQUEUED)
        add = self._sql(ENQUEUE)
        for start in range(0, len(item_ids), _CHUNK):
            chunk = list(item_ids[start : start + _CHUNK])
            params = {"d": _digest(chunk), "ids": chunk}

            def insert(conn: Connection, params: dict[str, Any] = params) -> None:
                if conn.execute(known, params).fetchone() is None:
                    conn.execute(add, params)

            self._run(insert, "enqueueing items")

    def claim(self, limit: int, max_attempts: int, exclude: Sequence[str] = ()) -> list[str]:
        """Lease up to ``limit`` claimable items, skipping rows other workers are claiming.

        With ``durability="group"`` the claim does not wait for the queued
        completions: it runs on a connection of its own while they commit.
        Their items stay leased by this worker (the heartbeat renews them
        until their commit returns), so no claim can take them meanwhile.
        """
        if not self._open:
            raise StoreClosedError(f"{self!r} is closed")
        params = {
            "w": self.worker_id,
            "lease": self.lease_seconds,
            "max": max_attempts,
            "exclude": list(exclude),
            "limit": limit,
        }
        if self._group is None:
            rows = self._run(lambda c: self._claim_rows(c, params), "claiming items")
            ids = [item_id for item_id, _ in sorted(rows, key=lambda r: r[1])]
            with self._held_lock:
                self._held.update(ids)
            return ids
        self._group.check()
        ahead, self._ahead = self._ahead, None
        ids = ahead.result() if ahead is not None else self._claim_now(params)
        skip = set(exclude)
        stale = [i for i in ids if i in skip]
        if stale:  # tried since the batch was claimed ahead: not for this pass
            self.release(stale)
            ids = [i for i in ids if i not in skip]
        if ids:  # after an empty claim nothing is claimed ahead (nothing to hoard)
            # Claim the next batch now, while this one runs.
            following = {**params, "exclude": [*exclude, *ids]}
            self._ahead = future = Future[list[str]]()
            threading.Thread(
                target=self._claim_ahead,
                args=(future, following),
                name=f"agent-resume-claim {self.worker_id}",
                daemon=True,
            ).start()
        if not ids and ahead is not None:
            return self.claim(limit, max_attempts, exclude)
        return ids

    def _claim_rows(self, conn: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The claim, with its settings (:data:`CLAIM_PLAN`), in one transaction."""
        return _with_claim_settings(conn, self._sql(CLAIM), params)

    def _claim_now(self, params: dict[str, Any]) -> list[str]:
        """Lease a batch on the claims' connection; the heartbeat renews it from now on."""
        rows = self._claim_link.run(lambda c: self._claim_rows(c, params), "claiming items")
        ids = [item_id for item_id, _ in sorted(rows, key=lambda r: r[1])]
        with self._held_lock:
            self._held.update(ids)
        return ids

    def _claim_ahead(self, future: Future[list[str]], params: dict[str, Any]) -> None:
        try:
            future.set_result(self._claim_now(params))
        except BaseException as exc:
            future.set_exception(exc)

    def _stop_claiming_ahead(self) -> None:
        """Wait for a claim made ahead (its items are released with the others on close)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            try:
                ahead.result()
            except StoreError as exc:
                logger.warning("%s", exc)

    def pending(self, max_attempts: int, exclude: Sequence[str] = ()) -> int:
        """Count the items not done, not quarantined and not excluded."""
        self._drain()
        sql = self._sql(
            "SELECT count(*) FROM {s}.items WHERE NOT done AND retryable AND attempts < %s "
            "AND NOT (item_id = ANY(%b::text[]))"
        )
        row = self._read(
            lambda c: c.execute(sql, (max_attempts, list(exclude))).fetchone(), "counting items"
        )
        return int(row[0]) if row else 0

    def release(self, item_ids: Sequence[str]) -> None:
        """Give back this worker's leases on these items."""
        if not item_ids:
            return
        self._drain()
        sql = self._sql(
            "UPDATE {s}.items SET leased_by = NULL, leased_until = NULL "
            "WHERE leased_by = %s AND item_id = ANY(%b::text[])"
        )
        ids = list(item_ids)
        self._run(lambda c: c.execute(sql, (self.worker_id, ids)), "releasing leases")
        with self._held_lock:
            self._held.difference_update(ids)

    def _commit_group(self, batch: list[tuple[str, int, str, str, str | None]]) -> None:
        """Commit queued completions in one statement; count the late ones."""
        unique: dict[str, tuple[str, int, str, str, str | None]] = {}
        for entry in batch:
            unique.setdefault(entry[0], entry)
        rows = list(unique.values())
        params = {
            "ids": [r[0] for r in rows],
            "ts": [r[1] for r in rows],
            "toks": [r[2] for r in rows],
            "recs": [r[3] for r in rows],
            "res": [r[4] for r in rows],
            "w": self.worker_id,
            "again": False,
        }
        sql = self._sql(COMPLETE_MANY)

        tries: list[int] = []

        def commit(conn: Connection) -> set[str]:
            # A retry looks for its tokens: the try before may have committed.
            params["again"] = bool(tries)
            tries.append(1)
            return {row[0] for row in conn.execute(sql, params).fetchall()}

        try:
            recorded = self._run(commit, "recording completions")
        finally:
            self._lost_group(batch)
        with self._held_lock:
            self.late_completions += len(batch) - len(recorded)

    def _lost_group(self, batch: list[tuple[str, int, str, str, str | None]]) -> None:
        """Renew the leases of these items no more (recorded, late, or lost)."""
        with self._held_lock:
            self._held.difference_update(entry[0] for entry in batch)

    def _beat(self) -> None:
        with self._held_lock:
            held = list(self._held)
        if not held:
            return
        sql = self._sql(
            "UPDATE {s}.items SET leased_until = now() + %s * interval '1 second' "
            "WHERE leased_by = %s AND NOT done AND item_id = ANY(%b::text[])"
        )
        self._beat_link.run_once(
            lambda conn: conn.execute(sql, (self.lease_seconds, self.worker_id, held))
        )

    # -- writing ---------------------------------------------------------------

    def write_done(
        self,
        item_id: str,
        ts: int,
        extra: dict[str, Any] | None,
        result_json: str | None,
        *,
        token: str | None = None,
    ) -> bool:
        """Record the completion unless another worker recorded one first.

        Args:
            item_id: The normalised item ID.
            ts: Unix seconds.
            extra: Optional fields, JSON-able.
            result_json: The result as JSON, or ``None``.
            token: A unique token for this completion; a call repeated with
                the same token (a retry whose first commit went through)
                returns ``True`` again and records nothing more. A fresh
                token by default.

        Returns:
            ``False`` for a late completion (counted in :attr:`late_completions`).
        """
        _check_ids((item_id,))
        token = token or f"{self._token_prefix}{next(self._tokens)}"
        record = _jsonb(dumps(completion_record(item_id, ts, extra), "extra"), item_id)
        if result_json is not None:
            result_json = _jsonb(result_json, item_id)
        group = self._group
        if group is not None and self._open:
            group.add((item_id, ts, token, record, result_json))
            return True
        self._writable()
        sql = self._sql(COMPLETE)
        params = {
            "id": item_id,
            "ts": ts,
            "w": self.worker_id,
            "tok": token,
            "rec": record,
            "res": result_json,
        }
        try:
            row = self._run(lambda c: c.execute(sql, params).fetchone(), "recording a completion")
        finally:
            # Recorded, late or failed: the heartbeat renews this lease no more,
            # so an item whose completion could not be written goes back to the
            # queue once the lease runs out.
            with self._held_lock:
                self._held.discard(item_id)
        # A retry after an unknown commit finds its own token: the first try won.
        recorded = row is not None and (row[0] == 1 or row[1] == token)
        with self._held_lock:
            if not recorded:
                self.late_completions += 1
        return recorded

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
        """Count a failed attempt across all workers and give the lease back.

        The attempt number stored is the database's count, not ``attempt``,
        since other workers may have failed the item too.
        """
        self._writable()
        _check_ids((item_id,))
        token = uuid.uuid4().hex
        error = error.replace("\0", "\ufffd")  # the `error` column is text, which holds no NUL
        record = _jsonb(
            dumps(failure_record(item_id, ts, error, retryable, usage, extra=extra), "usage"),
            item_id,
        )
        sql = self._sql(FAIL)
        params = {
            "tok": token,
            "id": item_id,
            "retry": retryable,
            "err": error,
            "w": self.worker_id,
            "ts": ts,
            "rec": record,
        }
        try:
            self._run(lambda c: c.execute(sql, params), "recording a failure")
        finally:
            with self._held_lock:
                self._held.discard(item_id)

    def write_retry(self, item_ids: Sequence[str], ts: int) -> None:
        """Forget the failures of these items, so that any worker runs them again."""
        self._writable()
        if not item_ids:
            return
        _check_ids(item_ids)
        token = uuid.uuid4().hex
        ids = list(item_ids)
        sql = self._sql(RELEASE)
        params = {"ids": ids, "tok": token, "ts": ts}
        self._run(lambda c: c.execute(sql, params), "releasing failures")

    def write_run(self, record: dict[str, Any]) -> None:
        """Keep a run record."""
        self._writable()
        token = uuid.uuid4().hex
        body = _jsonb(dumps(record, "record"), None)
        ts = record.get("ts")
        sql = self._sql(
            "INSERT INTO {s}.events (kind, ts, token, record) VALUES (%s, %s, %s, %s::jsonb) "
            "ON CONFLICT (token) DO NOTHING"
        )
        stamp = ts if isinstance(ts, int) and not isinstance(ts, bool) else None
        # Per-call usage records ({"call": ...}) are kept apart from the runs opening loads.
        kind = "call" if "call" in record else "run"
        self._run(lambda c: c.execute(sql, (kind, stamp, token, body)), "recording a run")

    # -- reading ---------------------------------------------------------------

    def _by_version(self, conn: Connection, current: str, version_1: str) -> list[tuple[Any, ...]]:
        """Read with the query for the schema's version (one not yet opened may be version 1).

        The version and the rows are read from one snapshot, so that a worker
        migrating the schema meanwhile cannot pair version 1's query with
        version 2's rows.
        """
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        found = conn.execute("SELECT to_regclass(%s)", (f"{self.schema}.meta",)).fetchone()
        if found is None or found[0] is None:
            return []
        version = self._meta(conn, "version")
        sql = version_1 if version is not None and int(version) < SCHEMA_VERSION else current
        return _fetch_if_exists(conn, self._sql(sql))

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Yield every record of the job, oldest first (completions with their result)."""
        rows = self._read(
            lambda c: self._by_version(c, RECORDS, RECORDS_1), "reading records", long=True
        )
        for kind, record, result in rows:
            if not isinstance(record, dict):
                continue
            if kind == "done" and result is not None:
                record = {**record, "result": result}
            yield record

    def iter_results(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(item_id, result)`` for each item done, in the order they were done."""
        rows = self._read(
            lambda c: self._by_version(c, RESULTS, RESULTS_1), "reading results", long=True
        )
        yield from rows

    def describe(self, max_attempts: int | None = None) -> StoreDescription:
        """Describe the job read-only (a schema that does not exist is not created).

        Raises:
            StoreError: The database cannot be reached or read.
            UnsupportedFormatError: The schema was written by a newer version.
        """
        capabilities = frozenset({"results", "shared", "conversations"})
        sql = self._sql

        def read(conn: Connection) -> StoreDescription:
            found = conn.execute("SELECT to_regclass(%s)", (f"{self.schema}.meta",)).fetchone()
            if found is None or found[0] is None:
                meta: dict[str, str] = {}
            else:
                rows = conn.execute(sql("SELECT key, value FROM {s}.meta")).fetchall()
                meta = {str(k): str(v) for k, v in rows}
            version = meta.get("version")
            if version is not None and int(version) > SCHEMA_VERSION:
                raise UnsupportedFormatError(repr(self), int(version), SCHEMA_VERSION)
            limit = max_attempts
            if "job_id" not in meta:
                return StoreDescription(
                    location=repr(self),
                    job_id=None,
                    created=None,
                    format_version=None,
                    done=0,
                    failed=0,
                    quarantined=0,
                    max_attempts=3 if limit is None else limit,
                    capabilities=capabilities,
                )
            if limit is None:
                runs = conn.execute(
                    sql("SELECT record FROM {s}.events WHERE kind = 'run' ORDER BY seq")
                ).fetchall()
                limit = default_max_attempts([r for (r,) in runs if isinstance(r, dict)])
            (done,) = conn.execute(sql("SELECT count(*) FROM {s}.completions")).fetchone() or (0,)
            failed, quarantined = conn.execute(
                sql(
                    "SELECT count(*), count(*) FILTER (WHERE NOT retryable OR attempts >= %s) "
                    "FROM {s}.items WHERE attempts > 0 AND NOT done"
                ),
                (limit,),
            ).fetchone() or (0, 0)
            created = meta.get("created")
            return StoreDescription(
                location=repr(self),
                job_id=meta["job_id"],
                created=int(created) if created else None,
                format_version=None if version is None else int(version),
                done=int(done),
                failed=int(failed),
                quarantined=int(quarantined),
                max_attempts=limit,
                capabilities=capabilities,
            )

        return self._read(read, "describing the job", long=True)

    # -- conversations ---------------------------------------------------------

    def load_conversation(self, item_id: str) -> list[str] | None:
        """The item's saved messages, one ``encode_line`` text each, in order; or ``None``."""
        _check_ids((item_id,))
        sql = self._sql("SELECT message FROM {s}.conversations WHERE item_id = %s ORDER BY seq")
        rows = self._read(lambda c: c.execute(sql, (item_id,)).fetchall(), "reading a conversation")
        return [str(row[0]) for row in rows] or None

    def save_conversation(self, item_id: str, lines: Sequence[str], *, start: int = 0) -> None:
        """Keep the first ``start`` saved messages and store ``lines`` after them, in one transaction.

        Only the rows from ``start`` on are written; a retry after a lost
        connection writes the same rows again.
        """
        check_start(start)
        self._writable()
        _check_ids((item_id,))
        drop = self._sql("DELETE FROM {s}.conversations WHERE item_id = %s AND seq >= %s")
        add = self._sql("INSERT INTO {s}.conversations (item_id, seq, message) VALUES (%s, %s, %s)")
        rows = [(item_id, start + i, line) for i, line in enumerate(lines)]

        def write(c: Connection) -> None:
            with c.transaction():
                c.execute(drop, (item_id, start))
                if rows:
                    c.cursor().executemany(add, rows)

        self._run(write, "saving a conversation")

    def delete_conversation(self, item_id: str) -> None:
        """Forget the item's saved conversation."""
        self._writable()
        _check_ids((item_id,))
        sql = self._sql("DELETE FROM {s}.conversations WHERE item_id = %s")
        self._run(lambda c: c.execute(sql, (item_id,)), "deleting a conversation")

    # -- closing ---------------------------------------------------------------

    def flush(self) -> None:
        """Commit the queued completions (``durability="group"``); otherwise nothing to do.

        Raises:
            StoreError: A batch of completions could not be committed.
        """
        self._drain()

    def close(self) -> None:
        """Commit queued completions, stop the heartbeat, give back leases and disconnect.

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
        self._stop_claiming_ahead()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()
        was_open, self._open = self._open, False
        with self._held_lock:
            held, self._held = list(self._held), set()
        if was_open and held:
            # The leases it holds, by key: no index finds rows by their holder.
            sql = self._sql(
                "UPDATE {s}.items SET leased_by = NULL, leased_until = NULL "
                "WHERE leased_by = %s AND NOT done AND item_id = ANY(%b::text[])"
            )
            try:
                self._run(lambda c: c.execute(sql, (self.worker_id, held)), "releasing leases")
            except StoreError as exc:  # the leases expire on their own
                logger.warning("%s", exc)
        self._disconnect()
        if error is not None:
            raise error


def _unlimited(fn: Callable[[Connection], T]) -> Callable[[Connection], T]:
    """``fn`` in a transaction without the server's statement timeout (long reads)."""

    def call(conn: Connection) -> T:
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = 0")
            return fn(conn)

    return call


def _jsonb(text: str, item_id: str | None) -> str:
    """JSON text that ``jsonb`` takes: each NUL character (which it refuses) becomes U+FFFD.

    A result with a NUL (text extracted from a PDF, say) stopped the run with a
    ``StoreError`` after the item was paid for; it is kept with the NUL replaced,
    and a warning names the item.
    """
    if "\\u0000" not in text:
        return text
    kept, found = _NUL_ESCAPE.subn(lambda m: m.group(1) + "\ufffd", text)
    if found:
        logger.warning(
            "PostgreSQL's jsonb cannot hold a NUL character: %d kept as U+FFFD in %s",
            found,
            "a run record" if item_id is None else f"the record of item {item_id!r}",
        )
    return kept


def _check_ids(item_ids: Sequence[str]) -> None:
    """Refuse IDs that PostgreSQL's ``text`` cannot hold (a NUL character).

    Raises:
        ArgumentValueError: An ID holds a NUL character.
    """
    for item_id in item_ids:
        if "\0" in item_id:
            raise ArgumentValueError(
                "item_id",
                item_id,
                f"PostgresStore cannot keep an item ID with a NUL character (got {item_id!r}): "
                "PostgreSQL text holds none; use a key= that maps it to another ID",
            )


def _with_claim_settings(
    conn: Connection, sql: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Run ``sql`` in a transaction with the claim's settings, in one round trip.

    The settings are the transaction's own (``set_config(..., true)``), so
    that none stays on a connection a pooler may hand to another client; the
    pipeline sends the four statements at once (a claim made ahead runs in a
    thread that waits for the interpreter's lock at each round trip).
    """
    with conn.pipeline(), conn.transaction():
        conn.execute(CLAIM_PLAN)
        cursor = conn.execute(sql, params)
    return cursor.fetchall()


def _digest(chunk: list[str]) -> str:
    """The digest of a batch of IDs (which hold no NUL: it separates them)."""
    return hashlib.sha256("\0".join(chunk).encode("utf-8", "surrogatepass")).hexdigest()


def _fetch_if_exists(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(sql).fetchall()
    except psycopg.errors.UndefinedTable:
        return []


def _split_schema(dsn: str) -> tuple[str, str | None]:
    """Take a ``schema=`` parameter out of a URL's query, which libpq would refuse.

    Only that ``key=value`` segment goes; the rest of the URL is kept byte for
    byte, since libpq reads it its own way (``postgresql:///db`` has an empty
    host; ``+`` is not a space).

    Returns:
        The DSN for libpq, and the schema the URL names (percent-decoded) or
        ``None``.

    Raises:
        ArgumentValueError: The URL gives ``schema=`` empty or more than once.
    """
    if not dsn.startswith(("postgresql://", "postgres://")) or "?" not in dsn:
        return dsn, None
    head, _, query = dsn.partition("?")
    kept: list[str] = []
    schemas: list[str] = []
    for segment in query.split("&"):
        key, _, value = segment.partition("=")
        if unquote(key) == "schema":
            schemas.append(unquote(value))
        else:
            kept.append(segment)
    if not schemas:
        return dsn, None
    if len(schemas) > 1 or not schemas[0]:
        shown = masked_url(dsn)
        problem = "more than once" if len(schemas) > 1 else "empty"
        raise ArgumentValueError(
            "dsn",
            shown,
            f"`dsn` gives `schema=` {problem}: give one schema name such as "
            f"'agent_resume', or leave the parameter out for that default (got {shown!r})",
        )
    return head + ("?" + "&".join(kept) if kept else ""), schemas[0]


def _check_dsn(dsn: str) -> None:
    """Refuse a DSN that libpq cannot read, before any connection is tried.

    Raises:
        ArgumentValueError: libpq refuses ``dsn``; the message and the value
            carry it with its password masked.
    """
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        shown = masked_url(dsn)
        detail = str(exc).strip().replace(dsn, shown)
        for secret in filter(None, url_passwords(dsn)):  # libpq may quote what it could not read
            detail = detail.replace(secret, "***")
        given = "" if shown in detail else f" (got {shown!r})"
        raise ArgumentValueError(
            "dsn",
            shown,
            f"`dsn` is not a PostgreSQL URL or connection string libpq can read: {detail}{given}",
        ) from None
