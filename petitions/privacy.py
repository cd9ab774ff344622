"""The facts of the privacy page (`GET /privacy`), taken from the code and settings that
decide them, so the page cannot say something the code does not do.

- What the public list shows of a signature is read off `signatories.public_entry`,
  for each kind and display choice.
- Which fields are encrypted is `crypto.ENCRYPTED_FIELDS`, and which of them also
  stay in clear (what the public list shows) is `personal.public_columns`, asked
  for each kind and display choice.
- Periods are the settings (PUBLIC_MIN_GROUP, RETENTION_*,
  ANONYMISE_AFTER_CLOSE_DAYS) and the code's constants (a confirmation link's life).
- `STORED` names every column of `signatures`, and `KEPT_AFTER_WITHDRAWAL` what a
  withdrawal leaves: tests/test_privacy.py checks both against the database, so a
  new column or a change in what is erased fails until this page says it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .crypto import ENCRYPTED_FIELDS, ENCRYPTED_OUTBOX_FIELDS
from .personal import public_columns
from .retention import STRIP_EMAIL
from .settings import Settings
from .signatories import public_entry
from .signature import Display, Kind
from .tokens import VERIFY_TOKEN_AGE


@dataclass(frozen=True)
class Stored:
    """One thing kept about a signature: the columns that hold it and what it is for."""

    label: str
    columns: tuple[str, ...]
    why: str
    hashed: bool = False  # a keyed hash (HMAC-SHA256): compared, never read back


# Every column of `signatures`, in the order a signer meets them.
STORED: tuple[Stored, ...] = (
    Stored("Your name", ("name",), "to list you as you chose, and for the campaign's records"),
    Stored(
        "Your email address",
        ("email",),
        "to confirm your signature and, if you agreed, to send you updates",
    ),
    Stored("Country", ("country",), "for the counts by country"),
    Stored("City", ("city",), "shown with a public signature"),
    Stored("Occupation or role", ("occupation",), "shown with public and initials signatures"),
    Stored("Organisation name", ("organisation",), "for organisation signatures"),
    Stored("Organisation type", ("organisation_type",), "for organisation signatures"),
    Stored("Number of members", ("members",), "for organisation signatures"),
    Stored("Organisation website", ("website",), "shown with a public signature"),
    Stored("Message of solidarity", ("comment",), "shown with a public signature"),
    Stored("Initials", ("initials",), "what the list shows of an initials signature"),
    Stored(
        "Whether you signed as a person or for an organisation, and how your signature appears",
        ("kind", "display"),
        "public, initials or anonymous, as you chose",
    ),
    Stored("Whether you want updates", ("updates",), "you can stop them from any update email"),
    Stored(
        "Language, referrer code and the version of the statement you signed",
        ("language", "ref", "version_id"),
        "to write to you in your language, to know which "
        "websites bring signers, and to keep the text you signed",
    ),
    Stored(
        "Status and times (signed, confirmed, rejected, withdrawn, erased)",
        (
            "status",
            "created_at",
            "verified_at",
            "rejected_at",
            "withdrawn_at",
            "erased_at",
            "updated_at",
        ),
        "to count confirmed signatures; public pages show times to the hour only",
    ),
    Stored(
        "A keyed hash of your email address",
        ("email_hash",),
        "to recognise a second signature from the same address",
        hashed=True,
    ),
    Stored(
        "A keyed hash of the organisation's name and country",
        ("organisation_hash",),
        "so one organisation counts once per country",
        hashed=True,
    ),
    Stored(
        "Short keyed hashes of the words of the names and of your email's domain",
        ("search_hashes",),
        "so the campaign can search signatures",
        hashed=True,
    ),
    Stored(
        "A keyed hash of your network (never your IP address)",
        ("network_hash",),
        "to hold back floods of signatures from one place",
        hashed=True,
    ),
)
# Columns that say nothing about the signer by themselves: row ids, and the
# encrypted blob that holds the encrypted fields above.
INTERNAL_COLUMNS = frozenset({"id", "public_id", "petition_id", "sealed"})

# What a withdrawn signature keeps (column: as the page says it): what the counts and
# their history need. tests/test_privacy.py withdraws a signature and compares.
KEPT_AFTER_WITHDRAWAL = {
    "kind": "individual or organisation",
    "country": "country",
    "display": "display choice",
    "status": "that it was withdrawn",
    "language": "language",
    "ref": "referrer code",
    "version_id": "statement version",
    "created_at": "dates",
    "verified_at": "dates",
    "rejected_at": "dates",
    "withdrawn_at": "dates",
    "erased_at": "dates",
    "updated_at": "dates",
    "updates": "that you get no updates",
}

DISPLAY_LABELS = {
    Display.PUBLIC: "Public",
    Display.INITIALS: "Initials",
    Display.ANONYMOUS: "Anonymous",
}

# The fields public_entry gives out, as the page names them, in the page's order.
PUBLIC_FIELD_LABELS = {
    "organisation": "organisation name",
    "name": "name",
    "initials": "initials",
    "organisation_type": "organisation type",
    "members": "number of members",
    "website": "website",
    "occupation": "occupation or role",
    "city": "city",
    "comment": "message",
    "country": "country (only once enough people from it have signed)",
    "signed_at": "the hour of signing",
}
_FOR_ORGANISATIONS = {
    "name": "name of the person who signed for it",
    "occupation": "their role",
    "initials": "the organisation's initials",
}
_ALWAYS = ("id", "kind")  # an opaque id and individual/organisation: in every entry


def _sample(kind: str, display: str) -> dict:
    """A made-up signature with every field filled in."""
    organisation = kind == Kind.ORGANISATION
    return {
        "public_id": uuid.UUID(int=0), "kind": kind, "display": display, "name": "Ann Bee",
        "email": "a@example.org", "city": "c", "occupation": "o",
        "organisation": "Org Union" if organisation else None,
        "organisation_type": "ngo" if organisation else None,
        "members": 1 if organisation else None,
        "website": "https://example.org" if organisation else None, "comment": "m",
        "initials": "A.B.", "country": "GB", "verified_at": datetime.now(UTC),
    }  # fmt: skip


def shown_publicly(kind: str, display: str) -> tuple[str, ...]:
    """What the public list shows of a signature of this kind and display choice, read
    off `public_entry` itself."""
    if display == Display.ANONYMOUS:
        return ()  # counted, never listed (signatories.py and events.py leave them out)
    entry = public_entry(_sample(kind, display), countries={"GB"})
    order = list(PUBLIC_FIELD_LABELS)
    fields = sorted(
        (k for k in entry if k not in _ALWAYS),
        key=lambda k: order.index(k) if k in order else len(order),
    )
    labels = {**PUBLIC_FIELD_LABELS, **(_FOR_ORGANISATIONS if kind == Kind.ORGANISATION else {})}
    return tuple(labels.get(k, k.replace("_", " ")) for k in fields)


def _clear_columns(kind: str, display: str) -> set[str]:
    """The columns kept in clear for a signature of this kind and display choice."""
    sample = _sample(kind, display)
    return {c for c, v in public_columns(kind, display, sample).items() if v is not None}


@dataclass(frozen=True)
class DisplayChoice:
    value: str
    label: str
    shown: dict[str, tuple[str, ...]]  # kind -> what the public list shows; empty: not listed


def display_choices() -> list[DisplayChoice]:
    return [
        DisplayChoice(d.value, DISPLAY_LABELS[d], {k.value: shown_publicly(k, d) for k in Kind})
        for d in Display
    ]


@dataclass(frozen=True)
class StoredRow:
    label: str
    why: str
    protection: str  # "encrypted", "keyed hash" or "not encrypted"
    in_clear: str  # when it is also (or only) kept readable


def _protection(item: Stored) -> str:
    if item.hashed:
        return "keyed hash"
    return "encrypted" if all(c in ENCRYPTED_FIELDS for c in item.columns) else "not encrypted"


def _in_clear(item: Stored, clear_for: Callable[[str], list[str]]) -> str:
    if item.hashed:
        return "never: it cannot be read back"
    if not all(c in ENCRYPTED_FIELDS for c in item.columns):
        when = clear_for(item.columns[0])
        if item.columns[0] in _PUBLISHED_ONLY:
            return f"only for {' and '.join(when)} signatures" if when else "never"
        return "yes"
    when = clear_for(item.columns[0])
    if not when:
        return "never"
    return f"only if the signature is {' or '.join(when)}, as the public list shows it"


# Clear columns that exist only to be published (and are empty otherwise).
_PUBLISHED_ONLY = frozenset({"initials"})


@dataclass(frozen=True)
class PrivacyFacts:
    stored: list[StoredRow]
    encrypted: tuple[str, ...]
    displays: list[DisplayChoice]
    min_group: int
    unverified_days: int
    network_days: int
    rejected_days: int
    verify_link_days: int
    anonymise_after_close_days: int | None
    kept_after_withdrawal: tuple[str, ...]  # as the page says them
    emails_encrypted: bool  # an email's recipient and text, while it waits to be sent
    emails_stripped_when_sent: bool  # ... and erased once the mail server accepted it


def privacy_facts(settings: Settings) -> PrivacyFacts:
    """Everything the privacy page says, from these settings and the code's own rules."""
    clear = {(k, d): _clear_columns(k, d) for k in Kind for d in Display}

    def clear_for(column: str) -> list[str]:
        return [
            DISPLAY_LABELS[d].lower() for d in Display if any(column in clear[k, d] for k in Kind)
        ]

    stored = [StoredRow(s.label, s.why, _protection(s), _in_clear(s, clear_for)) for s in STORED]
    return PrivacyFacts(
        stored=stored,
        encrypted=tuple(ENCRYPTED_FIELDS),
        displays=display_choices(),
        min_group=settings.public_min_group,
        unverified_days=settings.retention_unverified_days,
        network_days=settings.retention_network_days,
        rejected_days=settings.retention_rejected_days,
        verify_link_days=VERIFY_TOKEN_AGE // 86400,
        anonymise_after_close_days=settings.anonymise_after_close_days or None,
        kept_after_withdrawal=tuple(dict.fromkeys(KEPT_AFTER_WITHDRAWAL.values())),
        emails_encrypted={"recipient", "body_text"} <= set(ENCRYPTED_OUTBOX_FIELDS),
        emails_stripped_when_sent="recipient = NULL" in STRIP_EMAIL
        and "body_text = NULL" in STRIP_EMAIL,
    )
