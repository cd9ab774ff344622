-- Signer data encrypted at rest (petitions/crypto.py, petitions/personal.py).
--
-- SQL cannot encrypt (no pgcrypto, and the key never enters the database), so
-- this migration only makes room: new columns, relaxed rules, new indexes. The
-- rows already in clear are sealed right after it by Python (sealing.py, run by
-- `petitions migrate`, `serve`, `worker` and `rotate-key` at start), which also
-- empties their clear columns. Reads handle a row not sealed yet, so nothing
-- breaks in between.

-- Signatures -------------------------------------------------------------------

-- The signer's personal fields as one AES-GCM-sealed JSON blob (key id prefixed).
ALTER TABLE signatures ADD COLUMN sealed bytea
    CONSTRAINT signatures_sealed_check CHECK (octet_length(sealed) BETWEEN 33 AND 16384);
-- Keyed hash (HMAC-SHA256) of the folded organisation name and the country: the
-- organisation's identity for uniqueness, in place of the clear `organisation_key`.
ALTER TABLE signatures ADD COLUMN organisation_hash bytea
    CONSTRAINT signatures_organisation_hash_check CHECK (octet_length(organisation_hash) = 32);
-- The moderators' search: short keyed hashes of the words of the name and
-- organisation and of the email's domain (a "blind index"), found with GIN.
ALTER TABLE signatures ADD COLUMN search_hashes bytea[]
    CONSTRAINT signatures_search_hashes_check CHECK (cardinality(search_hashes) <= 256);
-- What the public list shows of an `initials` signer, precomputed so that the
-- name (or organisation) itself need not stay in clear.
ALTER TABLE signatures ADD COLUMN initials text
    CONSTRAINT signatures_initials_check CHECK (char_length(initials) <= 16);

-- The clear columns now hold only what the display choice publishes, so a live
-- signature needs its name *or* its sealed blob, and an organisation its name
-- *or* its sealed blob. The email is never kept in clear beside a sealed blob.
ALTER TABLE signatures DROP CONSTRAINT signatures_check;
ALTER TABLE signatures ADD CONSTRAINT signatures_check
    CHECK (status IN ('withdrawn', 'rejected')
           OR ((name IS NOT NULL OR sealed IS NOT NULL) AND email_hash IS NOT NULL));
ALTER TABLE signatures DROP CONSTRAINT signatures_check1;
ALTER TABLE signatures ADD CONSTRAINT signatures_check1
    CHECK (kind = 'individual' OR status = 'withdrawn' OR organisation IS NOT NULL
           OR sealed IS NOT NULL);
ALTER TABLE signatures ADD CONSTRAINT signatures_no_clear_email_when_sealed
    CHECK (sealed IS NULL OR email IS NULL);

-- One organisation per name and country, decided on the keyed hash. Several
-- signatures may name one organisation (a second person signing for it is stored
-- and, once confirmed, held for a moderator: docs/signing.md), but never two that
-- count, and one email signs for one organisation once.
DROP INDEX signatures_one_per_organisation;
ALTER TABLE signatures DROP COLUMN organisation_key;
CREATE UNIQUE INDEX signatures_one_counted_per_organisation
    ON signatures (petition_id, organisation_hash)
    WHERE kind = 'organisation' AND status = 'verified';
CREATE UNIQUE INDEX signatures_one_organisation_per_email
    ON signatures (petition_id, organisation_hash, email_hash)
    WHERE kind = 'organisation';
CREATE INDEX signatures_search_hashes_idx ON signatures USING gin (search_hashes);
-- What the sealing step after this migration looks for.
CREATE INDEX signatures_not_sealed_idx ON signatures (id)
    WHERE sealed IS NULL AND (name IS NOT NULL OR email IS NOT NULL);

-- Outbox ---------------------------------------------------------------------------

-- Recipient, bodies and headers (links that act on a signature) sealed together;
-- the subject, purpose, status and times stay in clear.
ALTER TABLE outbox ADD COLUMN sealed bytea;
ALTER TABLE outbox ALTER COLUMN recipient DROP NOT NULL;
ALTER TABLE outbox ALTER COLUMN body_text DROP NOT NULL;
CREATE INDEX outbox_not_sealed_idx ON outbox (id) WHERE sealed IS NULL AND recipient IS NOT NULL;

-- Reminders to existing signers, off the request path ------------------------------

-- Signing with an email (or, for an organisation, an email and organisation) that
-- already signed writes a row here instead of a signature, in the same statement,
-- so both answers do the same work; the outbox worker turns it into a reminder to
-- the existing signer (at most one an hour) and deletes it. Nothing in clear.
CREATE TABLE sign_reminders (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    petition_id       bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('individual', 'organisation')),
    email_hash        bytea NOT NULL CHECK (octet_length(email_hash) = 32),
    organisation_hash bytea CHECK (octet_length(organisation_hash) = 32),
    created_at        timestamptz NOT NULL DEFAULT now()
);
-- One waiting request per signer, however often they sign again (PostgreSQL 15+).
CREATE UNIQUE INDEX sign_reminders_once
    ON sign_reminders (petition_id, kind, email_hash, organisation_hash) NULLS NOT DISTINCT;

-- Wakes the outbox workers, as queueing an email does (0005_outbox_notify.sql).
CREATE FUNCTION sign_reminders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER sign_reminders_notify AFTER INSERT ON sign_reminders
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sign_reminders_notify();
