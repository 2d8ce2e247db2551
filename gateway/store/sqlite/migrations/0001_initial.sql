-- 0001: messages accepted over SMTP, their documents, the job queue, faxes and the story log.

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,        -- the job id given in "250 ... queued as <id>"
    received_at     REAL NOT NULL,           -- unix seconds
    mailbox_user_id TEXT NOT NULL,           -- eFax user-id the fax goes out from
    envelope_from   TEXT NOT NULL,
    header_from     TEXT NOT NULL,
    report_to       TEXT NOT NULL,           -- where reports go ('' = nobody)
    auth            TEXT NOT NULL,           -- "user alice" or "trusted 127.0.0.1"
    message_id      TEXT NOT NULL,           -- the mail's Message-ID, for threading reports
    subject         TEXT NOT NULL,
    recipients      TEXT NOT NULL,           -- JSON list of {number, pretty, name}
    options         TEXT NOT NULL,           -- JSON: cover page, resolution, left-out parts
    submit_state    TEXT NOT NULL DEFAULT 'none',   -- none | submitting | submitted
    raw             BLOB NOT NULL
);

CREATE TABLE documents (
    id            INTEGER PRIMARY KEY,
    message_id    TEXT NOT NULL REFERENCES messages(id),
    seq           INTEGER NOT NULL,
    filename      TEXT NOT NULL,
    document_type TEXT NOT NULL,             -- PDF | TXT (what eFax is sent)
    detected      TEXT NOT NULL,             -- what the bytes were
    pages         INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    content       BLOB NOT NULL,
    UNIQUE (message_id, seq)
);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,               -- dispatch | track | report | receive | deliver
    ref         TEXT NOT NULL,               -- what the job is about (message id, fax id)
    state       TEXT NOT NULL,               -- queued | active | deferred | done | failed | held | dead
    payload     TEXT NOT NULL DEFAULT '{}',
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_after   REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    last_error  TEXT,
    UNIQUE (kind, ref)
);
CREATE INDEX jobs_due ON jobs (kind, state, run_after);

CREATE TABLE faxes (
    fax_id       TEXT PRIMARY KEY,
    message_id   TEXT NOT NULL REFERENCES messages(id),
    destination  TEXT NOT NULL,              -- wire number
    status       TEXT NOT NULL DEFAULT 'submitted',
    detail       TEXT NOT NULL DEFAULT '{}',
    updated_at   REAL NOT NULL
);
CREATE INDEX faxes_message ON faxes (message_id);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         REAL NOT NULL,
    message_id TEXT,
    fax_id     TEXT,
    action     TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_message ON events (message_id);
