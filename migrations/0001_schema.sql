-- The whole product's schema: petitions with versioned, translated statements;
-- signatures of both kinds; tallies kept by triggers; the outbox; admins; audit log.
-- Core PostgreSQL only (no contrib extensions): the embedded server ships none.

-- Admin users -----------------------------------------------------------------

CREATE TABLE admins (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254
                                       AND email = lower(btrim(email))),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    role          text NOT NULL DEFAULT 'editor' CHECK (role IN ('owner', 'editor')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    UNIQUE (email)
);

-- Petitions and their statements ----------------------------------------------

CREATE TABLE petitions (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug                   text NOT NULL UNIQUE
                           CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,78}[a-z0-9])?$'),
    status                 text NOT NULL DEFAULT 'draft'
                           CHECK (status IN ('draft', 'open', 'closed', 'archived')),
    goal                   integer CHECK (goal IS NULL OR goal BETWEEN 1 AND 1000000000),
    closes_at              timestamptz,
    accepts_individuals    boolean NOT NULL DEFAULT true,
    accepts_organisations  boolean NOT NULL DEFAULT true,
    moderate_organisations boolean NOT NULL DEFAULT false,
    default_language       text NOT NULL DEFAULT 'en'
                           CHECK (default_language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$'),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    published_at           timestamptz,
    CHECK (accepts_individuals OR accepts_organisations)
);

CREATE INDEX petitions_status_idx ON petitions (status, published_at DESC);

-- Each edit of the text after the first signature makes a new version; a
-- signature records the version its signer saw.
CREATE TABLE statement_versions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    petition_id bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version >= 1),
    note        text NOT NULL DEFAULT '' CHECK (char_length(note) <= 500),
    created_by  bigint REFERENCES admins (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (petition_id, version)
);

-- The text of one version in one language (the petition's default language
-- and any translations).
CREATE TABLE statement_texts (
    version_id bigint NOT NULL REFERENCES statement_versions (id) ON DELETE CASCADE,
    language   text NOT NULL CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$'),
    title      text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    summary    text NOT NULL DEFAULT '' CHECK (char_length(summary) <= 1000),
    target     text NOT NULL DEFAULT '' CHECK (char_length(target) <= 300),
    body       text NOT NULL DEFAULT '' CHECK (char_length(body) <= 100000),
    demands    text[] NOT NULL DEFAULT '{}'
               CHECK (cardinality(demands) <= 50 AND array_position(demands, NULL) IS NULL),
    PRIMARY KEY (version_id, language)
);

-- Signatures ------------------------------------------------------------------

-- An organisation's name folded for "same organisation": Unicode form, case, spacing.
CREATE FUNCTION organisation_key(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(regexp_replace(btrim(normalize(name, NFKC)), '\s+', ' ', 'g'));

CREATE TABLE signatures (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The only identifier ever shown outside: opaque, not a row number.
    public_id         uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    petition_id       bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    version_id        bigint REFERENCES statement_versions (id) ON DELETE SET NULL,
    kind              text NOT NULL CHECK (kind IN ('individual', 'organisation')),
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'verified', 'held', 'rejected', 'withdrawn')),
    display           text NOT NULL DEFAULT 'public'
                      CHECK (display IN ('public', 'initials', 'anonymous')),
    -- Personal data: erased (set to NULL) when a signature is withdrawn.
    name              text CHECK (char_length(name) BETWEEN 1 AND 200),
    email             text CHECK (char_length(email) BETWEEN 3 AND 254
                                    AND email = lower(normalize(btrim(email), NFC))),
    -- Keyed hash (HMAC-SHA256) of the normalised email: uniqueness and look-ups
    -- work on it, so the email itself can later be encrypted at rest.
    email_hash        bytea CHECK (octet_length(email_hash) = 32),
    city              text CHECK (char_length(city) <= 100),
    occupation        text CHECK (char_length(occupation) <= 200),
    organisation      text CHECK (char_length(organisation) BETWEEN 1 AND 300),
    -- The organisation's name folded for uniqueness (case, spacing, Unicode form).
    organisation_key  text GENERATED ALWAYS AS (organisation_key(organisation)) STORED,
    organisation_type text CHECK (organisation_type IN (
                          'trade_union', 'federation', 'association', 'ngo', 'political', 'other')),
    website           text CHECK (char_length(website) <= 500 AND website ~ '^https?://'),
    members           integer CHECK (members BETWEEN 0 AND 1000000000),
    comment           text CHECK (char_length(comment) <= 1000),
    -- Kept after withdrawal: what the counts and their history need.
    country           text CHECK (country ~ '^[A-Z]{2}$'),
    updates           boolean NOT NULL DEFAULT false,
    language          text NOT NULL DEFAULT 'en'
                      CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$'),
    ref               text CHECK (ref ~ '^[A-Za-z0-9_.-]{1,64}$'),
    -- Keyed hash of the signer's network, for abuse detection; dropped after a
    -- retention period.
    network_hash      bytea CHECK (octet_length(network_hash) = 32),
    created_at        timestamptz NOT NULL DEFAULT now(),
    verified_at       timestamptz,
    withdrawn_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('withdrawn', 'rejected') OR (name IS NOT NULL AND email_hash IS NOT NULL)),
    CHECK (kind = 'individual' OR status = 'withdrawn' OR organisation IS NOT NULL),
    CHECK (kind = 'organisation' OR (organisation IS NULL AND organisation_type IS NULL
                                     AND website IS NULL AND members IS NULL)),
    CHECK (status <> 'verified' OR verified_at IS NOT NULL)
);

-- One individual signature per normalised email per petition.
CREATE UNIQUE INDEX signatures_one_individual_per_email
    ON signatures (petition_id, email_hash) WHERE kind = 'individual';
-- One organisation signature per organisation name and country per petition.
CREATE UNIQUE INDEX signatures_one_per_organisation
    ON signatures (petition_id, organisation_key, country) WHERE kind = 'organisation';
-- Finding an organisation signer's own signatures by email.
CREATE INDEX signatures_email_hash_idx ON signatures (email_hash) WHERE email_hash IS NOT NULL;
-- The public lists: verified, newest first, keyset-paginated.
CREATE INDEX signatures_public_list_idx
    ON signatures (petition_id, verified_at DESC, public_id DESC) WHERE status = 'verified';
CREATE INDEX signatures_petition_status_idx ON signatures (petition_id, status, created_at);

-- Tallies: verified signatures per petition, kind and country, kept exact by
-- statement-level triggers (cheap for bulk loads too). Each group is spread over
-- 8 slots by signature id so that many concurrent verifications do not queue
-- on one hot row.
CREATE TABLE signature_tallies (
    petition_id bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    country     text NOT NULL DEFAULT '',
    slot        smallint NOT NULL CHECK (slot BETWEEN 0 AND 7),
    n           bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (petition_id, kind, country, slot)
);

CREATE FUNCTION apply_tally_deltas(deltas jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO signature_tallies AS t (petition_id, kind, country, slot, n)
    SELECT (d->>'petition_id')::bigint, d->>'kind', d->>'country', (d->>'slot')::smallint,
           (d->>'n')::bigint
      FROM jsonb_array_elements(deltas) AS d
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (petition_id, kind, country, slot)
        DO UPDATE SET n = t.n + excluded.n, updated_at = now();
$$;

CREATE FUNCTION signatures_tally_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM apply_tally_deltas(coalesce(jsonb_agg(g), '[]'))
       FROM (SELECT petition_id, kind, coalesce(country, '') AS country,
                    (id % 8)::smallint AS slot, count(*) AS n
               FROM new_rows WHERE status = 'verified'
              GROUP BY 1, 2, 3, 4) AS g;
    RETURN NULL;
END $$;

CREATE FUNCTION signatures_tally_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM apply_tally_deltas(coalesce(jsonb_agg(g), '[]'))
       FROM (SELECT petition_id, kind, country, slot, sum(n) AS n
               FROM (SELECT petition_id, kind, coalesce(country, '') AS country,
                            (id % 8)::smallint AS slot, -1 AS n
                       FROM old_rows WHERE status = 'verified'
                     UNION ALL
                     SELECT petition_id, kind, coalesce(country, '') AS country,
                            (id % 8)::smallint AS slot, 1 AS n
                       FROM new_rows WHERE status = 'verified') AS changes
              GROUP BY 1, 2, 3, 4
             HAVING sum(n) <> 0) AS g;
    RETURN NULL;
END $$;

CREATE FUNCTION signatures_tally_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM apply_tally_deltas(coalesce(jsonb_agg(g), '[]'))
       FROM (SELECT petition_id, kind, coalesce(country, '') AS country,
                    (id % 8)::smallint AS slot, -count(*) AS n
               FROM old_rows WHERE status = 'verified'
              GROUP BY 1, 2, 3, 4) AS g;
    RETURN NULL;
END $$;

CREATE TRIGGER signatures_tally_insert AFTER INSERT ON signatures
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_tally_insert();
CREATE TRIGGER signatures_tally_update AFTER UPDATE ON signatures
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_tally_update();
CREATE TRIGGER signatures_tally_delete AFTER DELETE ON signatures
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signatures_tally_delete();

-- Rebuilds one petition's tallies from its signatures (repair, or after bulk work).
CREATE FUNCTION recount_petition(p_id bigint) RETURNS void LANGUAGE sql AS $$
    DELETE FROM signature_tallies WHERE petition_id = p_id;
    INSERT INTO signature_tallies (petition_id, kind, country, slot, n)
    SELECT petition_id, kind, coalesce(country, ''), (id % 8)::smallint, count(*)
      FROM signatures WHERE petition_id = p_id AND status = 'verified'
     GROUP BY 1, 2, 3, 4;
$$;

-- Updates to signers --------------------------------------------------------

CREATE TABLE petition_updates (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    petition_id bigint NOT NULL REFERENCES petitions (id) ON DELETE CASCADE,
    subject     text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    body        text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 50000),
    created_by  bigint REFERENCES admins (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);

-- Outbox: every email is first a row here, written in the same transaction as
-- the change that causes it; the worker delivers it.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purpose         text NOT NULL CHECK (purpose IN (
                        'verification', 'reminder', 'update', 'test', 'notice')),
    recipient       text NOT NULL CHECK (char_length(recipient) BETWEEN 3 AND 254),
    subject         text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 300),
    body_text       text NOT NULL,
    body_html       text,
    headers         jsonb NOT NULL DEFAULT '{}',
    signature_id    bigint REFERENCES signatures (id) ON DELETE SET NULL,
    update_id       bigint REFERENCES petition_updates (id) ON DELETE SET NULL,
    status          text NOT NULL DEFAULT 'waiting'
                    CHECK (status IN ('waiting', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    message_id      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);

CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE status = 'waiting';
CREATE INDEX outbox_status_idx ON outbox (status, created_at DESC);
-- An update goes to each signer once, however often it is queued.
CREATE UNIQUE INDEX outbox_one_update_per_signature
    ON outbox (update_id, signature_id) WHERE update_id IS NOT NULL;

-- Audit log of admin actions ---------------------------------------------------

CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id     bigint REFERENCES admins (id) ON DELETE SET NULL,
    action       text NOT NULL CHECK (char_length(action) BETWEEN 1 AND 100),
    petition_id  bigint REFERENCES petitions (id) ON DELETE SET NULL,
    signature_id bigint REFERENCES signatures (id) ON DELETE SET NULL,
    details      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_petition_idx ON audit_log (petition_id, created_at DESC);

-- Throttling (failed logins, signing bursts): fixed-window counters by bucket --

CREATE TABLE throttle_counters (
    bucket       text NOT NULL CHECK (char_length(bucket) <= 200),
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, window_start)
);
