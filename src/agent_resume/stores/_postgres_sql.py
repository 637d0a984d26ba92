"""The SQL statements of :class:`~agent_resume.stores.PostgresStore`; ``{s}`` is the schema."""

from __future__ import annotations

from typing import Final

__all__ = ["CLAIM", "COMPLETE", "COMPLETE_MANY", "CONVERSATIONS", "FAIL", "RELEASE", "TABLES"]

TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS {s}.items (
        item_id text PRIMARY KEY,
        seq bigserial NOT NULL,
        done boolean NOT NULL DEFAULT false,
        leased_by text,
        leased_until timestamptz,
        attempts integer NOT NULL DEFAULT 0,
        retryable boolean NOT NULL DEFAULT true,
        error text)""",
    "CREATE INDEX IF NOT EXISTS items_todo ON {s}.items (seq) WHERE NOT done",
    "CREATE INDEX IF NOT EXISTS items_leased ON {s}.items (leased_by) WHERE leased_by IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS {s}.completions (
        item_id text PRIMARY KEY,
        ts bigint NOT NULL,
        worker text NOT NULL,
        token text NOT NULL,
        record jsonb NOT NULL,
        result jsonb)""",
    """CREATE TABLE IF NOT EXISTS {s}.events (
        seq bigserial PRIMARY KEY,
        kind text NOT NULL,
        item_id text,
        ts bigint,
        token text UNIQUE,
        record jsonb)""",
)

# The items' saved conversations: one row per message (its `encode_line` text), in order.
CONVERSATIONS: Final = """CREATE TABLE IF NOT EXISTS {s}.conversations (
        item_id text NOT NULL,
        seq integer NOT NULL,
        message text NOT NULL,
        PRIMARY KEY (item_id, seq))"""

# Lease the oldest claimable rows; rows another worker is claiming are skipped.
# The chosen IDs are an array (an InitPlan), so the update finds its rows by the
# primary key; `item_id IN (subquery)` was planned as a hash join over a scan of
# the whole table, on every claim (issue 15: claims grew with the job).
CLAIM: Final = """UPDATE {s}.items SET leased_by = %(w)s,
                   leased_until = now() + %(lease)s * interval '1 second'
               WHERE item_id = ANY(ARRAY(
                   SELECT item_id FROM {s}.items
                   WHERE NOT done AND retryable AND attempts < %(max)s
                     AND (leased_until IS NULL OR leased_until < now())
                     AND NOT (item_id = ANY(%(exclude)s::text[]))
                   ORDER BY seq LIMIT %(limit)s
                   FOR UPDATE SKIP LOCKED))
               RETURNING item_id, seq"""

# First writer wins; the token lets a retry after an unknown commit see that it won.
COMPLETE: Final = """WITH ins AS (
                   INSERT INTO {s}.completions (item_id, ts, worker, token, record, result)
                   VALUES (%(id)s, %(ts)s, %(w)s, %(tok)s, %(rec)s::jsonb, %(res)s::jsonb)
                   ON CONFLICT (item_id) DO NOTHING RETURNING item_id),
               ev AS (
                   INSERT INTO {s}.events (kind, item_id, ts) SELECT 'done', item_id, %(ts)s FROM ins),
               conv AS (
                   DELETE FROM {s}.conversations WHERE item_id IN (SELECT item_id FROM ins)),
               up AS (
                   INSERT INTO {s}.items AS i (item_id, done) SELECT item_id, true FROM ins
                   ON CONFLICT (item_id) DO UPDATE
                   SET done = true, leased_by = NULL, leased_until = NULL)
               SELECT (SELECT count(*) FROM ins),
                      (SELECT token FROM {s}.completions WHERE item_id = %(id)s)"""

# A batch of completions in one statement (durability="group"); returns, per item,
# whether this batch recorded it (a retry after an unknown commit finds its tokens).
COMPLETE_MANY: Final = """WITH v AS (
                   SELECT * FROM unnest(%(ids)s::text[], %(ts)s::bigint[], %(toks)s::text[],
                                        %(recs)s::text[], %(res)s::text[])
                   WITH ORDINALITY AS t(item_id, ts, tok, rec, res, n)),
               ins AS (
                   INSERT INTO {s}.completions (item_id, ts, worker, token, record, result)
                   SELECT item_id, ts, %(w)s, tok, rec::jsonb, res::jsonb FROM v ORDER BY n
                   ON CONFLICT (item_id) DO NOTHING RETURNING item_id, ts),
               ev AS (
                   INSERT INTO {s}.events (kind, item_id, ts)
                   SELECT 'done', ins.item_id, ins.ts FROM ins JOIN v USING (item_id) ORDER BY v.n),
               conv AS (
                   DELETE FROM {s}.conversations WHERE item_id IN (SELECT item_id FROM ins)),
               up AS (
                   INSERT INTO {s}.items AS i (item_id, done) SELECT item_id, true FROM ins
                   ON CONFLICT (item_id) DO UPDATE
                   SET done = true, leased_by = NULL, leased_until = NULL)
               SELECT item_id FROM ins
               UNION ALL
               SELECT c.item_id FROM {s}.completions c JOIN v USING (item_id)
               WHERE c.token = v.tok"""

# Count the attempt in the database (all workers) once per token; give our lease back.
FAIL: Final = """WITH fresh AS (SELECT 1 WHERE NOT EXISTS (
                   SELECT 1 FROM {s}.events WHERE token = %(tok)s)),
               up AS (
                   INSERT INTO {s}.items AS i (item_id, attempts, retryable, error)
                   SELECT %(id)s, 1, %(retry)s, %(err)s FROM fresh
                   ON CONFLICT (item_id) DO UPDATE SET
                       attempts = i.attempts + 1, retryable = EXCLUDED.retryable,
                       error = EXCLUDED.error,
                       leased_by = CASE WHEN i.leased_by = %(w)s THEN NULL ELSE i.leased_by END,
                       leased_until = CASE WHEN i.leased_by = %(w)s THEN NULL
                                      ELSE i.leased_until END
                   WHERE NOT i.done
                   RETURNING attempts)
               INSERT INTO {s}.events (kind, item_id, ts, token, record)
               SELECT 'failed', %(id)s, %(ts)s, %(tok)s,
                      %(rec)s::jsonb || jsonb_build_object('attempt', attempts)
               FROM up"""

# Forget failures and keep one release record per item, once per token.
RELEASE: Final = """WITH up AS (
                   UPDATE {s}.items SET attempts = 0, retryable = true, error = NULL
                   WHERE item_id = ANY(%(ids)s::text[]) AND NOT done
                     AND NOT EXISTS (SELECT 1 FROM {s}.events WHERE token = %(tok)s || ':0'))
               INSERT INTO {s}.events (kind, item_id, ts, token, record)
               SELECT 'retry', x, %(ts)s, %(tok)s || ':' || (n - 1),
                      jsonb_build_object('id', x, 'ts', %(ts)s, 'status', 'retry')
               FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS t(x, n)
               ON CONFLICT (token) DO NOTHING"""
