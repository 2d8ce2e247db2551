-- 0014: the watchdog's incidents (workers/watchdog.py) are events outside any mail's story
-- (no message id, no fax id), found by their key in ``detail``: an index for that look-up.

CREATE INDEX events_incident ON events (detail, id) WHERE message_id IS NULL AND fax_id IS NULL
