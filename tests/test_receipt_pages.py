"""The people-facing side of the transparency log: the receipt shown once on the
confirmation page, the receipt page (from a link, with JavaScript and without), and the
checkpoint printed on the petition page, in update emails and on the print document."""

from __future__ import annotations

import re

import pytest

from admin_support import make_admin
from conftest import add_signature, make_petition, opened_outbox
from livekit import serving
from petitions import transparency
from petitions.app import create_app
from petitions.log_keys import TreeHead, log_key_for
from petitions.petitions import get_petition
from petitions.signing import verify_signature
from petitions.updates import UpdateDraft, send_update

SLUG = "release-them"
RECEIPT = re.compile(r"[A-Z2-7]{4}(?:-[A-Z2-7]{4}){7}")


async def settle(app) -> TreeHead:
    """What the log worker does every second or so: sequence, sign, and the head."""
    db, settings = app.state.db, app.state.settings
    await transparency.sequence(db)
    await transparency.sign_due_heads(db, log_key_for(settings), settings.base_url, 0)
    async with db.connection() as c:
        pid = await c.raw_connection.fetchval("SELECT id FROM petitions WHERE slug = $1", SLUG)
        return await transparency.latest_head(c.raw_connection, pid)


async def confirmed_with_receipt(app, conn, pid: int, **fields):
    signature = await add_signature(conn, pid, status="pending", **fields)
    state = await verify_signature(app.state.db, signature["public_id"])
    assert state.receipt is not None
    return signature, state.receipt


async def test_the_verified_page_shows_the_receipt_once(app, client, conn):
    pid = await make_petition(conn)
    signature = await add_signature(conn, pid, status="pending")
    token = app.state.tokens.signature_link("verify", signature["public_id"])

    first = await client.get(f"/verify/{token}")
    assert first.status_code == 200
    shown = RECEIPT.findall(first.text)
    assert len(set(shown)) == 1
    receipt = shown[0]
    assert first.headers["cache-control"] == "no-store"
    assert first.headers["referrer-policy"] == "no-referrer"
    assert f'/p/{SLUG}/receipt#receipt={receipt}"' in first.text
    assert 'dir="ltr"><code data-receipt-text>' in first.text
    assert "receipt.js" in first.text and "<script>" not in first.text  # no inline script
    # The same receipt went out by email; the server keeps only its commitment.
    mails = await opened_outbox(conn, "purpose = 'receipt'")
    assert len(mails) == 1 and receipt in mails[0]["body_text"]

    again = await client.get(f"/verify/{token}")
    assert again.status_code == 200
    assert RECEIPT.search(again.text) is None
    assert "We do not keep a copy, so we cannot show it again." in again.text


async def test_a_receipt_pasted_is_checked_and_follows_a_withdrawal(app, client, conn):
    pid = await make_petition(conn)
    signature, receipt = await confirmed_with_receipt(app, conn, pid)
    page = await client.post(f"/p/{SLUG}/receipt", data={"receipt": receipt.text.lower()})
    assert 'data-result="not-found"' in page.text  # not sequenced yet: calm, not an error
    head = await settle(app)

    page = await client.post(f"/p/{SLUG}/receipt", data={"receipt": receipt.text})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'data-result="counted"' in page.text and 'data-proven="yes"' in page.text
    assert f'<code dir="ltr">{head.short}</code>' in page.text
    assert f"/p/{SLUG}/log/proof.json?leaf=0&amp;size={head.size}" in page.text
    assert receipt.text not in page.text  # never written back into the page

    await client.get(
        f"/withdraw/{app.state.tokens.signature_link('withdraw', signature['public_id'])}"
    )
    withdrawn = await client.post(
        f"/withdraw/{app.state.tokens.signature_link('withdraw', signature['public_id'])}"
    )
    assert withdrawn.status_code == 200
    await settle(app)
    page = await client.post(f"/p/{SLUG}/receipt", data={"receipt": receipt.text})
    assert 'data-result="not-counted"' in page.text and "It was withdrawn." in page.text
    assert "No longer counted since" in page.text

    bad = await client.post(f"/p/{SLUG}/receipt", data={"receipt": "not a receipt"})
    assert bad.status_code == 400 and 'role="alert"' in bad.text


async def test_the_persian_receipt_page_is_right_to_left_with_hashes_left_to_right(
    app, client, conn
):
    pid = await make_petition(conn)
    _, receipt = await confirmed_with_receipt(app, conn, pid)
    head = await settle(app)
    page = await client.post(f"/p/{SLUG}/receipt?lang=fa", data={"receipt": receipt.text})
    assert '<html lang="fa" dir="rtl"' in page.text
    assert f'<code dir="ltr">{head.short}</code>' in page.text
    assert f'<code dir="ltr">{head.root.hex()}</code>' in page.text
    assert 'input id="receipt" name="receipt" type="text" dir="ltr"' in page.text
    assert 'data-result="counted"' in page.text


async def test_the_petition_page_shows_the_signed_checkpoint(app, client, conn):
    pid = await make_petition(conn)
    before = await client.get(f"/p/{SLUG}")
    assert "How to check this count" in before.text  # the explanation, with or without a head
    assert "data-log-checkpoint" not in before.text
    for _ in range(3):
        await confirmed_with_receipt(app, conn, pid)
    await settle(app)
    log = (await client.get(f"/p/{SLUG}/log.json")).json()
    page = await client.get(f"/p/{SLUG}")
    shown = re.search(r"<code dir=\"ltr\" data-log-checkpoint>([^<]+)</code>", page.text)
    assert shown and shown.group(1) == log["short"]
    assert f"petitions audit http://testserver/p/{SLUG}</code>" in page.text


async def test_update_emails_and_the_print_document_carry_the_checkpoint(app, client, conn):
    pid = await make_petition(conn)
    for _ in range(2):
        await confirmed_with_receipt(app, conn, pid, updates=True)
    head = await settle(app)

    printed = await client.get(f"/p/{SLUG}/print")
    assert f'<code dir="ltr">{head.short}</code>' in printed.text
    assert f"(count {head.count}, signed" in printed.text

    petition = await get_petition(app.state.db, SLUG, "en")
    admin = await make_admin(conn)
    draft = UpdateDraft("News", "We delivered the petition.")
    sent = await send_update(app.state.db, app.state.mailer, petition, draft, admin)
    assert sent.recipients == 2
    mails = await opened_outbox(conn, "purpose = 'update'")
    assert len(mails) == 2
    for mail in mails:
        assert head.short in mail["body_text"] and head.short in mail["body_html"]


async def test_the_admin_dashboard_shows_each_petitions_checkpoint(app, conn):
    from admin_support import admin_client

    pid = await make_petition(conn)
    await confirmed_with_receipt(app, conn, pid)
    head = await settle(app)
    async with admin_client(app, conn) as owner:
        home = await owner.get("/admin")
        assert f"<code>{head.short}</code>" in home.text
        dashboard = await owner.get(f"/admin/petitions/{SLUG}/dashboard")
        assert f"<code>{head.short}</code>" in dashboard.text


# In a real browser ------------------------------------------------------------------


@pytest.mark.slow
async def test_a_receipt_link_is_checked_without_the_receipt_in_any_address(
    settings, conn, browser
):
    app = create_app(settings, run_outbox_worker=False)
    pid = await make_petition(conn)
    async with serving(app) as base:
        _, receipt = await confirmed_with_receipt(app, conn, pid)
        await settle(app)
        compact = receipt.text.replace("-", "")

        context = await browser.new_context(viewport={"width": 360, "height": 740})
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url))
        posted: list[str] = []
        page.on(
            "request", lambda r: posted.append(r.post_data or "") if r.method == "POST" else None
        )
        await page.goto(f"{base}/p/{SLUG}/receipt?lang=fa#receipt={receipt.text}")
        result = page.locator("#receipt-result")
        await result.wait_for()
        assert await result.get_attribute("data-result") == "counted"
        assert "#" not in page.url
        assert await page.evaluate("history.length") >= 1
        assert seen and not any(receipt.text in u or compact in u for u in seen)
        assert any(receipt.text in body for body in posted)  # in a POST body, only
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )  # hashes wrap on a 360 px phone, right to left
        assert problems == []
        await context.close()

        # Without JavaScript: paste and submit.
        plain = await browser.new_context(java_script_enabled=False)
        page = await plain.new_page()
        await page.goto(f"{base}/p/{SLUG}/receipt")
        await page.fill("#receipt", receipt.text)
        await page.click("#receipt-form button[type=submit]")
        result = page.locator("#receipt-result")
        await result.wait_for()
        assert await result.get_attribute("data-result") == "counted"
        await plain.close()


@pytest.mark.slow
async def test_the_copy_button_copies_the_receipt(settings, conn, browser):
    app = create_app(settings, run_outbox_worker=False)
    pid = await make_petition(conn)
    async with serving(app) as base:
        signature = await add_signature(conn, pid, status="pending")
        token = app.state.tokens.signature_link("verify", signature["public_id"])
        context = await browser.new_context()
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = await context.new_page()
        await page.goto(f"{base}/verify/{token}")
        shown = (await page.locator("[data-receipt-text]").text_content()).strip()
        assert RECEIPT.fullmatch(shown)
        await page.get_by_role("button", name="Copy the receipt").click()
        await page.get_by_text("Receipt copied").wait_for()
        assert await page.evaluate("navigator.clipboard.readText()") == shown
        await context.close()
