-- 0006: pieces of message/partial mails (RFC 2046 5.2.2), kept until all have arrived.

CREATE TABLE partials (
    sender_key  TEXT NOT NULL,               -- lower-cased envelope sender: ids are the sender's
    partial_id  TEXT NOT NULL,
    number      INTEGER NOT NULL,
    total       INTEGER,                     -- given on the last piece only
    received_at REAL NOT NULL,
    raw         BLOB NOT NULL,
    PRIMARY KEY (sender_key, partial_id, number)
);
