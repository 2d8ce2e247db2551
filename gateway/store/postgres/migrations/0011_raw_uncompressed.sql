-- 0011: mail bytes are stored as they are. A mail's attachments are base64 or PDF and do
-- not compress; PostgreSQL would try (pglz) on every insert and give up, costing most of
-- the server's time per accepted mail. EXTERNAL: out of line, never compressed.

ALTER TABLE message_raw ALTER COLUMN raw SET STORAGE EXTERNAL;
ALTER TABLE documents ALTER COLUMN content SET STORAGE EXTERNAL;
ALTER TABLE partials ALTER COLUMN raw SET STORAGE EXTERNAL;
ALTER TABLE received ALTER COLUMN image SET STORAGE EXTERNAL;
