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
