-- 0007: the raw mail in a table of its own (as on SQLite), so a message row stays small.

CREATE TABLE message_raw (
    message_id TEXT PRIMARY KEY REFERENCES messages(id),
    raw        BYTEA NOT NULL
);
INSERT INTO message_raw (message_id, raw) SELECT id, raw FROM messages;
ALTER TABLE messages DROP COLUMN raw;
