"""Shared fixtures: a fresh PostgreSQL database per test.

The PostgreSQL tests read ``AGENT_RESUME_PG_DSN`` (``.ci/postgres.sh start``
prints it). When it is unset or the server cannot be reached they skip, except
in CI (``CI=true``), where they fail: CI must never pass without PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_ENV = "AGENT_RESUME_PG_DSN"


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """The DSN of the test server's maintenance database."""
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        _pg_unavailable(f'{PG_ENV} is not set (eval "$(bash .ci/postgres.sh start)")')
        raise AssertionError("unreachable")
    try:
        import psycopg
    except ImportError:
        _pg_unavailable("psycopg is not installed (the postgres extra)")
        raise AssertionError("unreachable") from None
    try:
        with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        _pg_unavailable(f"cannot connect to {PG_ENV}: {exc}")
    return dsn


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A DSN for a database created for this test alone, dropped after it."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"ar_test_{secrets.token_hex(6)}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    if pg_admin_dsn.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(pg_admin_dsn)
        yield urlunsplit(parts._replace(path="/" + name))
    else:
        params = conninfo_to_dict(pg_admin_dsn)
        params["dbname"] = name
        yield make_conninfo(**params)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
