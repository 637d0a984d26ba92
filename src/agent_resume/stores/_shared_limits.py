"""Rate-limit buckets kept in a shared store, so that every worker of a job shares one limit.

``RateLimit(..., shared=True)`` with a `SqliteStore` or a `PostgresStore`: the
limiter's buckets (see ``agent_resume._limits``) live in a small table of the
job's database, ``rate_buckets (name, tat)``, and each reservation is one short
transaction that reads the database's clock, takes the latest of the call's
buckets, and moves them all on. Every worker (thread, process, machine)
reserves through the same rows, so together they stay under one limit. The
table is created on first use and holds a handful of rows.

Each backend opens its own connection (never the store's), so a reservation
never waits behind the store's writes and the store's state is never touched.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from agent_resume._errors import ArgumentValueError
from agent_resume._limits import Buckets
from agent_resume.stores._postgres import PostgresStore
from agent_resume.stores._sqlite import SqliteStore

__all__ = ["shared_buckets"]

_PAUSE = "_pause"

_SQLITE_NOW = "SELECT (julianday('now') - 2440587.5) * 86400.0"


def _plan(
    rows: dict[str, float], now: float, demands: Sequence[tuple[str, float, float]]
) -> tuple[float, dict[str, float]]:
    """The start of a call and the buckets' new times, from their current times."""
    start = max(now, rows.get(_PAUSE, now))
    for name, _, _ in demands:
        start = max(start, rows.get(name, start))
    return start, {name: start + cost / rate for name, rate, cost in demands}


class SqliteBuckets:
    """Buckets in the SQLite file of a job, timed by SQLite's clock (this machine's).

    Args:
        path: The database file of the job's `SqliteStore`.
        busy_timeout: Seconds to wait for another worker's transaction.
    """

    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._timeout = busy_timeout
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS rate_buckets (name TEXT PRIMARY KEY, tat REAL NOT NULL)"
            )
            self._local.conn = conn
        return conn

    def _transaction(self, change: Any) -> float:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = float(conn.execute(_SQLITE_NOW).fetchone()[0])
            rows = dict(conn.execute("SELECT name, tat FROM rate_buckets").fetchall())
            updates, result = change(rows, now)
            conn.executemany(
                "INSERT INTO rate_buckets (name, tat) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET tat = excluded.tat",
                list(updates.items()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return float(result)

    def reserve(self, demands: Sequence[tuple[str, float, float]]) -> float:
        """Reserve every bucket at once; returns the seconds to wait."""

        def change(rows: dict[str, float], now: float) -> tuple[dict[str, float], float]:
            start, updates = _plan(rows, now, demands)
            return updates, start - now

        return self._transaction(change)

    def adjust(self, demands: Sequence[tuple[str, float, float]]) -> None:
        """Move each bucket's time by ``cost / rate``."""

        def change(rows: dict[str, float], now: float) -> tuple[dict[str, float], float]:
            return {n: rows[n] + c / r for n, r, c in demands if n in rows}, 0.0

        self._transaction(change)

    def pause(self, seconds: float) -> None:
        """Hold every worker's reservations until ``seconds`` from now."""

        def change(rows: dict[str, float], now: float) -> tuple[dict[str, float], float]:
            until = now + seconds
            updates = {name: max(at, until) for name, at in rows.items()}
            updates[_PAUSE] = max(rows.get(_PAUSE, until), until)
            return updates, 0.0

        self._transaction(change)


class PostgresBuckets:
    """Buckets in the job's PostgreSQL schema, timed by the server's clock.

    Args:
        dsn: The connection string of the job's `PostgresStore`.
        schema: Its schema.
        connect_timeout: Seconds to wait for a connection.
    """

    def __init__(self, dsn: str, schema: str, connect_timeout: float) -> None:
        self._dsn = dsn
        self._table = f"{schema}.rate_buckets"
        self._schema = schema
        self._timeout = connect_timeout
        self._local = threading.local()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            import psycopg

            conn = psycopg.connect(
                self._dsn, connect_timeout=max(1, int(self._timeout)), autocommit=True
            )
            with conn.transaction():
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._table} "
                    "(name text PRIMARY KEY, tat double precision NOT NULL)"
                )
            self._local.conn = conn
        return conn

    def _transaction(self, names: list[str], change: Any) -> float:
        conn = self._conn()
        with conn.transaction():
            if names:
                conn.execute(
                    f"INSERT INTO {self._table} (name, tat) SELECT n, 0 FROM unnest(%s::text[]) n "
                    "ON CONFLICT (name) DO NOTHING",
                    (names,),
                )
            rows = dict(
                conn.execute(
                    f"SELECT name, tat FROM {self._table} ORDER BY name FOR UPDATE"
                ).fetchall()
            )
            now = float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
            updates, result = change({k: v for k, v in rows.items() if v > 0}, now)
            for name, tat in updates.items():
                conn.execute(
                    f"INSERT INTO {self._table} (name, tat) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET tat = EXCLUDED.tat",
                    (name, tat),
                )
        return float(result)

    def reserve(self, demands: Sequence[tuple[str, float, float]]) -> float:
        """Reserve every bucket at once; returns the seconds to wait."""

        def change(rows: dict[str, float], now: float) -> tuple[dict[str, float], float]:
            start, updates = _plan(rows, now, demands)
            return updates, start - now

        return self._transaction([name for name, _, _ in demands], change)

    def adjust(self, demands: Sequence[tuple[str, float, float]]) -> None:
        """Move each bucket's time by ``cost / rate``."""

        def change(rows: dict[str, float], now: float) -> tuple[dict[str, float], float]:
            return {n: rows[n] + c / r for n, r, c in demands if n in rows}, 0.0

        self._transaction([], change)

    def pause(self, seconds: float) -> None:
        """Hold every worker's reservations until ``seconds`` from now."""

        def change(rows: dict[str, float], now: float) -> tuple[dict[str, float], float]:
            until = now + seconds
            updates = {name: max(at, until) for name, at in rows.items()}
            updates[_PAUSE] = max(rows.get(_PAUSE, until), until)
            return updates, 0.0

        self._transaction([_PAUSE], change)


def shared_buckets(store: object) -> Buckets:
    """The shared buckets of a job's store, for ``RateLimit(shared=True)``.

    Args:
        store: The job's store.

    Returns:
        Buckets in the store's database.

    Raises:
        ArgumentValueError: The store is neither a `SqliteStore` nor a `PostgresStore`.
    """
    if isinstance(store, SqliteStore):
        return SqliteBuckets(store.path, store.busy_timeout)
    if isinstance(store, PostgresStore):
        return PostgresBuckets(store.dsn, store.schema, store.connect_timeout)
    raise ArgumentValueError(
        "rate_limit",
        store,
        "`RateLimit(shared=True)` keeps its budget in the job's database: it needs a "
        f"SqliteStore or a PostgresStore (got {type(store).__name__})",
    )
