"""Updates to signers: preview, a test to oneself, then once to every consenting verified signer."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

from admin_support import admin_client
from conftest import add_signature, make_petition, opened_outbox
from petitions.delivery import deliver_due

URL = "/admin/petitions/release-them/updates"
UPDATE = {
    "subject": "The workers are free",
    "body": "Thanks to **you**, they are home.\n\n- Ali\n- Reza",
}


def confirmation_of(html: str) -> str:
    return re.search(r'name="confirmation" value="([0-9a-f]+)"', html).group(1)


async def test_an_update_reaches_each_consenting_verified_signer_once(
    app, conn, client, mail_settings, mail_server
):
    pid = await make_petition(conn)
    wants = await add_signature(
        conn, pid, name="Wants News", email="wants@example.org", updates=True
    )
    await add_signature(conn, pid, email="quiet@example.org", updates=False)
    await add_signature(conn, pid, email="pending@example.org", status="pending", updates=True)
    await add_signature(conn, pid, kind="organisation", email="held@example.org", status="held",
                        updates=True, verified_at=await conn.fetchval("SELECT now()"))  # fmt: skip
    await add_signature(conn, pid, email="rejected@example.org", status="rejected", updates=True)
    # One person who signed for two organisations gets one copy.
    for organisation in ("Dockers Union", "Drivers Union"):
        await add_signature(conn, pid, kind="organisation", organisation=organisation,
                            email="secretary@union.example", updates=True)  # fmt: skip
    other = await make_petition(conn, "other-one")
    await add_signature(conn, other, email="elsewhere@example.org", updates=True)
    withdrawn = await add_signature(conn, pid, email="gone@example.org", updates=True)
    await client.post(
        "/withdraw/" + app.state.tokens.signature_link("withdraw", withdrawn["public_id"])
    )

    async with admin_client(app, conn, "editor") as editor:
        page = await editor.get(URL)
        assert page.status_code == 200
        assert "<strong>2</strong> verified signers who asked for updates" in page.text

        preview = await editor.post(URL, {**UPDATE, "action": "preview"})
        assert preview.status_code == 200
        assert "Thanks to <strong>you</strong>" in preview.text
        assert "Send to 2 signers" in preview.text
        confirmation = confirmation_of(preview.text)
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0

        test = await editor.post(URL, {**UPDATE, "action": "test", "confirmation": confirmation})
        assert (
            test.status_code == 200
            and "A test copy is on its way to editor@example.org" in test.text
        )
        [row] = await opened_outbox(conn)  # recipient and bodies are sealed
        assert (row["purpose"], row["recipient"], row["subject"]) == (
            "test", "editor@example.org", "[Test] The workers are free",
        )  # fmt: skip
        assert await conn.fetchval("SELECT count(*) FROM petition_updates") == 0

        # Sending needs the confirmation of the previewed text.
        unconfirmed = await editor.post(URL, {**UPDATE, "action": "send"})
        assert (
            unconfirmed.status_code == 400 and "changed since it was previewed" in unconfirmed.text
        )
        edited = await editor.post(
            URL, {**UPDATE, "body": "Another text", "action": "send", "confirmation": confirmation}
        )
        assert edited.status_code == 400

        # A double click sends once.
        sends = await asyncio.gather(*(
            editor.post(URL, {**UPDATE, "action": "send", "confirmation": confirmation})
            for _ in range(2)
        ))  # fmt: skip
        assert sorted(r.status_code for r in sends) == [303, 400]
        assert "already sent" in next(r.text for r in sends if r.status_code == 400)
        # (Both answers set the session cookie, in whichever order they finish, so
        # the one-off notice of the sending may or may not survive the race; the
        # list of sent updates comes from the database and always shows it.)
        listing = await editor.get(URL)
        assert "The workers are free" in listing.text

    rows = sorted(await opened_outbox(conn, "purpose = 'update'"), key=lambda r: r["recipient"])
    assert [r["recipient"] for r in rows] == ["secretary@union.example", "wants@example.org"]
    update_id = await conn.fetchval("SELECT id FROM petition_updates")
    assert {r["update_id"] for r in rows} == {update_id}
    assert len({r["message_id"] for r in rows}) == 2
    audit = await conn.fetchval("SELECT details FROM audit_log WHERE action = 'update.send'")
    assert '"recipients": 2' in audit

    assert await deliver_due(app.state.db, mail_settings) == 3
    received = {m["To"]: m for m in mail_server.messages}
    assert set(received) == {"editor@example.org", "secretary@union.example", "wants@example.org"}
    message = received["wants@example.org"]
    assert message["Subject"] == "The workers are free"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = message["List-Unsubscribe"].strip("<>")
    prefix = f"{app.state.settings.base_url}/unsubscribe/"
    assert unsubscribe_url.startswith(prefix)
    # Tokens carry the time they were made, so compare what they stand for. The link
    # opens the page in the signer's language (?lang=).
    assert unsubscribe_url.endswith("?lang=en")
    token = urlsplit(unsubscribe_url).path.rpartition("/")[2]
    assert app.state.tokens.read_signature_link("unsubscribe", token) == wants["public_id"]
    text = message.get_body(("plain",)).get_content()
    assert "Thanks to **you**, they are home." in text and unsubscribe_url in text
    html = message.get_body(("html",)).get_content()
    assert "<strong>you</strong>" in html and unsubscribe_url in html
    other_url = received["secretary@union.example"]["List-Unsubscribe"].strip("<>")
    other = app.state.tokens.read_signature_link(
        "unsubscribe", urlsplit(other_url).path.rpartition("/")[2]
    )
    assert other != wants["public_id"]  # each signer has their own link

    # The one-click unsubscribe a mail client sends (RFC 8058) works without a session.
    one_click = await client.post(
        urlsplit(unsubscribe_url).path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    assert await conn.fetchval("SELECT updates FROM signatures WHERE id = $1", wants["id"]) is False

    async with admin_client(app, conn, "owner") as owner:
        second = {"subject": "Next steps", "body": "Keep going."}
        preview = await owner.post(URL, {**second, "action": "preview"})
        assert "Send to 1 signer<" in preview.text
        sent = await owner.post(
            URL, {**second, "action": "send", "confirmation": confirmation_of(preview.text)}
        )
        assert sent.status_code == 303
    recipients = await opened_outbox(conn, "update_id = (SELECT max(id) FROM petition_updates)")
    assert [r["recipient"] for r in recipients] == ["secretary@union.example"]


async def test_bad_update_input_is_refused_with_messages(app, conn):
    await make_petition(conn)
    async with admin_client(app, conn, "editor") as editor:
        for values in (
            {"subject": "", "body": "Text"},
            {"subject": "Hello", "body": "  "},
            {"subject": "x" * 201, "body": "Text"},
            {"subject": "Hello", "body": "bad\x00text"},
            {"subject": "Hello\x1b[31m", "body": "Text"},
            {"subject": "Hello", "body": "x" * 50_001},
        ):
            response = await editor.post(URL, {**values, "action": "preview"})
            assert response.status_code == 400, values["subject"][:10]
            assert 'class="field-error"' in response.text
        unknown = await editor.post(URL, {**UPDATE, "action": "explode"})
        assert unknown.status_code == 400
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_sending_an_update_says_how_many_it_went_to(app, conn):
    pid = await make_petition(conn)
    for i in range(3):
        await add_signature(conn, pid, email=f"news{i}@example.org", updates=True)
    async with admin_client(app, conn, "editor") as editor:
        preview = await editor.post(URL, {**UPDATE, "action": "preview"})
        sent = await editor.post(
            URL, {**UPDATE, "action": "send", "confirmation": confirmation_of(preview.text)}
        )
        assert sent.status_code == 303
        listing = await editor.get(URL)
        assert "The update is queued for 3 signers." in listing.text
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE purpose = 'update'") == 3
