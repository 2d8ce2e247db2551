-- 0006: pieces of message/partial mails (RFC 2046 5.2.2), kept until all have arrived.

CREATE TABLE partials (
    sender_key  TEXT NOT NULL,
    partial_id  TEXT NOT NULL,
    number      INTEGER NOT NULL,
    total       INTEGER,
    received_at DOUBLE PRECISION NOT NULL,
    raw         BYTEA NOT NULL,
    PRIMARY KEY (sender_key, partial_id, number)
);
