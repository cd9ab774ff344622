"""The signing loop end to end: sign, email, confirm, appear, withdraw, unsubscribe."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from conftest import count_is, make_petition, opened_signatures
from petitions.delivery import deliver_due
from petitions.signing import process_sign_reminders

INDIVIDUAL = {
    "kind": "individual",
    "name": "  Leyla   Ahmadi ",
    "email": " Leyla.Ahmadi@Example.ORG ",
    "country": "se",
    "city": "Malmö",
    "occupation": "Bus driver",
    "comment": "Solidarity from Malmö!",
    "display": "public",
    "updates": "1",
    "ref": "newsletter",
}

ORGANISATION = {
    "kind": "organisation",
    "organisation": "Sugar Workers' Federation",
    "organisation_type": "federation",
    "country": "BR",
    "city": "Recife",
    "website": "sugarworkers.example.org",
    "members": "12,500",
    "name": "Ana Souza",
    "occupation": "International secretary",
    "email": "ana@sugarworkers.example.org",
    "display": "public",
}


async def form_token(client, slug="release-them") -> str:
    page = await client.get(f"/p/{slug}")
    return re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)


async def sign(client, fields, slug="release-them", token=None, **kwargs):
    data = dict(fields)
    data["form_token"] = token if token is not None else await form_token(client, slug)
    return await client.post(f"/p/{slug}/sign", data=data, **kwargs)


def links(message) -> dict[str, str]:
    text = message.get_body(("plain",)).get_content()
    found = re.findall(r"http://\S+/(verify|withdraw|unsubscribe)/(\S+)", text)
    return {purpose: f"/{purpose}/{token}" for purpose, token in found}


async def test_individual_signs_confirms_appears_and_withdraws(
    client, conn, app, mail_settings, mail_server
):
    await make_petition(conn)
    response = await sign(client, INDIVIDUAL)
    assert response.status_code == 303
    assert response.headers["location"] == "http://testserver/p/release-them/thanks#main"
    assert "Check your email" in (await client.get(response.headers["location"])).text

    [row] = await opened_signatures(conn)  # the personal fields are sealed
    assert row["status"] == "pending"
    assert (row["name"], row["email"], row["country"], row["city"]) == (
        "Leyla Ahmadi", "leyla.ahmadi@example.org", "SE", "Malmö",
    )  # fmt: skip
    assert row["updates"] is True and row["ref"] == "newsletter"
    assert row["version_id"] == await conn.fetchval("SELECT id FROM statement_versions")
    assert await count_is(client, 0)
    assert "Leyla" not in (await client.get("/p/release-them/signatures")).text

    assert await deliver_due(app.state.db, mail_settings) == 1
    [message] = mail_server.messages
    assert message["To"] == "leyla.ahmadi@example.org"
    assert message["Message-ID"] and message["Date"]
    assert "Release the detained workers" in message["Subject"]
    assert message.is_multipart()
    assert {part.get_content_type() for part in message.iter_parts()} == {"text/plain", "text/html"}
    urls = links(message)
    assert set(urls) == {"verify", "withdraw"}
    html = message.get_body(("html",)).get_content()
    assert urls["verify"] in html

    confirmed = await client.get(urls["verify"])
    assert confirmed.status_code == 200 and "Your signature is confirmed" in confirmed.text
    assert await count_is(client, 1)
    listing = (await client.get("/p/release-them/signatures.json")).json()["signatures"]
    assert [e["name"] for e in listing] == ["Leyla Ahmadi"]
    assert "leyla" not in str(listing).lower().replace("leyla ahmadi", "")

    # A GET on the withdraw link only asks; mail scanners open every link.
    ask = await client.get(urls["withdraw"])
    assert ask.status_code == 200 and "Withdraw your signature?" in ask.text
    assert await count_is(client, 1)
    done = await client.post(urls["withdraw"])
    assert done.status_code == 200 and "Your signature is withdrawn" in done.text
    assert await count_is(client, 0)
    assert (await client.get("/p/release-them/signatures.json")).json()["signatures"] == []

    erased = await conn.fetchrow("SELECT * FROM signatures")
    assert erased["status"] == "withdrawn" and erased["withdrawn_at"] is not None
    for column in ("name", "email", "email_hash", "city", "occupation", "comment", "network_hash",
                   "sealed", "search_hashes", "initials", "organisation_hash"):  # fmt: skip
        assert erased[column] is None, column
    assert erased["country"] == "SE" and erased["verified_at"] is not None  # the count history
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0  # no copy left in the outbox
    # Withdrawn people may sign again.
    assert (await sign(client, INDIVIDUAL)).status_code == 303
    assert await conn.fetchval("SELECT count(*) FROM signatures WHERE status = 'pending'") == 1


async def test_organisation_waits_for_moderation_when_asked(
    client, conn, app, mail_settings, mail_server
):
    await make_petition(conn, moderate_organisations=True)
    assert (await sign(client, ORGANISATION)).status_code == 303
    [row] = await opened_signatures(conn)
    assert (row["organisation"], row["organisation_type"], row["members"], row["website"]) == (
        "Sugar Workers' Federation", "federation", 12500, "https://sugarworkers.example.org",
    )  # fmt: skip
    await deliver_due(app.state.db, mail_settings)
    page = await client.get(links(mail_server.messages[0])["verify"])
    assert "checks organisation signatures" in page.text
    assert await conn.fetchval("SELECT status FROM signatures") == "held"
    assert await count_is(client, 0)
    assert (await client.get("/p/release-them/signatures.json")).json()["signatures"] == []


async def test_organisation_counts_at_once_without_moderation(
    client, conn, app, mail_settings, mail_server
):
    await make_petition(conn)
    await sign(client, ORGANISATION)
    await deliver_due(app.state.db, mail_settings)
    await client.get(links(mail_server.messages[0])["verify"])
    assert await count_is(client, 1, key="organisations")
    [entry] = (await client.get("/p/release-them/signatures.json")).json()["signatures"]
    assert entry["organisation"] == "Sugar Workers' Federation" and entry["members"] == 12500


async def test_verify_twice_counts_once(client, conn, app, mail_settings, mail_server):
    await make_petition(conn)
    await sign(client, INDIVIDUAL)
    await deliver_due(app.state.db, mail_settings)
    url = links(mail_server.messages[0])["verify"]
    results = await asyncio.gather(*(client.get(url) for _ in range(10)))
    assert all(r.status_code == 200 for r in results)
    assert (await client.get(url)).status_code == 200
    assert await count_is(client, 1)


async def test_fifty_concurrent_duplicates_make_one_row(
    client, conn, app, mail_settings, mail_server
):
    await make_petition(conn)
    tokens = [await form_token(client) for _ in range(50)]  # a token carries a few submissions
    variants = [
        " Leyla.Ahmadi@example.org",
        "LEYLA.AHMADI@EXAMPLE.ORG",
        "leyla.ahmadi@example.org ",
    ]
    responses = await asyncio.gather(
        *(
            sign(client, {**INDIVIDUAL, "email": variants[i % 3]}, token=token)
            for i, token in enumerate(tokens)
        )
    )
    assert {r.status_code for r in responses} == {303}
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 1
    while await deliver_due(app.state.db, mail_settings):
        pass
    verification = [m for m in mail_server.messages if "confirm your signature" in m["Subject"]]
    assert len(verification) == 1
    assert len(mail_server.messages) <= 3  # at most one hourly reminder besides, whatever the race
    await client.get(links(verification[0])["verify"])
    assert await count_is(client, 1)


async def test_existing_signer_gets_a_reminder_not_a_duplicate(
    client, conn, app, mail_settings, mail_server
):
    await make_petition(conn)
    await sign(client, INDIVIDUAL)
    for _ in range(3):
        assert (await sign(client, INDIVIDUAL)).status_code == 303
    # The reminder is written by the outbox worker, off the request path.
    await process_sign_reminders(app.state.db, app.state.mailer)
    purposes = [r["purpose"] for r in await conn.fetch("SELECT purpose FROM outbox ORDER BY id")]
    assert purposes == ["verification", "reminder"]  # one reminder an hour at most
    await deliver_due(app.state.db, mail_settings)
    reminder = next(m for m in mail_server.messages if "already signed" in m["Subject"])
    assert "not confirmed yet" in reminder.get_body(("plain",)).get_content()
    await client.get(links(reminder)["verify"])
    assert await count_is(client, 1)


async def test_someone_else_signing_for_the_same_organisation(
    client, conn, app, mail_settings, mail_server
):
    """(Issue 9 replaced the notice this test checked: it told the submitter that the
    organisation had signed.) A second person signing for an organisation is stored
    and mailed like any new signature; confirmed, it is held for a moderator, and
    the organisation never counts twice."""
    await make_petition(conn)
    await sign(client, ORGANISATION)
    await deliver_due(app.state.db, mail_settings)
    await client.get(links(mail_server.messages[0])["verify"])
    assert await count_is(client, 1, key="organisations")
    other = {
        **ORGANISATION,
        "organisation": "  sugar WORKERS' federation",
        "email": "x@other.example",
    }
    assert (await sign(client, other)).status_code == 303
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 2
    await deliver_due(app.state.db, mail_settings)
    message = next(m for m in mail_server.messages if m["To"] == "x@other.example")
    assert "Please confirm your signature" in message["Subject"]
    assert set(links(message)) == {"verify", "withdraw"}  # its own signature's links
    page = await client.get(links(message)["verify"])
    assert "checks organisation signatures" in page.text
    statuses = [r["status"] for r in await conn.fetch("SELECT status FROM signatures ORDER BY id")]
    assert statuses == ["verified", "held"]
    assert await count_is(client, 1, key="organisations")
    # The same organisation from another country is another signature.
    assert (await sign(client, {**other, "country": "PT"})).status_code == 303
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 3


async def test_display_choice_is_honoured_after_confirmation(
    client, conn, app, mail_settings, mail_server
):
    await make_petition(conn)
    await sign(client, {**INDIVIDUAL, "display": "initials"})
    await sign(
        client,
        {
            **INDIVIDUAL,
            "email": "anon@example.org",
            "name": "Hidden Person",
            "display": "anonymous",
        },
    )
    await deliver_due(app.state.db, mail_settings)
    for message in mail_server.messages:
        await client.get(links(message)["verify"])
    assert await count_is(client, 2)
    body = (await client.get("/p/release-them/signatures.json")).text
    assert '"initials":"L.A."' in body.replace(" ", "")
    for hidden in ("Leyla", "Ahmadi", "Hidden Person", "Malmö", "Solidarity from"):
        assert hidden not in body
        assert hidden not in (await client.get("/p/release-them")).text


def tampered(token: str) -> str:
    """The token with one character of its signature changed (not the last one, whose
    low bits are base64 padding and may not count)."""
    i = len(token) - 10
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


async def test_forged_and_wrong_purpose_tokens_are_400(
    client, conn, app, mail_settings, mail_server
):
    await make_petition(conn)
    await sign(client, INDIVIDUAL)
    await deliver_due(app.state.db, mail_settings)
    urls = links(mail_server.messages[0])
    verify_token = urls["verify"].rsplit("/", 1)[1]
    withdraw_token = urls["withdraw"].rsplit("/", 1)[1]
    for path in (
        "/verify/not-a-token",
        "/verify/" + tampered(verify_token),
        "/verify/" + withdraw_token,  # a withdraw token cannot confirm
        "/withdraw/" + verify_token,  # nor a confirm token withdraw
        "/unsubscribe/" + verify_token,
        "/verify/" + "A" * 5000,
        "/verify/%00%01",
    ):
        response = await client.get(path)
        assert response.status_code == 400, path
        assert "This link is not valid" in response.text
    assert (await client.post("/withdraw/" + verify_token)).status_code == 400
    assert await conn.fetchval("SELECT status FROM signatures") == "pending"


async def test_expired_link_offers_a_new_one(
    client, conn, app, mail_settings, mail_server, monkeypatch
):
    await make_petition(conn)
    await sign(client, INDIVIDUAL)
    public_id = await conn.fetchval("SELECT public_id FROM signatures")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 15 * 24 * 3600)
    old_token = app.state.tokens.signature_link("verify", public_id)
    monkeypatch.setattr(time, "time", real_time)

    expired = await client.get(f"/verify/{old_token}")
    assert expired.status_code == 400
    assert "expired" in expired.text and 'name="token"' in expired.text
    assert await conn.fetchval("SELECT status FROM signatures") == "pending"
    await conn.execute("UPDATE outbox SET created_at = now() - interval '2 hours'")
    resent = await client.post("/verify/resend", data={"token": old_token})
    assert resent.status_code == 200 and "new confirmation link" in resent.text
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE purpose = 'verification'") == 2
    while await deliver_due(app.state.db, mail_settings):
        pass
    fresh = links(mail_server.messages[-1])["verify"]
    assert (await client.get(fresh)).status_code == 200
    assert await count_is(client, 1)
    assert (await client.post("/verify/resend", data={"token": "forged"})).status_code == 400


async def test_unsubscribe_needs_a_post(client, conn, app):
    await make_petition(conn)
    await sign(client, INDIVIDUAL)
    public_id = await conn.fetchval("SELECT public_id FROM signatures")
    url = "/unsubscribe/" + app.state.tokens.signature_link("unsubscribe", public_id)
    page = await client.get(url)
    assert page.status_code == 200 and "Stop updates" in page.text
    assert await conn.fetchval("SELECT updates FROM signatures") is True
    # RFC 8058: the mail client posts this body, with no cookie, origin or form token.
    done = await client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert await conn.fetchval("SELECT updates FROM signatures") is False


async def test_closed_petition_refuses_with_a_clear_page(client, conn):
    await make_petition(conn)
    token = await form_token(client)
    await conn.execute("UPDATE petitions SET status = 'closed'")
    response = await sign(client, INDIVIDUAL, token=token)
    assert response.status_code == 403 and "This petition is closed" in response.text
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0


async def test_signature_confirmed_after_closing_is_not_counted(
    client, conn, app, mail_settings, mail_server
):
    await make_petition(conn)
    await sign(client, INDIVIDUAL)
    await deliver_due(app.state.db, mail_settings)
    await conn.execute("UPDATE petitions SET status = 'closed'")
    page = await client.get(links(mail_server.messages[0])["verify"])
    assert "closed before your signature was confirmed" in page.text
    assert await count_is(client, 0)


BAD_FIELDS = [
    ({"name": ""}, "name", "is required"),
    ({"name": "   "}, "name", "is required"),
    ({"name": "x" * 201}, "name", "at most 200"),
    ({"name": "Null\x00Byte"}, "name", "not allowed"),
    ({"name": "Bidi \u202eevil"}, "name", "not allowed"),
    ({"email": ""}, "email", "required"),
    ({"email": "not-an-email"}, "email", "does not look like"),
    ({"email": "a@b"}, "email", "does not look like"),
    ({"email": "x" * 250 + "@example.org"}, "email", "does not look like"),
    ({"email": "nul\x00@example.org"}, "email", "does not look like"),
    ({"country": ""}, "country", "Choose a country"),
    ({"country": "XX"}, "country", "Choose a country"),
    ({"country": "Sweden"}, "country", "Choose a country"),
    ({"city": "c" * 101}, "city", "at most 100"),
    ({"occupation": "o" * 201}, "occupation", "at most 200"),
    ({"comment": "c" * 1001}, "comment", "at most 1000"),
    ({"display": "everyone"}, "display", "Choose how"),
    ({"kind": "robot"}, "kind", "Choose whether"),
]

BAD_ORGANISATION_FIELDS = [
    ({"organisation": ""}, "organisation", "is required"),
    ({"organisation": "o" * 301}, "organisation", "at most 300"),
    ({"organisation_type": "cartel"}, "organisation_type", "Choose the type"),
    ({"website": "javascript:alert(1)"}, "website", "such as https://"),
    ({"website": "ftp://union.example.org"}, "website", "such as https://"),
    ({"website": "https://user:pw@union.example.org"}, "website", "such as https://"),
    ({"website": "not a url"}, "website", "such as https://"),
    ({"website": "https://" + "a" * 500 + ".org"}, "website", "such as https://"),
    ({"members": "-5"}, "members", "zero or more"),
    ({"members": "lots"}, "members", "whole number"),
    ({"members": "99999999999"}, "members", "more members than any organisation"),
    ({"members": "12,5"}, "members", "decimal part"),  # "٣٤" is 34: tests/test_numbers.py
    ({"members": "3٤"}, "members", "one kind of digits"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_FIELDS)
async def test_bad_individual_fields_are_400_with_a_message(client, conn, change, field, message):
    await make_petition(conn)
    response = await sign(client, {**INDIVIDUAL, **change})
    assert response.status_code == 400
    error = (
        re.search(rf'id="ind-{field}-error">([^<]*)<', response.text) if field != "kind" else None
    )
    assert message in (error.group(1) if error else response.text)
    # What was typed is kept (escaped) in the re-rendered form.
    if field not in ("name", "kind"):
        assert 'value="  Leyla   Ahmadi "' in response.text
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0


@pytest.mark.parametrize(("change", "field", "message"), BAD_ORGANISATION_FIELDS)
async def test_bad_organisation_fields_are_400_with_a_message(client, conn, change, field, message):
    await make_petition(conn)
    response = await sign(client, {**ORGANISATION, **change})
    assert response.status_code == 400
    assert message in response.text
    assert f'id="org-{field}-error"' in response.text
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0


async def test_kind_the_petition_does_not_accept(client, conn):
    await make_petition(conn, accepts_individuals=False)
    response = await sign(client, INDIVIDUAL)
    assert response.status_code == 400 and "organisations only" in response.text


async def test_forgery_defences(client, conn):
    await make_petition(conn)
    await make_petition(conn, "another-one")
    assert (await sign(client, INDIVIDUAL, token="")).status_code == 400
    assert (await sign(client, INDIVIDUAL, token="forged.token.value")).status_code == 400
    other_token = await form_token(client, "another-one")
    assert (await sign(client, INDIVIDUAL, token=other_token)).status_code == 400
    foreign = await sign(client, INDIVIDUAL, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    null_origin = await sign(client, INDIVIDUAL, headers={"Origin": "null"})
    assert null_origin.status_code == 403
    # The honeypot: a bot that fills every field is thanked, and nothing is stored.
    bot = await sign(client, {**INDIVIDUAL, "fax_number": "123"})
    assert bot.status_code == 303
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0
    ours = await sign(client, INDIVIDUAL, headers={"Origin": "http://testserver"})
    assert ours.status_code == 303
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 1


async def test_expired_form_token_keeps_what_was_typed(client, conn, app, monkeypatch):
    await make_petition(conn)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 13 * 3600)
    old = app.state.tokens.make("sign-form", "release-them")
    monkeypatch.setattr(time, "time", real_time)
    response = await sign(client, INDIVIDUAL, token=old)
    assert response.status_code == 400
    assert "open for a long time" in response.text and "Malmö" in response.text
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0


async def test_malformed_bodies_are_4xx_not_500(client, conn):
    await make_petition(conn)
    token = await form_token(client)
    cases = [
        dict(content=b"\xff\xfe\x00garbage", headers={"content-type": "application/x-www-form-urlencoded"}),
        dict(content=b'{"name": "json"}', headers={"content-type": "application/json"}),
        dict(content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}),
        dict(content=b"", headers={"content-type": "text/plain"}),
        dict(data={"form_token": token, **INDIVIDUAL, "name": "\udcff"}),
        dict(files={"name": ("a.txt", b"file instead of text")}, data={"form_token": token}),
        dict(content=("&".join(f"f{i}=1" for i in range(500))).encode(),
             headers={"content-type": "application/x-www-form-urlencoded"}),
        dict(content=b"x" * 100_000, headers={"content-type": "application/x-www-form-urlencoded"}),
    ]  # fmt: skip
    for case in cases:
        try:
            response = await client.post("/p/release-them/sign", **case)
        except UnicodeEncodeError:
            continue  # the client itself refuses lone surrogates
        assert 400 <= response.status_code < 500, (case, response.status_code)
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0
    assert (await client.post("/p/no-such/sign", data=INDIVIDUAL)).status_code == 404


async def test_unsubscribing_stops_updates_for_every_signature_of_that_email(client, conn, app):
    await make_petition(conn)
    await sign(client, {**ORGANISATION, "updates": "1"})
    await sign(client, {**ORGANISATION, "organisation": "Second Union", "updates": "1"})
    await sign(client, {**INDIVIDUAL, "updates": "1"})  # someone else
    first = await conn.fetchval("SELECT public_id FROM signatures ORDER BY id LIMIT 1")
    url = "/unsubscribe/" + app.state.tokens.signature_link("unsubscribe", first)
    assert (await client.post(url)).status_code == 200
    rows = await opened_signatures(conn)
    assert [(r["email"], r["updates"]) for r in rows] == [
        ("ana@sugarworkers.example.org", False),
        ("ana@sugarworkers.example.org", False),
        ("leyla.ahmadi@example.org", True),
    ]
