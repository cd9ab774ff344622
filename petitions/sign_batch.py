"""Storing a batch of sign requests in one transaction, with every rule of the single path.

signing.submit_signature stores one signature in one transaction: the allow and block
lists, then sign_limits.admit (the form token's use, the advisory locks of its network
and domain, the hour's counts), then one statement that stores the signature and its
confirmation email, or queues a reminder for a signer who already signed. A batch
(batching.py) does the same for all its requests, as if they came one after the other
in batch order, in a fixed number of statements:

1. the lists' verdicts and the free-mail domains, for every request;
2. the form tokens' rows (upserted, so locked), then the advisory locks, both sorted,
   always in that order: tokens, networks, domains. A single request takes its locks
   in the same order, so no two transactions ever wait for each other in a circle;
3. with the locks held, the hour's counts of each network and domain (a snapshot of
   its own), whether each email already signed, whether each petition is open;
4. in Python, each request in turn: its token use, its ceiling and hold, and whether it
   will store a signature, counting the batch's own earlier signatures in its buckets;
5. one statement: the signatures (INSERT … SELECT FROM unnest, in the order of their
   unique keys), their emails, the reminders, the token counts.

Whether an email already signed is foreseen in step 3. A signer of the same email from
another network (not under our locks) can commit between 3 and 5; the insert then
stores fewer rows than foreseen, and the batch is rolled back and each request stored
on its own (`Mispredicted`), as it is when the database refuses a row. Whatever is
answered is what a run one at a time would have answered.
"""

from __future__ import annotations

from collections import Counter

import asyncpg

from . import sign_limits
from .db_errors import database_trouble
from .petitions import TAKES_SIGNATURES_SQL
from .screening import MATCHES_RULE, email_domain, hold_reason, network_address
from .signature import INITIAL_STATUS, SIGNER_COLUMNS, Kind
from .tokens import FORM_TOKEN_USES


class Mispredicted(Exception):
    """The insert stored other rows than foreseen: a signer raced the batch."""


def lost_connection(error: BaseException) -> bool:
    """The database is out of reach or cannot save (db_errors.py): every caller of the
    batch hears so (503); any other error, one request's own, has the batch retried one
    request at a time."""
    return database_trouble(error)


_LOOKUPS = f"""
SELECT (SELECT list FROM screening_rules
         WHERE {MATCHES_RULE.format(address="t.address", domain="t.domain")}
         ORDER BY list = 'block' DESC LIMIT 1) AS verdict,
       EXISTS (SELECT 1 FROM free_mail_domains f WHERE f.domain = t.domain) AS free_mail
  FROM unnest($1::inet[], $2::text[]) WITH ORDINALITY AS t(address, domain, n)
 ORDER BY t.n
"""

# The tokens' rows first (the aggregate reads them all), then the advisory locks in
# the order given. A token new to the table is inserted with one use for now
# (`inserted`); step 5 writes every token's true count.
_LOCK = """
WITH used AS (
    INSERT INTO form_token_uses AS u (token_id, uses)
    SELECT t, 1 FROM unnest($1::bytea[]) AS t
    ON CONFLICT (token_id) DO UPDATE SET uses = u.uses
    RETURNING token_id, uses, xmax = 0 AS inserted
), tokens AS (
    SELECT array_agg(token_id) AS ids, array_agg(uses) AS uses, array_agg(inserted) AS inserted
      FROM used
)
SELECT tokens.ids, tokens.uses, tokens.inserted,
       (SELECT count(*) FROM unnest($2::int[], $3::int[]) AS l(space, key),
                             LATERAL pg_advisory_xact_lock(l.space, l.key)) AS locks
  FROM tokens
"""

# Each count by its own column's index (signatures_network_hash_idx,
# signatures_domain_hash_created_idx), as sign_limits counts: a CASE inside one
# predicate would read every signature of the hour.
_COUNT_RECENT = f"""
SELECT CASE WHEN b.by_network
            THEN (SELECT count(*) FROM (
                      SELECT 1 FROM signatures s
                       WHERE s.network_hash = b.hash
                         AND s.created_at > now() - interval '{sign_limits.WINDOW}'
                         AND s.petition_id = b.petition_id
                       LIMIT $4) x)
            ELSE (SELECT count(*) FROM (
                      SELECT 1 FROM signatures s
                       WHERE s.domain_hash = b.hash
                         AND s.created_at > now() - interval '{sign_limits.WINDOW}'
                         AND s.petition_id = b.petition_id
                       LIMIT $4) y)
       END AS recent
  FROM unnest($1::bigint[], $2::bool[], $3::bytea[]) WITH ORDINALITY
       AS b(petition_id, by_network, hash, n)
 ORDER BY b.n
"""

_SIGNED_AND_OPEN = f"""
SELECT CASE WHEN t.kind = '{Kind.INDIVIDUAL}'
            THEN EXISTS (SELECT 1 FROM signatures s
                          WHERE s.petition_id = t.petition_id AND s.kind = '{Kind.INDIVIDUAL}'
                            AND s.email_hash = t.email_hash)
            ELSE EXISTS (SELECT 1 FROM signatures s
                          WHERE s.petition_id = t.petition_id
                            AND s.kind = '{Kind.ORGANISATION}'
                            AND s.organisation_hash = t.organisation_hash
                            AND s.email_hash = t.email_hash)
       END AS signed,
       EXISTS (SELECT 1 FROM petitions p WHERE p.id = t.petition_id AND {TAKES_SIGNATURES_SQL})
       AS open
  FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[]) WITH ORDINALITY
       AS t(petition_id, kind, email_hash, organisation_hash, n)
 ORDER BY t.n
"""

# signing._INSERT_SIGNATURE for many: its arguments as arrays, in the same order
# ($9, the search hashes, an array per row, comes flattened in $32 with each row's
# first index and length).
_COLUMNS = (
    "public_id uuid, petition_id bigint, version_id bigint, kind text, display text, "
    "sealed bytea, email_hash bytea, organisation_hash bytea, search_from int, initials text, "
    "name text, city text, occupation text, organisation text, organisation_type text, "
    "website text, members int, comment text, country text, updates bool, language text, "
    "ref text, network_hash bytea, subject text, message bytea, message_id text, "
    "domain_hash bytea, hold_reason text, mailbox_hash bytea, per_mailbox int, "
    "per_network int, search_count int"
)
_NAMES = [column.split()[0] for column in _COLUMNS.split(", ")]
_TYPES = [column.split()[1] for column in _COLUMNS.split(", ")]
_UNNEST = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_TYPES, 1))

_INSERT = f"""
WITH incoming AS (
    SELECT * FROM unnest({_UNNEST}) WITH ORDINALITY AS r({", ".join(_NAMES)}, n)
), new_signature AS (
    INSERT INTO signatures ({SIGNER_COLUMNS})
    SELECT '{INITIAL_STATUS}', r.public_id, r.petition_id, r.version_id, r.kind, r.display,
           r.sealed, r.email_hash, r.organisation_hash,
           CASE WHEN r.search_count IS NOT NULL
                THEN ($33::bytea[])[r.search_from : r.search_from + r.search_count - 1] END,
           r.initials, r.name, r.city, r.occupation, r.organisation, r.organisation_type,
           r.website, r.members, r.comment, r.country, r.updates, r.language, r.ref,
           r.network_hash, r.domain_hash, r.hold_reason
      FROM incoming r JOIN petitions p ON p.id = r.petition_id
     WHERE {TAKES_SIGNATURES_SQL}
     ORDER BY r.n
    ON CONFLICT DO NOTHING
    RETURNING id, public_id
), verification AS (
    INSERT INTO outbox (purpose, subject, sealed, message_id, signature_id, status)
    SELECT 'verification', r.subject, r.message, r.message_id, s.id,
           mail_admission(r.mailbox_hash, r.network_hash, r.per_mailbox, r.per_network)
      FROM new_signature s JOIN incoming r USING (public_id)
     ORDER BY r.n
    RETURNING signature_id
), reminder AS (
    INSERT INTO sign_reminders (petition_id, kind, email_hash, organisation_hash, network_hash)
    SELECT * FROM unnest($34::bigint[], $35::text[], $36::bytea[], $37::bytea[], $38::bytea[])
    ON CONFLICT (petition_id, kind, email_hash, organisation_hash)
        DO UPDATE SET created_at = excluded.created_at, network_hash = excluded.network_hash
), token_uses AS (
    UPDATE form_token_uses u SET uses = t.uses
      FROM unnest($39::bytea[], $40::int[]) AS t(token_id, uses)
     WHERE u.token_id = t.token_id
), unused_tokens AS (
    DELETE FROM form_token_uses WHERE token_id = ANY($41::bytea[])
)
SELECT s.public_id FROM new_signature s JOIN verification v ON v.signature_id = s.id
"""

# Positions in SignatureToStore.arguments.
_PUBLIC_ID, _PETITION, _KIND, _EMAIL_HASH, _ORGANISATION_HASH, _SEARCH = 0, 1, 3, 6, 7, 8
_NETWORK_HASH, _DOMAIN_HASH = 22, 26


def _unique_key(arguments: tuple) -> tuple:
    """What the unique indexes of signatures compare: one signer per petition."""
    organisation = arguments[_ORGANISATION_HASH] if arguments[_KIND] == Kind.ORGANISATION else None
    return (arguments[_PETITION], arguments[_KIND], arguments[_EMAIL_HASH], organisation or b"")


async def store(conn: asyncpg.Connection, batch) -> list:
    """For each signing.SignatureToStore of `batch`: "stored", "existing", "closed", or the
    exception for its caller alone (FormTokenSpent, OverCeiling). Run it inside the
    transaction; Mispredicted (roll back, store one by one) when a signer raced it."""
    lookups = await conn.fetch(
        _LOOKUPS,
        [network_address(s.client_address) for s in batch],
        [email_domain(s.email) for s in batch],
    )
    sources = [s.source if s.limits.active else _no_source(s.source) for s in batch]

    # 2. Tokens, then locks: networks, then domains, each sorted.
    tokens = sorted({s.form_token_id for s in batch if s.form_token_id is not None})
    network_locks = sorted(
        {sign_limits._lock_key(src.petition_id, src.network_hash) for src in sources} - {None}
    )
    domain_locks = sorted(
        {
            sign_limits._lock_key(src.petition_id, src.domain_hash)
            for src, found in zip(sources, lookups, strict=True)
            if not found["free_mail"]
        }
        - {None}
    )
    spaces = [sign_limits._NETWORK_LOCKS] * len(network_locks)
    spaces += [sign_limits._DOMAIN_LOCKS] * len(domain_locks)
    locked = await conn.fetchrow(_LOCK, tokens, spaces, network_locks + domain_locks)
    uses = dict(zip(locked["ids"] or [], locked["uses"] or [], strict=True))
    inserted = {
        t for t, new in zip(locked["ids"] or [], locked["inserted"] or [], strict=True) if new
    }
    for token in inserted:
        uses[token] = 0

    # 3. With the locks held: the hour's counts, who signed, which petitions are open.
    buckets = sorted(
        {(src.petition_id, True, src.network_hash) for src in sources if src.network_hash}
        | {
            (src.petition_id, False, src.domain_hash)
            for src, found in zip(sources, lookups, strict=True)
            if src.domain_hash and not found["free_mail"]
        }
    )
    limit = max((max(s.limits.per_hour, s.limits.ceiling) for s in batch), default=0)
    recent = {}
    if buckets:
        counted = await conn.fetch(_COUNT_RECENT, *zip(*buckets, strict=True), limit)
        recent = {bucket: row["recent"] for bucket, row in zip(buckets, counted, strict=True)}
    seen = await conn.fetch(
        _SIGNED_AND_OPEN,
        *zip(
            *(
                (a[_PETITION], a[_KIND], a[_EMAIL_HASH], a[_ORGANISATION_HASH])
                for a in (s.arguments for s in batch)
            ),
            strict=True,
        ),
    )

    # 4. One after the other, in batch order.
    outcomes: list = []
    to_store: list[tuple] = []
    reminders: dict[tuple, bytes | None] = {}
    stored_keys: set[tuple] = set()
    added: Counter = Counter()  # the batch's own new signatures per bucket
    for signature, source, found, row in zip(batch, sources, lookups, seen, strict=True):
        token = signature.form_token_id
        if token is not None:
            uses[token] += 1
            if uses[token] > FORM_TOKEN_USES:
                uses[token] -= 1
                outcomes.append(sign_limits.FormTokenSpent())
                continue
        try:
            over_limit = await _over_limit(
                conn, signature.limits, source, found, recent, added,
                exempt=found["verdict"] == "allow",
            )  # fmt: skip
        except sign_limits.OverCeiling as refused:
            if token is not None:
                uses[token] -= 1
            outcomes.append(refused)
            continue
        arguments = signature.arguments
        key = _unique_key(arguments)
        if not row["open"]:
            outcomes.append("closed")
        elif row["signed"] or key in stored_keys:
            outcomes.append("existing")
            reminders[key] = arguments[_NETWORK_HASH]  # the latest asker, as one by one
        else:
            outcomes.append("stored")
            stored_keys.add(key)
            petition = arguments[_PETITION]
            added[(petition, True, arguments[_NETWORK_HASH])] += 1
            added[(petition, False, arguments[_DOMAIN_HASH])] += 1
            to_store.append(
                (key, signature.insert_arguments(hold_reason(found["verdict"]) or over_limit))
            )

    # 5. One statement.
    to_store.sort(key=lambda pair: pair[0])
    rows = [arguments for _key, arguments in to_store]
    flat: list[bytes] = []
    columns: list[list] = [[] for _ in _NAMES]
    for arguments in rows:
        for i, value in enumerate(arguments):
            if i == _SEARCH:
                columns[i].append(len(flat) + 1)
                columns[-1].append(None if value is None else len(value))
                flat.extend(value or ())
            else:
                columns[i].append(value)
    reminder_rows = sorted(reminders.items())
    token_rows = [(t, n) for t, n in sorted(uses.items()) if n > 0]
    unused = [t for t in sorted(inserted) if uses[t] == 0]
    stored = await conn.fetch(
        _INSERT, *columns, flat,
        [k[0] for k, _ in reminder_rows], [k[1] for k, _ in reminder_rows],
        [k[2] for k, _ in reminder_rows], [k[3] or None for k, _ in reminder_rows],
        [network for _, network in reminder_rows],
        [t for t, _ in token_rows], [n for _, n in token_rows], unused,
    )  # fmt: skip
    if {r["public_id"] for r in stored} != {a[_PUBLIC_ID] for a in rows}:
        raise Mispredicted
    return outcomes


def _no_source(source: sign_limits.Source) -> sign_limits.Source:
    return sign_limits.Source(source.petition_id, None, None, None)


async def _over_limit(conn, limits, source, found, recent, added, exempt: bool) -> str | None:
    """sign_limits.admit's decision for one request, its bucket counts being those
    read under the locks plus the batch's own signatures before it."""
    network = source.network_hash
    domain = None if found["free_mail"] else source.domain_hash
    if network is None and domain is None:
        return None
    cap = max(limits.per_hour, limits.ceiling)
    counts = {}
    for name, by_network, source_hash in (("network", True, network), ("domain", False, domain)):
        bucket = (source.petition_id, by_network, source_hash)
        counts[name] = min(cap, recent[bucket] + added[bucket]) if source_hash else 0
    if limits.ceiling:
        for name, by_network, source_hash in (
            ("network", True, network), ("domain", False, domain),
        ):  # fmt: skip
            if source_hash and counts[name] >= limits.ceiling:
                ours = added[(source.petition_id, by_network, source_hash)]
                retry_after = None
                if limits.ceiling - ours >= 1:  # the oldest that matters is stored already
                    retry_after = await conn.fetchval(
                        sign_limits._SECONDS_UNTIL_BELOW.format(column=f"{name}_hash"),
                        source.petition_id, source_hash, limits.ceiling - ours,
                    )  # fmt: skip
                else:  # it is one of this batch's, signed now
                    retry_after = _WINDOW_SECONDS
                raise sign_limits.OverCeiling(retry_after or 1)
    if exempt or not limits.per_hour:
        return None
    if counts["network"] >= limits.per_hour:
        return sign_limits.NETWORK
    if counts["domain"] >= limits.per_hour:
        return sign_limits.DOMAIN
    return None


_WINDOW_SECONDS = 3600
