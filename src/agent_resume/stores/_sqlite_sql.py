"""The schema of :class:`~agent_resume.stores.SqliteStore`, and its clock."""

from __future__ import annotations

from typing import Final

__all__ = ["DONE_TRIGGER", "NOW", "SCHEMA", "UPGRADE", "VERSION"]

# Unix seconds by SQLite's clock, with fractions (julianday works on every version).
NOW: Final = "((julianday('now') - 2440587.5) * 86400.0)"

VERSION: Final = 2
"""The version of the SQLite schema this library writes; a newer one is refused.

Version 2 (this one) records a completion as its ``completions`` row alone:
``after_seq`` places it among the records of ``events`` (after the event of
that ``seq``, before the next; completions with the same ``after_seq`` in the
order of their ``rowid``), where version 1 also wrote a ``'done'`` event row.
It also drops the index ``items_leased`` (the leases of items not done are
found through ``items_todo``), so that a completion writes four B-tree pages,
not seven; and the trigger ``completions_done`` does the rest of a completion
(the item's flag, its conversation deleted) inside the ``INSERT``, so that a
completion is three statements (``BEGIN``, ``INSERT``, ``COMMIT``), not six.
The trigger fires only for rows with ``after_seq``: a worker of version 1
still attached to an upgraded file writes its ``'done'`` event and its flag
itself, as before. A version 1 file is upgraded when a store opens it
(:data:`UPGRADE`); its ``'done'`` events, and completions without
``after_seq``, are read as before.
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
    item_id TEXT PRIMARY KEY,
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
