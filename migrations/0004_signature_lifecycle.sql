-- The signature's lifecycle kept by the database too (petitions/signature.py is the
-- other half): which moves between statuses are allowed, and which statuses count.
-- A stray UPDATE that makes any other move is refused, and the tally and live-event
-- triggers ask counted_status() instead of naming 'verified' themselves.

CREATE TABLE signature_transitions (
    name        text NOT NULL,
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status, name)
);

INSERT INTO signature_transitions (name, from_status, to_status) VALUES
    ('verify',   'pending',  'verified'),
    ('hold',     'pending',  'held'),
    ('approve',  'held',     'verified'),
    ('reject',   'pending',  'rejected'),
    ('reject',   'verified', 'rejected'),
    ('reject',   'held',     'rejected'),
    ('restore',  'rejected', 'verified'),
    ('restore',  'rejected', 'pending'),
    ('withdraw', 'pending',  'withdrawn'),
    ('withdraw', 'verified', 'withdrawn'),
    ('withdraw', 'held',     'withdrawn'),
    ('withdraw', 'rejected', 'withdrawn');

CREATE FUNCTION signatures_check_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM signature_transitions
                    WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'a signature cannot move from % to %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER signatures_check_transition BEFORE UPDATE OF status ON signatures
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION signatures_check_transition();

-- Which statuses count towards the total (and the public lists).
CREATE FUNCTION counted_status(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN status = 'verified';

CREATE OR REPLACE FUNCTION signatures_tally_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM apply_tally_deltas(coalesce(jsonb_agg(g), '[]'))
       FROM (SELECT petition_id, kind, coalesce(country, '') AS country,
                    (id % 8)::smallint AS slot, count(*) AS n
               FROM new_rows WHERE counted_status(status)
              GROUP BY 1, 2, 3, 4) AS g;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION signatures_tally_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM apply_tally_deltas(coalesce(jsonb_agg(g), '[]'))
       FROM (SELECT petition_id, kind, country, slot, sum(n) AS n
               FROM (SELECT petition_id, kind, coalesce(country, '') AS country,
                            (id % 8)::smallint AS slot, -1 AS n
                       FROM old_rows WHERE counted_status(status)
                     UNION ALL
                     SELECT petition_id, kind, coalesce(country, '') AS country,
                            (id % 8)::smallint AS slot, 1 AS n
                       FROM new_rows WHERE counted_status(status)) AS changes
              GROUP BY 1, 2, 3, 4
             HAVING sum(n) <> 0) AS g;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION signatures_tally_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM apply_tally_deltas(coalesce(jsonb_agg(g), '[]'))
       FROM (SELECT petition_id, kind, coalesce(country, '') AS country,
                    (id % 8)::smallint AS slot, -count(*) AS n
               FROM old_rows WHERE counted_status(status)
              GROUP BY 1, 2, 3, 4) AS g;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION recount_petition(p_id bigint) RETURNS void LANGUAGE sql AS $$
    DELETE FROM signature_tallies WHERE petition_id = p_id;
    INSERT INTO signature_tallies (petition_id, kind, country, slot, n)
    SELECT petition_id, kind, coalesce(country, ''), (id % 8)::smallint, count(*)
      FROM signatures WHERE petition_id = p_id AND counted_status(status)
     GROUP BY 1, 2, 3, 4;
$$;

CREATE OR REPLACE FUNCTION signatures_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ranges json;
BEGIN
    WITH changes AS (
        SELECT n.petition_id, n.id AS signature_id,
               CASE WHEN counted_status(n.status) THEN 'counted' ELSE 'uncounted' END AS event
          FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE counted_status(n.status) <> counted_status(o.status)
    ), written AS (
        INSERT INTO petition_events (petition_id, signature_id, event)
        SELECT petition_id, signature_id, event FROM changes ORDER BY signature_id
        RETURNING id, petition_id
    )
    SELECT json_agg(json_build_object('petition', petition_id, 'first', first_id, 'last', last_id))
      INTO ranges
      FROM (SELECT petition_id, min(id) AS first_id, max(id) AS last_id
              FROM written GROUP BY petition_id) AS g;
    PERFORM pg_notify('petition_events', r::text) FROM json_array_elements(ranges) AS r;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION signatures_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('petition_events', json_build_object('petition', petition_id)::text)
       FROM (SELECT DISTINCT petition_id FROM new_rows WHERE counted_status(status)) AS p;
    RETURN NULL;
END $$;
