-- 0012: proof of transmission. The SHA-256 (hex) of each document's bytes as they were
-- handed to eFax, written with the fax ids; it stays when the bytes are purged.

ALTER TABLE documents ADD COLUMN sha256 TEXT
