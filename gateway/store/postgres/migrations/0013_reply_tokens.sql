-- 0013: acting by replying to a report. Each report carries a reply address with a
-- single-use token; only its SHA-256 is kept here (the token itself is only in the
-- mail). used_at/used_for: the one reply it took (retry, cancel), so it works once.

CREATE TABLE reply_tokens (
    token_hash TEXT PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES messages(id),
    report_ref TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at    DOUBLE PRECISION,
    used_for   TEXT
);
CREATE INDEX reply_tokens_message ON reply_tokens (message_id)
