"""Nothing public singles a signer out: countries under PUBLIC_MIN_GROUP signers are never
named (pages, JSON, filters, live events), public times are to the hour, and the page
cursor is opaque."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from conftest import SECRET, add_signature, count_is, make_petition, wait_until
from livekit import event_stream, serving
from petitions.app import create_app
from petitions.disclosure import fold_small_groups, public_breakdown, public_time
from petitions.petitions import Counts
from petitions.settings import SettingsError, load_settings
from petitions.signatories import Cursor

SLUG = "release-them"


def without_country_pickers(html: str) -> str:
    """The page without its sign forms' country <select>s (which list every country)."""
    return re.sub(r'<select[^>]*name="country"[^>]*>.*?</select>', "", html, flags=re.S)


async def public_texts(client) -> dict[str, str]:
    """Every public place a country could be named, as text."""
    return {
        "petition page": without_country_pickers((await client.get(f"/p/{SLUG}")).text),
        "signatures page": (await client.get(f"/p/{SLUG}/signatures")).text,
        "signatures.json": (await client.get(f"/p/{SLUG}/signatures.json")).text,
        "embed": without_country_pickers((await client.get(f"/p/{SLUG}/embed")).text),
        "count.json": (await client.get(f"/p/{SLUG}/count.json")).text,
    }


def names_iran(text: str) -> bool:
    return "Iran" in text or '"IR"' in text or "🇮🇷" in text or "country=IR" in text


async def test_a_country_is_named_only_from_k_signers_everywhere(client, conn, app):
    assert app.state.settings.public_min_group == 5  # the default
    pid = await make_petition(conn)
    for i in range(5):
        await add_signature(conn, pid, name=f"British Signer {i}", country="GB")
    await add_signature(conn, pid, name="Hossein Karimi", display="initials", occupation="Teacher",
                        country="IR")  # fmt: skip
    await add_signature(conn, pid, name="Hidden Person", display="anonymous", country="IR")
    await add_signature(conn, pid, name="Tajik Anon", display="anonymous", country="TJ")
    assert await count_is(client, 8)

    for where, text in (await public_texts(client)).items():
        assert not names_iran(text), where
        assert "Tajikistan" not in text and '"TJ"' not in text, where
    page = without_country_pickers((await client.get(f"/p/{SLUG}")).text)
    countries = page[page.index('<section class="countries">') :]
    assert "United Kingdom" in countries
    assert re.search(r'class="country-other">Other countries <bdi class="n">3</bdi>', countries)
    # The initials signer is listed, without a country.
    entries = (await client.get(f"/p/{SLUG}/signatures.json")).json()["signatures"]
    hk = next(e for e in entries if e.get("initials") == "H.K.")
    assert hk["country"] is None and hk["occupation"] == "Teacher"
    assert {e["country"] for e in entries} == {"GB", None}

    # Four more from Iran: now it has five and is named everywhere.
    for i in range(3):
        await add_signature(conn, pid, name=f"Iranian Public {i}", country="IR")
    await add_signature(conn, pid, name="Another Anon", display="anonymous", country="IR")
    assert await count_is(client, 12)
    texts = await public_texts(client)
    for where in ("petition page", "signatures page", "signatures.json"):
        assert names_iran(texts[where]), where
    entries = (await client.get(f"/p/{SLUG}/signatures.json")).json()["signatures"]
    assert next(e for e in entries if e.get("initials") == "H.K.")["country"] == "IR"
    found = (await client.get(f"/p/{SLUG}/signatures.json", params={"country": "IR"})).json()
    assert len(found["signatures"]) == 4  # three public, one initials; anonymous never listed
    assert 'value="IR"' in texts["signatures page"]
    assert "Tajikistan" not in texts["petition page"]  # still one signer


async def test_a_filter_for_a_small_country_answers_as_for_an_empty_one(client, conn, app):
    pid = await make_petition(conn)
    for _ in range(5):
        await add_signature(conn, pid, country="GB")
    await add_signature(conn, pid, name="Lone Voice", country="IR")  # public, but alone
    await add_signature(conn, pid, name="Quiet One", display="initials", country="TJ")
    assert await count_is(client, 7)
    for path in (f"/p/{SLUG}/signatures.json", f"/p/{SLUG}/signatures"):

        async def body(country: str, path=path) -> str:
            response = await client.get(path, params={"country": country, "limit": "10"})
            assert response.status_code == 200
            return response.text.replace(f"country={country}", "country=XX")

        empty = await body("FR")  # nobody signed from France
        assert await body("IR") == empty, path
        assert await body("TJ") == empty, path
        assert "Lone Voice" not in empty
    # The list itself still shows the public signer, without the country.
    entries = (await client.get(f"/p/{SLUG}/signatures.json")).json()["signatures"]
    lone = next(e for e in entries if e.get("name") == "Lone Voice")
    assert lone["country"] is None


async def test_the_threshold_is_the_setting(client, conn, app):
    pid = await make_petition(conn)
    for _ in range(3):
        await add_signature(conn, pid, country="IR")
    assert await count_is(client, 3)
    assert not names_iran((await client.get(f"/p/{SLUG}/signatures.json")).text)
    app.state.settings = replace(app.state.settings, public_min_group=3)
    assert names_iran((await client.get(f"/p/{SLUG}/signatures.json")).text)
    page = without_country_pickers((await client.get(f"/p/{SLUG}")).text)
    assert "Iran</bdi></a>" in page and "Other countries" not in page


async def test_live_events_name_a_country_only_from_k_signers(settings, conn):
    await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    assert app.state.settings.public_min_group == 5
    rows = [
        await add_signature(
            conn,
            1,
            status="pending",
            name=f"Iran {i}",
            country="IR",
            display="initials" if i == 0 else "public",
        )
        for i in range(5)
    ]
    async with serving(app) as base, event_stream(base) as stream:
        await stream.next()
        seen = []
        for i, row in enumerate(rows):
            await conn.execute(
                "UPDATE signatures SET status = 'verified', verified_at = now() WHERE id = $1",
                row["id"],
            )
            event = await stream.until(lambda e: e.kind == "signature")
            seen.append(event)
            if i < 4:
                assert event.data["country"] is None, i
                assert "IR" not in str(event.data)
        assert seen[4].data["country"] == "IR"  # the fifth: the counts that include it
        assert seen[0].data["initials"] == "I.0."
        # The same counts decide the list at that moment.
        async with httpx.AsyncClient(base_url=base) as http:
            entries = (await http.get(f"/p/{SLUG}/signatures.json")).json()["signatures"]
            assert {e["country"] for e in entries} == {"IR"}
        # A withdrawal takes Iran under k again; the removal event names nobody.
        await conn.execute(
            "UPDATE signatures SET status = 'withdrawn' WHERE id = $1", rows[1]["id"]
        )
        gone = await stream.until(lambda e: e.kind == "signature")
        assert gone.data == {"id": str(rows[1]["public_id"]), "removed": True}
        # Replayed events are told by the counts of now.
        async with event_stream(base, headers={"Last-Event-ID": seen[0].id}) as again:
            replayed = [await again.next() for _ in range(5)]
        for event in replayed:
            if event.kind == "signature" and "removed" not in event.data:
                assert event.data["country"] is None


async def test_public_times_are_rounded_down_to_the_hour(client, conn, app):
    pid = await make_petition(conn)
    moment = datetime(2025, 5, 1, 14, 37, 21, 123456, tzinfo=UTC)
    row = await add_signature(conn, pid, name="Timed Signer", verified_at=moment)
    await add_signature(conn, pid, name="Initials Signer", display="initials",
                        verified_at=moment + timedelta(minutes=5))  # fmt: skip
    body = (await client.get(f"/p/{SLUG}/signatures.json")).text
    entries = (await client.get(f"/p/{SLUG}/signatures.json")).json()["signatures"]
    assert {e["signed_at"] for e in entries} == {"2025-05-01T14:00:00+00:00"}
    for fine in ("14:37", "14:42", "123456", "21.1"):
        assert fine not in body
    assert row["verified_at"] == moment
    count = (await client.get(f"/p/{SLUG}/count.json")).json()
    updated = datetime.fromisoformat(count["updated_at"])
    assert (updated.minute, updated.second, updated.microsecond) == (0, 0, 0)
    assert public_time(moment) == datetime(2025, 5, 1, 14, tzinfo=UTC)
    tehran = moment.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tehran"))
    assert public_time(tehran) == datetime(2025, 5, 1, 14, tzinfo=UTC)


async def test_the_page_cursor_is_opaque_and_exact(client, conn, app):
    pid = await make_petition(conn)
    other = await make_petition(conn, "another-one")
    when = datetime(2025, 5, 1, 14, 37, 21, 123456, tzinfo=UTC)
    # Ten signatures at the very same microsecond, and five a second apart.
    for i in range(10):
        await add_signature(conn, pid, name=f"Tied {i}", verified_at=when)
    for i in range(5):
        await add_signature(conn, pid, name=f"Apart {i}", verified_at=when + timedelta(seconds=i))
    await add_signature(conn, other, verified_at=when)

    seen, url, cursors = [], f"/p/{SLUG}/signatures.json?limit=2", []
    while url:
        data = (await client.get(url)).json()
        seen += [e["name"] for e in data["signatures"]]
        url = data["next"]
        if url:
            cursors.append(re.search(r"after=([^&]+)", url).group(1))
    assert len(seen) == 15 and len(set(seen)) == 15  # exact: no tie repeated or skipped
    assert len(set(cursors)) == len(cursors) == 7

    rows = await conn.fetch("SELECT public_id, verified_at FROM signatures")
    micros = {str(int(r["verified_at"].timestamp() * 1_000_000)) for r in rows}
    for cursor in cursors:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        for r in rows:
            assert r["public_id"].bytes not in raw and r["public_id"].hex.encode() not in raw
        assert not any(m.encode() in raw for m in micros)
        assert not any(m in cursor for m in micros)
    # The same page always has the same address (cacheable), and it decodes to the
    # exact position.
    again = (await client.get(f"/p/{SLUG}/signatures.json?limit=2")).json()["next"]
    assert re.search(r"after=([^&]+)", again).group(1) == cursors[0]
    second = await conn.fetchrow(
        "SELECT verified_at, public_id FROM signatures WHERE petition_id = $1 "
        "ORDER BY verified_at DESC, public_id DESC OFFSET 1 LIMIT 1",
        pid,
    )
    assert Cursor.decode(cursors[0], SECRET, pid) == Cursor(
        second["verified_at"], second["public_id"]
    )


async def test_forged_cursors_are_400(client, conn, app):
    pid = await make_petition(conn)
    other = await make_petition(conn, "another-one")
    for i in range(3):
        await add_signature(conn, pid, name=f"Signer {i}")
    next_url = (await client.get(f"/p/{SLUG}/signatures.json?limit=1")).json()["next"]
    good = re.search(r"after=([^&]+)", next_url).group(1)
    raw = bytearray(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    flipped = bytes(raw[:20]) + bytes([raw[20] ^ 1]) + bytes(raw[21:])
    # The old format: the exact time and the id in clear.
    old = base64.urlsafe_b64encode(f"1714574241123456.{uuid.uuid4().hex}".encode()).decode()
    other_petition = Cursor(datetime.now(UTC), uuid.uuid4()).encode(SECRET, other)
    other_key = Cursor(datetime.now(UTC), uuid.uuid4()).encode("another-secret-" + "y" * 32, pid)
    forged = [
        base64.urlsafe_b64encode(flipped).decode().rstrip("="),
        good[:-2],
        good + "AA",
        old.rstrip("="),
        other_petition,
        other_key,
        "",  # empty means the first page: fine
    ]
    for cursor in forged:
        for path in (f"/p/{SLUG}/signatures.json", f"/p/{SLUG}/signatures"):
            response = await client.get(path, params={"after": cursor})
            expected = 200 if cursor == "" else 400
            assert response.status_code == expected, (cursor, path, response.status_code)
    assert (await client.get(next_url)).status_code == 200


def test_breakdown_folds_groups_under_k():
    counts = Counts(9, 2, (("GB", 6), ("IR", 5), ("TJ", 4), ("AF", 1)), None)
    breakdown = public_breakdown(counts, 5)
    assert breakdown.countries == (("GB", 6), ("IR", 5))
    assert breakdown.other == 5
    assert breakdown.named == {"GB", "IR"}
    assert breakdown.country("TJ") is None and breakdown.country("IR") == "IR"
    assert not breakdown.names(None)
    assert public_breakdown(counts, 1).other == 0
    assert fold_small_groups([("trade_union", 2), ("ngo", 7)], 5) == ((("ngo", 7),), 2)


def test_public_min_group_setting(tmp_path):
    def load(**environ):
        return load_settings(
            {"DATA_DIR": str(tmp_path), "SECRET_KEY": SECRET, **environ}, env_file=None
        )

    assert load().public_min_group == 5
    assert load(PUBLIC_MIN_GROUP="10").public_min_group == 10
    assert load(PUBLIC_MIN_GROUP="1").public_min_group == 1
    for bad in ("0", "-3", "many", "1001", "2.5"):
        with pytest.raises(SettingsError, match="PUBLIC_MIN_GROUP"):
            load(PUBLIC_MIN_GROUP=bad)


async def test_pages_agree_while_counts_change(client, conn, app):
    """At k-1 every endpoint hides the country, at k every one names it: none of them
    decides alone (no difference between endpoints to exploit)."""
    pid = await make_petition(conn)
    for n in range(1, 6):
        await add_signature(conn, pid, name=f"Signer {n}", display="initials", country="IR")
        assert await count_is(client, n)
        texts = await public_texts(client)
        named = {where: names_iran(text) for where, text in texts.items()}
        for never_names_a_country in ("count.json", "embed"):
            assert not named.pop(never_names_a_country)
        assert set(named.values()) == {n >= 5}, (n, named)

    async def listed():
        entries = (await client.get(f"/p/{SLUG}/signatures.json")).json()["signatures"]
        return {e["country"] for e in entries} == {"IR"}

    assert await wait_until(listed)
