-- 0004: indexes for the sending-limit counts per envelope sender and per mailbox.

CREATE INDEX messages_sender_time ON messages (lower(envelope_from), received_at);
CREATE INDEX messages_mailbox_time ON messages (mailbox_user_id, received_at);
