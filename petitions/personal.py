"""Where a signer's data is kept: sealed, in clear for the public list, or as keyed hashes.

A signature row keeps the signer's personal fields (crypto.ENCRYPTED_FIELDS:
name, email, city, occupation, organisation, its type, website, members,
comment) in one column, `sealed`: their JSON, encrypted with AES-GCM under the
data key and bound to the signature's public id (crypto.py). Everything that
needs them (moderation, the export, reminders, updates) opens that blob.

Besides it, by design, the clear columns hold exactly what the public list
shows of the signature, filled according to its display choice and nothing
more (`public_columns`), so public pages never decrypt anything:

    public     name, city, occupation, comment; for organisations also the
               organisation, its type, website and members
    initials   `initials` (precomputed), and the occupation (individuals) or the
               organisation type (organisations)
    anonymous  nothing

The `email` column is never filled any more (rows from before migration 0006
are sealed at start, see sealing.py, which also empties it).

Look-ups use keyed hashes (HMAC-SHA256 under keys derived from SECRET_KEY,
keys.py), never the text:

- `email_hash`: the normalised email (one individual signature per email);
- `organisation_hash`: the folded organisation name and country (one counted
  signature per organisation and country);
- `search_hashes`: the moderators' search, a "blind index": short keyed
  hashes of each word of the name and organisation (and of its prefixes from
  three letters on), and of the email's domain; a search term is hashed the
  same way and found with the GIN index on that column. A dump shows which
  rows share a word, never the word.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Mapping

from .crypto import ENCRYPTED_FIELDS, Cipher, signature_context
from .keys import (
    email_hash,
    normalise_email,
    organisation_hash,
    search_hash,
    search_hash_key,
)
from .lookalikes import strip_invisible
from .signatories import initials
from .signature import Display, Kind

MIN_PREFIX = 3  # a search word matches names that start with it from three letters on
MAX_PREFIX = 24  # longer words are indexed (and searched) by their first 24 letters
MAX_TERMS = 256
MAX_QUERY_WORDS = 8

# The clear columns a signature may have, besides the sealed blob and the hashes.
PUBLIC_COLUMNS = (
    "name", "city", "occupation", "comment", "organisation", "organisation_type", "website",
    "members", "initials",
)  # fmt: skip


def public_columns(kind: str, display: str, personal: Mapping) -> dict:
    """The clear columns of a signature: what its display choice publishes, no more."""
    columns = dict.fromkeys(PUBLIC_COLUMNS)
    is_org = kind == Kind.ORGANISATION
    if display == Display.PUBLIC:
        for field in ("name", "city", "occupation", "comment"):
            columns[field] = personal.get(field)
        if is_org:
            for field in ("organisation", "organisation_type", "website", "members"):
                columns[field] = personal.get(field)
    elif display == Display.INITIALS:
        columns["initials"] = initials(personal.get("organisation" if is_org else "name"))
        if is_org:
            columns["organisation_type"] = personal.get("organisation_type")
        else:
            columns["occupation"] = personal.get("occupation")
    return columns


def stored_columns(
    cipher: Cipher,
    secret_key: str,
    public_id: uuid.UUID,
    kind: str,
    display: str,
    country: str | None,
    personal: Mapping,
) -> dict:
    """Every column that holds the signer's data, as it is stored: the sealed blob,
    the keyed hashes and the clear public columns."""
    values = {field: personal.get(field) for field in ENCRYPTED_FIELDS}
    email = values["email"]
    organisation = values["organisation"] if kind == Kind.ORGANISATION else None
    return {
        "sealed": cipher.seal_json(values, signature_context(public_id)),
        "email_hash": email_hash(secret_key, normalise_email(email)) if email else None,
        "organisation_hash": (
            organisation_hash(secret_key, organisation, country or "") if organisation else None
        ),
        "search_hashes": search_hashes(secret_key, values["name"], organisation, email),
        **public_columns(kind, display, values),
    }


def personal_of(cipher: Cipher, row) -> dict:
    """The personal fields of a signature row: opened from `sealed`, or (a row not yet
    sealed, from before migration 0006) its clear columns. Erased fields are None."""
    sealed = row["sealed"]
    if sealed is not None:
        values = cipher.open_json(sealed, signature_context(row["public_id"]))
        return {field: values.get(field) for field in ENCRYPTED_FIELDS}
    return {field: _get(row, field) for field in ENCRYPTED_FIELDS}


def _get(row, field: str):
    try:
        return row[field]
    except (KeyError, IndexError):
        return None


# The blind index ---------------------------------------------------------------


def words(text: str | None) -> list[str]:
    """The words of a name as the search compares them: Unicode-folded, lower case,
    without accents or invisible characters."""
    if not text:
        return []
    folded = strip_invisible(unicodedata.normalize("NFKC", text)).casefold()
    bare = "".join(c for c in unicodedata.normalize("NFD", folded) if not unicodedata.combining(c))
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFC", bare))


def _domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return normalise_email(email).rpartition("@")[2] or None


def search_terms(name: str | None, organisation: str | None, email: str | None) -> set[str]:
    terms: set[str] = set()
    for word in words(name) + words(organisation):
        word = word[:MAX_PREFIX]
        for n in range(min(MIN_PREFIX, len(word)), len(word) + 1):
            terms.add("w:" + word[:n])
    domain = _domain(email)
    if domain:
        terms.add("d:" + domain)
    return terms


def search_hashes(
    secret_key: str, name: str | None, organisation: str | None, email: str | None
) -> list[bytes] | None:
    key = search_hash_key(secret_key)
    hashes = sorted(search_hash(key, t) for t in search_terms(name, organisation, email))
    return hashes[:MAX_TERMS] or None


def query_hashes(secret_key: str, q: str) -> tuple[list[bytes] | None, bytes | None, bytes | None]:
    """What a moderator's search looks for, as (word hashes, domain hash, email hash),
    each None when it does not apply: an email is looked up by its hash alone;
    other text finds every word (whole, or the start of one from three letters on)
    in the name or organisation, or the whole text as an email's domain."""
    text = q.strip().casefold()
    bare = text.lstrip("@")
    if "@" in bare:
        return None, None, email_hash(secret_key, normalise_email(bare))
    key = search_hash_key(secret_key)
    query_words = words(q)[:MAX_QUERY_WORDS]
    word_hashes = sorted({search_hash(key, "w:" + w[:MAX_PREFIX]) for w in query_words})
    domain = search_hash(key, "d:" + normalise_email(bare)) if bare else None
    return (word_hashes or None), domain, None
