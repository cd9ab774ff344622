"""The signing rules: validate and normalise a sign form, store it, verify, withdraw, unsubscribe.

Nothing here knows about HTTP. Each hot operation is one short transaction and,
in the common case, one round trip to PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial

from databases import Database

from . import batching, i18n, sign_batch, sign_limits
from .clients import client_network
from .crypto import ENCRYPTED_FIELDS
from .db import raw_connection
from .fields import FieldReader
from .keys import domain_hash, mailbox_hash, network_hash
from .mail import MAX_SUBJECT, Mailer, bounded
from .numbers import BadCount, parse_count
from .personal import personal_of, stored_columns
from .petitions import TAKES_SIGNATURES_SQL, Petition
from .receipts import Receipt
from .screening import email_domain, hold_reason, list_verdict
from .sharing import valid_ref
from .signature import (
    INITIAL_STATUS,
    SIGNER_COLUMNS,
    Display,
    Kind,
    OrganisationType,
    SignatureState,
    Status,
    confirm,
    confirm_many,
    signature_state,
    withdraw,
)

MAX_MEMBERS = 1_000_000_000


@dataclass(frozen=True)
class Signer:
    """A validated, normalised sign form."""

    kind: str
    name: str
    email: str
    country: str
    city: str | None
    occupation: str | None
    organisation: str | None
    organisation_type: str | None
    website: str | None
    members: int | None
    comment: str | None
    display: str
    updates: bool
    ref: str | None

    def personal(self) -> dict:
        """The personal fields, as they are sealed (crypto.ENCRYPTED_FIELDS)."""
        return {field: getattr(self, field) for field in ENCRYPTED_FIELDS}


def parse_sign_form(form: Mapping[str, str], petition: Petition) -> Signer:
    """Validate every field; raise FieldErrors with a message per bad field."""
    read = FieldReader(form)
    kind = read.choice(
        "kind", "", list(Kind),
        message=i18n._("Choose whether you sign as an individual or for an organisation."),
    )  # fmt: skip
    if kind == Kind.INDIVIDUAL and not petition.accepts_individuals:
        read.fail("kind", i18n._("This petition is signed by organisations only."))
    elif kind == Kind.ORGANISATION and not petition.accepts_organisations:
        read.fail("kind", i18n._("This petition is signed by individuals only."))
    is_org = kind == Kind.ORGANISATION

    _ = i18n._
    name = read.text("name", _("Your name"), 200, required=True, visible_only=True)
    email = read.email(
        "email", _("Your email is required: we send a link to confirm your signature.")
    )
    country = read.country("country", _("Choose a country from the list."), required=True)
    city = read.text("city", _("City"), 100)
    occupation = read.text("occupation", _("Occupation or role"), 200)
    comment = read.text("comment", _("Message"), 1000, multiline=True)

    organisation = organisation_type = website = members = None
    if is_org:
        organisation = read.text(
            "organisation", _("Organisation"), 300, required=True, visible_only=True
        )
        organisation_type = read.choice(
            "organisation_type", "", list(OrganisationType),
            message=_("Choose the type of organisation."),
        )  # fmt: skip
        website = read.website(
            "website", _("Give the website as an address such as https://union.example.org.")
        )
        members = _members(read)

    display = read.choice(
        "display", "", list(Display), default=Display.PUBLIC,
        message=_("Choose how your signature should appear."),
    )  # fmt: skip
    ref = valid_ref(read.raw("ref"))
    read.check()
    return Signer(
        kind=kind,
        name=name,
        email=email,
        country=country or "",
        city=city or None,
        occupation=occupation or None,
        organisation=organisation or None,
        organisation_type=organisation_type,
        website=website,
        members=members,
        comment=comment or None,
        display=display,
        updates=read.flag("updates"),
        ref=ref,
    )


def _members(read: FieldReader) -> int | None:
    """Members as people type them, in their own digits: "12 500", "12.500", "۱۲٬۵۰۰"."""
    try:
        value = parse_count(read.raw("members"))
    except BadCount as error:
        read.fail("members", str(error))
        return None
    if value is not None and value > MAX_MEMBERS:
        read.fail("members", i18n._("That is more members than any organisation has."))
        return None
    return value


# Storing a signature --------------------------------------------------------

# One statement, whatever happens. A new signature is stored, pending, with its
# confirmation email. When the email already signed (for an organisation: the
# same email for the same organisation), the unique index refuses the row and the
# same statement queues a small `sign_reminders` row instead: the outbox worker
# reminds the existing signer later, off the request path. Both answers do the
# same work before the statement (composing and sealing the email), and the
# statement writes in both cases (the reminder request is an upsert: one row per
# signer, written again each time), so both commit to disk: their timings differ
# by a fraction of a millisecond, within their spread (tests/test_no_oracle.py).
_INSERT_SIGNATURE = f"""
WITH open_petition AS (
    SELECT p.id FROM petitions p WHERE p.id = $2 AND {TAKES_SIGNATURES_SQL}
), new_signature AS (
    INSERT INTO signatures ({SIGNER_COLUMNS})
    SELECT '{INITIAL_STATUS}', $1, id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
           $15, $16, $17, $18, $19, $20, $21, $22, $23, $27, $28
      FROM open_petition
    ON CONFLICT DO NOTHING
    RETURNING id
), verification AS (
    -- Past a mail cap the email is stored 'suppressed' (mail.CAPPED_PURPOSES).
    INSERT INTO outbox (purpose, subject, sealed, message_id, signature_id, status)
    SELECT 'verification', $24, $25, $26, id, mail_admission($29, $23, $30, $31)
      FROM new_signature
    RETURNING signature_id
), reminder AS (
    INSERT INTO sign_reminders (petition_id, kind, email_hash, organisation_hash, network_hash)
    SELECT id, $4, $7, $8, $23 FROM open_petition WHERE NOT EXISTS (SELECT 1 FROM new_signature)
    ON CONFLICT (petition_id, kind, email_hash, organisation_hash)
        DO UPDATE SET created_at = excluded.created_at,  -- a write either way: same commit
                      network_hash = excluded.network_hash
)
SELECT (SELECT count(*) FROM verification) AS stored,
       (SELECT count(*) FROM open_petition) AS open
"""


@dataclass(frozen=True)
class SignResult:
    """What happened, for the tests and the log; the signer always sees the same page."""

    outcome: str  # "stored", "existing" (a reminder may go out), or "closed"


async def submit_signature(
    db: Database,
    mailer: Mailer,
    petition: Petition,
    signer: Signer,
    client_address: str | None,
    language: str | None = None,
    form_token_id: bytes | None = None,
) -> SignResult:
    """Store a pending signature and its confirmation email in one statement.

    An email (or, for an organisation, the same email for the same organisation)
    that already signed gets a reminder instead, queued by the same statement and
    sent by the outbox worker; the caller answers the same way in every case, so
    nobody learns who signed. A second person signing for an organisation that
    already signed is stored like any new signature (and held for a moderator
    when confirmed: signature.confirm).

    `language` (by default the request's interface language) is recorded with the
    signature: every later email to this signer is written in it.

    The sign limits (sign_limits.py) mark a signature past its network's or domain's
    hourly limit to be held once confirmed, and raise OverCeiling (nothing stored)
    far past it; FormTokenSpent when `form_token_id` has carried its submissions.

    Concurrent calls in one process are stored together, in one transaction
    (batching.py, sign_batch.py); this returns once this signature is committed.
    """
    language = i18n.interface_language(language) or i18n.current_language()
    public_id = uuid.uuid4()
    secret = mailer.settings.secret_key
    network = client_network(client_address)
    with i18n.language(language):
        message = mailer.verification(petition, signer.email, public_id)
    stored = stored_columns(
        mailer.cipher, secret, public_id, signer.kind, signer.display, signer.country,
        signer.personal(),
    )  # fmt: skip
    domain = email_domain(signer.email)
    network_key = network_hash(secret, network) if network else None
    domain_key = domain_hash(secret, domain) if domain else None
    signature = SignatureToStore(
        client_address=client_address,
        email=signer.email,
        limits=sign_limits.Limits.of(mailer.settings),
        source=sign_limits.Source(petition.id, network_key, domain_key, domain),
        form_token_id=form_token_id,
        arguments=(
            public_id, petition.id, petition.version_id, signer.kind, signer.display,
            stored["sealed"], stored["email_hash"], stored["organisation_hash"],
            stored["search_hashes"], stored["initials"], stored["name"], stored["city"],
            stored["occupation"], stored["organisation"], stored["organisation_type"],
            stored["website"], stored["members"], stored["comment"], signer.country,
            signer.updates, language, signer.ref, network_key,
            bounded(message.subject, MAX_SUBJECT), mailer.seal(message), message.message_id,
            domain_key, None, mailbox_hash(secret, signer.email),
            mailer.settings.mail_per_mailbox_per_day, mailer.settings.mail_per_network_per_hour,
        ),
    )  # fmt: skip
    return await batching.gatherer(db, "sign", partial(_store_signatures, db)).submit(signature)


@dataclass(frozen=True)
class SignatureToStore:
    """A sign request ready for the database: its email composed, everything sealed."""

    client_address: str | None
    email: str
    limits: sign_limits.Limits
    source: sign_limits.Source
    form_token_id: bytes | None
    arguments: tuple  # _INSERT_SIGNATURE's, with HOLD_REASON still to decide

    def insert_arguments(self, hold_reason: str | None) -> tuple:
        arguments = list(self.arguments)
        arguments[HOLD_REASON] = hold_reason
        return tuple(arguments)


HOLD_REASON = 27  # the position of $28 in SignatureToStore.arguments


async def _store_signatures(db: Database, batch) -> list:
    """Each signature's SignResult, or the exception for its caller alone."""
    if len(batch) > 1:
        try:
            async with raw_connection(db) as conn, conn.transaction():
                outcomes = await sign_batch.store(conn, batch)
            return [o if isinstance(o, Exception) else SignResult(o) for o in outcomes]
        except Exception as error:  # one row the database refused: each on its own
            if sign_batch.lost_connection(error):
                raise
    outcomes = []
    async with raw_connection(db) as conn:
        for signature in batch:
            try:
                outcomes.append(await _store_one(conn, signature))
            except Exception as error:  # this caller's alone
                if len(batch) == 1:
                    raise
                outcomes.append(error)
    return outcomes


async def _store_one(conn, signature: SignatureToStore) -> SignResult:
    async with conn.transaction():
        # The allow and block lists (screening.py): a blocked network or domain is
        # held once confirmed; the signer's answer is the same as everyone's.
        verdict = await list_verdict(conn, signature.client_address, signature.email)
        over_limit = await sign_limits.admit(
            conn, signature.limits, signature.source, signature.form_token_id,
            exempt=verdict == "allow",
        )  # fmt: skip
        row = await conn.fetchrow(
            _INSERT_SIGNATURE, *signature.insert_arguments(hold_reason(verdict) or over_limit)
        )
    if row["stored"]:
        return SignResult("stored")
    if row["open"]:
        return SignResult("existing")
    return SignResult("closed")


REMINDER_INTERVAL = "1 hour"
REMINDER_BATCH = 50

# Requests to remind an existing signer, oldest first; rows another worker holds
# are skipped. Deleted as they are taken: a crash before the commit leaves them.
_TAKE_REMINDERS = """
DELETE FROM sign_reminders r
 WHERE r.id IN (SELECT id FROM sign_reminders ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING r.petition_id, r.kind, r.email_hash, r.organisation_hash, r.network_hash
"""

_FIND_EXISTING = f"""
SELECT id, public_id, status, sealed, name, email, language
  FROM signatures
 WHERE petition_id = $1 AND kind = $2 AND email_hash = $3
   AND (kind = '{Kind.INDIVIDUAL}' OR organisation_hash = $4)
"""


async def process_sign_reminders(db: Database, mailer: Mailer, batch: int = REMINDER_BATCH) -> int:
    """Turn queued reminder requests into reminders to the existing signers (at most
    one an hour per signature); return how many requests were taken."""
    async with raw_connection(db) as conn, conn.transaction():
        requests = await conn.fetch(_TAKE_REMINDERS, batch)
        for request in requests:
            await _remind_existing_signer(conn, mailer, request)
    return len(requests)


async def _remind_existing_signer(conn, mailer: Mailer, request) -> None:
    existing = await conn.fetchrow(
        _FIND_EXISTING,
        request["petition_id"], request["kind"], request["email_hash"],
        request["organisation_hash"],
    )  # fmt: skip
    if existing is None:
        return  # withdrawn (or purged) meanwhile
    # One reminder an hour per signature, however many workers take requests for it.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", existing["id"])
    recent = await conn.fetchval(
        f"""SELECT 1 FROM outbox WHERE signature_id = $1 AND purpose = 'reminder'
             AND created_at > now() - interval '{REMINDER_INTERVAL}'""",
        existing["id"],
    )
    if recent:
        return
    personal = personal_of(mailer.cipher, existing)
    if not personal["email"]:
        return  # its personal data is gone: nobody to remind
    language = existing["language"]  # the signer's, recorded when they signed
    petition = await mailer.petition_for_mail(conn, request["petition_id"], language)
    with i18n.language(language):
        message = mailer.reminder(
            petition, personal["email"], existing["public_id"], existing["status"]
        )
    await mailer.enqueue(
        conn, message, "reminder", existing["id"], network_hash=request["network_hash"]
    )


# Verification, withdrawal, unsubscribing --------------------------------------------


async def verify_signature(
    db: Database, public_id: uuid.UUID, mailer: Mailer | None = None
) -> SignatureState | None:
    """Confirm a pending signature (idempotent). None when no such signature exists.

    The confirmation that changes it makes the signer's receipt (receipts.py): its
    commitment is stored for the transparency log, and the receipt itself comes back
    in the state (for the page) and is mailed to the signer (with a `mailer`), in the
    same transaction; then it is forgotten.

    Concurrent confirmations in one process are committed together (batching.py);
    this returns once this one is committed."""
    confirm_all = partial(_confirm_signatures, db)
    return await batching.gatherer(db, "confirm", confirm_all).submit((public_id, mailer))


async def _confirm_signatures(db: Database, batch) -> list:
    if len(batch) > 1:
        try:
            async with raw_connection(db) as conn, conn.transaction():
                return await _confirm_together(conn, batch)
        except Exception as error:  # one row the database refused: each on its own
            if sign_batch.lost_connection(error):
                raise
    outcomes = []
    for public_id, mailer in batch:
        try:
            outcomes.append(await _confirm_one(db, public_id, mailer))
        except Exception as error:  # this caller's alone
            if len(batch) == 1:
                raise
            outcomes.append(error)
    return outcomes


async def _confirm_one(db: Database, public_id: uuid.UUID, mailer: Mailer | None):
    receipt = Receipt.new()
    async with raw_connection(db) as conn, conn.transaction():
        state = await confirm(conn, public_id, receipt.commitment)
        if state is None or not state.changed:
            return state
        if mailer is not None:
            await _mail_receipt(conn, mailer, public_id, receipt, state)
    return replace(state, receipt=receipt)


# The receipt emails of a batch of confirmations (not capped: mail.CAPPED_PURPOSES).
_ENQUEUE_RECEIPTS = """
INSERT INTO outbox (purpose, subject, sealed, message_id, signature_id, status)
SELECT 'receipt', subject, sealed, message_id, signature_id, 'waiting'
  FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[])
       AS m(subject, sealed, message_id, signature_id)
"""


async def _confirm_together(conn, batch) -> list:
    """verify_signature for a batch, in the caller's transaction. A signature asked
    for twice is confirmed by the first asker; the second sees it confirmed."""
    receipts: dict[uuid.UUID, Receipt] = {}
    for public_id, _mailer in batch:
        receipts.setdefault(public_id, Receipt.new())
    changed, others = await confirm_many(
        conn, [(public_id, receipt.commitment) for public_id, receipt in receipts.items()]
    )
    states = {}
    mails = []
    petitions: dict[tuple, Petition] = {}
    mailers = {public_id: mailer for public_id, mailer in reversed(batch)}  # the first's
    for row in changed:
        state = SignatureState(row["status"], row["slug"], changed=True, kind=row["kind"])
        receipt = receipts[row["public_id"]]
        states[row["public_id"]] = replace(state, receipt=receipt)
        mailer = mailers[row["public_id"]]
        if mailer is None:
            continue
        personal = personal_of(mailer.cipher, row)
        if not personal["email"]:
            continue
        language = row["language"]
        key = (row["petition_id"], language)
        if key not in petitions:
            petitions[key] = await mailer.petition_for_mail(conn, row["petition_id"], language)
        with i18n.language(language):
            message = mailer.receipt(
                petitions[key], personal["email"], receipt, state.status, state.kind
            )
        mails.append(
            (bounded(message.subject, MAX_SUBJECT), mailer.seal(message), message.message_id,
             row["id"])
        )  # fmt: skip
    if mails:
        columns = (list(column) for column in zip(*mails, strict=True))
        await conn.execute(_ENQUEUE_RECEIPTS, *columns)
    outcomes = []
    for public_id, _mailer in batch:
        state = states.pop(public_id, None)  # the first asker's; later ones see it done
        if state is None:
            state = others.get(public_id) or await signature_state(conn, public_id)
        outcomes.append(state)
    return outcomes


async def _mail_receipt(conn, mailer: Mailer, public_id, receipt: Receipt, state) -> None:
    row = await conn.fetchrow(
        "SELECT id, public_id, petition_id, sealed, name, email, language FROM signatures"
        " WHERE public_id = $1",
        public_id,
    )
    personal = personal_of(mailer.cipher, row)
    if not personal["email"]:
        return
    language = row["language"]
    petition = await mailer.petition_for_mail(conn, row["petition_id"], language)
    with i18n.language(language):
        message = mailer.receipt(petition, personal["email"], receipt, state.status, state.kind)
    await mailer.enqueue(conn, message, "receipt", row["id"])


async def get_signature_state(db: Database, public_id: uuid.UUID) -> SignatureState | None:
    async with raw_connection(db) as conn:
        return await signature_state(conn, public_id)


async def withdraw_signature(db: Database, public_id: uuid.UUID) -> SignatureState | None:
    """Withdraw a signature and erase its signer's personal data."""
    async with raw_connection(db) as conn:
        return await withdraw(conn, public_id)


# Updates go to a person, not to one of their signatures: unsubscribing stops them
# for every signature of the petition made with the same email (someone who
# signed for two organisations, say).
_UNSUBSCRIBE = """
WITH linked AS (
    SELECT s.id, s.petition_id, s.email_hash, s.status, p.slug
      FROM signatures s JOIN petitions p ON p.id = s.petition_id
     WHERE s.public_id = $1
), stopped AS (
    UPDATE signatures s SET updates = false, updated_at = now()
      FROM linked l
     WHERE s.petition_id = l.petition_id
       AND (s.id = l.id OR s.email_hash = l.email_hash)
       AND s.updates
)
SELECT status, slug FROM linked
"""


async def unsubscribe(db: Database, public_id: uuid.UUID) -> SignatureState | None:
    async with raw_connection(db) as conn:
        row = await conn.fetchrow(_UNSUBSCRIBE, public_id)
    return SignatureState(row["status"], row["slug"], changed=True) if row else None


async def resend_verification(
    db: Database, mailer: Mailer, public_id: uuid.UUID, client_address: str | None = None
) -> bool:
    """Send a fresh confirmation link for a still-pending signature: at most hourly,
    at most MAIL_RESEND_PER_DAY a day, and within the mail caps of the mailbox and of
    the asking network (Mailer.enqueue). The caller answers the same either way."""
    network = client_network(client_address)
    async with raw_connection(db) as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, public_id, petition_id, sealed, name, email, language FROM signatures "
            "WHERE public_id = $1 AND status = $2 FOR UPDATE",
            public_id,
            Status.PENDING,
        )
        if row is None:
            return False
        recent = await conn.fetchval(
            f"""SELECT 1 FROM outbox WHERE signature_id = $1
                 AND purpose IN ('verification', 'reminder')
                 AND created_at > now() - interval '{REMINDER_INTERVAL}'
                 AND status = 'waiting'""",
            row["id"],
        )
        if recent:
            return True
        resends = await conn.fetchval(
            "SELECT mail_count('resend', $1, date_trunc('day', now(), 'UTC'))", public_id.bytes
        )
        if 0 < mailer.settings.mail_resend_per_day < resends:
            return True
        personal = personal_of(mailer.cipher, row)
        if not personal["email"]:
            return False
        petition = await mailer.petition_for_mail(conn, row["petition_id"], row["language"])
        with i18n.language(row["language"]):
            message = mailer.verification(petition, personal["email"], public_id)
        await mailer.enqueue(
            conn, message, "verification", row["id"],
            network_hash=network_hash(mailer.settings.secret_key, network) if network else None,
        )  # fmt: skip
    return True
