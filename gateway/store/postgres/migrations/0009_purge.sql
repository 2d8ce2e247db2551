-- 0009: the bytes of an old finished fax are deleted after database.keep_days; purged_at says when.

ALTER TABLE messages ADD COLUMN purged_at DOUBLE PRECISION;
CREATE INDEX messages_unpurged ON messages (received_at) WHERE purged_at IS NULL;
