-- 0004: the sending limits (faxes per hour, pages per day) count recent mails per
-- envelope sender and per mailbox; these indexes keep those counts cheap.

CREATE INDEX messages_sender_time ON messages (lower(envelope_from), received_at);
CREATE INDEX messages_mailbox_time ON messages (mailbox_user_id, received_at)
