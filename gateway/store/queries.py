"""Every SQL statement the store runs, by name, in one place.

``Queries`` holds the statements both backends share, written with qmark (``?``)
placeholders; a backend subclasses it to replace the few that its dialect spells
differently (``gateway.store.sqlite.queries``, ``gateway.store.postgres.queries``) and
names its placeholder style. The transaction logic (``gateway.store.ops``) only ever
says ``tx.q.NAME``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import ClassVar, Literal

_QMARK = re.compile(r"\?")


@functools.lru_cache(maxsize=256)
def many_rows(insert: str, rows: int) -> str:
    """An INSERT of one ``VALUES (...)`` group made to insert ``rows`` rows at once."""
    head, values, rest = insert.partition("VALUES (")
    group, tail = rest.split(")", 1)
    return head + values[:-1] + ", ".join([f"({group})"] * rows) + tail


def numbered_scripts(package: str) -> list[tuple[int, str]]:
    """A backend's migrations (``NNNN_name.sql`` in ``package``), in order."""
    found = []
    for item in resources.files(package).iterdir():
        name = item.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), item.read_text(encoding="utf-8")))
    return sorted(found)


def in_list(count: int, mark: str) -> str:
    """``(?, ?, ?)`` for an ``IN`` of ``count`` values (at least one)."""
    return "(" + ", ".join([mark] * max(count, 1)) + ")"


class Queries:
    """The shared statements (qmark placeholders). Subclasses override by name."""

    paramstyle: ClassVar[Literal["qmark", "format"]] = "qmark"

    def __init__(self) -> None:
        for name in ("SENDER_USAGE", "MAILBOX_USAGE", "USAGE_OF_SENDERS", "USAGE_OF_MAILBOXES"):
            setattr(self, name, getattr(self, name).replace("{minute}", self.MINUTE))
        self.CLAIM_JOB = self.CLAIM_JOB.replace("{skip_locked}", self.SKIP_LOCKED)
        if self.paramstyle == "format":  # psycopg: %s, and a literal % doubled
            for name in dir(self):
                if name.isupper():
                    text = getattr(self, name)
                    setattr(self, name, _QMARK.sub("%s", text.replace("%", "%%")))
        self.mark = "?" if self.paramstyle == "qmark" else "%s"

    # -- intake ------------------------------------------------------------------------------
    INSERT_MESSAGE = """
    INSERT INTO messages (id, received_at, mailbox_user_id, envelope_from, header_from, report_to,
                          auth, message_id, subject, recipients, options,
                          sender_key, fax_count, fax_pages)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    """
    INSERT_RAW = "INSERT INTO message_raw (message_id, raw) VALUES (?, ?)"
    INSERT_DOCUMENT = """
    INSERT INTO documents (message_id, seq, filename, document_type, detected, pages, size, content,
                           raw_start, raw_end)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    """
    SELECT_RAW = "SELECT raw FROM message_raw WHERE message_id = ?"
    # Where a document's bytes are: its own content, or base64 text within the raw mail.
    SELECT_DOCUMENT_SOURCE = "SELECT raw_start, raw_end, message_id FROM documents WHERE id = ?"

    # -- jobs --------------------------------------------------------------------------------
    INSERT_JOB = """
    INSERT INTO jobs (kind, ref, state, payload, run_after, created_at, updated_at)
    VALUES (?, ?, 'queued', ?, ?, ?, ?)
    ON CONFLICT (kind, ref) DO NOTHING
    """
    # Most overdue first; expired leases of crashed or silent workers are taken over.
    CLAIM_JOB = """
    UPDATE jobs
       SET state = 'active', lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ?
     WHERE id = (SELECT id FROM jobs
                  WHERE kind = ?
                    AND ((state IN ('queued', 'deferred') AND run_after <= ?)
                         OR (state = 'active' AND lease_until < ?))
                  ORDER BY run_after, id
                  LIMIT 1 {skip_locked})
    RETURNING id, kind, ref, state, payload, attempts, run_after, created_at, last_error, lease_owner
    """
    # Where several processes claim at once: jobs another has locked are passed over.
    SKIP_LOCKED = ""
    # The heartbeat: a job in a worker's hands, its lease not yet run out, runs on.
    RENEW_LEASE = """
    UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND state = 'active' AND lease_until >= ?
    """
    # A lease still ours and not yet run out: the check before anything that cannot be undone.
    HOLDS_LEASE = (
        "SELECT 1 FROM jobs WHERE id = ? AND state = 'active' AND lease_owner = ? AND lease_until >= ?"
    )
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
    UPDATE jobs SET state = ?, run_after = COALESCE(?, run_after), payload = COALESCE(?, payload),
                    last_error = COALESCE(?, last_error), lease_owner = NULL, lease_until = NULL,
                    updated_at = ?
     WHERE id = ?
    """
    SELECT_JOB_COLUMNS = """
    SELECT id, kind, ref, state, payload, attempts, run_after, created_at, last_error, lease_owner
      FROM jobs
    """
    COUNT_JOBS = "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state"
    EXPEDITE_JOB = """
    UPDATE jobs SET run_after = ?, updated_at = ?
     WHERE kind = ? AND ref = ? AND state IN ('queued', 'deferred')
    """

    # -- messages and faxes ------------------------------------------------------------------
    SELECT_MESSAGE = """
    SELECT id, received_at, mailbox_user_id, envelope_from, header_from, report_to, auth, message_id,
           subject, recipients, options, submit_state, purged_at
      FROM messages WHERE id = ?
    """
    SELECT_SAME_MAIL = """
    SELECT id FROM messages
     WHERE sender_key = lower(?) AND received_at >= ? AND received_at <= ? AND message_id = ? AND id <> ?
     ORDER BY received_at, id
    """
    SELECT_DOCUMENTS = """
    SELECT id, seq, filename, document_type, detected, pages, size, sha256
      FROM documents WHERE message_id = ? ORDER BY seq
    """
    # The SHA-256 of a document as it was handed to eFax (written with the fax ids).
    SET_DOCUMENT_SHA256 = "UPDATE documents SET sha256 = ? WHERE id = ? AND message_id = ?"
    SET_SUBMIT_STATE = "UPDATE messages SET submit_state = ? WHERE id = ?"
    INSERT_FAX = """
    INSERT INTO faxes (fax_id, message_id, destination, status, updated_at) VALUES (?, ?, ?, 'submitted', ?)
    ON CONFLICT (fax_id) DO NOTHING
    """
    SELECT_FAXES = """
    SELECT fax_id, message_id, destination, status, detail, updated_at
      FROM faxes WHERE message_id = ? ORDER BY rowid
    """
    SELECT_FAX = (
        "SELECT fax_id, message_id, destination, status, detail, updated_at FROM faxes WHERE fax_id = ?"
    )
    UPDATE_FAX = "UPDATE faxes SET status = ?, detail = ?, updated_at = ? WHERE fax_id = ?"
    # Faxes of the same mail whose tracking has not ended (the one being finished excluded).
    COUNT_OPEN_FAXES = """
    SELECT COUNT(*) FROM faxes f JOIN jobs j ON j.kind = 'track' AND j.ref = f.fax_id
     WHERE f.message_id = ? AND f.fax_id <> ? AND j.state NOT IN ('done', 'failed', 'dead')
    """
    # Serialises the tracking of one mail's faxes across processes (a no-op where the
    # database has one writer at a time).
    LOCK_MESSAGE = "SELECT ?"
    INSERT_EVENT = "INSERT INTO events (at, message_id, fax_id, action, detail) VALUES (?, ?, ?, ?, ?)"
    SELECT_EVENTS = """
    SELECT at, message_id, fax_id, action, detail FROM events
     WHERE message_id = ? OR fax_id IN (SELECT fax_id FROM faxes WHERE message_id = ?)
     ORDER BY at, id
    """

    # -- the watchdog (workers/watchdog.py): recent outcomes, arrivals, incidents ----------------
    # The latest final outcomes of one mailbox's sent faxes, newest first.
    SELECT_MAILBOX_OUTCOMES = """
    SELECT f.status, f.detail FROM faxes f JOIN messages m ON m.id = f.message_id
     WHERE m.mailbox_user_id = ? AND f.status IN ('delivered', 'failed')
     ORDER BY f.updated_at DESC, f.fax_id DESC LIMIT ?
    """
    COUNT_RECEIVED_BETWEEN = (
        "SELECT COUNT(*) FROM received WHERE user_id = ? AND seen_at >= ? AND seen_at < ?"
    )
    # The final outcomes of the faxes of one mailbox's mails accepted in [?, ?) (the digest).
    SELECT_MAILBOX_DAY = """
    SELECT f.status, f.detail FROM faxes f JOIN messages m ON m.id = f.message_id
     WHERE m.mailbox_user_id = ? AND m.received_at >= ? AND m.received_at < ?
    """
    COUNT_MAILBOX_HELD = """
    SELECT COUNT(*) FROM jobs j JOIN messages m ON j.kind = 'dispatch' AND j.ref = m.id
     WHERE m.mailbox_user_id = ? AND j.state = 'held'
    """
    SELECT_MARK = """
    SELECT 1 FROM events WHERE message_id IS NULL AND fax_id IS NULL AND detail = ? AND action = ? LIMIT 1
    """
    # An incident is told in the events log, outside any mail's story: its last word wins.
    SELECT_INCIDENT = """
    SELECT action FROM events
     WHERE message_id IS NULL AND fax_id IS NULL AND detail = ?
       AND action IN ('incident opened', 'incident closed')
     ORDER BY id DESC LIMIT 1
    """

    # -- received faxes ------------------------------------------------------------------------
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

    # -- health ----------------------------------------------------------------------------------
    TOUCH_HEALTH = """
    INSERT INTO health (id, checked_at) VALUES (1, ?)
    ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at
    """

    # -- sending limits: accepted mails of a window, summed per minute ---------------------------
    MINUTE = "CAST(received_at / 60 AS INTEGER)"
    SENDER_USAGE = """
    SELECT MAX(received_at), SUM(fax_count), SUM(fax_pages) FROM messages
     WHERE sender_key = lower(?) AND received_at >= ? GROUP BY {minute}
    """
    MAILBOX_USAGE = """
    SELECT MAX(received_at), SUM(fax_count), SUM(fax_pages) FROM messages
     WHERE mailbox_user_id = ? AND received_at >= ? GROUP BY {minute}
    """
    # At the commit (ops.accept_within_limits): the senders and mailboxes of a batch at once,
    # joined by UNION ALL; {keys} is an IN list of the batch's keys.
    USAGE_OF_SENDERS = """
    SELECT 's', sender_key, MAX(received_at), SUM(fax_count), SUM(fax_pages) FROM messages
     WHERE sender_key IN {keys} AND received_at >= ? GROUP BY sender_key, {minute}
    """
    USAGE_OF_MAILBOXES = """
    SELECT 'm', mailbox_user_id, MAX(received_at), SUM(fax_count), SUM(fax_pages) FROM messages
     WHERE mailbox_user_id IN {keys} AND received_at >= ? GROUP BY mailbox_user_id, {minute}
    """
    # Take turns with other gateways on these senders and mailboxes until the commit (one
    # parameter: the list of keys); empty where one process owns the store (SQLite).
    LOCK_USAGE = ""

    # -- message/partial pieces --------------------------------------------------------------------
    INSERT_PARTIAL = """
    INSERT INTO partials (sender_key, partial_id, number, total, received_at, raw) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (sender_key, partial_id, number) DO NOTHING
    """
    SELECT_PARTIAL_NUMBERS = """
    SELECT number, total FROM partials WHERE sender_key = ? AND partial_id = ? ORDER BY number
    """
    PARTIAL_SIZE_WITHOUT = """
    SELECT COUNT(*), COALESCE(SUM(LENGTH(raw)), 0) FROM partials
     WHERE sender_key = ? AND partial_id = ? AND number <> ?
    """
    OPEN_PARTIALS_OF_SENDER = """
    SELECT COUNT(DISTINCT partial_id) FROM partials WHERE sender_key = ? AND partial_id <> ?
    """
    SELECT_PARTIAL_RAW = "SELECT raw FROM partials WHERE sender_key = ? AND partial_id = ? ORDER BY number"
    DELETE_PARTIAL = "DELETE FROM partials WHERE sender_key = ? AND partial_id = ?"
    # Serialises one split mail's pieces across processes (a no-op with a single writer).
    LOCK_PARTIAL = "SELECT ?"

    # -- replies to reports: single-use tokens (their hashes) and the new attempt a retry makes --
    INSERT_REPLY_TOKEN = """
    INSERT INTO reply_tokens (token_hash, message_id, report_ref, created_at, expires_at)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (token_hash) DO NOTHING
    """
    SELECT_REPLY_TOKEN = """
    SELECT token_hash, message_id, report_ref, created_at, expires_at, used_at, used_for
      FROM reply_tokens WHERE token_hash = ?
    """
    # Once, and only before it runs out.
    USE_REPLY_TOKEN = """
    UPDATE reply_tokens SET used_at = ?, used_for = ?
     WHERE token_hash = ? AND used_at IS NULL AND expires_at >= ?
    """
    COPY_MESSAGE = """
    INSERT INTO messages (id, received_at, mailbox_user_id, envelope_from, header_from, report_to,
                          auth, message_id, subject, recipients, options,
                          sender_key, fax_count, fax_pages)
    SELECT ?, ?, mailbox_user_id, envelope_from, header_from, report_to, ?, message_id, subject, ?, ?,
           sender_key, ?, ?
      FROM messages WHERE id = ? AND purged_at IS NULL
    """
    COPY_RAW = "INSERT INTO message_raw (message_id, raw) SELECT ?, raw FROM message_raw WHERE message_id = ?"
    COPY_DOCUMENTS = """
    INSERT INTO documents (message_id, seq, filename, document_type, detected, pages, size, content,
                           raw_start, raw_end)
    SELECT ?, seq, filename, document_type, detected, pages, size, content, raw_start, raw_end
      FROM documents WHERE message_id = ?
    """

    # -- locks: one holder at a time across processes (a mailbox's poller, housekeeping) ------------
    TAKE_LOCK = """
    INSERT INTO locks (name, owner, until) VALUES (?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
     WHERE locks.owner = excluded.owner OR locks.until < ?
    RETURNING owner
    """
    RENEW_LOCKS = "UPDATE locks SET until = ? WHERE until >= ? AND owner IN"
    RELEASE_LOCKS = "DELETE FROM locks WHERE owner IN"

    # -- retention (database.keep_days) ---------------------------------------------------------------
    # Messages received before ? whose dispatch job has ended (done, failed or dead), not yet purged.
    SELECT_PURGEABLE = """
    SELECT m.id FROM messages m JOIN jobs j ON j.kind = 'dispatch' AND j.ref = m.id
     WHERE m.purged_at IS NULL AND m.received_at < ? AND j.state IN ('done', 'failed', 'dead')
     ORDER BY m.received_at LIMIT ?
    """
    PURGE_RAW = "UPDATE message_raw SET raw = ? WHERE message_id = ?"
    PURGE_DOCUMENTS = (
        "UPDATE documents SET content = ?, raw_start = NULL, raw_end = NULL WHERE message_id = ?"
    )
    MARK_PURGED = "UPDATE messages SET purged_at = ? WHERE id = ?"
    # Received faxes mailed and marked (state done) before ?: their PDF goes.
    PURGE_RECEIVED_IMAGES = """
    UPDATE received SET image = NULL WHERE fax_id IN (
        SELECT fax_id FROM received WHERE state = 'done' AND updated_at < ? AND image IS NOT NULL LIMIT ?)
    """
