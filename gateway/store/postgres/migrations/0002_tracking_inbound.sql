-- 0002: received faxes (exactly-once delivery to the mapped inboxes) and poll bookkeeping.

CREATE TABLE received (
    fax_id       TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    seen_at      DOUBLE PRECISION NOT NULL,
    metadata     TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'new',
    image        BYTEA,
    delivered_to TEXT NOT NULL DEFAULT '[]',
    updated_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX received_user ON received (user_id, seen_at);

CREATE TABLE polls (
    user_id     TEXT PRIMARY KEY,
    last_try_at DOUBLE PRECISION,
    last_ok_at  DOUBLE PRECISION,
    last_error  TEXT
);
