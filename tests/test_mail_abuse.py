"""No mail bombing, no phishing relay: the emails anyone can make us send by typing
an address are capped per mailbox, per signature's resends and per network, and
carry nothing the signer typed.

Every test delivers to a real SMTP server (aiosmtpd) and counts what arrived."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from conftest import make_petition
from petitions.app import create_app
from petitions.delivery import deliver_due
from petitions.keys import mailbox_hash, normalise_mailbox
from petitions.outbox import status_counts
from petitions.retention import enforce_retention
from petitions.settings import load_settings
from petitions.signing import process_sign_reminders

BASE_URL = "http://testserver"
PHISHING = "Your account is locked, reset at https://evil.example/reset"

SIGNER = {
    "kind": "individual",
    "name": "Leyla Ahmadi",
    "country": "SE",
    "display": "public",
}


@asynccontextmanager
async def running_app(settings, client_host: str = "203.0.113.7"):
    """An app instance of its own (its own pool, as another process would have) and a
    client that comes from `client_host`."""
    application = create_app(settings, run_outbox_worker=False)
    application.state.page_cache.seconds = 0
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=(client_host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            client.app = application
            yield client


async def sign(client, email: str, slug: str = "release-them", **fields):
    page = await client.get(f"/p/{slug}")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
    data = {**SIGNER, **fields, "email": email, "form_token": token}
    return await client.post(f"/p/{slug}/sign", data=data)


async def deliver_all(client, settings) -> None:
    db = client.app.state.db
    while await process_sign_reminders(db, client.app.state.mailer):
        pass
    while await deliver_due(db, settings):
        pass


def delivered_to(mail_server, mailbox: str) -> list:
    return [m for m in mail_server.messages if normalise_mailbox(m["To"]) == mailbox]


def without_tokens(page: str) -> str:
    """A page with its one-time values (form and link tokens, CSRF) blanked."""
    return re.sub(r'(value|content)="[A-Za-z0-9_.\-]{20,}"', r'\1=""', page)


# The normalised mailbox ------------------------------------------------------------


@pytest.mark.parametrize(
    "address, mailbox",
    [
        ("Victim+1@Example.ORG", "victim@example.org"),
        ("victim+a+b@example.org", "victim@example.org"),
        ("vic.tim@example.org", "vic.tim@example.org"),  # dots matter outside Gmail
        ("V.i.c.t.i.m+news@gmail.com", "victim@gmail.com"),
        ("vic.tim@googlemail.com", "victim@gmail.com"),
        (" victim@GMAIL.com ", "victim@gmail.com"),
    ],
)
def test_mailbox_is_normalised_as_providers_deliver(address, mailbox):
    assert normalise_mailbox(address) == mailbox


def test_mailbox_hash_is_keyed_and_never_the_address():
    one, other = (
        mailbox_hash("k" * 32, "victim+1@example.org"),
        mailbox_hash("j" * 32, "victim@example.org"),
    )
    assert one == mailbox_hash("k" * 32, "VICTIM+2@example.org") and one != other
    assert b"victim" not in one and len(one) == 32


def test_caps_are_settings():
    settings = load_settings(
        {"SECRET_KEY": "s" * 32, "MAIL_PER_MAILBOX_PER_DAY": "5", "MAIL_RESEND_PER_DAY": "0",
         "MAIL_PER_NETWORK_PER_HOUR": "40"},
        env_file=None,
    )  # fmt: skip
    assert (settings.mail_per_mailbox_per_day, settings.mail_resend_per_day) == (5, 0)
    assert settings.mail_per_network_per_hour == 40
    defaults = load_settings({"SECRET_KEY": "s" * 32}, env_file=None)
    assert (defaults.mail_per_mailbox_per_day, defaults.mail_resend_per_day) == (3, 2)


# Mail bombing ------------------------------------------------------------------------


async def test_fifty_tag_variants_deliver_at_most_the_daily_cap(conn, mail_settings, mail_server):
    await make_petition(conn)
    variants = [f"victim+{i}@example.org" for i in range(50)]
    async with running_app(mail_settings) as client:
        answers = {(r.status_code, r.headers["location"]) for r in
                   [await sign(client, address) for address in variants]}  # fmt: skip
        await deliver_all(client, mail_settings)
        admin_counts = await status_counts(client.app.state.db)
    assert answers == {(303, f"{BASE_URL}/p/release-them/thanks#main")}
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 50  # every one stored
    assert len(delivered_to(mail_server, "victim@example.org")) == 3
    # The outbox says what was held back, and keeps nothing of it.
    counts = await conn.fetch("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY 1")
    assert [tuple(r) for r in counts] == [("sent", 3), ("suppressed", 47)]
    suppressed = await conn.fetch("SELECT * FROM outbox WHERE status = 'suppressed'")
    assert all(r["sealed"] is None and r["stripped_at"] is not None for r in suppressed)
    assert admin_counts["suppressed"] == 47
    assert await conn.fetchval("SELECT count(*) FROM mail_counts WHERE scope = 'mailbox'") == 1


async def test_gmail_dots_and_googlemail_are_one_mailbox(conn, mail_settings, mail_server):
    await make_petition(conn)
    variants = ["victim@gmail.com", "v.ictim@gmail.com", "vi.c.tim+x@gmail.com",
                "victim@googlemail.com", "V.I.C.T.I.M@GoogleMail.com", "victim+y@googlemail.com"]  # fmt: skip
    async with running_app(mail_settings) as client:
        for address in variants:
            assert (await sign(client, address)).status_code == 303
        await deliver_all(client, mail_settings)
    assert await conn.fetchval("SELECT count(*) FROM signatures") == len(variants)
    assert len(delivered_to(mail_server, "victim@gmail.com")) == 3


async def test_a_signer_over_the_cap_confirms_with_an_earlier_link(
    conn, mail_settings, mail_server
):
    """Held-back mail loses nobody their signature: the next day's resend, or an
    earlier link, confirms it."""
    await make_petition(conn)
    await make_petition(conn, slug="second")
    async with running_app(mail_settings) as client:
        for i in range(3):
            await sign(client, f"leyla+{i}@example.org")
        await sign(client, "leyla@example.org", slug="second")  # the fourth: suppressed
        await deliver_all(client, mail_settings)
        assert len(mail_server.messages) == 3
        late = await conn.fetchval(
            "SELECT s.public_id FROM signatures s JOIN petitions p ON p.id = s.petition_id"
            " WHERE p.slug = 'second'"
        )
        # The next day the mailbox has its allowance again.
        await conn.execute("UPDATE mail_counts SET window_start = window_start - interval '1 day'")
        await conn.execute("UPDATE outbox SET created_at = created_at - interval '1 day'")
        token = client.app.state.tokens.signature_link("verify", late)
        resent = await client.post("/verify/resend", data={"token": token})
        assert resent.status_code == 200
        await deliver_all(client, mail_settings)
        assert len(mail_server.messages) == 4
        link = re.search(
            r"/verify/\S+", mail_server.messages[-1].get_body(("plain",)).get_content()
        )
        assert (await client.get(link.group(0))).status_code == 200
    assert await conn.fetchval("SELECT status FROM signatures WHERE public_id = $1", late) in (
        "verified", "held",
    )  # fmt: skip


async def test_resend_twenty_times_sends_at_most_the_resend_cap(conn, mail_settings, mail_server):
    await make_petition(conn)
    generous = replace(mail_settings, mail_per_mailbox_per_day=100)
    async with running_app(generous) as client:
        await sign(client, "leyla@example.org")
        await deliver_all(client, generous)
        public_id = await conn.fetchval("SELECT public_id FROM signatures")
        token = client.app.state.tokens.signature_link("verify", public_id)
        pages = set()
        for _ in range(20):
            # Past the hourly pause, so only the daily cap stands in the way.
            await conn.execute("UPDATE outbox SET created_at = created_at - interval '2 hours'")
            answer = await client.post("/verify/resend", data={"token": token})
            pages.add((answer.status_code, without_tokens(answer.text)))
            await deliver_all(client, generous)
    assert len(pages) == 1 and next(iter(pages))[0] == 200  # one answer, sent or not
    assert len(mail_server.messages) == 1 + 2  # the first email and two resends


async def test_per_network_cap_on_mail_to_unconfirmed_addresses(conn, mail_settings, mail_server):
    await make_petition(conn)
    capped = replace(mail_settings, mail_per_network_per_hour=5)
    async with running_app(capped, "198.51.100.20") as flood:
        for i in range(12):
            assert (await sign(flood, f"person{i}@example.org")).status_code == 303
        await deliver_all(flood, capped)
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 12
    assert len(mail_server.messages) == 5
    # Another network is not held back by the first one's flood.
    async with running_app(capped, "192.0.2.55") as other:
        await sign(other, "someone.else@example.org")
        await deliver_all(other, capped)
    assert [m["To"] for m in mail_server.messages[5:]] == ["someone.else@example.org"]


async def test_reminders_count_against_the_network_that_signed_again(
    conn, mail_settings, mail_server
):
    await make_petition(conn)
    capped = replace(mail_settings, mail_per_network_per_hour=3)
    async with running_app(capped, "192.0.2.10") as first:
        for i in range(3):
            await sign(first, f"member{i}@union.example.org")
        await deliver_all(first, capped)
    assert len(mail_server.messages) == 3
    async with running_app(capped, "198.51.100.99") as again:
        for i in range(3):  # the same people, signing again from elsewhere: reminders
            await sign(again, f"member{i}@union.example.org")
        await deliver_all(again, capped)
        await sign(again, "member0+x@union.example.org")  # a fourth from this network
        await deliver_all(again, capped)
    subjects = [m["Subject"] for m in mail_server.messages[3:]]
    assert len(subjects) == 3 and all("already signed" in s for s in subjects)
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'suppressed'") == 1


async def test_the_answer_does_not_say_whether_mail_was_suppressed(
    conn, mail_settings, mail_server
):
    await make_petition(conn)
    async with running_app(mail_settings) as client:
        answers = [await sign(client, f"victim+{i}@example.org") for i in range(5)]
        await deliver_all(client, mail_settings)
        thanks = [await client.get(a.headers["location"]) for a in answers]
    assert len(mail_server.messages) == 3  # the last two were suppressed
    assert len({(a.status_code, a.headers["location"], a.text) for a in answers}) == 1
    assert len({(t.status_code, without_tokens(t.text)) for t in thanks}) == 1


async def test_caps_hold_across_two_app_instances(conn, mail_settings, mail_server):
    await make_petition(conn)
    async with running_app(mail_settings, "192.0.2.1") as one:
        async with running_app(mail_settings, "192.0.2.2") as two:
            for i in range(20):
                await sign((one, two)[i % 2], f"victim+{i}@example.org")
            await deliver_all(one, mail_settings)
            await deliver_all(two, mail_settings)
            public_id = await conn.fetchval("SELECT public_id FROM signatures ORDER BY id LIMIT 1")
            token = one.app.state.tokens.signature_link("verify", public_id)
            await conn.execute(
                "UPDATE mail_counts SET window_start = window_start - interval '1 day'"
            )
            for i in range(6):
                await conn.execute("UPDATE outbox SET created_at = created_at - interval '2 hours'")
                await (one, two)[i % 2].post("/verify/resend", data={"token": token})
                await deliver_all((one, two)[i % 2], mail_settings)
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 20
    # Three the first day; the next, two resends (the resend cap) across both instances.
    assert len(delivered_to(mail_server, "victim@example.org")) == 3 + 2


async def test_old_counts_are_purged(conn, settings, app):
    old = datetime.now(UTC) - timedelta(days=3)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await conn.executemany(
        "INSERT INTO mail_counts (scope, key, window_start, asked) VALUES ($1, $2, $3, 4)",
        [("mailbox", b"m" * 32, old), ("network", b"n" * 32, old), ("mailbox", b"m" * 32, today)],
    )
    report = await enforce_retention(app.state.db, settings, wait=True)
    assert report.mail_counts_deleted == 2
    assert await conn.fetchval("SELECT count(*) FROM mail_counts") == 1


# No phishing relay ------------------------------------------------------------------


def assert_carries_nothing_typed(message) -> None:
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (message["Subject"], text, html, str(message)):
        assert "evil.example" not in part and "locked" not in part.lower()
        assert "Phish Union" not in part and "Click here" not in part
    links = re.findall(r"https?://[^\s<>\"']+", text) + re.findall(
        r"""(?:href|src)=["']([^"']+)""", html
    )
    assert links and all(link == BASE_URL or link.startswith(f"{BASE_URL}/") for link in links)


async def test_typed_text_never_reaches_an_unconfirmed_address(conn, mail_settings, mail_server):
    await make_petition(conn)
    phishing = {
        "name": PHISHING,
        "comment": "Click here: https://evil.example/login",
        "city": "https://evil.example",
        "occupation": "Security team, https://evil.example/verify",
    }
    organisation = {
        "kind": "organisation",
        "organisation": "Phish Union https://evil.example",
        "organisation_type": "trade_union",
        "website": "https://evil.example",
    }
    async with running_app(mail_settings) as client:
        assert (await sign(client, "target@example.org", **phishing)).status_code == 303
        assert (
            await sign(client, "boss@example.org", **phishing, **organisation)
        ).status_code == 303
        await deliver_all(client, mail_settings)
        # Signing again with the same address: the reminder carries nothing typed either.
        await conn.execute("UPDATE outbox SET created_at = created_at - interval '2 hours'")
        await sign(client, "target@example.org", **phishing)
        await deliver_all(client, mail_settings)
    assert len(mail_server.messages) == 3
    for message in mail_server.messages:
        assert_carries_nothing_typed(message)
    assert "already signed" in mail_server.messages[-1]["Subject"]
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 2  # stored as typed


async def test_only_mail_anyone_can_cause_is_capped(conn, app):
    """Test emails and notices to admins, and updates to confirmed signers, are not
    the form's to cause: no cap applies to them."""
    mailer = app.state.mailer
    message = mailer._compose("update", "admin+x@example.org", "Hello", petition=None,
                              body="Hi", body_html="<p>Hi</p>", unsubscribe_url="", petition_url="")  # fmt: skip
    for purpose in ("test", "notice", "test", "notice", "test"):
        await mailer.enqueue(conn, message, purpose)
    assert await conn.fetchval("SELECT array_agg(DISTINCT status) FROM outbox") == ["waiting"]
    for _ in range(5):
        await mailer.enqueue(conn, message, "reminder")
    statuses = await conn.fetch("SELECT status FROM outbox WHERE purpose = 'reminder' ORDER BY id")
    assert [r["status"] for r in statuses] == ["waiting"] * 3 + ["suppressed"] * 2
