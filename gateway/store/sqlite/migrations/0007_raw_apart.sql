-- 0007: the raw mail in a table of its own. As a column with others after it, SQLite built
-- the whole row in memory on every insert and on every update of the message (its
-- submit state), raw included; alone, it is written once through incremental BLOB I/O.

CREATE TABLE message_raw (
    message_id TEXT PRIMARY KEY REFERENCES messages(id),
    raw        BLOB NOT NULL
);
INSERT INTO message_raw (message_id, raw) SELECT id, raw FROM messages;
ALTER TABLE messages DROP COLUMN raw;
