"""The free-mail domains: exempt from the per-domain sign limit (sign_limits.py).

Thousands of unrelated people share gmail.com; fifty signatures from it in an
hour are no flood. The owners edit the list (/admin/free-mail); every change is
audited. Signatures from these domains still count against their network's limit.
"""

from __future__ import annotations

import re
import unicodedata

import asyncpg

from . import audit
from .fields import BadValue, has_forbidden_characters

MAX_DOMAINS = 1_000
MAX_DOMAIN = 253
_DOMAIN = re.compile(r"^(?:(?:[^\W_]|-)+\.)+(?:[^\W_]|-){2,}$")


async def list_domains(conn: asyncpg.Connection) -> list[str]:
    return await conn.fetchval(
        "SELECT coalesce(array_agg(domain ORDER BY domain), '{}') FROM free_mail_domains"
    )


def parse_domains(text: str) -> list[str]:
    """One domain a line (or separated by spaces or commas), lower case; BadValue
    naming the first that is not a domain."""
    if not isinstance(text, str) or has_forbidden_characters(text.replace("\n", " ")):
        raise BadValue("Write the domains as plain text, one a line.")
    domains = []
    for word in re.split(r"[\s,;]+", text.replace("\r", "")):
        domain = unicodedata.normalize("NFC", word).lower().lstrip("@").rstrip(".")
        if not domain:
            continue
        if len(domain) > MAX_DOMAIN or not _DOMAIN.match(domain):
            raise BadValue(f"“{word[:60]}” is not an email domain such as gmail.com.")
        domains.append(domain)
    unique = sorted(set(domains))
    if len(unique) > MAX_DOMAINS:
        raise BadValue(f"At most {MAX_DOMAINS} domains.")
    return unique


async def replace_domains(
    conn: asyncpg.Connection, admin_id: int, domains: list[str]
) -> tuple[list[str], list[str]]:
    """Make the list exactly `domains` (audited); return (added, removed)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE free_mail_domains IN SHARE ROW EXCLUSIVE MODE")
        before = set(await list_domains(conn))
        added = sorted(set(domains) - before)
        removed = sorted(before - set(domains))
        await conn.execute("DELETE FROM free_mail_domains WHERE domain = ANY($1::text[])", removed)
        await conn.execute(
            "INSERT INTO free_mail_domains (domain) SELECT unnest($1::text[])", added
        )
        if added or removed:
            await audit.record(
                conn, admin_id, "free_mail.change", details={"added": added, "removed": removed}
            )
    return added, removed
