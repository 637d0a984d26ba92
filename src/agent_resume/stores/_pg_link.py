"""A PostgreSQL connection that comes back: reconnect, and retry a statement, when the link is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from agent_resume._errors import StoreError
from agent_resume.stores._sql import logger

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection[tuple[Any, ...]]

__all__ = ["PgLink", "close_quietly"]

T = TypeVar("T")
_RETRIES: Final = 8


class PgLink:
    """One autocommit connection, made on first use and made again after it breaks.

    Every statement runs in its own transaction, so a statement whose
    connection was lost can run again on a new one; the callers make their
    writes idempotent (a token per write) for the case where the lost
    statement had committed.

    Args:
        connect: Makes a new connection.
        name: How errors and log lines name the store.
    """

    def __init__(self, connect: Callable[[], Connection], name: str) -> None:
        self._connect = connect
        self._name = name
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self.reconnects = 0
        """Statements retried on a new connection after the old one was lost."""

    def run(self, fn: Callable[[Connection], T], what: str) -> T:
        """Run ``fn`` on the connection, reconnecting and retrying while the link is lost.

        Raises:
            StoreError: ``fn`` failed for another reason than a lost
                connection, or the link stayed lost through every retry.
        """
        import psycopg

        delay = 0.05
        for attempt in range(_RETRIES + 1):
            with self._lock:
                conn = self._conn
                try:
                    if conn is None:
                        conn = self._conn = self._connect()
                    return fn(conn)
                except psycopg.Error as exc:
                    lost = isinstance(exc, psycopg.OperationalError) or (
                        conn is not None and (conn.broken or conn.closed)
                    )
                    if conn is not None and (conn.broken or conn.closed or lost):
                        self._conn = None
                        close_quietly(conn)
                    if not lost:
                        raise StoreError(f"{self._name}: {what} failed: {exc}") from exc
                    if attempt == _RETRIES:
                        raise StoreError(
                            f"{self._name}: {what} failed after {_RETRIES} reconnections: {exc}"
                        ) from exc
                    self.reconnects += 1
                    logger.warning("%s: %s: connection lost (%s); retrying", self._name, what, exc)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def run_once(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` once, on a new connection if the last one broke; a failure drops it.

        For the heartbeat, whose next tick is its retry.
        """
        import psycopg

        with self._lock:
            conn = self._conn
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self._conn = self._connect()
                return fn(conn)
            except psycopg.Error:
                if conn is not None:
                    close_quietly(conn)
                self._conn = None
                raise

    def close(self) -> None:
        """Close the connection, if any; the next statement connects again."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            close_quietly(conn)


def close_quietly(conn: Connection) -> None:
    """Close a connection that may be broken; it is gone either way."""
    try:
        conn.close()
    except Exception:
        logger.debug("closing a PostgreSQL connection failed", exc_info=True)
