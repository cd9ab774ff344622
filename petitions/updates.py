"""Updates to signers: written by the campaign, previewed, tried on oneself, then queued.

An update goes to every verified signature whose signer asked for updates, one
email per address (a person who signed for two organisations gets one copy).
Each copy is an outbox row written in the same transaction as the update, with
its own unsubscribe link and the RFC 8058 one-click headers; the unique index
`outbox_one_update_per_signature` keeps any signature from getting an update twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import make_msgid

from databases import Database

from . import audit, i18n, transparency
from .db import fetch_in_batches, raw_connection
from .fields import FieldReader
from .keys import derive_key
from .log_display import current_head
from .mail import MAX_SUBJECT as MAX_MAIL_SUBJECT
from .mail import Mailer, OutgoingMessage, bounded, seal_outbox
from .personal import personal_of
from .petitions import Petition

MAX_SUBJECT = 200
MAX_BODY = 50_000
BATCH = 5_000  # recipients per INSERT; their tokens are signed in a worker thread meanwhile

# One per person: signatures with the same email (its keyed hash) are one recipient.
_RECIPIENTS = """
SELECT DISTINCT ON (email_hash) id, public_id, sealed, email, language
  FROM signatures
 WHERE petition_id = $1 AND status = 'verified' AND updates AND email_hash IS NOT NULL
 ORDER BY email_hash, id
"""

# Each copy's recipient, bodies and headers (with the signer's own unsubscribe
# link) are sealed in Python (mail.seal_outbox), a batch at a time.
_QUEUE_BATCH = """
INSERT INTO outbox (purpose, subject, sealed, message_id, signature_id, update_id)
SELECT 'update', $3, t.sealed, t.message_id, s.id, $2
  FROM unnest($1::bigint[], $4::bytea[], $5::text[]) AS t(id, sealed, message_id)
  JOIN signatures s ON s.id = t.id
 WHERE s.status = 'verified' AND s.updates AND s.email_hash IS NOT NULL
ON CONFLICT DO NOTHING
"""


class DuplicateUpdate(Exception):
    """This very update (same subject and text) was already sent."""


@dataclass(frozen=True)
class UpdateDraft:
    subject: str
    body: str


def read_update(values: Mapping[str, object]) -> UpdateDraft:
    reader = FieldReader(values)
    subject = reader.text("subject", "The subject", MAX_SUBJECT, required=True)
    body = reader.text("body", "The message", MAX_BODY, required=True, markdown=True)
    reader.check()
    return UpdateDraft(subject, body)


def confirmation(secret_key: str, petition_id: int, draft: UpdateDraft) -> str:
    """Ties a send to the exact text that was previewed."""
    key = derive_key(secret_key, "update-confirmation")
    message = f"{petition_id}\x00{draft.subject}\x00{draft.body}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def confirmation_valid(
    secret_key: str, petition_id: int, draft: UpdateDraft, token: object
) -> bool:
    return isinstance(token, str) and hmac.compare_digest(
        token.encode(), confirmation(secret_key, petition_id, draft).encode()
    )


async def count_recipients(db: Database, petition_id: int) -> int:
    async with raw_connection(db) as conn:
        return await conn.fetchval(f"SELECT count(*) FROM ({_RECIPIENTS}) r", petition_id)


def preview(mailer: Mailer, petition: Petition, draft: UpdateDraft, recipient: str, log_head=None):
    """The message as a signer would get it (with a link that unsubscribes no one);
    `log_head`: the transparency log's checkpoint it prints (log_display.current_head)."""
    return mailer.update(
        petition, recipient, draft.subject, draft.body, _test_unsubscribe_url(mailer), log_head
    )


def _test_unsubscribe_url(mailer: Mailer) -> str:
    return f"{mailer.settings.base_url}/unsubscribe/test-only"


async def send_test(
    db: Database, mailer: Mailer, petition: Petition, draft: UpdateDraft, admin_id: int, email: str
) -> None:
    """Queue the update to the admin alone (purpose `test`)."""
    message = preview(mailer, petition, draft, email, await current_head(db, petition.id))
    message = replace(message, subject=f"[Test] {draft.subject}")
    async with raw_connection(db) as conn, conn.transaction():
        await mailer.enqueue(conn, message, "test")
        await audit.record(
            conn, admin_id, "update.test", petition_id=petition.id,
            details={"subject": draft.subject, "to": email},
        )  # fmt: skip


@dataclass(frozen=True)
class SentUpdate:
    update_id: int
    recipients: int


async def send_update(
    db: Database, mailer: Mailer, petition: Petition, draft: UpdateDraft, admin_id: int
) -> SentUpdate:
    """Store the update and queue one email per consenting verified signer, all in one
    transaction. DuplicateUpdate when the same text went out before.

    The campaign's text goes out as written; the frame around it (the petition's
    title, the footer, the unsubscribe link's page) is in each signer's language,
    recorded when they signed: one copy is rendered per language, then each
    recipient's link is put in."""
    placeholder = f"UNSUBSCRIBE-{secrets.token_hex(16)}"
    templates: dict[str, OutgoingMessage] = {}  # by the signers' recorded language
    log_head = None  # the log's checkpoint every copy prints: read once, in the transaction

    async def render_for(conn, language: str) -> None:
        translated = await mailer.petition_for_mail(conn, petition.id, language)
        with i18n.language(language):
            templates[language] = mailer.update(
                translated, "nobody@example.org", draft.subject, draft.body,
                mailer.page_url(f"/unsubscribe/{placeholder}"), log_head,
            )  # fmt: skip

    tokens = mailer.tokens
    cipher = mailer.cipher
    subject = bounded(draft.subject, MAX_MAIL_SUBJECT)

    def seal(batch: list) -> tuple[list[int], list[bytes], list[str]]:
        """Each recipient's copy, sealed (in a worker thread: tokens and AES-GCM)."""
        ids, sealed, message_ids = [], [], []
        for row in batch:
            email = personal_of(cipher, row)["email"]
            if not email:
                continue
            template = templates[row["language"]]
            token = tokens.signature_link("unsubscribe", row["public_id"])
            headers = {
                name: value.replace(placeholder, token) for name, value in template.headers.items()
            }
            ids.append(row["id"])
            sealed.append(seal_outbox(
                cipher, email, template.text.replace(placeholder, token),
                template.html.replace(placeholder, token), headers,
            ))  # fmt: skip
            message_ids.append(make_msgid(domain=mailer.message_id_domain))
        return ids, sealed, message_ids

    async with raw_connection(db) as conn, conn.transaction():
        # One send at a time per petition, so a double click cannot send twice.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('petitions/update'), $1::int)", petition.id
        )
        already = await conn.fetchval(
            "SELECT 1 FROM petition_updates WHERE petition_id = $1 AND subject = $2 AND body = $3",
            petition.id,
            draft.subject,
            draft.body,
        )
        if already:
            raise DuplicateUpdate
        log_head = await transparency.latest_head(conn, petition.id)
        update_id = await conn.fetchval(
            """
            INSERT INTO petition_updates (petition_id, subject, body, created_by, sent_at)
            VALUES ($1, $2, $3, $4, now()) RETURNING id
            """,
            petition.id, draft.subject, draft.body, admin_id,
        )  # fmt: skip
        queued = 0
        async for batch in fetch_in_batches(conn, _RECIPIENTS, petition.id, rows=BATCH):
            for language in {row["language"] for row in batch} - templates.keys():
                await render_for(conn, language)
            ids, sealed, message_ids = await asyncio.to_thread(seal, batch)
            status = await conn.execute(_QUEUE_BATCH, ids, update_id, subject, sealed, message_ids)
            queued += int(status.rsplit(" ", 1)[1])
        await audit.record(
            conn, admin_id, "update.send", petition_id=petition.id,
            details={"update_id": update_id, "subject": draft.subject, "recipients": queued},
        )  # fmt: skip
    return SentUpdate(update_id, queued)


@dataclass(frozen=True)
class UpdateSummary:
    id: int
    subject: str
    body: str
    author: str | None
    created_at: datetime
    recipients: int
    waiting: int
    sent: int
    failed: int


async def list_updates(db: Database, petition_id: int) -> list[UpdateSummary]:
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            """
            SELECT u.id, u.subject, u.body, a.email AS author, u.created_at,
                   count(o.id) AS recipients,
                   count(o.id) FILTER (WHERE o.status = 'waiting') AS waiting,
                   count(o.id) FILTER (WHERE o.status = 'sent') AS sent,
                   count(o.id) FILTER (WHERE o.status = 'failed') AS failed
              FROM petition_updates u
              LEFT JOIN admins a ON a.id = u.created_by
              LEFT JOIN outbox o ON o.update_id = u.id
             WHERE u.petition_id = $1
             GROUP BY u.id, a.email
             ORDER BY u.created_at DESC, u.id DESC
            """,
            petition_id,
        )
    return [UpdateSummary(**dict(r)) for r in rows]
