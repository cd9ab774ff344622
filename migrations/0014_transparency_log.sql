-- The transparency log (petitions/transparency.py; docs/integrity.md): one append-only
-- Merkle log per petition (RFC 9162 hashing) in which every change of the count is a
-- leaf, and signed tree heads over it.
--
-- A change of the count is written here in the same transaction as the change, as a
-- row of its own in `log_queue` (no row every confirmation updates); the sequencer
-- moves committed rows into `log_leaves` in order, a batch at a time, and signs heads.

-- The commitment to a signer's receipt secret (SHA-256 of it): the secret itself is
-- shown once on the confirmation page and mailed, and never stored.
ALTER TABLE signatures
    ADD COLUMN receipt_commitment bytea CHECK (octet_length(receipt_commitment) = 32);

CREATE TABLE log_queue (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    petition_id  bigint NOT NULL,
    signature_id bigint NOT NULL,
    counted      boolean NOT NULL,       -- starts counting, or stops
    reason       text NOT NULL CHECK (char_length(reason) <= 20),  -- the new status, or 'deleted'
    hour         timestamptz NOT NULL,   -- rounded down: the log never says more of when
    version      integer,                -- the statement version the signer saw
    commitment   bytea                   -- the receipt's, when it starts counting
);

CREATE INDEX log_queue_petition_idx ON log_queue (petition_id, id);

CREATE TABLE log_leaves (
    petition_id  bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    leaf_index   bigint NOT NULL CHECK (leaf_index >= 0),
    kind         text NOT NULL CHECK (kind IN ('add', 'remove', 'restore')),
    hour         timestamptz NOT NULL,
    version      integer CHECK (version >= 0),
    commitment   bytea CHECK (octet_length(commitment) = 32),
    target       bigint,                 -- remove, restore: the add leaf they name
    reason       text CHECK (char_length(reason) <= 20),
    leaf_hash    bytea NOT NULL CHECK (octet_length(leaf_hash) = 32),
    -- Never published: lets a later change of this signature name its add leaf.
    signature_id bigint,
    PRIMARY KEY (petition_id, leaf_index),
    CHECK ((kind = 'add') = (commitment IS NOT NULL AND version IS NOT NULL AND target IS NULL)),
    CHECK ((kind = 'remove') = (reason IS NOT NULL))
);

CREATE UNIQUE INDEX log_leaves_signature_idx ON log_leaves (signature_id) WHERE kind = 'add';
CREATE INDEX log_leaves_commitment_idx ON log_leaves (petition_id, commitment)
    WHERE kind = 'add';
CREATE INDEX log_leaves_target_idx ON log_leaves (petition_id, target, leaf_index)
    WHERE target IS NOT NULL;

-- Hashes of the complete subtrees of 256 leaves and more (smaller ones are hashed from
-- the leaves when needed): a root or a proof reads a few dozen rows at most.
CREATE TABLE log_nodes (
    petition_id bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    level       smallint NOT NULL CHECK (level BETWEEN 8 AND 62),
    node_index  bigint NOT NULL CHECK (node_index >= 0),
    hash        bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (petition_id, level, node_index)
);

-- Where each petition's log stands (written by the sequencer only).
CREATE TABLE log_state (
    petition_id bigint PRIMARY KEY REFERENCES petitions (id) ON DELETE CASCADE,
    size        bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    count       bigint NOT NULL DEFAULT 0 CHECK (count >= 0)
);

CREATE TABLE log_heads (
    petition_id bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    size        bigint NOT NULL CHECK (size >= 0),
    root_hash   bytea NOT NULL CHECK (octet_length(root_hash) = 32),
    count       bigint NOT NULL CHECK (count >= 0),
    origin      text NOT NULL,
    time        text NOT NULL,           -- the hour, as signed
    key_id      text NOT NULL,
    public_key  bytea NOT NULL CHECK (octet_length(public_key) = 32),
    signature   bytea NOT NULL CHECK (octet_length(signature) = 64),
    created_at  timestamptz NOT NULL DEFAULT now(),  -- when to sign the next one
    PRIMARY KEY (petition_id, size)
);

-- Append-only: what was logged or signed is never changed or deleted (except with
-- its petition, by the cascade).
CREATE FUNCTION log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM petitions WHERE id = OLD.petition_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the transparency log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER log_leaves_append_only BEFORE UPDATE OR DELETE ON log_leaves
    FOR EACH ROW EXECUTE FUNCTION log_append_only();
CREATE TRIGGER log_nodes_append_only BEFORE UPDATE OR DELETE ON log_nodes
    FOR EACH ROW EXECUTE FUNCTION log_append_only();
CREATE TRIGGER log_heads_append_only BEFORE UPDATE OR DELETE ON log_heads
    FOR EACH ROW EXECUTE FUNCTION log_append_only();

-- Every change of the count, however it is made (signature.py's moves, a bulk load,
-- a stray statement), is queued by these triggers in the same transaction.
CREATE FUNCTION signatures_log_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_queue (petition_id, signature_id, counted, reason, hour, version, commitment)
    SELECT n.petition_id, n.id, true, n.status, date_trunc('hour', now(), 'UTC'),
           coalesce(v.version, 0), n.receipt_commitment
      FROM new_rows n LEFT JOIN statement_versions v ON v.id = n.version_id
     WHERE counted_status(n.status)
     ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE FUNCTION signatures_log_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_queue (petition_id, signature_id, counted, reason, hour, version, commitment)
    SELECT n.petition_id, n.id, counted_status(n.status), n.status,
           date_trunc('hour', now(), 'UTC'), coalesce(v.version, 0), n.receipt_commitment
      FROM new_rows n JOIN old_rows o ON o.id = n.id
      LEFT JOIN statement_versions v ON v.id = n.version_id
     WHERE counted_status(n.status) <> counted_status(o.status)
     ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE FUNCTION signatures_log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_queue (petition_id, signature_id, counted, reason, hour)
    SELECT o.petition_id, o.id, false, 'deleted', date_trunc('hour', now(), 'UTC')
      FROM old_rows o
     WHERE counted_status(o.status) AND EXISTS (SELECT 1 FROM petitions WHERE id = o.petition_id)
     ORDER BY o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER signatures_log_insert AFTER INSERT ON signatures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_log_insert();
CREATE TRIGGER signatures_log_update AFTER UPDATE ON signatures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_log_update();
CREATE TRIGGER signatures_log_delete AFTER DELETE ON signatures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_log_delete();

-- The signatures counted before the log existed start it, oldest first (their signers
-- have no receipt: the sequencer gives each add a commitment nobody holds the secret of).
INSERT INTO log_queue (petition_id, signature_id, counted, reason, hour, version)
SELECT s.petition_id, s.id, true, s.status, date_trunc('hour', s.verified_at, 'UTC'),
       coalesce(v.version, 0)
  FROM signatures s LEFT JOIN statement_versions v ON v.id = s.version_id
 WHERE counted_status(s.status)
 ORDER BY s.verified_at, s.id;

-- The email that carries a signer's receipt.
ALTER TABLE outbox DROP CONSTRAINT outbox_purpose_check,
    ADD CONSTRAINT outbox_purpose_check CHECK (purpose IN (
        'verification', 'reminder', 'update', 'test', 'notice', 'receipt'));
