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
from .i18n import N_, _, format_list, pgettext
from .personal import public_columns
from .retention import MAIL_COUNTS_KEPT_DAYS, STRIP_EMAIL
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
    Stored(
        N_("Your name"), ("name",), N_("to list you as you chose, and for the campaign's records")
    ),
    Stored(
        N_("Your email address"),
        ("email",),
        N_("to confirm your signature and, if you agreed, to send you updates"),
    ),
    Stored(N_("Country"), ("country",), N_("for the counts by country")),
    Stored(N_("City"), ("city",), N_("shown with a public signature")),
    Stored(
        N_("Occupation or role"), ("occupation",), N_("shown with public and initials signatures")
    ),
    Stored(N_("Organisation name"), ("organisation",), N_("for organisation signatures")),
    Stored(N_("Organisation type"), ("organisation_type",), N_("for organisation signatures")),
    Stored(N_("Number of members"), ("members",), N_("for organisation signatures")),
    Stored(N_("Organisation website"), ("website",), N_("shown with a public signature")),
    Stored(N_("Message of solidarity"), ("comment",), N_("shown with a public signature")),
    Stored(N_("Initials"), ("initials",), N_("what the list shows of an initials signature")),
    Stored(
        N_("Whether you signed as a person or for an organisation, and how your signature appears"),
        ("kind", "display"),
        N_("public, initials or anonymous, as you chose"),
    ),
    Stored(
        N_("Whether you want updates"), ("updates",), N_("you can stop them from any update email")
    ),
    Stored(
        N_("Language, referrer code and the version of the statement you signed"),
        ("language", "ref", "version_id"),
        N_(
            "to write to you in your language, to know which "
            "websites bring signers, and to keep the text you signed"
        ),
    ),
    Stored(
        N_("Status and times (signed, confirmed, rejected, withdrawn, erased)"),
        (
            "status",
            "created_at",
            "verified_at",
            "rejected_at",
            "withdrawn_at",
            "erased_at",
            "updated_at",
            # a moderator's work: why it waits, and a bulk invalidation it is part of
            "hold_reason",
            "invalidation_id",
            "invalidated_from",
        ),
        N_("to count confirmed signatures; public pages show times to the hour only"),
    ),
    Stored(
        N_("A keyed hash of your email address"),
        ("email_hash",),
        N_("to recognise a second signature from the same address"),
        hashed=True,
    ),
    Stored(
        N_("A keyed hash of the organisation's name and country"),
        ("organisation_hash",),
        N_("so one organisation counts once per country"),
        hashed=True,
    ),
    Stored(
        N_("Short keyed hashes of the words of the names and of your email's domain"),
        ("search_hashes",),
        N_("so the campaign can search signatures"),
        hashed=True,
    ),
    Stored(
        N_("A keyed hash of your network (never your IP address)"),
        ("network_hash",),
        N_("to hold back floods of signatures from one place"),
        hashed=True,
    ),
    Stored(
        N_("A keyed hash of your email's domain (never the domain itself)"),
        ("domain_hash",),
        N_("to notice floods of signatures from one mail domain"),
        hashed=True,
    ),
    Stored(
        N_("A fingerprint of your receipt (never the receipt itself)"),
        ("receipt_commitment",),
        N_(
            "so that your receipt finds your signature in the petition's public log; "
            "the log shows it with the hour and nothing else about you"
        ),
        hashed=True,
    ),
)
# Columns that say nothing about the signer by themselves: row ids, and the
# encrypted blob that holds the encrypted fields above.
INTERNAL_COLUMNS = frozenset({"id", "public_id", "petition_id", "sealed"})

# What a withdrawn signature keeps (column: as the page says it): what the counts and
# their history need. tests/test_privacy.py withdraws a signature and compares.
KEPT_AFTER_WITHDRAWAL = {
    "kind": N_("individual or organisation"),
    "country": N_("country"),
    "display": N_("display choice"),
    "status": N_("that it was withdrawn"),
    "language": N_("language"),
    "ref": N_("referrer code"),
    "version_id": N_("statement version"),
    "created_at": N_("dates"),
    "verified_at": N_("dates"),
    "rejected_at": N_("dates"),
    "withdrawn_at": N_("dates"),
    "erased_at": N_("dates"),
    "updated_at": N_("dates"),
    "updates": N_("that you get no updates"),
    "receipt_commitment": N_("your receipt's fingerprint, as the public log has it"),
}

DISPLAY_LABELS = {
    Display.PUBLIC: N_("Public"),
    Display.INITIALS: N_("Initials"),
    Display.ANONYMOUS: N_("Anonymous"),
}


def _choice_in_sentence(display: Display) -> str:
    """A display choice named inside a sentence ("only if the signature is public"):
    its own texts, since lower-casing a label is wrong in German."""
    # The context is spelled out in each call: the extractor reads literals only.
    return {
        Display.PUBLIC: pgettext("display choice in a sentence", "public"),
        Display.INITIALS: pgettext("display choice in a sentence", "initials"),
        Display.ANONYMOUS: pgettext("display choice in a sentence", "anonymous"),
    }[display]


# The fields public_entry gives out, as the page names them, in the page's order.
PUBLIC_FIELD_LABELS = {
    "organisation": N_("organisation name"),
    "name": N_("name"),
    "initials": N_("initials"),
    "organisation_type": N_("organisation type"),
    "members": N_("number of members"),
    "website": N_("website"),
    "occupation": N_("occupation or role"),
    "city": N_("city"),
    "comment": N_("message"),
    "country": N_("country (only once enough people from it have signed)"),
    "signed_at": N_("the hour of signing"),
}
_FOR_ORGANISATIONS = {
    "name": N_("name of the person who signed for it"),
    "occupation": N_("their role"),
    "initials": N_("the organisation's initials"),
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
    """The display choices as the page says them, in the current language."""
    return [
        DisplayChoice(
            d.value,
            _(DISPLAY_LABELS[d]),
            {k.value: tuple(_(label) for label in shown_publicly(k, d)) for k in Kind},
        )
        for d in Display
    ]


@dataclass(frozen=True)
class StoredRow:
    label: str
    why: str
    protection: str  # "encrypted", "keyed hash" or "not encrypted"
    in_clear: str  # when it is also (or only) kept readable
    protection_label: str = ""  # `protection` as the page says it


def _protection(item: Stored) -> str:
    if item.hashed:
        return "keyed hash"
    return "encrypted" if all(c in ENCRYPTED_FIELDS for c in item.columns) else "not encrypted"


PROTECTION_LABELS = {
    "encrypted": N_("Encrypted"),
    "keyed hash": N_("Keyed hash"),
    "not encrypted": N_("Not encrypted"),
}


def _in_clear(item: Stored, clear_for: Callable[[str], list[str]]) -> str:
    """When the item is readable in the database, in the current language."""
    if item.hashed:
        return _("Never: it cannot be read back")
    when = clear_for(item.columns[0])
    if not all(c in ENCRYPTED_FIELDS for c in item.columns):
        if item.columns[0] in _PUBLISHED_ONLY:
            if not when:
                return _("Never")
            return _("Only for %(choices)s signatures", choices=format_list(when, "standard"))
        return _("Yes")
    if not when:
        return _("Never")
    return _(
        "Only if the signature is %(choices)s, as the public list shows it",
        choices=format_list(when, "or"),
    )


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
    mail_counts_days: int  # how long emails per mailbox are counted (keyed hashes)
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
        return [_choice_in_sentence(d) for d in Display if any(column in clear[k, d] for k in Kind)]

    stored = [
        StoredRow(
            _(s.label),
            _(s.why),
            _protection(s),
            _in_clear(s, clear_for),
            _(PROTECTION_LABELS[_protection(s)]),
        )
        for s in STORED
    ]
    return PrivacyFacts(
        stored=stored,
        encrypted=tuple(ENCRYPTED_FIELDS),
        displays=display_choices(),
        min_group=settings.public_min_group,
        unverified_days=settings.retention_unverified_days,
        network_days=settings.retention_network_days,
        mail_counts_days=MAIL_COUNTS_KEPT_DAYS,
        rejected_days=settings.retention_rejected_days,
        verify_link_days=VERIFY_TOKEN_AGE // 86400,
        anonymise_after_close_days=settings.anonymise_after_close_days or None,
        kept_after_withdrawal=tuple(
            _(kept) for kept in dict.fromkeys(KEPT_AFTER_WITHDRAWAL.values())
        ),
        emails_encrypted={"recipient", "body_text"} <= set(ENCRYPTED_OUTBOX_FIELDS),
        emails_stripped_when_sent="recipient = NULL" in STRIP_EMAIL
        and "body_text = NULL" in STRIP_EMAIL,
    )
