"""Creating and editing petitions: settings, status, the versioned and translated statement."""

from __future__ import annotations

from admin_support import admin_client
from conftest import add_signature, make_petition

NEW = {
    "slug": "free-the-dockers",
    "title": "Free the dockers",
    "summary": "They struck; they were jailed.",
    "target": "The port authority",
    "body": "## Why\n\nThey **struck** for pay.\n\n    indented code stays\n\n<script>alert(1)</script>",
    "demands": "Release them\n\n  Drop the charges  \n",
    "goal": "10,000",
    "closes_at": "2099-05-01T18:00",
    "default_language": "en",
    "accepts_individuals": "1",
    "accepts_organisations": "1",
    "moderate_organisations": "1",
}


async def test_create_preview_publish(app, conn, client):
    async with admin_client(app, conn, "editor") as editor:
        preview = await editor.post("/admin/petitions/new", {**NEW, "action": "preview"})
        assert preview.status_code == 200
        assert "<strong>struck</strong>" in preview.text and "<script>alert" not in preview.text
        assert await conn.fetchval("SELECT count(*) FROM petitions") == 0

        created = await editor.post("/admin/petitions/new", {**NEW, "action": "create"})
        assert created.status_code == 303
        assert created.headers["location"] == "http://testserver/admin/petitions/free-the-dockers"
        row = await conn.fetchrow("SELECT * FROM petitions")
        assert row["status"] == "draft" and row["published_at"] is None
        assert (row["goal"], row["moderate_organisations"]) == (10_000, True)
        assert row["closes_at"].isoformat() == "2099-05-01T18:00:00+00:00"
        text = await conn.fetchrow("SELECT * FROM statement_texts")
        assert text["demands"] == ["Release them", "Drop the charges"]
        assert "    indented code stays" in text["body"]  # Markdown keeps its white space
        assert (await client.get("/p/free-the-dockers")).status_code == 404  # a draft

        page = await editor.get(created.headers["location"])
        assert page.status_code == 200 and "The petition is created as a draft" in page.text
        published = await editor.post("/admin/petitions/free-the-dockers", {"action": "open"})
        assert published.status_code == 303
        assert await conn.fetchval("SELECT published_at IS NOT NULL FROM petitions") is True
        assert (await client.get("/p/free-the-dockers")).status_code == 200

        # Published: the address is fixed, a petition never goes back to draft.
        moved = await editor.post(
            "/admin/petitions/free-the-dockers", {**NEW, "slug": "elsewhere", "action": "settings"}
        )
        assert moved.status_code == 400 and "cannot change" in moved.text
        back = await editor.post("/admin/petitions/free-the-dockers", {"action": "draft"})
        assert back.status_code == 400
        for status in ("closed", "open", "archived"):
            r = await editor.post("/admin/petitions/free-the-dockers", {"action": status})
            assert r.status_code == 303, status
            assert await conn.fetchval("SELECT status FROM petitions") == status
        assert (
            await editor.post("/admin/petitions/free-the-dockers", {"action": "open"})
        ).status_code == 400
    actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("petition.status") == 4 and "petition.create" in actions


async def test_bad_petition_input_gets_messages_and_keeps_what_was_typed(app, conn):
    await make_petition(conn, "taken")
    async with admin_client(app, conn, "editor") as editor:
        cases = {
            "slug": ["Has Spaces", "-dash-", "new", "taken", "x" * 81, "caf\u00e9"],
            "goal": ["0", "-5", "1e9", "99999999999999999999999", "ten"],
            "closes_at": ["2025-13-45", "tomorrow", "99999-01-01", "2025-05-01T25:00", "\x00"],
            "title": ["", "x" * 201, "bad\x00title", "bidi \u202e trick"],
            "default_language": ["english", "EN", "e"],
            "demands": ["\n".join(f"demand {i}" for i in range(51)), "x" * 501],
        }
        for field, values in cases.items():
            for value in values:
                response = await editor.post(
                    "/admin/petitions/new",
                    {**NEW, "slug": "fresh", field: value, "action": "create"},
                )
                assert response.status_code == 400, (field, value[:30])
                assert 'class="field-error"' in response.text, (field, value[:30])
        nobody = await editor.post(
            "/admin/petitions/new",
            {**NEW, "slug": "fresh", "accepts_individuals": "", "accepts_organisations": "", "action": "create"},
        )  # fmt: skip
        assert nobody.status_code == 400 and "individuals, organisations, or both" in nobody.text
        kept = await editor.post(
            "/admin/petitions/new", {**NEW, "slug": "taken", "action": "create"}
        )
        assert "Another petition already uses this address" in kept.text
        assert "They **struck** for pay." in kept.text  # what was typed is kept
        huge = await editor.post(
            "/admin/petitions/new",
            {**NEW, "slug": "fresh", "body": "word " * 30_000, "action": "create"},
        )
        assert huge.status_code == 400 and "at most 100,000 characters" in huge.text
        assert await conn.fetchval("SELECT count(*) FROM petitions") == 1
        assert (await editor.get("/admin/petitions/no-such-one")).status_code == 404
        assert (await editor.get("/admin/petitions/BAD%00SLUG")).status_code == 404


async def test_statement_edits_version_once_signed_and_the_public_page_shows_history(
    app, conn, client
):
    pid = await make_petition(conn)
    url = "/admin/petitions/release-them"
    text = {"title": "Release the detained workers", "summary": "Free them now.",
            "target": "The authorities", "body": "First text.", "demands": "Release them",
            "language": "en"}  # fmt: skip
    async with admin_client(app, conn, "editor") as editor:
        # Nobody signed version 1: a change corrects it in place.
        saved = await editor.post(url, {**text, "action": "statement"})
        assert saved.status_code == 303
        assert (await conn.fetchval("SELECT count(*) FROM statement_versions")) == 1
        assert await conn.fetchval("SELECT body FROM statement_texts") == "First text."

        # A translation joins the current version.
        page = await editor.get(url + "?lang=fa")
        assert "fa (new)" in page.text
        persian = {**text, "language": "fa", "title": "کارگران زندانی را آزاد کنید", "body": "متن"}
        assert (await editor.post(url, {**persian, "action": "statement"})).status_code == 303
        assert await conn.fetchval("SELECT count(*) FROM statement_versions") == 1

        signature = await add_signature(conn, pid, version_id=await conn.fetchval(
            "SELECT id FROM statement_versions"))  # fmt: skip
        unchanged = await editor.post(url, {**text, "action": "statement"})
        assert "Nothing changed" in (await editor.get(unchanged.headers["location"])).text
        assert await conn.fetchval("SELECT count(*) FROM statement_versions") == 1

        # Someone signed version 1: a change makes version 2 with every language.
        changed = await editor.post(
            url, {**text, "body": "Second text.", "note": "Named the new detainees", "action": "statement"}
        )  # fmt: skip
        assert changed.status_code == 303
        notice = (await editor.get(changed.headers["location"])).text
        assert "as version 2" in notice
        versions = await conn.fetch(
            "SELECT v.version, v.note, array_agg(t.language ORDER BY t.language) AS languages,"
            " max(t.body) FILTER (WHERE t.language = 'en') AS body"
            " FROM statement_versions v JOIN statement_texts t ON t.version_id = v.id"
            " GROUP BY v.id ORDER BY v.version"
        )
        assert [(v["version"], v["languages"], v["body"]) for v in versions] == [
            (1, ["en", "fa"], "First text."), (2, ["en", "fa"], "Second text."),
        ]  # fmt: skip
        assert versions[1]["note"] == "Named the new detainees"
        signed = await conn.fetchval(
            "SELECT v.version FROM signatures s JOIN statement_versions v ON v.id = s.version_id"
            " WHERE s.id = $1", signature["id"])  # fmt: skip
        assert signed == 1  # the signer keeps what they signed

        public = await client.get("/p/release-them")
        assert "Second text." in public.text and "First text." not in public.text
        assert "Version history" in public.text and "Named the new detainees" in public.text
        assert "Version 1" in public.text

        # Removing a translation of a signed version is a change too; the default cannot go.
        assert (
            await editor.post(url, {"language": "fa", "action": "remove_translation"})
        ).status_code == 303
        assert await conn.fetchval("SELECT count(*) FROM statement_texts WHERE version_id = "
                                   "(SELECT id FROM statement_versions WHERE version = 2)") == 1  # fmt: skip
        refused = await editor.post(url, {"language": "en", "action": "remove_translation"})
        assert refused.status_code == 400 and "cannot be removed" in refused.text

        preview = await editor.post(url, {**text, "body": "_new_ text", "action": "preview"})
        assert preview.status_code == 200 and "<em>new</em>" in preview.text


async def test_settings_change_and_default_language_needs_a_text(app, conn):
    await make_petition(conn, status="draft")
    url = "/admin/petitions/release-them"
    settings = {"slug": "renamed", "goal": "500", "closes_at": "", "default_language": "en",
                "accepts_individuals": "1", "action": "settings"}  # fmt: skip
    async with admin_client(app, conn, "editor") as editor:
        no_text = await editor.post(url, {**settings, "default_language": "fa"})
        assert no_text.status_code == 400 and "add the translation first" in no_text.text
        saved = await editor.post(url, settings)
        assert saved.status_code == 303 and saved.headers["location"].endswith(
            "/admin/petitions/renamed"
        )
        row = await conn.fetchrow("SELECT * FROM petitions")
        assert (row["slug"], row["goal"], row["accepts_organisations"]) == ("renamed", 500, False)
        page = await editor.get("/admin/petitions/renamed")
        assert 'value="renamed"' in page.text and "Settings saved" in page.text
