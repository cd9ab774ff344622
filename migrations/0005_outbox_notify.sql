-- Waking the outbox workers: whatever queues mail (a signature, a reminder, an
-- update, an admin's retry) notifies the channel `outbox` from a trigger, so the
-- wake-up is part of queueing itself and reaches the workers of every process,
-- at commit (a rolled-back transaction wakes nobody). Workers still poll now and
-- then, for the times their listening connection is down.

-- New rows waiting to be sent. One notification per statement, however many
-- rows it queued (an update to ten thousand signers is one INSERT).
CREATE FUNCTION outbox_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'waiting') THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify_queued AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify_queued();

-- Rows that became due by an update: a failed email retried by an admin, or a
-- waiting one made due now. The worker's own updates (sent, failed, retry
-- later) make nothing due, so they wake nobody.
CREATE FUNCTION outbox_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1
          FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE n.status = 'waiting' AND n.next_attempt_at <= now()
           AND NOT (o.status = 'waiting' AND o.next_attempt_at <= now())
    ) THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify_due AFTER UPDATE ON outbox
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify_due();
