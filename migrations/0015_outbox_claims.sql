-- Claiming outbox rows one at a time, with a lease (petitions/delivery.py).
--
-- A worker claims one due row in a short transaction of its own: it writes its name
-- and a lease time, commits, sends the email, and marks the row sent in another short
-- transaction right after the SMTP server accepted it. No transaction stays open across
-- a send, so a worker that dies re-sends at most the one message the server accepted
-- before the death was recorded. A row whose lease ran out (its worker died) is
-- claimable again; a worker that stops on SIGTERM clears the leases it still holds.
-- Nothing here is session state: the claims work through PgBouncer in transaction mode.

ALTER TABLE outbox ADD COLUMN claimed_by text CHECK (char_length(claimed_by) <= 200);
ALTER TABLE outbox ADD COLUMN claimed_until timestamptz;

-- Rows that became due by an update (0005_outbox_notify.sql), now also counting a
-- lease: a released claim makes its row due again, and wakes the workers; a claim
-- and the worker's own bookkeeping make nothing due, so they wake nobody.
CREATE OR REPLACE FUNCTION outbox_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1
          FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE n.status = 'waiting' AND n.next_attempt_at <= now()
           AND (n.claimed_until IS NULL OR n.claimed_until <= now())
           AND NOT (o.status = 'waiting' AND o.next_attempt_at <= now()
                    AND (o.claimed_until IS NULL OR o.claimed_until <= now()))
    ) THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END $$;
