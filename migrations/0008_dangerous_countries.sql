-- Per petition, the countries where signing it is dangerous (set by the campaign):
-- a signer who picks one is told what the initials and anonymous choices do.
-- ISO 3166-1 alpha-2 codes in upper case (the app also checks they name countries);
-- empty by default.
ALTER TABLE petitions
    ADD COLUMN dangerous_countries text[] NOT NULL DEFAULT '{}'
    CONSTRAINT petitions_dangerous_countries_check CHECK (
        cardinality(dangerous_countries) <= 300
        AND coalesce(array_ndims(dangerous_countries), 1) = 1
        AND array_position(dangerous_countries, NULL) IS NULL
        AND array_to_string(dangerous_countries, ',') ~ '^([A-Z]{2}(,[A-Z]{2})*)?$'
        AND (cardinality(dangerous_countries) = 0
             OR array_to_string(dangerous_countries, ',') <> '')
    );
