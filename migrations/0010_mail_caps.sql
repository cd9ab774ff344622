-- No mail bombing: at most a few emails a day to one mailbox, and a cap per network
-- an hour, on the emails anyone can make the site send by typing an address (the
-- confirmation email, the reminder to an existing signer, a resent confirmation).
--
-- The counts live here, so they hold across every app process. A mailbox is
-- counted by a keyed hash of its normalised form (keys.mailbox_hash: lower case,
-- no +tag, Gmail's dots and googlemail.com folded), a network by its keyed hash
-- (keys.network_hash), a resend by its signature: never an address in clear.
-- Rows older than a couple of days are deleted by the retention pass.

CREATE TABLE mail_counts (
    scope        text NOT NULL CHECK (scope IN ('mailbox', 'network', 'resend')),
    key          bytea NOT NULL CHECK (octet_length(key) BETWEEN 16 AND 32),
    window_start timestamptz NOT NULL,
    asked        integer NOT NULL CHECK (asked > 0),
    PRIMARY KEY (scope, key, window_start)
);
CREATE INDEX mail_counts_window_idx ON mail_counts (window_start);

-- One more email asked for in `scope` for `key` in the window starting at
-- `window_start`; how many have been asked for in it, this one included.
CREATE FUNCTION mail_count(scope text, key bytea, window_start timestamptz)
RETURNS integer LANGUAGE sql AS $$
    INSERT INTO mail_counts AS c (scope, key, window_start, asked)
    VALUES (scope, key, window_start, 1)
    ON CONFLICT ON CONSTRAINT mail_counts_pkey DO UPDATE SET asked = c.asked + 1
    RETURNING c.asked
$$;

-- The status a new email to a mailbox (and asked from a network) gets: 'waiting',
-- or 'suppressed' past a cap (0: no cap). Every email asked for is counted,
-- suppressed or not, so the work is the same either way. Days and hours are UTC.
CREATE FUNCTION mail_admission(
    mailbox bytea, network bytea, per_mailbox_per_day integer, per_network_per_hour integer
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    to_mailbox integer := 0;
    from_network integer := 0;
BEGIN
    IF mailbox IS NOT NULL THEN
        to_mailbox := mail_count('mailbox', mailbox, date_trunc('day', now(), 'UTC'));
    END IF;
    IF network IS NOT NULL THEN
        from_network := mail_count('network', network, date_trunc('hour', now()));
    END IF;
    IF (per_mailbox_per_day > 0 AND to_mailbox > per_mailbox_per_day)
       OR (per_network_per_hour > 0 AND from_network > per_network_per_hour) THEN
        RETURN 'suppressed';
    END IF;
    RETURN 'waiting';
END $$;

-- A suppressed email stays in the outbox, so the admin sees what was held back,
-- but keeps nothing of the message: no recipient, no text, no live link.
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('waiting', 'sent', 'failed', 'suppressed'));

CREATE FUNCTION outbox_strip_suppressed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'suppressed' THEN
        NEW.recipient := NULL;
        NEW.body_text := NULL;
        NEW.body_html := NULL;
        NEW.headers := '{}';
        NEW.sealed := NULL;
        NEW.stripped_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER outbox_strip_suppressed BEFORE INSERT OR UPDATE OF status ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_strip_suppressed();

-- A reminder to an existing signer is counted against the network that signed
-- again, not the one that signed first.
ALTER TABLE sign_reminders ADD COLUMN network_hash bytea
    CHECK (octet_length(network_hash) = 32);
