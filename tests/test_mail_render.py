"""The confirmation email rendered once per title and language (mail.Mailer.verification)
is, for every signer, exactly the email rendered for them alone."""

from __future__ import annotations

import uuid

import pytest

from petitions import i18n
from petitions.mail import Mailer
from petitions.petitions import Petition
from petitions.settings import load_settings


def petition(title: str) -> Petition:
    return Petition(
        1, "free-them", "open", None, None, True, True, False, "en", None, 1, 1, "en",
        ("en",), title, "", "", "", (),
    )  # fmt: skip


@pytest.fixture
def mailer(tmp_path) -> Mailer:
    settings = load_settings(
        {"SECRET_KEY": "k" * 40, "DATA_DIR": str(tmp_path), "BASE_URL": "https://example.org"},
        env_file=None,
    )
    return Mailer(settings)


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_each_signer_gets_the_email_rendered_for_them(mailer, language):
    seen = set()
    for title in ('Free "them" <now> & here', "آزادی کارگران", 'Free "them" <now> & here'):
        with i18n.language(language):
            for email in ("a@example.org", "b@example.org"):
                public_id = uuid.uuid4()
                message = mailer.verification(petition(title), email, public_id)
                alone = mailer._compose(
                    "verification", email, message.subject, petition=petition(title),
                    verify_url=mailer.link("verify", public_id),
                    withdraw_url=mailer.link("withdraw", public_id),
                )  # fmt: skip
                assert (message.recipient, message.subject, message.text, message.html) == (
                    alone.recipient, alone.subject, alone.text, alone.html,
                )  # fmt: skip
                assert message.headers == alone.headers
                assert mailer.link("verify", public_id) in message.text
                seen.add(message.message_id)
    assert len(seen) == 6  # a Message-ID of its own for every email


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_each_signer_gets_the_receipt_email_rendered_for_them(mailer, language):
    from petitions.receipts import Receipt

    cases = [("verified", "individual"), ("held", "individual"), ("held", "organisation")] * 2
    with i18n.language(language):
        for status, kind in cases:
            receipt = Receipt.new()
            p = petition('Free "them" <now> & here')
            message = mailer.receipt(p, "a@example.org", receipt, status, kind)
            alone = mailer._compose(
                "receipt", "a@example.org", message.subject, petition=p, status=status,
                kind=kind, receipt=receipt.text, receipt_url=mailer.receipt_url(p.slug, receipt),
            )  # fmt: skip
            assert (message.text, message.html, message.subject) == (
                alone.text, alone.html, alone.subject,
            )  # fmt: skip
            assert receipt.text in message.text and receipt.text in message.html
