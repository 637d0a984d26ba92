"""The schema of :class:`~agent_resume.stores.SqliteStore`, and its clock."""

from __future__ import annotations

from typing import Final

__all__ = ["DONE_TRIGGER", "INSERT_DONE", "NEW_FILE", "NOW", "SCHEMA", "UPGRADE", "VERSION"]

# Unix seconds by SQLite's clock, with fractions (julianday works on every version).
NOW: Final = "((julianday('now') - 2440587.5) * 86400.0)"

VERSION: Final = 2
"""The version of the SQLite schema this library writes; a newer one is refused.

Version 2 (this one) records a completion as one ``INSERT`` of its
``completions`` row, run as a transaction of its own:

- ``after_seq`` places the completion among the records of ``events`` (after
  the event of that ``seq``, before the next; completions with the same
  ``after_seq`` in the order of their ``rowid``), where version 1 also wrote
  a ``'done'`` event row (and, with it, the ``AUTOINCREMENT`` counter);
- the trigger ``completions_done`` does the rest of a completion (the item's
  ``done`` flag, its lease given back, its conversation deleted) inside that
  ``INSERT``, where version 1 ran five more statements;
- the index ``items_leased`` is gone (the leases of items not done are found
  through ``items_todo``);
- in a file made by version 2, ``completions`` has no key of its own: the
  first completion of an item wins because the ``INSERT`` checks the item's
  ``done`` flag (:data:`INSERT_DONE`), which the same statement sets. The
  partial index ``completions_v1`` finds the completions of version 1 (none
  in such a file) for their ``'done'`` events.

So a completion writes three B-tree pages (the row, the item's row, its entry
in ``items_todo`` taken out) where version 1 wrote seven. A version 1 file is
upgraded when a store opens it (:data:`UPGRADE`: a column added, an index
dropped; nothing rewritten), keeps its ``completions`` key (four pages per
completion), and its ``'done'`` events and completions without ``after_seq``
are read as before. The trigger fires only for rows with ``after_seq``: a
worker of version 1 still attached to an upgraded file writes its ``'done'``
event and the item's flag itself, as before, and the flag keeps it from
recording an item that a version 2 worker recorded.
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
    error TEXT);
CREATE INDEX IF NOT EXISTS items_todo ON items (seq) WHERE done = 0;
CREATE INDEX IF NOT EXISTS items_seq ON items (seq);
CREATE TABLE IF NOT EXISTS completions (
    item_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    worker TEXT NOT NULL,
    record TEXT NOT NULL,
    result TEXT,
    after_seq INTEGER);
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
    "ALTER TABLE completions ADD COLUMN after_seq INTEGER",
    "DROP INDEX IF EXISTS items_leased",
)
"""What turns a version 1 file into version 2 (in the opening transaction)."""

DONE_TRIGGER: Final = """
CREATE TRIGGER IF NOT EXISTS completions_done AFTER INSERT ON completions
WHEN NEW.after_seq IS NOT NULL BEGIN
    DELETE FROM conversations WHERE item_id = NEW.item_id;
    INSERT INTO items (item_id, seq, done)
    VALUES (NEW.item_id, (SELECT coalesce(max(seq), 0) + 1 FROM items), 1)
    ON CONFLICT (item_id) DO UPDATE SET done = 1, leased_by = NULL, leased_until = NULL;
END"""
"""The rest of a completion, done by SQLite inside its ``INSERT`` (created after :data:`UPGRADE`)."""

NEW_FILE: Final = (
    "CREATE INDEX IF NOT EXISTS completions_v1 ON completions (item_id) WHERE after_seq IS NULL"
)
"""Made with the tables of a new file only (a version 1 file has its key on ``item_id``)."""

INSERT_DONE: Final = """
INSERT INTO completions (item_id, ts, worker, record, result, after_seq)
SELECT ?1, ?2, ?3, ?4, ?5, (SELECT coalesce(max(seq), 0) FROM events)
WHERE NOT EXISTS (SELECT 1 FROM items WHERE item_id = ?1 AND done = 1)
ON CONFLICT DO NOTHING"""
"""A completion, unless the item is done already (a late one: nothing inserted, nothing fired).

The trigger ``completions_done`` does the rest in the same statement. The
``ON CONFLICT`` clause matters only in a version 1 file, whose key on
``item_id`` would otherwise raise where the flag already says no.
"""
