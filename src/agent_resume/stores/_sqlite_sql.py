"""The schema of :class:`~agent_resume.stores.SqliteStore`, and its clock."""

from __future__ import annotations

from typing import Final

__all__ = ["NOW", "SCHEMA"]

# Unix seconds by SQLite's clock, with fractions (julianday works on every version).
NOW: Final = "((julianday('now') - 2440587.5) * 86400.0)"

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
CREATE INDEX IF NOT EXISTS items_leased ON items (leased_by) WHERE leased_by IS NOT NULL;
CREATE TABLE IF NOT EXISTS completions (
    item_id TEXT PRIMARY KEY,
    ts INTEGER NOT NULL,
    worker TEXT NOT NULL,
    record TEXT NOT NULL,
    result TEXT);
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
