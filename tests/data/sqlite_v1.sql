-- A SqliteStore file of schema version 1, dumped (sqlite3 iterdump) from a job written by
-- agent-resume at commit 223ab6e: done a (result, usage), failed b, done c, retry b, a
-- conversation for d, the job state {"cursor": 7}; e enqueued. tests/test_sqlite_upgrade.py reads it.
BEGIN TRANSACTION;
CREATE TABLE completions (
    item_id TEXT PRIMARY KEY,
    ts INTEGER NOT NULL,
    worker TEXT NOT NULL,
    record TEXT NOT NULL,
    result TEXT);
INSERT INTO "completions" VALUES('a',1795997150,'vm:24154:a4f9e8c0:4026531836','{"id": "a", "ts": 1795997150, "usage": {"input_tokens": 3, "output_tokens": 2, "calls": 1}}','{"answer": 1}');
INSERT INTO "completions" VALUES('c',1795997150,'vm:24154:a4f9e8c0:4026531836','{"id": "c", "ts": 1795997150}','[1, 2]');
CREATE TABLE conversations (
    item_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (item_id, seq));
INSERT INTO "conversations" VALUES('d',0,'{"role":"user","content":"hi"}');
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    item_id TEXT,
    ts INTEGER,
    record TEXT);
INSERT INTO "events" VALUES(1,'done','a',1795997150,NULL);
INSERT INTO "events" VALUES(2,'failed','b',1795997150,'{"id": "b", "ts": 1795997150, "status": "failed", "error": "boom", "retryable": true, "attempt": 1}');
INSERT INTO "events" VALUES(3,'done','c',1795997150,NULL);
INSERT INTO "events" VALUES(4,'retry','b',1795997150,'{"id": "b", "ts": 1795997150, "status": "retry"}');
INSERT INTO "events" VALUES(5,'run',NULL,NULL,'{"state": {"cursor": 7}, "ts": 1795997150}');
CREATE TABLE items (
    item_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    leased_by TEXT,
    leased_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retryable INTEGER NOT NULL DEFAULT 1,
    error TEXT);
INSERT INTO "items" VALUES('a',1,1,NULL,NULL,0,1,NULL);
INSERT INTO "items" VALUES('b',2,0,NULL,NULL,0,1,NULL);
INSERT INTO "items" VALUES('c',3,1,NULL,NULL,0,1,NULL);
INSERT INTO "items" VALUES('d',4,0,NULL,NULL,0,1,NULL);
INSERT INTO "items" VALUES('e',5,0,NULL,NULL,0,1,NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO "meta" VALUES('version','1');
INSERT INTO "meta" VALUES('job_id','job');
INSERT INTO "meta" VALUES('created','1795997150');
CREATE INDEX items_todo ON items (seq) WHERE done = 0;
CREATE INDEX items_seq ON items (seq);
CREATE INDEX items_leased ON items (leased_by) WHERE leased_by IS NOT NULL;
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('events',5);
COMMIT;
