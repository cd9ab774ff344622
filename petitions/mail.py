"""Emails: composed from templates into outbox rows, in the petition's language."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from email.utils import make_msgid, parseaddr

import asyncpg
import jinja2
from markupsafe import Markup

from .markdown import render_markdown
from .paths import TEMPLATES_DIR
from .petitions import Petition, fetch_petition_by_id
from .settings import Settings
from .tokens import Tokens


@dataclass(frozen=True)
class OutgoingMessage:
    recipient: str
    subject: str
    text: str
    html: str
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)


class Mailer:
    """Builds the messages the product sends; the outbox worker delivers them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = Tokens(settings.secret_key)
        loader = jinja2.FileSystemLoader(str(TEMPLATES_DIR / "email"))
        self._text = jinja2.Environment(loader=loader, autoescape=False, keep_trailing_newline=True)
        self._html = jinja2.Environment(loader=loader, autoescape=True)
        domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
        self._msgid_domain = domain

    def link(self, purpose: str, public_id: uuid.UUID) -> str:
        return (
            f"{self.settings.base_url}/{purpose}/{self.tokens.signature_link(purpose, public_id)}"
        )

    def _compose(self, template: str, recipient: str, subject: str, **context) -> OutgoingMessage:
        context = {"base_url": self.settings.base_url, **context}
        return OutgoingMessage(
            recipient=recipient,
            subject=subject,
            text=self._text.get_template(f"{template}.txt").render(context),
            html=self._html.get_template(f"{template}.html").render(context),
            message_id=make_msgid(domain=self._msgid_domain),
        )

    def verification(self, petition: Petition, name: str, email: str, public_id: uuid.UUID):
        return self._compose(
            "verification",
            email,
            f"Please confirm your signature: {petition.title}",
            petition=petition,
            name=name,
            verify_url=self.link("verify", public_id),
            withdraw_url=self.link("withdraw", public_id),
        )

    def reminder(
        self, petition: Petition, name: str, email: str, public_id: uuid.UUID, status: str
    ):
        return self._compose(
            "reminder",
            email,
            f"You have already signed: {petition.title}",
            petition=petition,
            name=name,
            status=status,
            verify_url=self.link("verify", public_id),
            withdraw_url=self.link("withdraw", public_id),
        )

    def organisation_already_signed(
        self, petition: Petition, name: str, email: str, organisation: str
    ):
        return self._compose(
            "organisation_signed",
            email,
            f"{organisation} has already signed: {petition.title}",
            petition=petition,
            name=name,
            organisation=organisation,
            petition_url=f"{self.settings.base_url}/p/{petition.slug}",
        )

    @property
    def message_id_domain(self) -> str:
        return self._msgid_domain

    def update(
        self, petition: Petition, recipient: str, subject: str, body: str, unsubscribe_url: str
    ) -> OutgoingMessage:
        """An update to signers: the Markdown as text, rendered as HTML, with one-click
        unsubscribing (RFC 8058) in its headers."""
        message = self._compose(
            "update",
            recipient,
            subject,
            petition=petition,
            body=body,
            body_html=Markup(render_markdown(body)),
            unsubscribe_url=unsubscribe_url,
            petition_url=f"{self.settings.base_url}/p/{petition.slug}",
        )
        return replace(
            message,
            headers={
                "List-Unsubscribe": f"<{unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )

    async def petition_for_mail(self, conn: asyncpg.Connection, petition_id: int) -> Petition:
        petition = await fetch_petition_by_id(conn, petition_id)
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
    ) -> int:
        return await conn.fetchval(
            """
            INSERT INTO outbox (purpose, recipient, subject, body_text, body_html, headers,
                                message_id, signature_id, update_id)
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)
            RETURNING id
            """,
            purpose, message.recipient, message.subject, message.text, message.html,
            _json(message.headers), message.message_id, signature_id, update_id,
        )  # fmt: skip


def _json(value: dict) -> str:
    import json

    return json.dumps(value)
