-- 0002: received faxes (exactly-once delivery to the mapped inboxes) and poll bookkeeping.

CREATE TABLE received (
    fax_id       TEXT PRIMARY KEY,           -- unique: a fax is recorded once, before anything else
    user_id      TEXT NOT NULL,              -- the mailbox (eFax user-id) it arrived on
    seen_at      REAL NOT NULL,
    metadata     TEXT NOT NULL,              -- JSON, as listed by eFax
    state        TEXT NOT NULL DEFAULT 'new',   -- new | fetched | mailed | marked | done
    image        BLOB,                       -- the PDF, once fetched
    delivered_to TEXT NOT NULL DEFAULT '[]', -- JSON list of addresses the relay accepted
    updated_at   REAL NOT NULL
);
CREATE INDEX received_user ON received (user_id, seen_at);

CREATE TABLE polls (
    user_id     TEXT PRIMARY KEY,
    last_try_at REAL,
    last_ok_at  REAL,
    last_error  TEXT
);
