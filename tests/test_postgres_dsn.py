"""PostgresStore DSNs: URLs reach libpq as written, bad ones are refused at once.

Every test that connects uses a real server (``AGENT_RESUME_PG_DSN``).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from urllib.parse import urlsplit

import pytest

from agent_resume._cli._main import main
from agent_resume._errors import ArgumentValueError, StoreError
from agent_resume.stores import PostgresStore, open_store

pytestmark = pytest.mark.postgres


def _url_parts(dsn: str) -> tuple[str, int, str, str]:
    """Host, port, user and database of a test DSN (which must be a URL with a port)."""
    parts = urlsplit(dsn)
    if not dsn.startswith(("postgresql://", "postgres://")) or parts.port is None:
        pytest.skip("these tests need a postgresql:// URL with a port")
    return parts.hostname or "127.0.0.1", parts.port, parts.username or "postgres", parts.path[1:]


def _open_and_close(store: PostgresStore) -> None:
    store.open("dsn-job")
    store.close()


def _show(dsn: str, setting: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    return str(row[0])


def test_a_url_without_schema_reaches_libpq_byte_for_byte(pg_dsn: str) -> None:
    # The URL was rebuilt with urlencode: an empty host (`postgresql:///db`) became
    # `postgresql:/db`, which libpq refuses, and `%20` became `+`, which libpq
    # does not read as a space.
    host, port, user, db = _url_parts(pg_dsn)
    urls = [
        f"postgresql:///{db}?host={host}&port={port}&user={user}",
        f"{pg_dsn}?options=-c%20lock_timeout%3D5000",
        f"{pg_dsn}?application_name=nightly%20job",
    ]
    for url in urls:
        store = PostgresStore(url, schema="dsn_probe")
        assert store.dsn == url
        _open_and_close(store)
    assert _show(urls[1], "lock_timeout") == "5s"
    assert _show(urls[2], "application_name") == "nightly job"


def test_only_the_schema_parameter_is_taken_out_of_a_url(pg_dsn: str) -> None:
    url = f"{pg_dsn}?options=-c%20lock_timeout%3D5000&schema=night%5Fly&application_name=a%20b"
    store = PostgresStore(url)
    assert store.schema == "night_ly"  # percent-decoded
    assert store.dsn == f"{pg_dsn}?options=-c%20lock_timeout%3D5000&application_name=a%20b"
    _open_and_close(store)
    assert PostgresStore(f"{pg_dsn}?schema=nightly").dsn == pg_dsn


@pytest.mark.parametrize(
    "query", ["?schema=", "?schema", "?user=u&schema=&port=1", "?schema=a&schema=b"]
)
def test_an_empty_or_repeated_schema_in_the_url_is_refused(query: str) -> None:
    # An empty `?schema=` silently meant the default schema, `agent_resume`.
    url = "postgresql://app:hunter2@db.invalid:5432/jobs" + query
    with pytest.raises(ArgumentValueError, match="`dsn` gives `schema=`") as info:
        PostgresStore(url)
    assert info.value.parameter == "dsn"
    assert "hunter2" not in str(info.value) and "hunter2" not in str(info.value.value)
    assert "app:***@db.invalid" in str(info.value)


def test_an_empty_schema_argument_is_refused_and_a_store_target_hides_a_password() -> None:
    # `schema=""` silently meant the default schema.
    with pytest.raises(ArgumentValueError, match="lower-case SQL identifier") as info:
        PostgresStore("postgresql://app@db.invalid/jobs", schema="")
    assert info.value.parameter == "schema"
    # A libpq key=value string is no store target: the refusal does not show its password.
    with pytest.raises(ArgumentValueError) as refused:
        open_store("host=db password=hunter2 dbname=jobs")
    assert "hunter2" not in str(refused.value) and "password=***" in str(refused.value)


MALFORMED = [
    "postgresql://u@[::1:5432/x",
    "postgresql://u:p%zz@127.0.0.1:5432/x",
    "postgresql://u:hunter2@h/x?sslmode=require&bad key=1",
    "host=h password='hunter2 dbname=x",
    "host=h password=hunter2 nonsense=1",
]


@pytest.mark.parametrize("dsn", MALFORMED)
def test_a_dsn_libpq_cannot_read_is_a_typed_error_without_the_password(dsn: str) -> None:
    # These raised psycopg.ProgrammingError or ValueError (CLI exit 70, internal error).
    with pytest.raises(ArgumentValueError, match="`dsn` is not a PostgreSQL URL") as info:
        PostgresStore(dsn)
    assert info.value.parameter == "dsn"
    for secret in ("p%zz", "hunter2"):
        assert secret not in str(info.value) and secret not in str(info.value.value)


@pytest.mark.parametrize("dsn", MALFORMED[:2])
def test_the_cli_reports_a_malformed_url_as_a_usage_error(
    capsys: pytest.CaptureFixture[str], dsn: str
) -> None:
    code = main(["status", dsn])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "`dsn` is not a PostgreSQL URL" in err and "internal error" not in err
    assert "p%zz" not in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_connection_refused_for_good_fails_at_once(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # These were retried 8 times ("connection lost ... retrying"), about 5 s each.
    host, port, user, db = _url_parts(pg_dsn)
    netloc = f"{user}@{host}:{port}"
    refused = {
        "no such database": f"postgresql://{netloc}/{db}_missing",
        "no such role": f"postgresql://nobody_{db}@{host}:{port}/{db}",
        "bad option value": f"{pg_dsn}?options=-c%20lock_timeout%3Dsoon",
        "unknown setting": f"{pg_dsn}?options=-c%20no_such_setting%3D1",
        "bad port": f"postgresql://{user}@{host}:99999/{db}",
        "bad sslmode": f"{pg_dsn}?sslmode=bogus",
    }
    for why, url in refused.items():
        caplog.clear()
        store = PostgresStore(url, statement_timeout=30)
        began = time.monotonic()
        with caplog.at_level(logging.WARNING), pytest.raises(StoreError) as info:
            store.open("dsn-job")
        assert time.monotonic() - began < 2, why
        assert "retrying cannot help" in str(info.value), why
        assert store.reconnects == 0 and "retrying" not in caplog.text, why


def test_a_lost_link_is_retried_and_the_error_gives_the_time_it_took() -> None:
    # Nothing listens: a connection refused is a lost link, retried as before; the
    # final message said "in 30s" (the timeout) after about 5 s of retries.
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{_free_port()}/x", statement_timeout=30)
    began = time.monotonic()
    with pytest.raises(StoreError, match=r"failed after 8 reconnection\(s\) in") as info:
        store.open("dsn-job")
    took = time.monotonic() - began
    found = re.search(r"in (\d+(?:\.\d+)?)s:", str(info.value))
    assert found is not None, info.value
    assert abs(float(found.group(1)) - took) < 1, (found.group(1), took)
    assert store.reconnects == 8
