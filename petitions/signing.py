"""The signing rules: validate and normalise a sign form, store it, verify, withdraw, unsubscribe.

Nothing here knows about HTTP. Each hot operation is one short transaction and,
in the common case, one round trip to PostgreSQL.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from databases import Database

from .clients import client_network
from .db import raw_connection
from .fields import FieldReader
from .keys import email_hash, network_hash
from .mail import Mailer
from .petitions import TAKES_SIGNATURES_SQL, Petition
from .signature import (
    INITIAL_STATUS,
    Display,
    Kind,
    OrganisationType,
    SignatureState,
    Status,
    confirm,
    signature_state,
    withdraw,
)

MAX_MEMBERS = 1_000_000_000
_REF = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


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


def parse_sign_form(form: Mapping[str, str], petition: Petition) -> Signer:
    """Validate every field; raise FieldErrors with a message per bad field."""
    read = FieldReader(form)
    kind = read.choice(
        "kind", "", list(Kind),
        message="Choose whether you sign as an individual or for an organisation.",
    )  # fmt: skip
    if kind == Kind.INDIVIDUAL and not petition.accepts_individuals:
        read.fail("kind", "This petition is signed by organisations only.")
    elif kind == Kind.ORGANISATION and not petition.accepts_organisations:
        read.fail("kind", "This petition is signed by individuals only.")
    is_org = kind == Kind.ORGANISATION

    name = read.text("name", "Your name", 200, required=True)
    email = read.email("email", "Your email is required: we send a link to confirm your signature.")
    country = read.country("country", "Choose a country from the list.", required=True)
    city = read.text("city", "City", 100)
    occupation = read.text("occupation", "Occupation or role", 200)
    comment = read.text("comment", "Message", 1000, multiline=True)

    organisation = organisation_type = website = members = None
    if is_org:
        organisation = read.text("organisation", "Organisation", 300, required=True)
        organisation_type = read.choice(
            "organisation_type", "", list(OrganisationType),
            message="Choose the type of organisation.",
        )  # fmt: skip
        website = read.website(
            "website", "Give the website as an address such as https://union.example.org."
        )
        members = _members(read)

    display = read.choice(
        "display", "", list(Display), default=Display.PUBLIC,
        message="Choose how your signature should appear.",
    )  # fmt: skip
    ref = read.raw("ref").strip()
    ref = ref if _REF.match(ref) else None  # a bad campaign code is not the signer's fault
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
    """Members as people write them: "12 500", "12,500", "12.500"."""
    digits = re.sub(r"[\s,.'’_]", "", read.raw("members"))
    if not digits:
        return None
    if not digits.isascii() or not digits.isdigit() or len(digits) > 10:
        read.fail("members", "Give the number of members as a whole number, such as 1200.")
        return None
    value = int(digits)
    if value > MAX_MEMBERS:
        read.fail("members", "That is more members than any organisation has.")
        return None
    return value


# Storing a signature --------------------------------------------------------

_INSERT_SIGNATURE = f"""
WITH new_signature AS (
    INSERT INTO signatures (status, public_id, petition_id, version_id, kind, display, name,
                            email, email_hash, country, city, occupation, organisation,
                            organisation_type, website, members, comment, updates, language,
                            ref, network_hash)
    SELECT '{INITIAL_STATUS}', $1, p.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
           $19, $20
      FROM petitions p
     WHERE p.id = $2 AND {TAKES_SIGNATURES_SQL}
    ON CONFLICT DO NOTHING
    RETURNING id
)
INSERT INTO outbox (purpose, recipient, subject, body_text, body_html, headers, message_id,
                    signature_id)
SELECT 'verification', $7, $21, $22, $23, '{{}}', $24, id FROM new_signature
RETURNING signature_id
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
) -> SignResult:
    """Store a pending signature and its confirmation email in one statement.

    An email (or organisation) that already signed gets a reminder instead; the
    caller answers the same way in every case, so nobody learns who signed.
    """
    public_id = uuid.uuid4()
    secret = mailer.settings.secret_key
    hashed_email = email_hash(secret, signer.email)
    network = client_network(client_address)
    message = mailer.verification(petition, signer.name, signer.email, public_id)
    async with raw_connection(db) as conn:
        stored = await conn.fetchval(
            _INSERT_SIGNATURE,
            public_id, petition.id, petition.version_id, signer.kind, signer.display,
            signer.name, signer.email, hashed_email, signer.country, signer.city,
            signer.occupation, signer.organisation, signer.organisation_type, signer.website,
            signer.members, signer.comment, signer.updates, petition.language, signer.ref,
            network_hash(secret, network) if network else None,
            message.subject, message.text, message.html, message.message_id,
        )  # fmt: skip
        if stored is not None:
            return SignResult("stored")
        if not petition.accepts_signatures:
            return SignResult("closed")
        await _remind_existing_signer(conn, mailer, petition, signer, hashed_email)
    return SignResult("existing")


_FIND_EXISTING = f"""
SELECT id, public_id, status, name, email_hash = $3 AS same_email
  FROM signatures
 WHERE petition_id = $1
   AND ((kind = '{Kind.INDIVIDUAL}' AND $2 = '{Kind.INDIVIDUAL}' AND email_hash = $3)
        OR (kind = '{Kind.ORGANISATION}' AND $2 = '{Kind.ORGANISATION}'
            AND organisation_key = organisation_key($4)
            AND country = $5))
"""

REMINDER_INTERVAL = "1 hour"


async def _remind_existing_signer(conn, mailer: Mailer, petition: Petition, signer: Signer, hashed):
    """Mail the existing signer their links, at most once an hour per signature."""
    async with conn.transaction():
        existing = await conn.fetchrow(
            _FIND_EXISTING, petition.id, signer.kind, hashed, signer.organisation, signer.country
        )
        if existing is None:
            return  # withdrawn meanwhile, or the petition closed
        await conn.execute("SELECT pg_advisory_xact_lock($1)", existing["id"])
        recent = await conn.fetchval(
            f"""SELECT 1 FROM outbox WHERE signature_id = $1 AND purpose = 'reminder'
                 AND created_at > now() - interval '{REMINDER_INTERVAL}'""",
            existing["id"],
        )
        if recent:
            return
        if existing["same_email"]:
            message = mailer.reminder(
                petition, existing["name"], signer.email, existing["public_id"], existing["status"]
            )
        else:
            # Someone else signed for this organisation: tell this person, but send
            # no link that would act on the other person's signature.
            message = mailer.organisation_already_signed(
                petition, signer.name, signer.email, signer.organisation
            )
        await mailer.enqueue(conn, message, "reminder", existing["id"])


# Verification, withdrawal, unsubscribing --------------------------------------------


async def verify_signature(db: Database, public_id: uuid.UUID) -> SignatureState | None:
    """Confirm a pending signature (idempotent). None when no such signature exists."""
    async with raw_connection(db) as conn:
        return await confirm(conn, public_id)


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


async def resend_verification(db: Database, mailer: Mailer, public_id: uuid.UUID) -> bool:
    """Send a fresh confirmation link for a still-pending signature (at most hourly)."""
    async with raw_connection(db) as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, petition_id, name, email FROM signatures "
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
        petition = await mailer.petition_for_mail(conn, row["petition_id"])
        message = mailer.verification(petition, row["name"], row["email"], public_id)
        await mailer.enqueue(conn, message, "verification", row["id"])
    return True
