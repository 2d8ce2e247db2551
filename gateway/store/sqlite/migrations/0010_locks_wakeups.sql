-- 0010: several gateways on one database (PostgreSQL; kept in lockstep here). ``locks``
-- holds one named lease at a time (a mailbox's poller, housekeeping), renewed by its
-- holder's heartbeat. (Wake-ups need no trigger here: one process uses a SQLite file.)

CREATE TABLE locks (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until REAL NOT NULL
)
