"""Every SQL statement the store runs, by name (qmark placeholders)."""

import functools


@functools.lru_cache(maxsize=256)
def many_rows(insert: str, rows: int) -> str:
    """An INSERT of one ``VALUES (...)`` group made to insert ``rows`` rows at once."""
    head, values, rest = insert.partition("VALUES (")
    group, tail = rest.split(")", 1)
    return head + values[:-1] + ", ".join([f"({group})"] * rows) + tail


INSERT_MESSAGE = """
INSERT INTO messages (id, received_at, mailbox_user_id, envelope_from, header_from, report_to,
                      auth, message_id, subject, recipients, options,
                      sender_key, fax_count, fax_pages)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

INSERT_RAW = "INSERT INTO message_raw (message_id, raw) VALUES (?, ?)"

# A raw mail or document too big to bind goes in empty, is sized here, then is written
# through incremental BLOB I/O at the row these return.
SIZE_RAW = "UPDATE message_raw SET raw = zeroblob(?) WHERE message_id = ? RETURNING rowid"
SIZE_DOCUMENT = "UPDATE documents SET content = zeroblob(?) WHERE message_id = ? AND seq = ? RETURNING id"

SELECT_RAW = "SELECT raw FROM message_raw WHERE message_id = ?"

# Where a document's bytes are: its own content, or base64 text within the raw mail.
SELECT_DOCUMENT_SOURCE = """
SELECT d.raw_start, d.raw_end, r.rowid
  FROM documents d LEFT JOIN message_raw r ON r.message_id = d.message_id AND d.raw_start IS NOT NULL
 WHERE d.id = ?
"""

INSERT_DOCUMENT = """
INSERT INTO documents (message_id, seq, filename, document_type, detected, pages, size, content,
                       raw_start, raw_end)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

INSERT_JOB = """
INSERT INTO jobs (kind, ref, state, payload, run_after, created_at, updated_at)
VALUES (?, ?, 'queued', ?, ?, ?, ?)
ON CONFLICT (kind, ref) DO NOTHING
"""

# Most overdue first; expired leases of crashed workers are taken over.
CLAIM_JOB = """
UPDATE jobs
   SET state = 'active', lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ?
 WHERE id = (SELECT id FROM jobs
              WHERE kind = ?
                AND ((state IN ('queued', 'deferred') AND run_after <= ?)
                     OR (state = 'active' AND lease_until < ?))
              ORDER BY run_after, id
              LIMIT 1)
RETURNING id, kind, ref, state, payload, attempts, run_after, created_at, last_error, lease_owner
"""

DEFER_JOB = """
UPDATE jobs SET state = 'deferred', run_after = ?, last_error = ?, payload = COALESCE(?, payload),
                lease_owner = NULL, lease_until = NULL, updated_at = ?
 WHERE id = ? AND state = 'active' AND lease_owner = ?
"""

FINISH_JOB = """
UPDATE jobs SET state = ?, last_error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?
 WHERE id = ? AND state = 'active' AND lease_owner = ?
"""

RELEASE_JOBS = """
UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), lease_owner = NULL,
                lease_until = NULL, updated_at = ?
 WHERE state = 'active' AND lease_owner = ?
"""

SET_JOB_STATE = """
UPDATE jobs SET state = ?, run_after = COALESCE(?, run_after), lease_owner = NULL,
                lease_until = NULL, updated_at = ?
 WHERE id = ?
"""

SELECT_JOB_COLUMNS = """
SELECT id, kind, ref, state, payload, attempts, run_after, created_at, last_error, lease_owner
  FROM jobs
"""

COUNT_JOBS = "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state"

SELECT_MESSAGE = """
SELECT id, received_at, mailbox_user_id, envelope_from, header_from, report_to, auth, message_id,
       subject, recipients, options, submit_state, purged_at
  FROM messages WHERE id = ?
"""

SELECT_DOCUMENTS = """
SELECT id, seq, filename, document_type, detected, pages, size
  FROM documents WHERE message_id = ? ORDER BY seq
"""

SET_SUBMIT_STATE = "UPDATE messages SET submit_state = ? WHERE id = ?"

INSERT_FAX = """
INSERT INTO faxes (fax_id, message_id, destination, status, updated_at) VALUES (?, ?, ?, 'submitted', ?)
ON CONFLICT (fax_id) DO NOTHING
"""

SELECT_FAXES = """
SELECT fax_id, message_id, destination, status, detail, updated_at
  FROM faxes WHERE message_id = ? ORDER BY rowid
"""

INSERT_EVENT = "INSERT INTO events (at, message_id, fax_id, action, detail) VALUES (?, ?, ?, ?, ?)"

SELECT_EVENTS = """
SELECT at, message_id, fax_id, action, detail FROM events
 WHERE message_id = ? OR fax_id IN (SELECT fax_id FROM faxes WHERE message_id = ?)
 ORDER BY at, id
"""

FINISH_ANY_JOB = """
UPDATE jobs SET state = ?, last_error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?
 WHERE id = ?
"""

EXPEDITE_JOB = """
UPDATE jobs SET run_after = ?, updated_at = ?
 WHERE kind = ? AND ref = ? AND state IN ('queued', 'deferred')
"""

SELECT_FAX = "SELECT fax_id, message_id, destination, status, detail, updated_at FROM faxes WHERE fax_id = ?"

UPDATE_FAX = "UPDATE faxes SET status = ?, detail = ?, updated_at = ? WHERE fax_id = ?"

INSERT_RECEIVED = """
INSERT INTO received (fax_id, user_id, seen_at, metadata, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (fax_id) DO NOTHING
"""

SELECT_RECEIVED = """
SELECT fax_id, user_id, seen_at, metadata, state, delivered_to, updated_at, image IS NOT NULL
  FROM received WHERE fax_id = ?
"""

SELECT_RECEIVED_IMAGE = "SELECT image FROM received WHERE fax_id = ?"

UPDATE_RECEIVED = """
UPDATE received SET state = COALESCE(?, state), delivered_to = COALESCE(?, delivered_to),
                    updated_at = ?
 WHERE fax_id = ?
"""

STORE_RECEIVED_IMAGE = "UPDATE received SET image = ?, state = 'fetched', updated_at = ? WHERE fax_id = ?"

UPSERT_POLL = """
INSERT INTO polls (user_id, last_try_at, last_ok_at, last_error) VALUES (?, ?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET last_try_at = excluded.last_try_at,
    last_ok_at = COALESCE(excluded.last_ok_at, polls.last_ok_at), last_error = excluded.last_error
"""

SELECT_POLLS = "SELECT user_id, last_try_at, last_ok_at, last_error FROM polls"

# Faxes of the same mail that are not final yet (the final statuses as a JSON array).
COUNT_UNFINISHED_FAXES = """
SELECT COUNT(*) FROM faxes
 WHERE message_id = (SELECT message_id FROM faxes WHERE fax_id = ?)
   AND status NOT IN (SELECT value FROM json_each(?))
"""

TOUCH_HEALTH = """
INSERT INTO health (id, checked_at) VALUES (1, ?)
ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at
"""

# Sending limits: each recent mail's time, numbers, and pages times numbers.
# Accepted mails of a window, summed per minute (the latest time of each minute), so a
# busy mailbox costs at most one row a minute; fax_pages = pages x numbers.
_USAGE = """
SELECT MAX(received_at), SUM(fax_count), SUM(fax_pages) FROM messages
"""
_PER_MINUTE = " GROUP BY CAST(received_at / 60 AS INTEGER)"
SENDER_USAGE = _USAGE + " WHERE sender_key = lower(?) AND received_at >= ?" + _PER_MINUTE
MAILBOX_USAGE = _USAGE + " WHERE mailbox_user_id = ? AND received_at >= ?" + _PER_MINUTE

INSERT_PARTIAL = """
INSERT INTO partials (sender_key, partial_id, number, total, received_at, raw) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (sender_key, partial_id, number) DO NOTHING
"""

SELECT_PARTIAL_NUMBERS = """
SELECT number, total FROM partials WHERE sender_key = ? AND partial_id = ? ORDER BY number
"""

SELECT_PARTIAL_RAW = "SELECT raw FROM partials WHERE sender_key = ? AND partial_id = ? ORDER BY number"

DELETE_PARTIAL = "DELETE FROM partials WHERE sender_key = ? AND partial_id = ?"


# -- retention (database.keep_days) -----------------------------------------------------------
# Messages received before ? whose dispatch job has ended (done, failed or dead), not yet purged.
SELECT_PURGEABLE = """
SELECT m.id FROM messages m JOIN jobs j ON j.kind = 'dispatch' AND j.ref = m.id
 WHERE m.purged_at IS NULL AND m.received_at < ? AND j.state IN ('done', 'failed', 'dead')
 ORDER BY m.received_at LIMIT ?
"""
PURGE_RAW = "UPDATE message_raw SET raw = x'' WHERE message_id = ?"
PURGE_DOCUMENTS = "UPDATE documents SET content = x'', raw_start = NULL, raw_end = NULL WHERE message_id = ?"
MARK_PURGED = "UPDATE messages SET purged_at = ? WHERE id = ?"
# Received faxes mailed and marked (state done) before ?: their PDF goes.
PURGE_RECEIVED_IMAGES = """
UPDATE received SET image = NULL WHERE rowid IN (
    SELECT rowid FROM received WHERE state = 'done' AND updated_at < ? AND image IS NOT NULL LIMIT ?)
"""
