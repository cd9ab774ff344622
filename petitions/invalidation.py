"""Bulk invalidation: take out every signature from one network or email domain in a
time window (a flood), with a preview, an audit row, and a way back.

Signatures keep only keyed hashes of their network (keys.network_hash, of the
client's /24 or /48 as clients.client_network makes it) and email domain
(keys.domain_hash), so criteria are turned into hashes:

- a network is a keyed hash from the trending view, or a CIDR network that is
  cut into the networks signatures are stored by (a /22 is four /24s; a /28 is
  its /24, the finest a signature keeps); at most `MAX_NETWORKS` of them;
- a domain is a keyed hash from the trending view, or an exact domain
  (a wildcard cannot be matched against hashes);
- the window is the signing time, `since` (inclusive) to `until` (exclusive;
  fixed to the moment of the preview when left open, so that the action touches
  the signatures the preview counted).

Each signature moves by signature.py's `invalidate` (pending, verified, held ->
invalidated, remembering where it was); a `signature_invalidations` row names the
bulk action, and `reinstate` puts each of its signatures back. The tally and
live-event triggers follow every batch at its commit, so counts, lists and live
streams drop the signatures at once, and take them back the same way.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from databases import Database

from . import audit, signature
from .clients import client_network
from .db import raw_connection
from .fields import BadValue, FieldReader, has_forbidden_characters
from .keys import domain_hash, network_hash
from .screening import parse_domain, parse_network

BATCH_SIZE = 1_000
MAX_NETWORKS = 4_096  # a CIDR is cut into at most this many stored networks (a /12)
HASH_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_label(value: bytes) -> str:
    """A short label for a keyed hash, for people to tell sources apart."""
    return value.hex()[:10]


@dataclass(frozen=True)
class Criteria:
    """What a bulk invalidation matches; `describe` is what the audit log keeps."""

    networks: tuple[bytes, ...] = ()
    domain: bytes | None = None
    since: datetime | None = None
    until: datetime | None = None
    petition_id: int | None = None
    describe: dict = field(default_factory=dict)

    def as_query(self) -> dict[str, str]:
        """The form values that give these criteria again (the confirm form)."""
        return {k: v for k, v in self.describe.items() if k in _FORM_FIELDS and v}


_FORM_FIELDS = ("network", "domain", "since", "until", "petition")


def _network_hashes(secret_key: str, text: str) -> tuple[tuple[bytes, ...], str]:
    """The stored networks' hashes for a network typed or linked, and how to name it."""
    if HASH_HEX.match(text.lower()):
        value = bytes.fromhex(text.lower())
        return (value,), f"network {hash_label(value)}"
    wanted = ipaddress.ip_network(parse_network(text))
    stored = ipaddress.ip_network(client_network(str(wanted.network_address)))
    if wanted.prefixlen >= stored.prefixlen:  # inside one stored network: that one
        networks = [stored]
    else:
        count = 2 ** (stored.prefixlen - wanted.prefixlen)
        if count > MAX_NETWORKS:
            raise BadValue(
                f"{wanted} is too large: give a network of at most {MAX_NETWORKS} "
                f"/{stored.prefixlen} networks."
            )
        networks = list(wanted.subnets(new_prefix=stored.prefixlen))
    hashes = tuple(network_hash(secret_key, str(n)) for n in networks)
    name = str(networks[0]) if len(networks) == 1 else str(wanted)
    return hashes, name


def _domain_hash(secret_key: str, text: str) -> tuple[bytes, str]:
    if HASH_HEX.match(text.lower()):
        value = bytes.fromhex(text.lower())
        return value, f"domain {hash_label(value)}"
    if text.strip().startswith("*"):
        raise BadValue(
            "Give one exact domain: signatures keep only a keyed hash of theirs, which a "
            "wildcard cannot be matched against."
        )
    domain = parse_domain(text)
    return domain_hash(secret_key, domain), domain


def parse_criteria(
    values, secret_key: str, petition_id: int | None, petition_slug: str | None, now: datetime
) -> Criteria:
    """Criteria from the form; BadValue with the first problem. A network or a domain
    is required (never every signature of a window)."""
    read = FieldReader(values)
    since = read.moment("since", "From")
    until = read.moment("until", "Until")
    read.check()
    network_text = read.raw("network").strip()
    domain_text = read.raw("domain").strip()
    for text in (network_text, domain_text):
        if len(text) > 300 or has_forbidden_characters(text):
            raise BadValue("A network or domain is at most 300 characters of plain text.")
    if not network_text and not domain_text:
        raise BadValue("Give a network, an email domain, or both.")
    networks: tuple[bytes, ...] = ()
    domain = None
    describe: dict[str, str] = {}
    if network_text:
        networks, describe["network_name"] = _network_hashes(secret_key, network_text)
        describe["network"] = (
            network_text
            if HASH_HEX.match(network_text.lower())
            else (str(ipaddress.ip_network(parse_network(network_text))))
        )
    if domain_text:
        domain, describe["domain_name"] = _domain_hash(secret_key, domain_text)
        describe["domain"] = (
            domain_text.lower()
            if HASH_HEX.match(domain_text.lower())
            else (describe["domain_name"])
        )
    until = until or now
    if since is not None and since >= until:
        raise BadValue("“From” must come before “Until”.")
    describe["since"] = since.isoformat(timespec="seconds") if since else ""
    describe["until"] = until.isoformat(timespec="seconds")
    describe["petition"] = petition_slug or ""
    return Criteria(networks, domain, since, until, petition_id, describe)


_MATCHING = """
  FROM signatures
 WHERE ($1::bigint IS NULL OR petition_id = $1)
   AND (cardinality($2::bytea[]) = 0 OR network_hash = ANY($2::bytea[]))
   AND ($3::bytea IS NULL OR domain_hash = $3)
   AND ($4::timestamptz IS NULL OR created_at >= $4)
   AND created_at < $5
"""


def _arguments(criteria: Criteria) -> tuple:
    return (
        criteria.petition_id, list(criteria.networks), criteria.domain, criteria.since,
        criteria.until,
    )  # fmt: skip


@dataclass(frozen=True)
class Preview:
    touched: int  # what invalidating would move now
    by_status: dict[str, int]  # every matching signature, by status


async def preview(db: Database, criteria: Criteria) -> Preview:
    """How many signatures the criteria match, by status; `touched` are those that
    invalidating moves (pending, verified, held)."""
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            f"SELECT status, count(*) AS n {_MATCHING} GROUP BY status ORDER BY status",
            *_arguments(criteria),
        )
    by_status = {r["status"]: r["n"] for r in rows}
    sources = signature.TRANSITIONS["invalidate"].sources
    return Preview(sum(n for s, n in by_status.items() if s in sources), by_status)


_NEXT_BATCH = f"""
SELECT id {_MATCHING}
   AND status IN ({", ".join(repr(s.value) for s in sorted(signature.TRANSITIONS["invalidate"].sources))})
   AND id > $6
 ORDER BY id
 LIMIT $7
"""


async def invalidate(
    db: Database, admin_id: int, criteria: Criteria, batch_size: int = BATCH_SIZE
) -> tuple[int, int]:
    """Invalidate every signature the criteria match, batch by batch; return (the
    bulk invalidation's id, how many signatures it moved). Audited."""
    async with raw_connection(db) as conn:
        async with conn.transaction():
            invalidation_id = await conn.fetchval(
                """INSERT INTO signature_invalidations (admin_id, petition_id, criteria)
                   VALUES ($1, $2, $3::jsonb) RETURNING id""",
                admin_id, criteria.petition_id, json.dumps(criteria.describe),
            )  # fmt: skip
        touched, after = 0, 0
        while True:
            ids = await conn.fetchval(
                f"SELECT coalesce(array_agg(id), '{{}}') FROM ({_NEXT_BATCH}) b",
                *_arguments(criteria), after, batch_size,
            )  # fmt: skip
            if not ids:
                break
            touched += await signature.invalidate(conn, invalidation_id, ids)
            after = max(ids)
        async with conn.transaction():
            await conn.execute(
                "UPDATE signature_invalidations SET touched = $2 WHERE id = $1",
                invalidation_id, touched,
            )  # fmt: skip
            await audit.record(
                conn, admin_id, "signatures.invalidate", petition_id=criteria.petition_id,
                details={"invalidation": invalidation_id, "criteria": criteria.describe,
                         "count": touched},
            )  # fmt: skip
    return invalidation_id, touched


async def reinstate(
    db: Database, admin_id: int, invalidation_id: int, batch_size: int = BATCH_SIZE
) -> int | None:
    """Put every signature of a bulk invalidation back where it was; how many moved,
    or None when there is no such invalidation or it was reinstated already. Audited."""
    async with raw_connection(db) as conn:
        claimed = await conn.fetchrow(
            """UPDATE signature_invalidations SET reinstated_at = now(), reinstated_by = $2
                WHERE id = $1 AND reinstated_at IS NULL
            RETURNING petition_id, criteria""",
            invalidation_id, admin_id,
        )  # fmt: skip
        if claimed is None:
            return None
        moved = 0
        while True:
            batch = await signature.reinstate(conn, invalidation_id, batch_size)
            moved += batch
            if batch < batch_size:
                break
        async with conn.transaction():
            await conn.execute(
                "UPDATE signature_invalidations SET reinstated = $2 WHERE id = $1",
                invalidation_id, moved,
            )  # fmt: skip
            criteria = claimed["criteria"]
            await audit.record(
                conn, admin_id, "signatures.reinstate", petition_id=claimed["petition_id"],
                details={"invalidation": invalidation_id, "count": moved,
                         "criteria": json.loads(criteria) if isinstance(criteria, str)
                         else criteria},
            )  # fmt: skip
    return moved


@dataclass(frozen=True)
class Invalidation:
    id: int
    created_at: datetime
    admin_email: str | None
    slug: str | None
    criteria: dict
    touched: int
    reinstated_at: datetime | None
    reinstated_by: str | None
    reinstated: int | None


async def recent(db: Database, limit: int = 50) -> list[Invalidation]:
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            """
            SELECT i.id, i.created_at, a.email AS admin_email, p.slug, i.criteria, i.touched,
                   i.reinstated_at, r.email AS reinstated_by, i.reinstated
              FROM signature_invalidations i
              LEFT JOIN admins a ON a.id = i.admin_id
              LEFT JOIN admins r ON r.id = i.reinstated_by
              LEFT JOIN petitions p ON p.id = i.petition_id
             ORDER BY i.id DESC
             LIMIT $1
            """,
            limit,
        )
    return [
        Invalidation(**{
            **dict(r),
            "criteria": json.loads(r["criteria"]) if isinstance(r["criteria"], str)
            else r["criteria"],
        })
        for r in rows
    ]  # fmt: skip
