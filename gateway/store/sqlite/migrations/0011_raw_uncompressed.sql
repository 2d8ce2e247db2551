-- 0011: (PostgreSQL: mail bytes stored uncompressed.) SQLite never compresses: nothing to do.
SELECT 1
