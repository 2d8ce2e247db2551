-- 0008: a PDF attached as clean base64 is not stored twice (raw_start, raw_end in message_raw.raw).

ALTER TABLE documents ADD COLUMN raw_start BIGINT;
ALTER TABLE documents ADD COLUMN raw_end BIGINT;
