-- Moderator tools (petitions/screening.py, trending.py, invalidation.py): allow and
-- block lists of networks and email domains, the trending alerts' memory, and bulk
-- invalidation of signatures, reversible.

-- Allow and block lists -----------------------------------------------------------

-- An entry is the admin's, not a signer's: a network in CIDR form, or an email
-- domain (`example.org`, or `*.example.org` for every subdomain of it). Matched at
-- sign time against the client's address and the typed email's domain, which are
-- at hand then (signatures keep only keyed hashes of them).
CREATE TABLE screening_rules (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list       text NOT NULL CHECK (list IN ('allow', 'block')),
    network    cidr,
    domain     text CHECK (char_length(domain) BETWEEN 1 AND 255 AND domain = lower(domain)),
    note       text CHECK (char_length(note) <= 200),
    created_by bigint REFERENCES admins (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((network IS NULL) <> (domain IS NULL))
);

CREATE UNIQUE INDEX screening_rules_network_once ON screening_rules (list, network)
    WHERE network IS NOT NULL;
CREATE UNIQUE INDEX screening_rules_domain_once ON screening_rules (list, domain)
    WHERE domain IS NOT NULL;

-- Signatures: the email domain's keyed hash, and why one is held when confirmed ------

-- Keyed hash of the email's domain (keys.domain_hash): the trending view and bulk
-- invalidation group and find signatures by it without the domain in clear.
ALTER TABLE signatures ADD COLUMN domain_hash bytea;
CREATE INDEX signatures_domain_hash_created_idx
    ON signatures (domain_hash, created_at) WHERE domain_hash IS NOT NULL;
CREATE INDEX signatures_network_hash_idx
    ON signatures (network_hash, created_at) WHERE network_hash IS NOT NULL;
-- The trending view reads the last hour's signatures, whatever their petition.
CREATE INDEX signatures_created_idx ON signatures (created_at);

-- Set at sign time when the signature must wait for a moderator once confirmed:
-- 'blocked' (its network or domain is on the block list, screening.py), or past the
-- hourly limit of its 'network' or 'domain' (sign_limits.py). Confirming holds it.
ALTER TABLE signatures ADD COLUMN hold_reason text CHECK (char_length(hold_reason) <= 40);

-- Bulk invalidation ------------------------------------------------------------------

-- One row per bulk invalidation: who, when, what it matched, how many it touched;
-- reinstating it puts each of its signatures back where it was.
CREATE TABLE signature_invalidations (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id       bigint REFERENCES admins (id) ON DELETE SET NULL,
    petition_id    bigint REFERENCES petitions (id) ON DELETE CASCADE,
    criteria       jsonb NOT NULL,
    touched        integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    reinstated_by  bigint REFERENCES admins (id) ON DELETE SET NULL,
    reinstated_at  timestamptz,
    reinstated     integer
);

ALTER TABLE signatures ADD COLUMN invalidation_id bigint
    REFERENCES signature_invalidations (id) ON DELETE SET NULL;
-- The status it had before (what `reinstate` returns it to).
ALTER TABLE signatures ADD COLUMN invalidated_from text
    CHECK (invalidated_from IN ('pending', 'verified', 'held'));
CREATE INDEX signatures_invalidation_idx ON signatures (invalidation_id, id)
    WHERE status = 'invalidated';

ALTER TABLE signatures DROP CONSTRAINT signatures_status_check;
ALTER TABLE signatures ADD CONSTRAINT signatures_status_check
    CHECK (status IN ('pending', 'verified', 'held', 'rejected', 'withdrawn', 'erased',
                      'invalidated'));

INSERT INTO signature_transitions (name, from_status, to_status) VALUES
    ('invalidate', 'pending',     'invalidated'),
    ('invalidate', 'verified',    'invalidated'),
    ('invalidate', 'held',        'invalidated'),
    ('reinstate',  'invalidated', 'pending'),
    ('reinstate',  'invalidated', 'verified'),
    ('reinstate',  'invalidated', 'held'),
    ('withdraw',   'invalidated', 'withdrawn');

-- Trending alerts ----------------------------------------------------------------------

-- When the admins were last told about a source (a network's or domain's keyed
-- hash), so that one source makes at most one alert an hour, across processes.
CREATE TABLE trending_alerts (
    source_kind text NOT NULL CHECK (source_kind IN ('network', 'domain')),
    source_hash bytea NOT NULL,
    alerted_at  timestamptz NOT NULL,
    PRIMARY KEY (source_kind, source_hash)
);
