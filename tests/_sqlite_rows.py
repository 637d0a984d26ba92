"""The completions in a ``SqliteStore`` file, read with SQL, whatever the schema version wrote them.

Version 3 keeps a completion in the item's row of ``items`` (with a
``record``); versions 1 and 2 wrote a row of ``completions``. Each completion
has one place among the records: a ``'done'`` event (version 1) or an
``after_seq``.
"""

from __future__ import annotations

import sqlite3

COMPLETIONS = (
    "SELECT item_id, worker, after_seq FROM completions UNION ALL "
    "SELECT item_id, worker, after_seq FROM items WHERE record IS NOT NULL"
)


def completion_rows(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """``(item_id, worker)`` of every completion, an item twice if it was recorded twice.

    Raises:
        AssertionError: A completion has no place among the records, or two,
            or an item done has no completion.
    """
    rows = conn.execute(COMPLETIONS).fetchall()
    (events,) = conn.execute("SELECT count(*) FROM events WHERE kind = 'done'").fetchone()
    placed = sum(row[2] is not None for row in rows)
    assert events + placed == len(rows), (events, placed, len(rows))
    (flagged,) = conn.execute("SELECT count(*) FROM items WHERE done = 1").fetchone()
    assert flagged == len({row[0] for row in rows}), (flagged, len(rows))
    return [(row[0], row[1]) for row in rows]
