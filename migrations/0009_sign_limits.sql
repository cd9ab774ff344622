-- Sign limits (petitions/sign_limits.py): the email domains exempt from the
-- per-domain limit, and how often each sign form token has been used.

-- Large free-mail providers: thousands of unrelated people share each of them, so
-- counting their signers together says nothing about a flood. Their signatures
-- still count against their network's limit. The owners edit the list
-- (/admin/free-mail, audited); these are the defaults.
CREATE TABLE free_mail_domains (
    domain   text PRIMARY KEY
             CHECK (char_length(domain) BETWEEN 3 AND 253 AND domain = lower(domain)),
    added_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO free_mail_domains (domain) VALUES
    ('gmail.com'), ('googlemail.com'),
    ('outlook.com'), ('hotmail.com'), ('hotmail.co.uk'), ('hotmail.fr'), ('live.com'),
    ('msn.com'),
    ('yahoo.com'), ('yahoo.co.uk'), ('yahoo.fr'), ('yahoo.de'), ('yahoo.es'), ('ymail.com'),
    ('aol.com'),
    ('icloud.com'), ('me.com'), ('mac.com'),
    ('proton.me'), ('protonmail.com'), ('pm.me'),
    ('tutanota.com'), ('tuta.io'),
    ('mail.ru'), ('yandex.ru'), ('yandex.com'),
    ('gmx.de'), ('gmx.net'), ('gmx.com'), ('web.de'), ('t-online.de'),
    ('orange.fr'), ('free.fr'), ('laposte.net'),
    ('libero.it'),
    ('mail.com'), ('zoho.com'), ('fastmail.com'), ('riseup.net');

-- One row per sign form token that was used: its keyed id (a hash of the token,
-- never the token), how many submissions it carried, and when it was first used.
-- A token is good for a bounded number of submissions (tokens.FORM_TOKEN_USES);
-- retention deletes the rows once the token could no longer be used anyway.
CREATE TABLE form_token_uses (
    token_id      bytea PRIMARY KEY,
    uses          integer NOT NULL CHECK (uses > 0),
    first_used_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX form_token_uses_first_used_idx ON form_token_uses (first_used_at);
