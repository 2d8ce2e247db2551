-- 0008: a PDF attached as clean base64 is not stored twice. Such a document's row keeps
-- where its base64 text lies in message_raw.raw (raw_start, raw_end) and an empty content;
-- document_chunks decodes it from there. Other documents (converted, text) keep content.

ALTER TABLE documents ADD COLUMN raw_start INTEGER;
ALTER TABLE documents ADD COLUMN raw_end INTEGER
