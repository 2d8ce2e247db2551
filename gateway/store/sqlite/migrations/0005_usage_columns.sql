-- 0005: the sending-limit counts read stored columns instead of recomputing JSON per row,
-- and the sender index is on a plain column (an expression index on messages stops
-- incremental BLOB writes to that table).

ALTER TABLE messages ADD COLUMN sender_key TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN fax_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN fax_pages INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET sender_key = lower(envelope_from),
                    fax_count = json_array_length(recipients),
                    fax_pages = json_array_length(recipients)
                      * (SELECT COALESCE(SUM(d.pages), 0) FROM documents d WHERE d.message_id = messages.id);
DROP INDEX messages_sender_time;
CREATE INDEX messages_sender_time ON messages (sender_key, received_at);
