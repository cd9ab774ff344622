"""The signing rules: validate and normalise a sign form, store it, verify, withdraw, unsubscribe.

Nothing here knows about HTTP. Each hot operation is one short transaction and,
in the common case, one round trip to PostgreSQL.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from databases import Database
from email_validator import EmailNotValidError, validate_email

from .countries import COUNTRY_CODES
from .db import raw_connection
from .keys import email_hash, network_hash, normalise_email
from .mail import Mailer
from .petitions import Petition

KINDS = ("individual", "organisation")
DISPLAYS = ("public", "initials", "anonymous")
ORGANISATION_TYPES = ("trade_union", "federation", "association", "ngo", "political", "other")
MAX_MEMBERS = 1_000_000_000

# Characters no form field may hold: C0 controls (but tab/newline in comments), DEL,
# C1 controls, and the Unicode non-characters and bidi overrides used to disguise text.
_FORBIDDEN = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufffe\uffff]"
)
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


class FormErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def _clean(value: str | None, *, multiline: bool = False) -> str:
    """Trim, NFC-normalise and fold white space; keep newlines only where allowed."""
    text = unicodedata.normalize("NFC", value or "")
    if multiline:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", text).strip()
    return " ".join(text.split())


def parse_sign_form(form: Mapping[str, str], petition: Petition) -> Signer:
    """Validate every field; raise FormErrors with a message per bad field."""
    errors: dict[str, str] = {}

    def text(name: str, label: str, limit: int, required: bool = False, multiline: bool = False):
        raw = form.get(name) or ""
        if _FORBIDDEN.search(raw):
            errors[name] = f"{label} contains characters that are not allowed."
            return None
        value = _clean(raw, multiline=multiline)
        if not value:
            if required:
                errors[name] = f"{label} is required."
            return None
        if len(value) > limit:
            errors[name] = f"{label} must be at most {limit} characters (it has {len(value)})."
            return None
        return value

    kind = form.get("kind", "")
    if kind not in KINDS:
        errors["kind"] = "Choose whether you sign as an individual or for an organisation."
    elif kind == "individual" and not petition.accepts_individuals:
        errors["kind"] = "This petition is signed by organisations only."
    elif kind == "organisation" and not petition.accepts_organisations:
        errors["kind"] = "This petition is signed by individuals only."
    is_org = kind == "organisation"

    name = text("name", "Your name", 200, required=True)
    email = _email(form.get("email") or "", errors)
    country = (form.get("country") or "").strip().upper()
    if country not in COUNTRY_CODES:
        errors["country"] = "Choose a country from the list."
    city = text("city", "City", 100)
    occupation = text("occupation", "Occupation or role", 200)
    comment = text("comment", "Message", 1000, multiline=True)

    organisation = organisation_type = website = members = None
    if is_org:
        organisation = text("organisation", "Organisation", 300, required=True)
        organisation_type = form.get("organisation_type", "")
        if organisation_type not in ORGANISATION_TYPES:
            errors["organisation_type"] = "Choose the type of organisation."
        website = _website(form.get("website") or "", errors)
        members = _members(form.get("members") or "", errors)

    display = form.get("display") or "public"
    if display not in DISPLAYS:
        errors["display"] = "Choose how your signature should appear."
    ref = (form.get("ref") or "").strip()
    ref = ref if _REF.match(ref) else None  # a bad campaign code is not the signer's fault

    if errors:
        raise FormErrors(errors)
    return Signer(
        kind=kind,
        name=name,
        email=email,
        country=country,
        city=city,
        occupation=occupation,
        organisation=organisation,
        organisation_type=organisation_type,
        website=website,
        members=members,
        comment=comment,
        display=display,
        updates=form.get("updates") in ("1", "on", "yes", "true"),
        ref=ref,
    )


def _email(raw: str, errors: dict[str, str]) -> str:
    raw = raw.strip()
    if not raw:
        errors["email"] = "Your email is required: we send a link to confirm your signature."
        return ""
    if len(raw) > 254 or _FORBIDDEN.search(raw):
        errors["email"] = "This does not look like an email address."
        return ""
    try:
        checked = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as error:
        errors["email"] = f"This does not look like an email address: {error}"
        return ""
    email = normalise_email(checked.normalized)
    if len(email) > 254:
        errors["email"] = "This email address is too long."
    return email


def _website(raw: str, errors: dict[str, str]) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not re.match(r"^[a-z][a-z0-9+.-]*://", raw, re.I):
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    valid = (
        parts is not None
        and parts.scheme.lower() in ("http", "https")
        and len(raw) <= 500
        and not re.search(r"[\s<>\"'\\]", raw)
        and not _FORBIDDEN.search(raw)
        and "." in host
        and not parts.username
        and not parts.password
    )
    if not valid:
        errors["website"] = "Give the website as an address such as https://union.example.org."
        return None
    return parts.scheme.lower() + raw[len(parts.scheme) :]


def _members(raw: str, errors: dict[str, str]) -> int | None:
    digits = re.sub(r"[\s,.'’_]", "", raw)
    if not digits:
        return None
    if not digits.isascii() or not digits.isdigit() or len(digits) > 10:
        errors["members"] = "Give the number of members as a whole number, such as 1200."
        return None
    value = int(digits)
    if value > MAX_MEMBERS:
        errors["members"] = "That is more members than any organisation has."
        return None
    return value


def client_network(address: str | None) -> str | None:
    """The signer's network: an IPv4 /24 or IPv6 /48, never the address itself."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


# Storing a signature --------------------------------------------------------

_INSERT_SIGNATURE = """
WITH new_signature AS (
    INSERT INTO signatures (public_id, petition_id, version_id, kind, display, name, email,
                            email_hash, country, city, occupation, organisation,
                            organisation_type, website, members, comment, updates, language,
                            ref, network_hash)
    SELECT $1, p.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
           $19, $20
      FROM petitions p
     WHERE p.id = $2 AND p.status = 'open' AND (p.closes_at IS NULL OR p.closes_at > now())
    ON CONFLICT DO NOTHING
    RETURNING id
)
INSERT INTO outbox (purpose, recipient, subject, body_text, body_html, headers, message_id,
                    signature_id)
SELECT 'verification', $7, $21, $22, $23, '{}', $24, id FROM new_signature
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


_FIND_EXISTING = """
SELECT id, public_id, status, name, email_hash = $3 AS same_email
  FROM signatures
 WHERE petition_id = $1
   AND ((kind = 'individual' AND $2 = 'individual' AND email_hash = $3)
        OR (kind = 'organisation' AND $2 = 'organisation'
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

_VERIFY = """
UPDATE signatures s
   SET status = CASE WHEN s.kind = 'organisation' AND p.moderate_organisations
                     THEN 'held' ELSE 'verified' END,
       verified_at = now(), updated_at = now()
  FROM petitions p
 WHERE p.id = s.petition_id AND s.public_id = $1 AND s.status = 'pending'
   AND p.status = 'open' AND (p.closes_at IS NULL OR p.closes_at > now())
RETURNING s.status, p.slug
"""

_STATUS = """
SELECT s.status, p.slug FROM signatures s JOIN petitions p ON p.id = s.petition_id
 WHERE s.public_id = $1
"""


@dataclass(frozen=True)
class SignatureState:
    status: str  # pending (petition closed before confirming), verified, held, rejected, withdrawn
    slug: str
    changed: bool = False


async def verify_signature(db: Database, public_id: uuid.UUID) -> SignatureState | None:
    """Confirm a pending signature (idempotent). None when no such signature exists."""
    async with raw_connection(db) as conn:
        row = await conn.fetchrow(_VERIFY, public_id)
        if row is not None:
            return SignatureState(row["status"], row["slug"], changed=True)
        row = await conn.fetchrow(_STATUS, public_id)
    return SignatureState(row["status"], row["slug"]) if row else None


async def signature_state(db: Database, public_id: uuid.UUID) -> SignatureState | None:
    async with raw_connection(db) as conn:
        row = await conn.fetchrow(_STATUS, public_id)
    return SignatureState(row["status"], row["slug"]) if row else None


# Withdrawal erases the signer's personal data; what stays is what the counts and
# their history need (kind, country, display choice, dates, statement version, ref).
_WITHDRAW = """
WITH withdrawn AS (
    UPDATE signatures s
       SET status = 'withdrawn', withdrawn_at = now(), updated_at = now(),
           name = NULL, email = NULL, email_hash = NULL, city = NULL, occupation = NULL,
           organisation = NULL, organisation_type = NULL, website = NULL, members = NULL,
           comment = NULL, network_hash = NULL, updates = false
     WHERE s.public_id = $1 AND s.status <> 'withdrawn'
    RETURNING s.id, s.petition_id
), forget_mail AS (
    DELETE FROM outbox o USING withdrawn w WHERE o.signature_id = w.id
)
SELECT p.slug FROM withdrawn w JOIN petitions p ON p.id = w.petition_id
"""


async def withdraw_signature(db: Database, public_id: uuid.UUID) -> SignatureState | None:
    async with raw_connection(db) as conn:
        slug = await conn.fetchval(_WITHDRAW, public_id)
        if slug is not None:
            return SignatureState("withdrawn", slug, changed=True)
        row = await conn.fetchrow(_STATUS, public_id)
    return SignatureState(row["status"], row["slug"]) if row else None


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
            "WHERE public_id = $1 AND status = 'pending' FOR UPDATE",
            public_id,
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
