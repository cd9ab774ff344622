-- Retention: nothing about a signer is kept longer than it is needed
-- (petitions/retention.py enforces the periods; petitions/signature.py makes the moves).
--
-- - A signature never confirmed is deleted with its emails (the move `purge`: no
--   status, the row goes).
-- - A rejected signature is erased after a period: the move `erase` to the final
--   status `erased`, which keeps only what the counts need.
-- - Every signature of a closed petition may be anonymised in place: same status,
--   still counted, personal data gone.
-- - An email is stripped of its recipient and bodies once SMTP accepted it (or,
--   failed for good, after a period); status, times, purpose and Message-ID stay.

-- Signatures -------------------------------------------------------------------

-- When the personal data was erased (withdrawal, erasure, anonymisation); set by
-- signature.ERASE_PERSONAL_DATA. A row with erased_at set holds no personal data,
-- so the rules that demand a name for a live signature do not apply to it.
ALTER TABLE signatures ADD COLUMN erased_at timestamptz;
-- When it was rejected: the rejected period runs from here (kept by a trigger below).
ALTER TABLE signatures ADD COLUMN rejected_at timestamptz;

UPDATE signatures SET erased_at = coalesce(withdrawn_at, updated_at) WHERE status = 'withdrawn';
UPDATE signatures SET rejected_at = updated_at WHERE status = 'rejected';

-- The new final status.
ALTER TABLE signatures DROP CONSTRAINT signatures_status_check;
ALTER TABLE signatures ADD CONSTRAINT signatures_status_check
    CHECK (status IN ('pending', 'verified', 'held', 'rejected', 'withdrawn', 'erased'));

-- rejected_at follows the status, whichever way a signature became rejected.
CREATE FUNCTION signatures_track_rejected() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'rejected' THEN
        NEW.rejected_at := NULL;
    ELSIF TG_OP = 'INSERT' THEN
        NEW.rejected_at := coalesce(NEW.rejected_at, now());
    ELSIF OLD.status <> 'rejected' THEN
        NEW.rejected_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER signatures_track_rejected BEFORE INSERT OR UPDATE OF status ON signatures
    FOR EACH ROW EXECUTE FUNCTION signatures_track_rejected();

-- Every rule that demands personal data of a live signature (a name and email
-- hash; an organisation's name; whatever an earlier migration made of them) holds
-- only while the data has not been erased. Found by what they demand rather than
-- by name, so this stays right whatever shape an earlier migration gave them.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname, pg_get_constraintdef(oid) AS def
          FROM pg_constraint
         WHERE conrelid = 'signatures'::regclass AND contype = 'c'
           AND pg_get_constraintdef(oid)
               ~ '\m(name|email|email_hash|organisation|sealed) IS NOT NULL\M'
           AND pg_get_constraintdef(oid) !~ '\merased_at\M'
    LOOP
        EXECUTE format('ALTER TABLE signatures DROP CONSTRAINT %I', c.conname);
        EXECUTE format('ALTER TABLE signatures ADD CONSTRAINT %I CHECK (erased_at IS NOT NULL OR %s)',
                       c.conname, substring(c.def FROM '^CHECK (.*)$'));
    END LOOP;
END $$;

INSERT INTO signature_transitions (name, from_status, to_status) VALUES
    ('erase',    'rejected', 'erased'),
    ('withdraw', 'erased',   'withdrawn');
-- `purge` deletes pending signatures: no row here, since it moves to no status.

-- What the retention passes look for, each a small partial index, so a pass over
-- millions of signatures reads only the rows whose time has come, in batches.
CREATE INDEX signatures_pending_created_idx
    ON signatures (created_at) WHERE status = 'pending';
CREATE INDEX signatures_network_hash_created_idx
    ON signatures (created_at) WHERE network_hash IS NOT NULL;
CREATE INDEX signatures_rejected_idx
    ON signatures (rejected_at) WHERE status = 'rejected';
-- The signatures of one petition not yet anonymised (and what anonymising a
-- closed petition goes through, batch by batch).
CREATE INDEX signatures_not_erased_idx
    ON signatures (petition_id, id) WHERE erased_at IS NULL;

-- Petitions: when one closed -----------------------------------------------------

-- Set when a petition becomes closed or archived, cleared when it opens again:
-- anonymisation after close counts from here (or from closes_at, if earlier).
ALTER TABLE petitions ADD COLUMN closed_at timestamptz;
UPDATE petitions SET closed_at = updated_at WHERE status IN ('closed', 'archived');

CREATE FUNCTION petitions_track_closed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status NOT IN ('closed', 'archived') THEN
        NEW.closed_at := NULL;
    ELSIF TG_OP = 'INSERT' THEN
        NEW.closed_at := coalesce(NEW.closed_at, now());
    ELSIF OLD.status NOT IN ('closed', 'archived') THEN
        NEW.closed_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER petitions_track_closed BEFORE INSERT OR UPDATE OF status ON petitions
    FOR EACH ROW EXECUTE FUNCTION petitions_track_closed();

-- Outbox -------------------------------------------------------------------------

-- When the recipient and bodies were removed (sent: at once; failed: after a period).
ALTER TABLE outbox ADD COLUMN stripped_at timestamptz;
ALTER TABLE outbox ALTER COLUMN recipient DROP NOT NULL;
ALTER TABLE outbox ALTER COLUMN body_text DROP NOT NULL;
-- A stripped email has nobody to go to: it is never queued again.
ALTER TABLE outbox ADD CONSTRAINT outbox_stripped_not_waiting
    CHECK (stripped_at IS NULL OR status <> 'waiting');

-- Sent and failed emails not yet stripped: what the retention pass looks for
-- (emails sent before this migration are stripped by its first run).
CREATE INDEX outbox_unstripped_idx
    ON outbox (created_at) WHERE stripped_at IS NULL AND status <> 'waiting';
-- A signature's emails, deleted with it (withdrawal, purge, erasure).
CREATE INDEX outbox_signature_idx ON outbox (signature_id) WHERE signature_id IS NOT NULL;
