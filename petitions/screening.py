"""Allow and block lists of networks and email domains, edited by the site's owners.

An entry is a network in CIDR form (`203.0.113.0/24`, `2001:db8::/32`, or one
address) or an email domain: `example.org` is that domain alone, `*.example.org`
every subdomain of it (`lists.example.org`, `a.b.example.org`), not the domain
itself. Signatures keep only keyed hashes of their network and domain, so entries
are matched at sign time, against the client's address and the typed email, both
at hand then (`list_verdict`):

- a signature from a blocked network or domain is stored, mailed and confirmed as
  usual, but its confirmation holds it for a moderator (`hold_reason = 'blocked'`)
  rather than counting it. It is not refused: the signer sees exactly the answer
  every signer sees, so the list cannot be probed, and a moderator can still
  approve someone caught by a broad entry;
- a signature from an allowed network or domain is exempt from the flood limits
  (the sign limits ask `is_allowed`): a union office behind one address.

Block wins when both lists match. The matching is PostgreSQL's (`inet <<= cidr`,
and a suffix comparison for wildcards), one indexed look-up in a small table.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from . import audit
from .fields import BadValue, has_forbidden_characters

LISTS = ("allow", "block")
BLOCKED = "blocked"  # signatures.hold_reason of a signature a block-list entry holds
MAX_ENTRIES = 5_000  # per list: the lists are for abusers seen, not for the whole Internet
MAX_NOTE = 200
MAX_DOMAIN = 253

_LABEL = r"(?:[^\W_]|-)+"
_DOMAIN = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})+$")


@dataclass(frozen=True)
class Entry:
    id: int
    list: str
    value: str  # the CIDR network or the domain pattern
    kind: str  # "network" or "domain"
    note: str | None
    created_at: datetime
    created_by: str | None


def email_domain(email: str | None) -> str | None:
    """The domain of an email as entries are compared with it: lower case, NFC, no
    trailing dot."""
    if not email or "@" not in email:
        return None
    domain = unicodedata.normalize("NFC", email.strip().rpartition("@")[2]).lower().rstrip(".")
    return domain or None


def parse_network(text: str) -> str:
    """A network (or one address) as its CIDR text, host bits cleared; BadValue else."""
    text = text.strip()
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise BadValue(
            f"“{text[:60]}” is not a network: write it as 203.0.113.0/24, 2001:db8::/32 "
            "or a single address."
        ) from None


def parse_domain(text: str) -> str:
    """A domain pattern: `example.org` or `*.example.org`; BadValue else."""
    domain = unicodedata.normalize("NFC", text.strip()).lower().lstrip("@").rstrip(".")
    if len(domain) > MAX_DOMAIN or not _DOMAIN.match(domain):
        raise BadValue(
            f"“{text[:60]}” is not an email domain: write it as example.org, or *.example.org "
            "for every subdomain of example.org."
        )
    return domain


def parse_entry(text: str) -> tuple[str, str]:
    """("network", CIDR) or ("domain", pattern) from what an owner typed."""
    if not isinstance(text, str) or not text.strip():
        raise BadValue("Type a network (203.0.113.0/24) or an email domain (example.org).")
    if has_forbidden_characters(text) or len(text) > MAX_DOMAIN + 2:
        raise BadValue("That is neither a network nor an email domain.")
    stripped = text.strip()
    if ":" in stripped or re.fullmatch(r"[\d./]+", stripped):
        return "network", parse_network(stripped)
    return "domain", parse_domain(stripped)


# Matching at sign time ---------------------------------------------------------------

# Block first: an entry on the block list wins over one on the allow list.
# An entry of screening_rules matching an {address} (inet) and an email {domain} (text).
MATCHES_RULE = """({address} IS NOT NULL AND network IS NOT NULL AND {address} <<= network)
    OR ({domain} IS NOT NULL AND domain IS NOT NULL
        AND (domain = {domain}
             OR (starts_with(domain, '*.')
                 AND right({domain}, char_length(domain) - 1) = substr(domain, 2))))"""
_VERDICT = f"""
SELECT list FROM screening_rules
 WHERE {MATCHES_RULE.format(address="$1::inet", domain="$2::text")}
 ORDER BY list = 'block' DESC
 LIMIT 1
"""


def network_address(address: str | None) -> str | None:
    """A client address as the lists compare it (None: not an IP address)."""
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None


async def list_verdict(
    conn: asyncpg.Connection, address: str | None, email: str | None
) -> str | None:
    """ "block", "allow", or None: what the lists say of a client address and an email."""
    return await conn.fetchval(_VERDICT, network_address(address), email_domain(email))


async def is_allowed(conn: asyncpg.Connection, address: str | None, email: str | None) -> bool:
    """The address or the email's domain is on the allow list (and neither is blocked):
    exempt from the flood limits."""
    return await list_verdict(conn, address, email) == "allow"


def hold_reason(verdict: str | None) -> str | None:
    """What a signature carries to be held when confirmed, for a verdict."""
    return BLOCKED if verdict == "block" else None


# Editing the lists ----------------------------------------------------------------------

_LIST = """
SELECT r.id, r.list, coalesce(r.network::text, r.domain) AS value,
       CASE WHEN r.network IS NOT NULL THEN 'network' ELSE 'domain' END AS kind,
       r.note, r.created_at, a.email AS created_by
  FROM screening_rules r LEFT JOIN admins a ON a.id = r.created_by
 ORDER BY r.list, kind, value
"""


async def list_entries(conn: asyncpg.Connection) -> dict[str, list[Entry]]:
    """Both lists, each sorted networks first."""
    entries: dict[str, list[Entry]] = {name: [] for name in LISTS}
    for row in await conn.fetch(_LIST):
        entries[row["list"]].append(Entry(**dict(row)))
    return entries


async def add_entry(
    conn: asyncpg.Connection, admin_id: int, list_name: str, text: str, note: str | None
) -> tuple[str, str]:
    """Add an entry (audited); BadValue when it is malformed, already there or one
    too many. Returns (kind, value)."""
    if list_name not in LISTS:
        raise BadValue("Choose the allow list or the block list.")
    kind, value = parse_entry(text)
    note = (note or "").strip() or None
    if note is not None and (len(note) > MAX_NOTE or has_forbidden_characters(note)):
        raise BadValue(f"A note is at most {MAX_NOTE} characters of plain text.")
    async with conn.transaction():
        await conn.execute("LOCK TABLE screening_rules IN SHARE ROW EXCLUSIVE MODE")
        count = await conn.fetchval(
            "SELECT count(*) FROM screening_rules WHERE list = $1", list_name
        )
        if count >= MAX_ENTRIES:
            raise BadValue(f"The {list_name} list is full ({MAX_ENTRIES} entries).")
        inserted = await conn.fetchval(
            f"""INSERT INTO screening_rules (list, {kind}, note, created_by)
                VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id""",
            list_name, value if kind == "domain" else ipaddress.ip_network(value), note, admin_id,
        )  # fmt: skip
        if inserted is None:
            raise BadValue(f"{value} is already on the {list_name} list.")
        await audit.record(
            conn, admin_id, f"screening.{list_name}.add",
            details={"id": inserted, "kind": kind, "value": value, "note": note},
        )  # fmt: skip
    return kind, value


async def remove_entry(conn: asyncpg.Connection, admin_id: int, entry_id: int) -> str | None:
    """Remove an entry (audited); its value, or None when there was no such entry."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """DELETE FROM screening_rules WHERE id = $1
               RETURNING list, coalesce(network::text, domain) AS value""",
            entry_id,
        )
        if row is None:
            return None
        await audit.record(
            conn, admin_id, f"screening.{row['list']}.remove",
            details={"id": entry_id, "value": row["value"]},
        )  # fmt: skip
    return row["value"]
