-- Live events: every time a signature enters or leaves the public count, an event
-- row is written and app processes are told through pg_notify, all by triggers,
-- so whatever changes a status (signing, moderation, withdrawal) is seen live.

CREATE TABLE petition_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    petition_id  bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    signature_id bigint REFERENCES signatures (id) ON DELETE CASCADE,
    -- 'counted': became verified; 'uncounted': left verified (withdrawn, rejected...)
    event        text NOT NULL CHECK (event IN ('counted', 'uncounted')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX petition_events_replay_idx ON petition_events (petition_id, id);
CREATE INDEX petition_events_created_idx ON petition_events (created_at);

-- One notification per petition per statement, naming the range of event ids it
-- wrote (payloads stay small however many rows a bulk moderation touches).
CREATE FUNCTION signatures_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ranges json;
BEGIN
    WITH changes AS (
        SELECT n.petition_id, n.id AS signature_id,
               CASE WHEN n.status = 'verified' THEN 'counted' ELSE 'uncounted' END AS event
          FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE (n.status = 'verified') <> (o.status = 'verified')
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

CREATE TRIGGER signatures_notify_events AFTER UPDATE ON signatures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_notify_events();

-- Signatures inserted already verified (imports, bulk loads) change counts
-- without a per-signature event: the processes only re-read the counts.
CREATE FUNCTION signatures_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('petition_events', json_build_object('petition', petition_id)::text)
       FROM (SELECT DISTINCT petition_id FROM new_rows WHERE status = 'verified') AS p;
    RETURN NULL;
END $$;

CREATE TRIGGER signatures_notify_inserted AFTER INSERT ON signatures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_notify_inserted();

-- A petition's own changes (goal, status, slug) refresh the processes' caches.
CREATE FUNCTION petitions_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('petition_events',
                      json_build_object('petition', NEW.id, 'changed', true)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER petitions_notify_change AFTER UPDATE ON petitions
    FOR EACH ROW EXECUTE FUNCTION petitions_notify_change();
