"""Sign limits: a flood is held for moderation, not dropped, and refused only far above.

Per petition, the signatures stored in the last hour from one client network
(IPv4 /24, IPv6 /48: clients.client_network) and from one email domain are
counted. Past `SIGN_LIMIT_PER_HOUR` a new signature is still stored, mailed and
confirmed as usual, but carries a `hold_reason` ('network' or 'domain'), so
confirming it holds it for a moderator (signature.confirm) and it counts once
approved. A union office where fifty people share one address loses nothing.
Past `SIGN_CEILING_PER_HOUR` (twenty times the limit unless set) the submission
is refused with 429 and nothing is stored.

The limits are per petition, not site-wide: a flood pads one petition's count,
moderators work petition by petition, and people who sign several petitions of
a campaign from one office should not use up one another's allowance.

Free-mail domains (free_mail.py) are exempt from the domain limit, not from the
network limit; a network or domain on the allow list (screening.py) is held by
neither limit, and the ceiling applies to everyone.

Counting is exact across processes: the counts are read from `signatures`
itself (through the `(network_hash, created_at)` and `(domain_hash, created_at)`
indexes, bounded by LIMIT) after taking a transaction-scoped advisory lock per
petition and network (then per petition and domain), so two submissions from
one network are counted one after the other and never both as "the 50th".
The lock is held until the signature commits; other networks never wait for it.

A sign form token carries at most `tokens.FORM_TOKEN_USES` submissions, counted
in `form_token_uses` (one upserted row per token, purged by retention).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .tokens import FORM_TOKEN_USES

NETWORK = "network"  # signatures.hold_reason: past the limit for its network
DOMAIN = "domain"  # ... for its email domain
# The first key of the two-key advisory locks (a space of their own).
_NETWORK_LOCKS = 1_101_011
_DOMAIN_LOCKS = 1_101_012
WINDOW = "1 hour"


class OverCeiling(Exception):
    """Far past the limit: refuse (429) and store nothing."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class FormTokenSpent(Exception):
    """This form token has carried its share of submissions."""


@dataclass(frozen=True)
class Limits:
    per_hour: int  # 0: never hold
    ceiling: int  # 0: never refuse

    @classmethod
    def of(cls, settings) -> Limits:
        return cls(settings.sign_limit_per_hour, settings.sign_ceiling_per_hour)

    @property
    def active(self) -> bool:
        return bool(self.per_hour or self.ceiling)


@dataclass(frozen=True)
class Source:
    """Where a signature comes from, as keyed hashes (and the domain, never stored)."""

    petition_id: int
    network_hash: bytes | None
    domain_hash: bytes | None
    domain: str | None


def _lock_key(petition_id: int, source_hash: bytes | None) -> int | None:
    if source_hash is None:
        return None
    digest = hashlib.blake2b(petition_id.to_bytes(8, "big") + source_hash, digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


# One round trip before counting: the form token's use (its row lock orders concurrent
# submissions with one token), whether the domain is free mail, and the locks: always
# the network's, then the domain's (a free-mail domain is not counted, so not locked),
# so no two submissions ever wait for each other in a circle. The counts come in a
# statement of their own, whose snapshot is taken once the locks are held.
_ADMIT = f"""
WITH used AS (
    INSERT INTO form_token_uses AS u (token_id, uses)
    SELECT $1, 1 WHERE $1::bytea IS NOT NULL
    ON CONFLICT (token_id) DO UPDATE SET uses = u.uses + 1
    RETURNING uses
), free AS (
    SELECT EXISTS (SELECT 1 FROM free_mail_domains WHERE domain = $2) AS yes
)
SELECT (SELECT uses FROM used) AS uses, free.yes AS free_mail,
       CASE WHEN $3::int IS NOT NULL
            THEN (SELECT true FROM pg_advisory_xact_lock({_NETWORK_LOCKS}, $3)) END AS network,
       CASE WHEN $4::int IS NOT NULL AND NOT free.yes
            THEN (SELECT true FROM pg_advisory_xact_lock({_DOMAIN_LOCKS}, $4)) END AS domain
  FROM free
"""

_COUNT_RECENT = f"""
SELECT (SELECT count(*) FROM (
            SELECT 1 FROM signatures
             WHERE network_hash = $2 AND created_at > now() - interval '{WINDOW}'
               AND petition_id = $1
             LIMIT $4) n) AS network,
       (SELECT count(*) FROM (
            SELECT 1 FROM signatures
             WHERE domain_hash = $3 AND created_at > now() - interval '{WINDOW}'
               AND petition_id = $1
             LIMIT $4) d) AS domain
"""

# When the oldest of the last `ceiling` signatures of a bucket leaves the hour.
_SECONDS_UNTIL_BELOW = f"""
SELECT greatest(1, ceil(extract(epoch FROM created_at + interval '{WINDOW}' - now())))::int
  FROM signatures
 WHERE {{column}} = $2 AND created_at > now() - interval '{WINDOW}' AND petition_id = $1
 ORDER BY created_at DESC
OFFSET $3 - 1 LIMIT 1
"""


async def admit(
    conn: asyncpg.Connection,
    limits: Limits,
    source: Source,
    form_token_id: bytes | None = None,
    exempt: bool = False,
) -> str | None:
    """Why a signature about to be stored must be held once confirmed (None: it need
    not be). FormTokenSpent when its form token has carried its submissions;
    OverCeiling when it must not be stored at all. Call it inside the transaction
    that stores the signature: the locks last until the commit.

    `exempt` (the allow list): never held; the ceiling still applies."""
    if not limits.active:
        source = Source(source.petition_id, None, None, None)
    if form_token_id is None and source.network_hash is None and source.domain_hash is None:
        return None
    admitted = await conn.fetchrow(
        _ADMIT, form_token_id, source.domain,
        _lock_key(source.petition_id, source.network_hash),
        _lock_key(source.petition_id, source.domain_hash),
    )  # fmt: skip
    if form_token_id is not None and admitted["uses"] > FORM_TOKEN_USES:
        raise FormTokenSpent
    domain_hash = None if admitted["free_mail"] else source.domain_hash
    if source.network_hash is None and domain_hash is None:
        return None
    row = await conn.fetchrow(
        _COUNT_RECENT, source.petition_id, source.network_hash, domain_hash,
        max(limits.per_hour, limits.ceiling),
    )  # fmt: skip
    buckets = (("network", source.network_hash), ("domain", domain_hash))
    if limits.ceiling:
        for name, source_hash in buckets:
            if row[name] >= limits.ceiling:
                retry_after = await conn.fetchval(
                    _SECONDS_UNTIL_BELOW.format(column=f"{name}_hash"),
                    source.petition_id, source_hash, limits.ceiling,
                )  # fmt: skip
                raise OverCeiling(retry_after or 1)
    if exempt or not limits.per_hour:
        return None
    if row["network"] >= limits.per_hour:
        return NETWORK
    if row["domain"] >= limits.per_hour:
        return DOMAIN
    return None


async def forget_used_form_tokens(
    conn: asyncpg.Connection, first_used_before: datetime, batch: int
) -> int:
    """Delete up to `batch` token counts of tokens that can no longer be used."""
    status = await conn.execute(
        """
        DELETE FROM form_token_uses WHERE token_id IN (
            SELECT token_id FROM form_token_uses WHERE first_used_at < $1
             ORDER BY first_used_at LIMIT $2)
        """,
        first_used_before,
        batch,
    )
    return int(status.rsplit(" ", 1)[-1])
