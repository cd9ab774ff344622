"""Emails: composed from templates into outbox rows, in the signer's language."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from email.utils import make_msgid, parseaddr

import asyncpg
import jinja2
from markupsafe import Markup

from . import i18n
from .crypto import OUTBOX_CONTEXT, Cipher, cipher_for
from .keys import mailbox_hash
from .log_display import format_log_hour
from .markdown import render_markdown
from .numbers import format_number
from .paths import TEMPLATES_DIR
from .petitions import Petition, fetch_petition_by_id
from .settings import Settings
from .tokens import Tokens

# outbox.subject is at most 300 characters (migrations/0001_schema.sql); subjects are
# made to fit before they reach it, the petition's title shortened with an ellipsis.
MAX_SUBJECT = 300

# The emails anyone can make us send by typing an address into a form: capped per
# mailbox a day and per network an hour (migrations/0010_mail_caps.sql's
# mail_admission), so nobody can bomb an inbox or relay mail through us. Updates
# go only to confirmed signers who asked for them; tests and notices to admins.
CAPPED_PURPOSES = ("verification", "reminder")


def bounded(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, with an ellipsis when cut."""
    text = " ".join(text.split())  # no line breaks in a header
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def subject_line(template: str, title: str, limit: int = MAX_SUBJECT) -> str:
    """`template` (a translated sentence with `%(title)s`, or a prefix) with a petition's
    title, the title shortened to fit."""
    if "%(title)s" not in template:
        template += "%(title)s"
    room = max(limit - len(template.replace("%(title)s", "")), 1)
    return template.replace("%(title)s", bounded(title, room))


@dataclass(frozen=True)
class OutgoingMessage:
    recipient: str
    subject: str
    text: str
    html: str
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)


def log_checkpoint(head) -> dict | None:
    """A signed head of the transparency log as an email prints it, in the current
    language: its short form, the count it signs and its hour."""
    if head is None:
        return None
    return {
        "short": head.short,
        "count": format_number(head.count),
        "hour": format_log_hour(head.time),
    }


class Mailer:
    """Builds the messages the product sends; the outbox worker delivers them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = Tokens(settings.secret_key)
        self.cipher: Cipher = cipher_for(settings)
        loader = jinja2.FileSystemLoader(str(TEMPLATES_DIR / "email"))
        self._text = jinja2.Environment(loader=loader, autoescape=False, keep_trailing_newline=True)
        self._html = jinja2.Environment(loader=loader, autoescape=True)
        i18n.install(self._text)
        i18n.install(self._html)
        domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
        self._msgid_domain = domain
        # Emails rendered once, by template, language and what their words depend on.
        self._rendered: dict[tuple, OutgoingMessage] = {}

    def link(self, purpose: str, public_id: uuid.UUID) -> str:
        """A link in an email; the page it opens speaks the email's language."""
        token = self.tokens.signature_link(purpose, public_id)
        return self.page_url(f"/{purpose}/{token}")

    def page_url(self, path: str) -> str:
        """An absolute address on this site, in the language the email is written in."""
        return f"{self.settings.base_url}{path}?lang={i18n.current_language()}"

    def _compose(self, template: str, recipient: str, subject: str, **context) -> OutgoingMessage:
        """One email, in the current language (i18n.language(...) around the call: the
        signer's, recorded with their signature)."""
        lang = i18n.current_language()
        context = {
            "base_url": self.settings.base_url,
            "lang": lang,
            "direction": i18n.text_direction(lang),
            **context,
        }
        return OutgoingMessage(
            recipient=recipient,
            subject=bounded(subject, MAX_SUBJECT),
            text=self._text.get_template(f"{template}.txt").render(context),
            html=self._html.get_template(f"{template}.html").render(context),
            message_id=make_msgid(domain=self._msgid_domain),
            headers={"Content-Language": lang},
        )

    # The confirmation and the reminder go to addresses nobody has confirmed yet:
    # nothing a signer typed (name, organisation, comment) appears in them, so the
    # form cannot make us mail someone else's words in the campaign's voice. Their
    # subject is the petition's title (an admin's), their links are BASE_URL's.

    def verification(self, petition: Petition, email: str, public_id: uuid.UUID):
        """The confirmation email: on the sign form's hot path, so its words are rendered
        once per title and language and each signer's links put in (_personalised)."""
        return self._personalised(
            "verification",
            email,
            (petition.title,),
            subject_line(i18n._("Please confirm your signature: %(title)s"), petition.title),
            {
                "verify_url": self.link("verify", public_id),
                "withdraw_url": self.link("withdraw", public_id),
            },
            petition=petition,
        )

    def _personalised(
        self, template: str, recipient: str, key: tuple, subject: str, own: dict, **context
    ) -> OutgoingMessage:
        """An email whose words are the same for every recipient with the same `key` (in
        the current language) but for the values in `own` (links, a receipt): the words
        are rendered once with a slot for each, and this recipient's values put in."""
        cache_key = (template, i18n.current_language(), *key)
        rendered = self._rendered.get(cache_key)
        if rendered is None:
            slots = {name: f"\x00{name}\x00" for name in own}
            rendered = self._compose(template, "", subject, **context, **slots)
            if len(self._rendered) >= 512:
                self._rendered.clear()
            self._rendered[cache_key] = rendered

        def fill(text: str) -> str:
            for name, value in own.items():
                text = text.replace(f"\x00{name}\x00", value)
            return text

        return replace(
            rendered,
            recipient=recipient,
            text=fill(rendered.text),
            html=fill(rendered.html),
            message_id=make_msgid(domain=self._msgid_domain),
        )

    def reminder(self, petition: Petition, email: str, public_id: uuid.UUID, status: str):
        return self._compose(
            "reminder",
            email,
            subject_line(i18n._("You have already signed: %(title)s"), petition.title),
            petition=petition,
            status=status,
            verify_url=self.link("verify", public_id),
            withdraw_url=self.link("withdraw", public_id),
        )

    def receipt(
        self, petition: Petition, email: str, receipt, status: str, kind: str | None = None
    ) -> OutgoingMessage:
        """To a signer who has just confirmed: their receipt, to check their signature in
        the petition's transparency log (the link carries it after `#`, which browsers
        never send to a server). The only copy we keep is the outbox's, until sent."""
        return self._personalised(
            "receipt",
            email,
            (petition.title, status, kind),
            subject_line(i18n._("Your receipt: %(title)s"), petition.title),
            {"receipt": receipt.text, "receipt_url": self.receipt_url(petition.slug, receipt)},
            petition=petition,
            status=status,
            kind=kind,  # an organisation is never told whether it waits (docs/signing.md)
        )

    def receipt_url(self, slug: str, receipt) -> str:
        return f"{self.page_url(f'/p/{slug}/receipt')}#receipt={receipt.text}"

    def trending_alert(self, recipient: str, sources: list, trending_url: str) -> OutgoingMessage:
        """To an admin (in English, like the admin): sources signing far above their usual
        rate, by keyed-hash label (trending.py), and the page to act on them."""
        with i18n.language("en"):
            return self._compose(
                "trending_alert", recipient,
                f"Signing alert: {len(sources)} source(s) far above their usual rate",
                sources=sources, trending_url=trending_url,
            )  # fmt: skip

    @property
    def message_id_domain(self) -> str:
        return self._msgid_domain

    def update(
        self,
        petition: Petition,
        recipient: str,
        subject: str,
        body: str,
        unsubscribe_url: str,
        log_head=None,
    ) -> OutgoingMessage:
        """An update to signers: the Markdown as text, rendered as HTML, with one-click
        unsubscribing (RFC 8058) in its headers. `log_head`: the transparency log's
        latest signed head, printed as a checkpoint for signers to keep."""
        message = self._compose(
            "update",
            recipient,
            subject,
            petition=petition,
            body=body,
            body_html=Markup(render_markdown(body)),
            unsubscribe_url=unsubscribe_url,
            petition_url=self.page_url(f"/p/{petition.slug}"),
            checkpoint=log_checkpoint(log_head),
        )
        return replace(
            message,
            headers={
                **message.headers,
                "List-Unsubscribe": f"<{unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )

    async def petition_for_mail(
        self, conn: asyncpg.Connection, petition_id: int, language: str | None = None
    ) -> Petition:
        """The petition, its statement in `language` when it has that translation."""
        petition = await fetch_petition_by_id(conn, petition_id, language)
        if petition is None:
            raise LookupError(f"petition {petition_id} is gone")
        return petition

    async def enqueue(
        self,
        conn: asyncpg.Connection,
        message: OutgoingMessage,
        purpose: str,
        signature_id: int | None = None,
        update_id: int | None = None,
        network_hash: bytes | None = None,
    ) -> int:
        """Queue `message`: its recipient, bodies and headers sealed (seal_outbox).
        An email of CAPPED_PURPOSES past a cap is stored 'suppressed', with nothing of
        the message; `network_hash` is the network that asked for it."""
        capped = purpose in CAPPED_PURPOSES
        return await conn.fetchval(
            """
            INSERT INTO outbox (purpose, subject, sealed, message_id, signature_id, update_id,
                                status)
            VALUES ($1, $2, $3, $4, $5, $6,
                    CASE WHEN $7 THEN mail_admission($8, $9, $10, $11) ELSE 'waiting' END)
            RETURNING id
            """,
            purpose, bounded(message.subject, MAX_SUBJECT), self.seal(message),
            message.message_id, signature_id, update_id,
            capped, *self.admission_arguments(message.recipient, network_hash),
        )  # fmt: skip

    def admission_arguments(self, recipient: str, network_hash: bytes | None) -> tuple:
        """mail_admission's arguments for an email to `recipient` asked from the
        network of `network_hash`: the keyed mailbox hash and the caps."""
        return (
            mailbox_hash(self.settings.secret_key, recipient),
            network_hash,
            self.settings.mail_per_mailbox_per_day,
            self.settings.mail_per_network_per_hour,
        )

    def seal(self, message: OutgoingMessage) -> bytes:
        return seal_outbox(
            self.cipher, message.recipient, message.text, message.html, message.headers
        )


# The outbox keeps who a message goes to, its bodies (with their live links) and
# its headers (an unsubscribe link) in one sealed column; its subject, purpose and
# times stay in clear for the admin's list and the worker.


def seal_outbox(
    cipher: Cipher, recipient: str, text: str, html: str | None, headers: dict | None
) -> bytes:
    return cipher.seal_json(
        {"recipient": recipient, "body_text": text, "body_html": html, "headers": headers or {}},
        OUTBOX_CONTEXT,
    )


def open_outbox(cipher: Cipher, row) -> dict:
    """recipient, body_text, body_html and headers of an outbox row: opened from
    `sealed`, or read from the clear columns of a row not sealed (yet)."""
    sealed = row["sealed"]
    if sealed is not None:
        values = cipher.open_json(sealed, OUTBOX_CONTEXT)
    else:
        headers = row["headers"]
        values = {
            "recipient": row["recipient"],
            "body_text": row["body_text"],
            "body_html": row["body_html"],
            "headers": json.loads(headers) if isinstance(headers, str) else dict(headers or {}),
        }
    return values
