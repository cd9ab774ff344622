"""The privacy page says what the code does: made from the settings and the code's own
rules, covering every column, linked from every form."""

from __future__ import annotations

import re
from dataclasses import replace
from html import unescape

from conftest import add_signature, make_petition
from petitions.i18n import format_list
from petitions.privacy import (
    ENCRYPTED_FIELDS,
    INTERNAL_COLUMNS,
    KEPT_AFTER_WITHDRAWAL,
    STORED,
    shown_publicly,
)
from petitions.retention import MAIL_COUNTS_KEPT_DAYS


def text_of(html: str) -> str:
    main = re.split(r"<main\b[^>]*>", html, maxsplit=1)[1].split("</main>", 1)[0]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", main)).split())


def table_rows(html: str) -> dict[str, list[str]]:
    rows = {}
    for row in re.findall(r"<tr data-protection[^>]*>(.*?)</tr>", html, flags=re.S):
        cells = [unescape(c) for c in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
        rows[cells[0]] = cells[1:]
    return rows


async def test_the_page_follows_the_settings(client, app):
    page = await client.get("/privacy")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "deleted after 14 days" in text
    assert "dropped after 30 days" in text
    assert "at least 5 people from it have signed" in text
    assert "after the petition closes" not in text  # no anonymisation unless set
    # The mail caps' counters (retention.py deletes them after MAIL_COUNTS_KEPT_DAYS).
    assert f"delete the counts after {MAIL_COUNTS_KEPT_DAYS} days" in text

    app.state.settings = replace(
        app.state.settings,
        public_min_group=8,
        retention_unverified_days=21,
        retention_network_days=45,
        retention_rejected_days=60,
        anonymise_after_close_days=90,
    )
    text = text_of((await client.get("/privacy")).text)
    assert "deleted after 21 days" in text
    assert "dropped after 45 days" in text
    assert "60 days after it was refused" in text
    assert "at least 8 people from it have signed" in text
    assert "90 days after the petition closes, every signature is anonymised" in text
    assert "deleted after 14 days" not in text


async def test_the_page_says_what_is_encrypted_and_what_is_public(client):
    html = (await client.get("/privacy")).text
    rows = table_rows(html)
    assert rows["Your email address"][1:] == ["Encrypted", "Never"]
    assert rows["Your name"][1] == "Encrypted"
    assert "Only if the signature is public" in rows["Your name"][2]
    assert rows["Country"][1] == "Not encrypted"
    assert rows["A keyed hash of your email address"][1] == "Keyed hash"
    for item in STORED:
        protection = rows[item.label][1]
        if all(c in ENCRYPTED_FIELDS for c in item.columns):
            assert protection == "Encrypted", item.label
    for field in ("name", "email", "city", "occupation", "comment", "website"):
        assert field in ENCRYPTED_FIELDS
    text = text_of(html)
    assert "AES-GCM" in text and "outside the database" in text
    assert "Your IP address is never stored" in text
    # The display choices, as public_entry gives them out.
    assert shown_publicly("individual", "initials")[0] == "initials"
    assert "Individuals: " + format_list(shown_publicly("individual", "initials")) in text
    assert "Organisations: " + format_list(shown_publicly("organisation", "public")) in text
    assert "Counted, never listed" in text


async def test_every_column_of_a_signature_is_on_the_page(conn):
    columns = {
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'signatures'"
        )
    }
    described = {c for item in STORED for c in item.columns} | INTERNAL_COLUMNS
    assert columns - described == set(), "say in petitions/privacy.py what these columns hold"


async def test_a_withdrawal_keeps_only_what_the_page_says(client, conn, app):
    pid = await make_petition(conn)
    row = await add_signature(
        conn, pid, kind="organisation", name="Reza Tehrani", city="Tehran", occupation="Driver",
        comment="Solidarity", website="https://union.example.org", members=40,
        network_hash=b"\x01" * 32, updates=True, ref="site", country="IR",
    )  # fmt: skip
    token = app.state.tokens.signature_link("withdraw", row["public_id"])
    assert (await client.post(f"/withdraw/{token}")).status_code == 200
    after = dict(await conn.fetchrow("SELECT * FROM signatures WHERE id = $1", row["id"]))
    assert after["status"] == "withdrawn"
    kept = {c for c, v in after.items() if v is not None and v is not False}
    assert kept - set(KEPT_AFTER_WITHDRAWAL) - {"id", "public_id", "petition_id"} == set()
    text = text_of((await client.get("/privacy")).text)
    assert "A withdrawn signature keeps only what the counts need" in text


async def test_the_page_is_linked_from_every_form_and_every_page(client, conn):
    await make_petition(conn)
    page = (await client.get("/p/release-them")).text
    forms = re.findall(r'<form class="sign-form.*?</form>', page, flags=re.S)
    assert len(forms) == 2
    for form in forms:
        assert 'href="http://testserver/privacy"' in form
    embed = (await client.get("/p/release-them/embed")).text
    for form in re.findall(r'<form class="sign-form.*?</form>', embed, flags=re.S):
        # The embed sits in another site's iframe: the page opens on its own.
        assert 'href="http://testserver/privacy" target="_blank" rel="noopener"' in form
    for path in ("/", "/p/release-them", "/p/release-them/signatures", "/p/release-them/thanks",
                 "/p/nothing-here", "/privacy"):  # fmt: skip
        html = (await client.get(path)).text
        footer = html[html.index('<footer class="site-footer">') :]
        assert 'href="http://testserver/privacy"' in footer, path
