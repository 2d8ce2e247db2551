-- 0009: the bytes of an old finished fax are deleted after database.keep_days (its mail,
-- its documents; a received fax's PDF once mailed). The rows stay, as its history;
-- purged_at says when its bytes went, so that nothing tries to send it again.

ALTER TABLE messages ADD COLUMN purged_at REAL;
CREATE INDEX messages_unpurged ON messages (received_at) WHERE purged_at IS NULL
