"""The SQL statements of :class:`~agent_resume.stores.PostgresStore`; ``{s}`` is the schema.

Lists are sent in binary (``%(name)b``): psycopg writes a list as text with a
regular expression per element, which cost a group worker about ten times the
rest of a completion (issue 15).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLAIM",
    "CLAIM_PLAN",
    "COMPLETE",
    "COMPLETE_MANY",
    "CONVERSATIONS",
    "ENQUEUE",
    "ENQUEUED",
    "FAIL",
    "MIGRATE_1",
    "RECORDS",
    "RECORDS_1",
    "RELEASE",
    "RESULTS",
    "RESULTS_1",
    "SCHEMA_VERSION",
    "TABLES",
]

SCHEMA_VERSION: Final = 2
"""The version of the PostgreSQL schema this library writes; a newer one is refused.

Version 2 (issue 15) keeps a completion's place in the job's order in the
completion row itself (``completions.seq``, drawn from the events' sequence)
instead of a ``done`` row in ``events``, drops the ``items_leased`` index (a
claim then updates its rows in place, HOT), and keeps the digests of the
enqueued batches. :data:`MIGRATE_1` brings a version 1 schema to it.
"""

TABLES: Final = (
    # Room on each page, so that a claim's update stays on its page (HOT).
    """CREATE TABLE IF NOT EXISTS {s}.items (
        item_id text PRIMARY KEY,
        seq bigserial NOT NULL,
        done boolean NOT NULL DEFAULT false,
        leased_by text,
        leased_until timestamptz,
        attempts integer NOT NULL DEFAULT 0,
        retryable boolean NOT NULL DEFAULT true,
        error text) WITH (fillfactor = 50)""",
    "CREATE INDEX IF NOT EXISTS items_todo ON {s}.items (seq) WHERE NOT done",
    """CREATE TABLE IF NOT EXISTS {s}.events (
        seq bigserial PRIMARY KEY,
        kind text NOT NULL,
        item_id text,
        ts bigint,
        token text UNIQUE,
        record jsonb)""",
    """CREATE TABLE IF NOT EXISTS {s}.completions (
        item_id text PRIMARY KEY,
        ts bigint NOT NULL,
        worker text NOT NULL,
        token text NOT NULL,
        record jsonb NOT NULL,
        result jsonb,
        seq bigint NOT NULL DEFAULT nextval('{s}.events_seq_seq'))""",
    # One row per batch of IDs enqueued: a worker whose batch is there skips it.
    "CREATE TABLE IF NOT EXISTS {s}.enqueued (digest text PRIMARY KEY)",
)

# Version 1 to 2, in the opening transaction (under the schema's advisory lock).
# Each completion takes the place of its `done` event; a version 1 worker still
# running afterwards writes `done` events that nothing reads, and its completions
# draw their place from the column's default.
MIGRATE_1: Final = (
    "ALTER TABLE {s}.completions ADD COLUMN IF NOT EXISTS seq bigint",
    """UPDATE {s}.completions c SET seq = e.seq FROM {s}.events e
       WHERE e.kind = 'done' AND e.item_id = c.item_id AND c.seq IS NULL""",
    "UPDATE {s}.completions SET seq = nextval('{s}.events_seq_seq') WHERE seq IS NULL",
    """ALTER TABLE {s}.completions ALTER COLUMN seq SET DEFAULT nextval('{s}.events_seq_seq'),
       ALTER COLUMN seq SET NOT NULL""",
    "DELETE FROM {s}.events WHERE kind = 'done'",
    "DROP INDEX IF EXISTS {s}.items_leased",
    "ALTER TABLE {s}.items SET (fillfactor = 50)",
)

# The items' saved conversations: one row per message (its `encode_line` text), in order.
CONVERSATIONS: Final = """CREATE TABLE IF NOT EXISTS {s}.conversations (
        item_id text NOT NULL,
        seq integer NOT NULL,
        message text NOT NULL,
        PRIMARY KEY (item_id, seq))"""

# Whether a batch of IDs was enqueued already (its digest is kept with it).
ENQUEUED: Final = "SELECT 1 FROM {s}.enqueued WHERE digest = %(d)s"

# Add a batch of IDs and its digest in one statement. A worker enqueueing the
# same batch at the same moment waits on the digest's key, then adds nothing.
ENQUEUE: Final = """WITH mark AS (
                   INSERT INTO {s}.enqueued (digest) VALUES (%(d)s)
                   ON CONFLICT DO NOTHING RETURNING digest)
               INSERT INTO {s}.items (item_id)
               SELECT x FROM unnest(%(ids)b::text[]) WITH ORDINALITY AS t(x, n)
               WHERE EXISTS (SELECT 1 FROM mark)
               ORDER BY n ON CONFLICT DO NOTHING"""

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
                     AND NOT (item_id = ANY(%(exclude)b::text[]))
                   ORDER BY seq LIMIT %(limit)s
                   FOR UPDATE SKIP LOCKED))
               RETURNING item_id, seq"""

# Set at the start of a claim's transaction, for that transaction alone. The
# plan: the claim walks `items_todo` in order and stops after `limit` rows;
# left to its estimates (which a job's leases and completions make stale within
# seconds), the planner read every pending row and sorted them on every claim
# (issue 15). The commit: a claim does not wait for the disk. A lease lost in a
# crash of the server (the last fraction of a second of claims) lets another
# worker run the item too; its completion, which always waits for the disk, is
# then late and ignored: at least once, recorded once.
CLAIM_PLAN: Final = (
    "SELECT set_config('enable_seqscan', 'off', true), "
    "set_config('enable_sort', 'off', true), "
    "set_config('enable_bitmapscan', 'off', true), "
    "set_config('synchronous_commit', 'off', true)"
)

# First writer wins; the token lets a retry after an unknown commit see that it won.
# The completion row is the record, and its `seq` its place among the job's records.
COMPLETE: Final = """WITH ins AS (
                   INSERT INTO {s}.completions (item_id, ts, worker, token, record, result)
                   VALUES (%(id)s, %(ts)s, %(w)s, %(tok)s, %(rec)s::jsonb, %(res)s::jsonb)
                   ON CONFLICT (item_id) DO NOTHING RETURNING item_id),
               conv AS (
                   DELETE FROM {s}.conversations WHERE item_id IN (SELECT item_id FROM ins)),
               up AS (
                   INSERT INTO {s}.items AS i (item_id, done) SELECT item_id, true FROM ins
                   ON CONFLICT (item_id) DO UPDATE
                   SET done = true, leased_by = NULL, leased_until = NULL)
               SELECT (SELECT count(*) FROM ins),
                      (SELECT token FROM {s}.completions WHERE item_id = %(id)s)"""

# A batch of completions in one statement (durability="group"); returns, per item,
# whether this batch recorded it. A retry after an unknown commit (`again`) finds
# its tokens; a first try skips that lookup (its tokens are new).
COMPLETE_MANY: Final = """WITH v AS (
                   SELECT * FROM unnest(%(ids)b::text[], %(ts)b::bigint[], %(toks)b::text[],
                                        %(recs)b::text[], %(res)b::text[])
                   WITH ORDINALITY AS t(item_id, ts, tok, rec, res, n)),
               ins AS (
                   INSERT INTO {s}.completions (item_id, ts, worker, token, record, result)
                   SELECT item_id, ts, %(w)s, tok, rec::jsonb, res::jsonb FROM v ORDER BY n
                   ON CONFLICT (item_id) DO NOTHING RETURNING item_id),
               conv AS (
                   DELETE FROM {s}.conversations WHERE item_id IN (SELECT item_id FROM ins)),
               up AS (
                   INSERT INTO {s}.items AS i (item_id, done) SELECT item_id, true FROM ins
                   ON CONFLICT (item_id) DO UPDATE
                   SET done = true, leased_by = NULL, leased_until = NULL)
               SELECT item_id FROM ins
               UNION ALL
               SELECT c.item_id FROM {s}.completions c JOIN v USING (item_id)
               WHERE %(again)s AND c.token = v.tok"""

# The job's records in order: run, failure and retry events, and the completions
# (each with its result), by their place in the one sequence.
RECORDS: Final = """SELECT kind, record, result FROM (
                   SELECT seq, kind, record, NULL::jsonb AS result FROM {s}.events
                   WHERE kind <> 'done'
                   UNION ALL
                   SELECT seq, 'done', record, result FROM {s}.completions) r
               ORDER BY seq"""

# Each item done and its result, in the order they were done.
RESULTS: Final = "SELECT item_id, result FROM {s}.completions ORDER BY seq"

# The same two reads of a version 1 schema (read without opening it, which migrates).
RECORDS_1: Final = """SELECT e.kind, CASE WHEN e.kind = 'done' THEN c.record ELSE e.record END,
                      c.result
               FROM {s}.events e LEFT JOIN {s}.completions c
                 ON e.kind = 'done' AND c.item_id = e.item_id
               ORDER BY e.seq"""
RESULTS_1: Final = """SELECT c.item_id, c.result FROM {s}.completions c
               JOIN {s}.events e ON e.kind = 'done' AND e.item_id = c.item_id
               ORDER BY e.seq"""

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
                   WHERE item_id = ANY(%(ids)b::text[]) AND NOT done
                     AND NOT EXISTS (SELECT 1 FROM {s}.events WHERE token = %(tok)s || ':0'))
               INSERT INTO {s}.events (kind, item_id, ts, token, record)
               SELECT 'retry', x, %(ts)s, %(tok)s || ':' || (n - 1),
                      jsonb_build_object('id', x, 'ts', %(ts)s, 'status', 'retry')
               FROM unnest(%(ids)b::text[]) WITH ORDINALITY AS t(x, n)
               ON CONFLICT (token) DO NOTHING"""
