"""A PostgreSQL connection that comes back: reconnect, and retry a statement, when the link is lost.

A link that goes silent (the server or the network stops answering, with the
connection still open) is a lost link too: a watchdog thread shuts down the
socket of a statement that has run longer than its timeout, so that the
blocked call raises at once and the statement is retried on a new connection.

A connection the server or libpq refuses for a reason that retrying cannot
change (no such database, failed authentication, a bad connection option) is
not a lost link: it raises at once.
"""

from __future__ import annotations

import math
import os
import re
import socket
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
# What libpq says when a connection is refused for good. psycopg gives no SQLSTATE
# for a failed connection, so the server's (English) message text is matched:
# 3D000 no such database; class 28 (a role that does not exist or may not log in,
# failed authentication, no pg_hba.conf entry); 42704 and 22023 a bad setting in
# `options`, 42501 no CONNECT privilege; and libpq's own checks of the options.
# Anything else (refused, reset, timed out, "the database system is starting up",
# too many clients) is a lost link and retried.
_REFUSED: Final = re.compile(
    r'FATAL:  (database ".*" does not exist'
    r'|role ".*" does not exist'
    r'|role ".*" is not permitted to log in'
    r"|\w+ authentication failed for user"
    r"|no pg_hba\.conf entry for"
    r"|pg_hba\.conf rejects connection"
    r"|unrecognized configuration parameter"
    r"|invalid value for parameter"
    r"|permission denied for database)"
    r"|fe_sendauth: no password supplied"
    r'|invalid port number: "'
    r'|invalid \w+ value: "'
    r"|invalid integer value \"",
)


class PgLink:
    """One autocommit connection, made on first use and made again after it breaks.

    Every statement runs in its own transaction, so a statement whose
    connection was lost can run again on a new one; the callers make their
    writes idempotent (a token per write) for the case where the lost
    statement had committed.

    Args:
        connect: Makes a new connection.
        name: How errors and log lines name the store.
        timeout: Seconds one statement may wait for the server before its
            connection counts as lost (``math.inf`` for none); also the time
            after which :meth:`run` stops reconnecting and raises.
        setup: Run on each new connection before its first statement, under
            the same watchdog (session settings).
    """

    def __init__(
        self,
        connect: Callable[[], Connection],
        name: str,
        timeout: float = math.inf,
        setup: Callable[[Connection], object] | None = None,
    ) -> None:
        self._connect = connect
        self._setup = setup
        self._name = name
        self._timeout = timeout
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self.reconnects = 0
        """Statements retried on a new connection after the old one was lost."""
        self.timeouts = 0
        """Statements whose connection the watchdog cut after ``timeout``."""
        # The statement in flight, for the watchdog: (connection, deadline).
        self._watch_lock = threading.Lock()
        self._watched: tuple[Connection, float] | None = None
        self._watchdog: threading.Event | None = None  # set to stop the watchdog thread

    def _call(self, fn: Callable[[Connection], T], conn: Connection, timeout: float) -> T:
        """Call ``fn(conn)`` under the watchdog."""
        if timeout == math.inf:
            return fn(conn)
        with self._watch_lock:
            self._watched = (conn, time.monotonic() + timeout)
            if self._watchdog is None:
                self._watchdog = threading.Event()
                threading.Thread(
                    target=self._watch,
                    args=(self._watchdog,),
                    name=f"agent-resume-watchdog {self._name}",
                    daemon=True,
                ).start()
        try:
            return fn(conn)
        finally:
            with self._watch_lock:
                self._watched = None

    def _fresh(self) -> Connection:
        """A new connection, set up under the watchdog (closed again if that fails)."""
        conn = self._connect()
        setup = self._setup
        if setup is not None:
            try:
                self._call(setup, conn, self._timeout)
            except BaseException:
                close_quietly(conn)
                raise
        return conn

    def _watch(self, stop: threading.Event) -> None:
        tick = min(1.0, max(0.05, self._timeout / 10))
        while not stop.wait(tick):
            with self._watch_lock:
                watched = self._watched
                if watched is None or time.monotonic() < watched[1]:
                    continue
                self._watched = None
                self.timeouts += 1
                _cut(watched[0])
                logger.warning(
                    "%s: no answer from the server for %.1fs; dropping the connection",
                    self._name,
                    self._timeout,
                )

    def run(self, fn: Callable[[Connection], T], what: str, *, watch: bool = True) -> T:
        """Run ``fn`` on the connection, reconnecting and retrying while the link is lost.

        Args:
            fn: The statement(s), on an autocommit connection.
            what: What it does, for error messages.
            watch: Whether a statement that waits longer than the link's
                timeout counts as a lost connection (``False`` for long reads).

        Raises:
            StoreError: ``fn`` failed for another reason than a lost
                connection, a connection was refused for good (no such
                database, failed authentication, a bad option), or the link
                stayed lost through every retry.
        """
        import psycopg

        timeout = self._timeout if watch else math.inf
        delay = 0.05
        start = time.monotonic()
        give_up = start + self._timeout
        for attempt in range(_RETRIES + 1):
            with self._lock:
                conn = self._conn
                try:
                    if conn is None:
                        conn = self._conn = self._fresh()
                    return self._call(fn, conn, timeout)
                except psycopg.Error as exc:
                    lost = isinstance(exc, psycopg.OperationalError) or (
                        conn is not None and (conn.broken or conn.closed)
                    )
                    if conn is not None and (conn.broken or conn.closed or lost):
                        self._conn = None
                        close_quietly(conn)
                    if not lost:
                        raise StoreError(f"{self._name}: {what} failed: {exc}") from exc
                    if _REFUSED.search(str(exc)):
                        raise StoreError(
                            f"{self._name}: {what} failed: the connection was refused, and "
                            f"retrying cannot help (check the DSN, the database and the "
                            f"credentials): {exc}"
                        ) from exc
                    now = time.monotonic()
                    if attempt == _RETRIES or now >= give_up:
                        raise StoreError(
                            f"{self._name}: {what} failed after {attempt} reconnection(s) "
                            f"in {now - start:.1f}s: {exc}"
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
                    conn = self._conn = self._fresh()
                return self._call(fn, conn, self._timeout)
            except psycopg.Error:
                if conn is not None:
                    close_quietly(conn)
                self._conn = None
                raise

    def close(self) -> None:
        """Close the connection, if any; the next statement connects again."""
        with self._lock:
            conn, self._conn = self._conn, None
        with self._watch_lock:
            watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.set()
        if conn is not None:
            close_quietly(conn)


def _cut(conn: Connection) -> None:
    """Shut the connection's socket down, so that a call blocked on it returns with an error."""
    try:
        fd = conn.pgconn.socket
    except Exception:  # already closed
        return
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def close_quietly(conn: Connection) -> None:
    """Close a connection that may be broken; it is gone either way."""
    try:
        conn.close()
    except Exception:
        logger.debug("closing a PostgreSQL connection failed", exc_info=True)
