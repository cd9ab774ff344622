-- Admin accounts (issue 11): sessions kept server-side, so that logging out ends
-- a session even for a copy of its cookie; an optional TOTP second factor.

-- One row per logged-in admin session. The cookie carries a random session id;
-- only its SHA-256 is stored, so a copy of this table opens no session.
CREATE TABLE admin_sessions (
    id         bytea PRIMARY KEY CHECK (octet_length(id) = 32),
    admin_id   bigint NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admin_sessions_admin_id_idx ON admin_sessions (admin_id);
CREATE INDEX admin_sessions_created_at_idx ON admin_sessions (created_at);

-- The TOTP secret, sealed with the data key (crypto.py, bound to the admin's id);
-- the secret being enrolled until a first code confirms it; the last time step a
-- code was accepted for, so that no code is accepted twice.
ALTER TABLE admins
    ADD COLUMN totp_secret bytea
        CONSTRAINT admins_totp_secret_check CHECK (octet_length(totp_secret) BETWEEN 33 AND 256),
    ADD COLUMN totp_pending bytea
        CONSTRAINT admins_totp_pending_check CHECK (octet_length(totp_pending) BETWEEN 33 AND 256),
    ADD COLUMN totp_last_step bigint,
    ADD COLUMN totp_enabled_at timestamptz;
