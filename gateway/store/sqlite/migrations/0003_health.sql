-- 0003: one row that /readyz rewrites, to prove the store takes writes (disk, locks, fsync).

CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at REAL NOT NULL
);
