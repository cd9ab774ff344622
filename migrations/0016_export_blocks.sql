-- Ready export lines of confirmed signatures, sealed a block at a time
-- (petitions/export_blocks.py).
--
-- The export of a large petition spends its time opening every signature's sealed
-- data and writing its CSV line. A block holds those lines for a run of a
-- petition's confirmed signatures, sealed as one value under the data key, so an
-- export reads and opens a few hundred blocks instead of a million rows. Blocks
-- tile the petition's ids from the first block's first_id to the last block's
-- last_id; confirmed signatures past the last block are written as before.
--
-- A block is only ever used for the rows it was made from: `signatures` and
-- `fingerprint` are the count of its confirmed signatures when it was made and a
-- sum of hashes of their row versions (id and xmin), and the export compares them
-- with the rows it sees.
-- Besides, any change that involves a confirmed signature (its confirmation, an
-- edit, a withdrawal, an erasure, a purge) empties the blocks around it in the same
-- transaction, so a signer's erased data never outlives the erasure in a block.

CREATE TABLE export_blocks (
    petition_id bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    first_id    bigint NOT NULL,
    last_id     bigint NOT NULL,
    signatures  integer NOT NULL CHECK (signatures >= 0),
    fingerprint numeric NOT NULL,
    -- NULL: out of date, waiting to be made again
    sealed      bytea,
    made_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (petition_id, first_id),
    CHECK (first_id <= last_id)
);
-- Sealed values do not compress: spare PostgreSQL the attempt.
ALTER TABLE export_blocks ALTER COLUMN sealed SET STORAGE EXTERNAL;

-- Empty the blocks that hold any of these signatures (a petition's blocks never
-- overlap: the one that starts last at or before an id is the only one that can
-- hold it). While this transaction holds the petition's lock shared, no block of
-- the petition is stored; once it commits, a block's last check sees its change
-- (export_blocks.py).
CREATE FUNCTION empty_export_blocks(petition_ids bigint[], ids bigint[]) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(ids), 0) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(hashtext('petitions/export_blocks'), hashtext(p::text))
       FROM (SELECT DISTINCT p FROM unnest(petition_ids) AS p ORDER BY p) AS petitions;
    -- Locked in one order first, so two transactions that empty the same blocks
    -- wait for each other instead of deadlocking.
    UPDATE export_blocks b SET sealed = NULL
      FROM (SELECT e.petition_id, e.first_id
              FROM export_blocks e
             WHERE (e.petition_id, e.first_id) IN (
                    SELECT k.petition_id, k.first_id
                      FROM unnest(petition_ids, ids) AS c(petition_id, id)
                      CROSS JOIN LATERAL (
                            SELECT x.petition_id, x.first_id, x.last_id
                              FROM export_blocks x
                             WHERE x.petition_id = c.petition_id AND x.first_id <= c.id
                             ORDER BY x.first_id DESC
                             LIMIT 1) AS k
                     WHERE c.id <= k.last_id)
               AND e.sealed IS NOT NULL
             ORDER BY e.petition_id, e.first_id
               FOR UPDATE) AS hit
     WHERE b.petition_id = hit.petition_id AND b.first_id = hit.first_id;
END $$;

CREATE FUNCTION signatures_export_blocks_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM empty_export_blocks(array_agg(petition_id), array_agg(id))
       FROM new_rows WHERE status = 'verified';
    RETURN NULL;
END $$;

CREATE FUNCTION signatures_export_blocks_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM empty_export_blocks(array_agg(petition_id), array_agg(id))
       FROM (SELECT petition_id, id FROM old_rows WHERE status = 'verified'
             UNION
             SELECT petition_id, id FROM new_rows WHERE status = 'verified') AS changed;
    RETURN NULL;
END $$;

CREATE FUNCTION signatures_export_blocks_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM empty_export_blocks(array_agg(petition_id), array_agg(id))
       FROM old_rows WHERE status = 'verified';
    RETURN NULL;
END $$;

CREATE TRIGGER signatures_export_blocks_insert AFTER INSERT ON signatures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_export_blocks_insert();
CREATE TRIGGER signatures_export_blocks_update AFTER UPDATE ON signatures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_export_blocks_update();
CREATE TRIGGER signatures_export_blocks_delete AFTER DELETE ON signatures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_export_blocks_delete();
