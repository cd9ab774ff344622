-- The public list filtered by kind or by country, newest first.
CREATE INDEX signatures_public_kind_idx
    ON signatures (petition_id, kind, verified_at DESC, public_id DESC) WHERE status = 'verified';
CREATE INDEX signatures_public_country_idx
    ON signatures (petition_id, country, verified_at DESC, public_id DESC) WHERE status = 'verified';

-- Searching the public list without contrib extensions: a full-text vector of
-- only what each signer chose to show (names, organisations and cities of public
-- signers; roles of public and initials signers), indexed with GIN.

CREATE FUNCTION public_search_vector(display text, name text, organisation text,
                                     city text, occupation text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_tsvector('simple',
        CASE WHEN display = 'public' THEN concat_ws(' ', name, organisation, city) ELSE '' END
        || ' ' || coalesce(occupation, ''));

CREATE INDEX signatures_public_search_idx ON signatures
    USING gin (public_search_vector(display, name, organisation, city, occupation))
    WHERE status = 'verified' AND display <> 'anonymous';
