"""The schema of :class:`~agent_resume.stores.SqliteStore`, and its clock."""

from __future__ import annotations

from typing import Final

__all__ = [
    "DROPPED",
    "INSERT_DONE",
    "NEW_FILE",
    "NOW",
    "SCHEMA",
    "TRIGGERS",
    "UPGRADE",
    "VERSION",
]

# Unix seconds by SQLite's clock, with fractions (julianday works on every version).
NOW: Final = "((julianday('now') - 2440587.5) * 86400.0)"

VERSION: Final = 3
"""The version of the SQLite schema this library writes; a newer one is refused.

Version 3 (this one) records a completion in the item's own row, as one
statement run as a transaction of its own (:data:`INSERT_DONE`): the row gets
the completion's record, result, worker and time, its ``done`` flag and its
lease given back; an item never enqueued gets a new row. The columns
``after_seq`` and ``done_at`` place the completion among the records of
``events``: after the event of that ``seq`` and before the next, completions
with the same ``after_seq`` in the order of ``done_at`` (SQLite's clock, to
the millisecond; one written before version 3 has none and comes first),
then of their row. The trigger ``items_done`` deletes the item's
conversation inside that statement. A completion of an item enqueued (as a
shared run's are) writes two B-tree pages, the item's row and its entry in
``items_todo`` taken out, where version 2 wrote three and version 1 seven;
one of an item never enqueued writes its new row and its entries in the
key and ``items_seq``. A row that grew past its page's room makes SQLite
spread the page's rows over its neighbours, a few pages more in some
commits (2.4 pages per completion on average, against 3.06 for version 2).

The first completion of an item wins because the statement changes a row
only while its ``done`` flag is 0, and sets it.

Older files are upgraded when a store opens them (:data:`UPGRADE` and
:data:`DROPPED`: columns added, an index dropped, a trigger made again;
nothing rewritten). Their completions stay in the
table ``completions`` and are read as before:

- version 2 wrote a ``completions`` row placed by its ``after_seq`` (then by
  its ``rowid``), and the trigger ``completions_done`` set the item's flag;
- version 1 also wrote a ``'done'`` event row for each completion, and no
  ``after_seq``.

A worker of version 1 or 2 still attached to an upgraded file goes on
writing its completions the old way (the trigger ``completions_done`` is
made again for it, setting ``done_at``); the flag keeps each version from
recording an item another one recorded. Completions are read from both
tables.
"""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    leased_by TEXT,
    leased_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retryable INTEGER NOT NULL DEFAULT 1,
    error TEXT,
    ts INTEGER,
    worker TEXT,
    record TEXT,
    result TEXT,
    after_seq INTEGER,
    done_at REAL);
CREATE INDEX IF NOT EXISTS items_todo ON items (seq) WHERE done = 0;
CREATE INDEX IF NOT EXISTS items_seq ON items (seq);
CREATE TABLE IF NOT EXISTS completions (
    item_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    worker TEXT NOT NULL,
    record TEXT NOT NULL,
    result TEXT,
    after_seq INTEGER,
    done_at REAL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    item_id TEXT,
    ts INTEGER,
    record TEXT);
CREATE TABLE IF NOT EXISTS conversations (
    item_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (item_id, seq));
"""

UPGRADE: Final = (
    ("completions", "after_seq", "INTEGER"),
    ("completions", "done_at", "REAL"),
    ("items", "ts", "INTEGER"),
    ("items", "worker", "TEXT"),
    ("items", "record", "TEXT"),
    ("items", "result", "TEXT"),
    ("items", "after_seq", "INTEGER"),
    ("items", "done_at", "REAL"),
)
"""The columns an older file may lack, as ``(table, column, type)``: added when a store opens it.

Version 1 lacks all of them, version 2 all but ``completions.after_seq``.
"""

DROPPED: Final = ("DROP INDEX IF EXISTS items_leased", "DROP TRIGGER IF EXISTS completions_done")
"""What else an upgrade does, before :data:`TRIGGERS` are made: version 1's lease index
goes, and version 2's trigger (which did not set ``done_at``) is made again."""

TRIGGERS: Final = (
    """CREATE TRIGGER IF NOT EXISTS items_done AFTER UPDATE OF done ON items
WHEN NEW.done = 1 AND OLD.done = 0 BEGIN
    DELETE FROM conversations WHERE item_id = NEW.item_id;
END""",
    """CREATE TRIGGER IF NOT EXISTS items_done_new AFTER INSERT ON items
WHEN NEW.done = 1 BEGIN
    DELETE FROM conversations WHERE item_id = NEW.item_id;
END""",
    f"""CREATE TRIGGER IF NOT EXISTS completions_done AFTER INSERT ON completions
WHEN NEW.after_seq IS NOT NULL BEGIN
    UPDATE completions SET done_at = {NOW} WHERE rowid = NEW.rowid;
    INSERT INTO items (item_id, seq, done)
    VALUES (NEW.item_id, (SELECT coalesce(max(seq), 0) + 1 FROM items), 1)
    ON CONFLICT (item_id) DO UPDATE SET done = 1, leased_by = NULL, leased_until = NULL;
END""",
)
"""The triggers of a completion, created after :data:`UPGRADE`.

``items_done`` and ``items_done_new`` delete the conversation of an item done
(its row updated or inserted with the flag set). ``completions_done`` does
the rest of a completion written the version 2 way, by a worker of that
version still attached to an upgraded file: it sets the completion's
``done_at`` and the item's flag (which fires ``items_done``).
"""

NEW_FILE: Final = (
    "CREATE INDEX IF NOT EXISTS completions_v1 ON completions (item_id) WHERE after_seq IS NULL"
)
"""Made with the tables of a new file only (a version 1 file has its key on ``item_id``)."""

INSERT_DONE: Final = f"""
INSERT INTO items (item_id, seq, done, ts, worker, record, result, after_seq, done_at)
VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM items), 1, ?2, ?3, ?4, ?5,
        (SELECT coalesce(max(seq), 0) FROM events), {NOW})
ON CONFLICT (item_id) DO UPDATE SET
    done = 1, leased_by = NULL, leased_until = NULL, ts = excluded.ts,
    worker = excluded.worker, record = excluded.record, result = excluded.result,
    after_seq = excluded.after_seq, done_at = excluded.done_at
WHERE done = 0"""
"""A completion, unless the item is done already (a late one: no row changed).

The trigger ``items_done`` or ``items_done_new`` deletes the item's
conversation in the same statement.
"""
