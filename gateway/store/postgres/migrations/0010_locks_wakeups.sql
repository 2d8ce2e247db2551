-- 0010: several gateways on one database. ``locks`` holds one named lease at a time (a
-- mailbox's poller, housekeeping), renewed by its holder's heartbeat; a trigger tells
-- every gateway listening on ``faxgw_jobs`` that a job of a kind became due, so that
-- whichever instance is free takes it at once (polling stays as the fallback).

CREATE TABLE locks (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until DOUBLE PRECISION NOT NULL
);

CREATE FUNCTION faxgw_job_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('queued', 'deferred')
       AND NEW.run_after <= extract(epoch FROM clock_timestamp()) + 1 THEN
        PERFORM pg_notify('faxgw_jobs', NEW.kind);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_due_notify AFTER INSERT OR UPDATE OF state, run_after ON jobs
    FOR EACH ROW EXECUTE FUNCTION faxgw_job_due();
