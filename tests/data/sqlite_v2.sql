-- A SqliteStore file of schema version 2, dumped (sqlite3 iterdump) from a job written by
-- agent-resume at commit f236894: done a (result, usage), failed b, done c, retry b, a
-- conversation for d, the job state {"cursor": 7}; e enqueued. tests/test_sqlite_upgrade.py reads it.
BEGIN TRANSACTION;
CREATE TABLE completions (
    item_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    worker TEXT NOT NULL,
    record TEXT NOT NULL,
    result TEXT,
    after_seq INTEGER);
INSERT INTO "completions" VALUES('a',1796039546,'vm:11932:0f08f713:4026531836','{"id": "a", "ts": 1796039546, "usage": {"input_tokens": 3, "output_tokens": 2}}','{"answer": 1}',0);
INSERT INTO "completions" VALUES('c',1796039546,'vm:11932:0f08f713:4026531836','{"id": "c", "ts": 1796039546}','[1, 2]',1);
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
INSERT INTO "events" VALUES(1,'failed','b',1796039546,'{"id": "b", "ts": 1796039546, "status": "failed", "error": "boom", "retryable": true, "attempt": 1}');
INSERT INTO "events" VALUES(2,'retry','b',1796039546,'{"id": "b", "ts": 1796039546, "status": "retry"}');
INSERT INTO "events" VALUES(3,'run',NULL,NULL,'{"state": {"cursor": 7}, "ts": 1796039546}');
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
INSERT INTO "meta" VALUES('version','2');
INSERT INTO "meta" VALUES('job_id','job');
INSERT INTO "meta" VALUES('created','1796039546');
CREATE INDEX items_todo ON items (seq) WHERE done = 0;
CREATE INDEX items_seq ON items (seq);
CREATE INDEX completions_v1 ON completions (item_id) WHERE after_seq IS NULL;
CREATE TRIGGER completions_done AFTER INSERT ON completions
WHEN NEW.after_seq IS NOT NULL BEGIN
    DELETE FROM conversations WHERE item_id = NEW.item_id;
    INSERT INTO items (item_id, seq, done)
    VALUES (NEW.item_id, (SELECT coalesce(max(seq), 0) + 1 FROM items), 1)
    ON CONFLICT (item_id) DO UPDATE SET done = 1, leased_by = NULL, leased_until = NULL;
END;
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('events',3);
COMMIT;
