"""The signature: its vocabulary, its statuses, the moves between them, and which statuses count.

Every change of a signature's status in the code is one of the transitions in
`TRANSITIONS`, made by a function of this module. The database holds the same
rule: migrations/0004_signature_lifecycle.sql fills `signature_transitions`
with the moves below and a trigger refuses any other UPDATE of `status`, and
its function `counted_status()` says which statuses count (the tally and
live-event triggers use it). Adding a status is one edit here plus a
migration that adds its moves; tests/test_signature.py checks that the two
agree.

    sign ──> pending ──verify──> verified ──reject──> rejected ──restore──> verified
              │  │                  ^                    │             └──> pending
              │  └──hold──> held ───┘ approve            │    (never confirmed: back to pending)
              └──purge──> (deleted)                      └──erase──> erased
    withdraw: from any status but withdrawn; the signer's personal data is erased.
    invalidate (a moderator's bulk action): pending, verified or held ──> invalidated
    reinstate: invalidated ──> the status it had before

Retention (petitions/retention.py decides when) uses the same moves: `purge`
deletes a signature never confirmed, with its emails; `erase` takes a rejected
signature's personal data and makes it final. Anonymising the signatures of a
closed petition is not a move: they keep their status (and stay counted) and
lose their personal data in place. Every erasure, withdrawal included, clears
the same columns: `ERASE_PERSONAL_DATA`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from .i18n import N_, _
from .petitions import TAKES_SIGNATURES_SQL


class Kind(StrEnum):
    INDIVIDUAL = "individual"
    ORGANISATION = "organisation"


class Status(StrEnum):
    PENDING = "pending"  # waiting for the signer to confirm by email
    VERIFIED = "verified"  # confirmed: counted and (display permitting) listed
    HELD = "held"  # confirmed, waiting for a moderator
    REJECTED = "rejected"  # refused by a moderator; the data stays, so it can be restored
    WITHDRAWN = "withdrawn"  # taken back by the signer; personal data erased
    ERASED = "erased"  # rejected long enough ago: personal data erased, for good
    # taken out by a moderator's bulk invalidation (a flood); reinstating it puts it
    # back where it was (`invalidated_from`)
    INVALIDATED = "invalidated"


class Display(StrEnum):
    PUBLIC = "public"  # name (and organisation) shown in lists
    INITIALS = "initials"  # initials, country and occupation only
    ANONYMOUS = "anonymous"  # counted, never listed


class OrganisationType(StrEnum):
    TRADE_UNION = "trade_union"
    FEDERATION = "federation"
    ASSOCIATION = "association"
    NGO = "ngo"
    POLITICAL = "political"
    OTHER = "other"

    @property
    def label(self) -> str:
        return organisation_type_label(self)


# The English names are the message ids: translated where they are shown.
ORGANISATION_TYPE_LABELS = {
    OrganisationType.TRADE_UNION: N_("Trade union"),
    OrganisationType.FEDERATION: N_("Federation or union centre"),
    OrganisationType.ASSOCIATION: N_("Association"),
    OrganisationType.NGO: N_("NGO"),
    OrganisationType.POLITICAL: N_("Political organisation"),
    OrganisationType.OTHER: N_("Other organisation"),
}


def organisation_type_label(value: str | None) -> str:
    """An organisation type's name in the current language ('' for none)."""
    label = ORGANISATION_TYPE_LABELS.get(value or "")
    return _(label) if label else ""


# The statuses that count towards a petition's total (and appear in public lists).
COUNTED = frozenset({Status.VERIFIED})


def counts(status: str) -> bool:
    return status in COUNTED


def counted_sql(column: str = "status") -> str:
    """`column` holds a counted status, as a literal condition (so partial indexes on
    it are used; the database's own `counted_status()` says the same)."""
    return f"{column} IN ({', '.join(repr(s.value) for s in sorted(COUNTED))})"


@dataclass(frozen=True)
class Transition:
    """A move a signature can make: from any of `sources` to one of `targets` (none:
    the signature is deleted)."""

    name: str
    sources: frozenset[Status]
    targets: frozenset[Status]
    by_moderator: bool = False  # an admin's action, written to the audit log
    label: str = ""  # what a moderator's button says

    def applies_to(self, status: str) -> bool:
        return status in self.sources


def _move(name: str, sources, targets, by_moderator: bool = False, label: str = "") -> Transition:
    return Transition(name, frozenset(sources), frozenset(targets), by_moderator, label)


S = Status
TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        _move("verify", {S.PENDING}, {S.VERIFIED}),
        # Confirmed, but the petition wants a moderator to look first.
        _move("hold", {S.PENDING}, {S.HELD}),
        _move("approve", {S.HELD}, {S.VERIFIED}, True, "Approve (held → verified)"),
        _move(
            "reject", {S.PENDING, S.VERIFIED, S.HELD}, {S.REJECTED}, True, "Reject (not counted)"
        ),
        # Back to verified when its email had been confirmed, else to pending:
        # an unconfirmed signature must never count.
        _move("restore", {S.REJECTED}, {S.VERIFIED, S.PENDING}, True, "Restore (as before)"),
        _move("withdraw", set(Status) - {S.WITHDRAWN}, {S.WITHDRAWN}),
        # Retention: a signature never confirmed is deleted; a rejected one, erased.
        _move("purge", {S.PENDING}, set()),
        _move("erase", {S.REJECTED}, {S.ERASED}),
        # A moderator's bulk invalidation (invalidation.py, audited there) and its undoing:
        # each signature goes back to the status it had.
        _move("invalidate", {S.PENDING, S.VERIFIED, S.HELD}, {S.INVALIDATED}),
        _move("reinstate", {S.INVALIDATED}, {S.PENDING, S.VERIFIED, S.HELD}),
    )
}
MODERATOR_ACTIONS = tuple(t for t in TRANSITIONS.values() if t.by_moderator)
INITIAL_STATUS = Status.PENDING


def allowed_moves() -> set[tuple[str, str]]:
    """Every (from, to) pair some transition allows: what the database enforces."""
    return {
        (source.value, target.value)
        for t in TRANSITIONS.values()
        for source in t.sources
        for target in t.targets
    }


def _sources(name: str) -> list[str]:
    return sorted(s.value for s in TRANSITIONS[name].sources)


@dataclass(frozen=True)
class SignatureState:
    """Where a signature stands, for the pages its links lead to."""

    status: str
    slug: str
    changed: bool = False
    kind: str | None = None
    # The receipt made when this request confirmed it (receipts.py): shown once, never kept.
    receipt: object | None = None


_STATE = """
SELECT s.status, p.slug, s.kind FROM signatures s JOIN petitions p ON p.id = s.petition_id
 WHERE s.public_id = $1
"""


async def signature_state(conn: asyncpg.Connection, public_id: uuid.UUID) -> SignatureState | None:
    row = await conn.fetchrow(_STATE, public_id)
    return SignatureState(row["status"], row["slug"], kind=row["kind"]) if row else None


# The columns a new signature is stored with, in the order the sign path's INSERTs
# (signing.py one at a time, sign_batch.py many at once) give their values.
SIGNER_COLUMNS = """status, public_id, petition_id, version_id, kind, display, sealed,
    email_hash, organisation_hash, search_hashes, initials, name, city, occupation,
    organisation, organisation_type, website, members, comment, country, updates,
    language, ref, network_hash, domain_hash, hold_reason"""


# Another signature already counts for the organisation of signature `s`.
ORGANISATION_ALREADY_COUNTED = f"""EXISTS (
    SELECT 1 FROM signatures o
     WHERE o.petition_id = s.petition_id AND o.kind = '{Kind.ORGANISATION}'
       AND o.organisation_hash = s.organisation_hash AND {counted_sql("o.status")}
       AND o.id <> s.id)"""

# verify or hold: a pending signature of a petition that still takes signatures. One
# marked at sign time (`hold_reason`: its network or domain is on the block list, or
# past its hourly limit) is held. An organisation is held when the petition wants
# organisations moderated, and when its organisation already counts (a second person
# signing for it: docs/signing.md);
# $3 holds it in any case (confirming lost a race with another signature for it).
_CONFIRMED_STATUS = f"""CASE WHEN s.hold_reason IS NOT NULL THEN '{Status.HELD}'
                     WHEN s.kind = '{Kind.ORGANISATION}'
                          AND (p.moderate_organisations OR $3 OR {ORGANISATION_ALREADY_COUNTED})
                     THEN '{Status.HELD}' ELSE '{Status.VERIFIED}' END"""
_CONFIRM = f"""
UPDATE signatures s
   SET status = {_CONFIRMED_STATUS},
       verified_at = now(), updated_at = now(), receipt_commitment = $4
  FROM petitions p
 WHERE p.id = s.petition_id AND s.public_id = $1 AND (s.status = ANY($2::text[])) IS TRUE
   AND {TAKES_SIGNATURES_SQL}
RETURNING s.status, p.slug, s.kind
"""
# Many at once (signing.py's group commit), each with its receipt's commitment: what
# the receipt email needs comes back with them. Each row is found by its public id
# and then its primary key, never by an index on the status: in the first minutes of
# a viral petition the statistics still say nothing is pending, and a plan reading
# "the petition's pending signatures" then reads tens of thousands of them a batch.
# (`IS TRUE` keeps the status test a filter the planner cannot turn into an index scan.)
_CONFIRM_MANY = f"""
WITH c AS MATERIALIZED (
    SELECT s.id, s.petition_id, c.commitment
      FROM unnest($1::uuid[], $4::bytea[]) AS c(public_id, commitment)
      JOIN signatures s ON s.public_id = c.public_id
)
UPDATE signatures s
   SET status = {_CONFIRMED_STATUS},
       verified_at = now(), updated_at = now(), receipt_commitment = c.commitment
  FROM c, petitions p
 WHERE s.id = c.id AND p.id = c.petition_id AND (s.status = ANY($2::text[])) IS TRUE
   AND {TAKES_SIGNATURES_SQL}
RETURNING s.public_id, s.status, p.slug, s.kind, s.id, s.petition_id, s.sealed, s.name,
          s.email, s.language
"""
_STATES = """
SELECT s.public_id, s.status, p.slug, s.kind
  FROM signatures s JOIN petitions p ON p.id = s.petition_id
 WHERE s.public_id = ANY($1::uuid[])
"""


async def confirm(
    conn: asyncpg.Connection, public_id: uuid.UUID, receipt_commitment: bytes | None = None
) -> SignatureState | None:
    """The signer opened their link: verify, or hold for a moderator (idempotent).
    `receipt_commitment` goes with it into the transparency log once it counts.

    None when no such signature exists. Two people confirming signatures for one
    organisation at the same moment: the unique index lets one count, and the
    other, refused by it, is held instead (never a 500)."""
    pending = sorted(set(_sources("verify")) | set(_sources("hold")))
    arguments = (public_id, pending, False, receipt_commitment)
    try:
        if conn.is_in_transaction():
            async with conn.transaction():  # a savepoint: the caller's work survives
                row = await conn.fetchrow(_CONFIRM, *arguments)
        else:
            row = await conn.fetchrow(_CONFIRM, *arguments)
    except asyncpg.UniqueViolationError:
        row = await conn.fetchrow(_CONFIRM, public_id, pending, True, receipt_commitment)
    if row is not None:
        return SignatureState(row["status"], row["slug"], changed=True, kind=row["kind"])
    return await signature_state(conn, public_id)


async def confirm_many(
    conn: asyncpg.Connection, confirmations: Sequence[tuple[uuid.UUID, bytes]]
) -> tuple[list, dict[uuid.UUID, SignatureState]]:
    """`confirm` for distinct signatures at once, with their receipts' commitments: the
    rows it changed (status, slug, kind and what the receipt email needs), and the
    state of each of the others that exists. A UniqueViolationError (two signatures
    of one organisation) leaves it to the caller to confirm them one at a time."""
    pending = sorted(set(_sources("verify")) | set(_sources("hold")))
    ids = [public_id for public_id, _ in confirmations]
    changed = await conn.fetch(
        _CONFIRM_MANY, ids, pending, False, [commitment for _, commitment in confirmations]
    )
    done = {row["public_id"] for row in changed}
    others = [i for i in ids if i not in done]
    states = {}
    if others:
        for row in await conn.fetch(_STATES, others):
            states[row["public_id"]] = SignatureState(row["status"], row["slug"], kind=row["kind"])
    return list(changed), states


# The one definition of erasing a signer's personal data (withdrawal, retention):
# what stays is what the counts and their history need (kind, country, display
# choice, dates, statement version, ref). A SET list for `UPDATE signatures s`.
ERASE_PERSONAL_DATA = """
           name = NULL, email = NULL, email_hash = NULL, city = NULL, occupation = NULL,
           organisation = NULL, organisation_type = NULL, website = NULL, members = NULL,
           comment = NULL, network_hash = NULL, updates = false, erased_at = now(),
           sealed = NULL, organisation_hash = NULL, search_hashes = NULL, initials = NULL,
           domain_hash = NULL"""

# Withdrawal erases the signer's personal data.
_WITHDRAW = f"""
WITH withdrawn AS (
    UPDATE signatures s
       SET status = '{Status.WITHDRAWN}', withdrawn_at = now(), updated_at = now(),
           {ERASE_PERSONAL_DATA}
     WHERE s.public_id = $1 AND s.status = ANY($2::text[])
    RETURNING s.id, s.petition_id
), forget_mail AS (
    DELETE FROM outbox o USING withdrawn w WHERE o.signature_id = w.id
)
SELECT p.slug FROM withdrawn w JOIN petitions p ON p.id = w.petition_id
"""


async def withdraw(conn: asyncpg.Connection, public_id: uuid.UUID) -> SignatureState | None:
    """The signer takes their signature back; None when no such signature exists."""
    slug = await conn.fetchval(_WITHDRAW, public_id, _sources("withdraw"))
    if slug is not None:
        return SignatureState(Status.WITHDRAWN, slug, changed=True)
    return await signature_state(conn, public_id)


# An organisation counts once: a held (or rejected) signature of an organisation that
# already counts stays where it is rather than being counted a second time.
_MODERATOR_CONDITIONS = {
    "approve": f"AND NOT (s.kind = '{Kind.ORGANISATION}' AND {ORGANISATION_ALREADY_COUNTED})",
    "restore": f"""AND NOT (s.kind = '{Kind.ORGANISATION}' AND s.verified_at IS NOT NULL
                         AND {ORGANISATION_ALREADY_COUNTED})""",
}

# What each moderator action sets; the WHERE clause comes from the transition table.
_MODERATOR_SETS = {
    "approve": f"status = '{Status.VERIFIED}', verified_at = now()",
    "reject": f"status = '{Status.REJECTED}'",
    "restore": f"""status = CASE WHEN s.verified_at IS NOT NULL THEN '{Status.VERIFIED}'
                               ELSE '{Status.PENDING}' END""",
}


async def moderate(
    conn: asyncpg.Connection,
    petition_id: int,
    admin_id: int,
    action: str,
    signature_ids: Sequence[int],
) -> int:
    """Apply a moderator's `action` to those of the signatures it fits, each change
    with its audit-log row, in one statement; return how many changed."""
    transition = TRANSITIONS[action]
    if not transition.by_moderator:
        raise ValueError(f"{action} is not a moderator's action")
    statement = f"""
    WITH target AS (
        SELECT id, status FROM signatures s
         WHERE petition_id = $1 AND id = ANY($2::bigint[]) AND status = ANY($3::text[])
           {_MODERATOR_CONDITIONS.get(action, "")}
         ORDER BY id
           FOR UPDATE
    ), changed AS (
        UPDATE signatures s
           SET {_MODERATOR_SETS[action]}, updated_at = now()
          FROM target t
         WHERE s.id = t.id
        RETURNING s.id, t.status AS old_status, s.status AS new_status
    )
    INSERT INTO audit_log (admin_id, action, petition_id, signature_id, details)
    SELECT $4, $5, $1, id, jsonb_build_object('from', old_status, 'to', new_status)
      FROM changed
    RETURNING signature_id
    """
    arguments = (
        petition_id, list(signature_ids), _sources(action), admin_id, f"signature.{action}",
    )  # fmt: skip
    try:
        if conn.is_in_transaction():
            async with conn.transaction():  # a savepoint: the caller's work survives
                changed = await conn.fetch(statement, *arguments)
        else:
            changed = await conn.fetch(statement, *arguments)
    except asyncpg.UniqueViolationError:
        # Two signatures of one organisation approved together: only one may
        # count. Nothing changed; the moderator approves them one at a time.
        return 0
    return len(changed)


# Retention moves (petitions/retention.py says when) ---------------------------
#
# Each takes at most `limit` signatures whose time has come, oldest first, skips
# any that another transaction holds (a signer confirming at that moment, another
# process's retention pass), makes its move with their emails forgotten, and says
# how many it moved. The callers loop until a batch comes back short.


def _in_sources(name: str, column: str = "status") -> str:
    """`column` holds a status `name` moves from, as literals (partial indexes match them)."""
    return f"{column} IN ({', '.join(repr(s) for s in _sources(name))})"


def _due_with_mail_forgotten(where: str, oldest_first: str) -> str:
    """The start of a retention move: `due`, at most $2 signatures matching `where`,
    oldest first and locked (skipping locked ones), with their emails deleted."""
    return f"""
WITH due AS (
    SELECT id FROM signatures
     WHERE {where}
     ORDER BY {oldest_first}
     LIMIT $2
       FOR UPDATE SKIP LOCKED
), forget_mail AS (
    DELETE FROM outbox o USING due WHERE o.signature_id = due.id
)
"""


_PURGE_UNCONFIRMED = (
    _due_with_mail_forgotten(f"{_in_sources('purge')} AND created_at < $1", "created_at")
    + "DELETE FROM signatures s USING due WHERE s.id = due.id"
)


async def purge_unconfirmed(conn: asyncpg.Connection, signed_before, limit: int) -> int:
    """Delete signatures never confirmed and signed before `signed_before`, with their
    emails (the move `purge`)."""
    return rows_changed(await conn.execute(_PURGE_UNCONFIRMED, signed_before, limit))


_ERASE_REJECTED = _due_with_mail_forgotten(
    f"{_in_sources('erase')} AND rejected_at < $1", "rejected_at"
) + (
    f"""
UPDATE signatures s
   SET status = '{Status.ERASED}', updated_at = now(), {ERASE_PERSONAL_DATA}
  FROM due
 WHERE s.id = due.id
"""
)


async def erase_rejected(conn: asyncpg.Connection, rejected_before, limit: int) -> int:
    """Erase signatures rejected before `rejected_before` (the move `erase`): they can
    no longer be restored, and keep only what the counts need."""
    return rows_changed(await conn.execute(_ERASE_REJECTED, rejected_before, limit))


# A rejected signature is erased by its own move; every other keeps its status, so
# a counted signature stays counted, now anonymous and with nothing to list it by.
_ANONYMISE = _due_with_mail_forgotten("petition_id = $1 AND erased_at IS NULL", "id") + (
    f"""
UPDATE signatures s
   SET status = CASE WHEN {_in_sources("erase", "s.status")} THEN '{Status.ERASED}'
                     ELSE s.status END,
       display = '{Display.ANONYMOUS}', updated_at = now(), {ERASE_PERSONAL_DATA}
  FROM due
 WHERE s.id = due.id
"""
)


async def anonymise_signatures(conn: asyncpg.Connection, petition_id: int, limit: int) -> int:
    """Erase the personal data of up to `limit` signatures of a petition, in place:
    they keep their status (rejected ones are erased) and counted ones stay counted."""
    return rows_changed(await conn.execute(_ANONYMISE, petition_id, limit))


def rows_changed(command_tag: str) -> int:
    """The number of rows of a command tag such as 'UPDATE 12' or 'DELETE 3'."""
    return int(command_tag.rsplit(" ", 1)[-1])


# Bulk invalidation (invalidation.py chooses the signatures and writes the audit) -------
#
# A batch at a time, each its own short statement: the tally and live-event triggers
# follow every batch at its commit, so counts and lists drop (and come back) at once.

_INVALIDATE = f"""
WITH target AS (
    SELECT id FROM signatures
     WHERE id = ANY($2::bigint[]) AND {_in_sources("invalidate")}
     ORDER BY id
       FOR UPDATE
)
UPDATE signatures s
   SET status = '{Status.INVALIDATED}', invalidated_from = s.status, invalidation_id = $1,
       updated_at = now()
  FROM target t
 WHERE s.id = t.id
"""


async def invalidate(conn: asyncpg.Connection, invalidation_id: int, signature_ids) -> int:
    """Invalidate those of the signatures that may be (the move `invalidate`), marking
    them with the bulk invalidation they belong to; return how many moved."""
    return rows_changed(await conn.execute(_INVALIDATE, invalidation_id, list(signature_ids)))


# Back to the status it had. An organisation that counted before and whose place has
# been taken meanwhile (another signature for it now counts) waits for a moderator
# instead of counting twice; $3 holds every such organisation (the batch raced).
_REINSTATE = f"""
WITH target AS (
    SELECT id FROM signatures
     WHERE invalidation_id = $1 AND status = '{Status.INVALIDATED}'
     ORDER BY id
     LIMIT $2
       FOR UPDATE
)
UPDATE signatures s
   SET status = CASE
           WHEN s.invalidated_from = '{Status.VERIFIED}' AND s.kind = '{Kind.ORGANISATION}'
                AND ($3 OR {ORGANISATION_ALREADY_COUNTED}) THEN '{Status.HELD}'
           ELSE coalesce(s.invalidated_from, CASE WHEN s.verified_at IS NOT NULL
                                                  THEN '{Status.VERIFIED}'
                                                  ELSE '{Status.PENDING}' END)
       END,
       invalidated_from = NULL, updated_at = now()
  FROM target t
 WHERE s.id = t.id
"""


async def reinstate(conn: asyncpg.Connection, invalidation_id: int, limit: int) -> int:
    """Put up to `limit` signatures of a bulk invalidation back where they were (the
    move `reinstate`); return how many moved (fewer than `limit`: none are left)."""
    try:
        async with conn.transaction():
            return rows_changed(await conn.execute(_REINSTATE, invalidation_id, limit, False))
    except asyncpg.UniqueViolationError:
        return rows_changed(await conn.execute(_REINSTATE, invalidation_id, limit, True))
