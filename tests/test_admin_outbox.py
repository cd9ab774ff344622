"""The outbox as an owner sees it: listing, reading and retrying emails."""

from __future__ import annotations

from datetime import UTC, datetime

from admin_support import admin_client


async def test_outbox_lists_shows_and_retries(app, conn):
    await conn.execute(
        """
        INSERT INTO outbox (purpose, recipient, subject, body_text, status, attempts, last_error,
                            headers)
        VALUES ('verification', 'a@example.org', 'Please confirm', 'Open this link', 'failed', 12,
                '550 no such user', '{"X-Test": "1"}'),
               ('notice', 'b@example.org', 'Sent one', 'Text', 'sent', 1, NULL, '{}'),
               ('reminder', 'c@example.org', 'Waiting one', 'Text', 'waiting', 0, NULL, '{}')
        """
    )
    failed = await conn.fetchval("SELECT id FROM outbox WHERE status = 'failed'")
    async with admin_client(app, conn) as owner:
        page = await owner.get("/admin/outbox")
        assert all(s in page.text for s in ("Please confirm", "Sent one", "Waiting one"))
        assert "550 no such user" in page.text
        only_failed = await owner.get("/admin/outbox", params={"status": "failed"})
        assert "Please confirm" in only_failed.text and "Sent one" not in only_failed.text
        by_purpose = await owner.get("/admin/outbox", params={"purpose": "notice"})
        assert "Sent one" in by_purpose.text and "Waiting one" not in by_purpose.text
        for bad in ({"status": "lost"}, {"purpose": "spam"}, {"after": "x"}):
            assert (await owner.get("/admin/outbox", params=bad)).status_code == 400
        message = await owner.get(f"/admin/outbox/{failed}")
        assert "Open this link" in message.text and "X-Test" in message.text
        for missing in ("999999", "99999999999999999999999", "abc"):
            assert (await owner.get(f"/admin/outbox/{missing}")).status_code == 404

        retried = await owner.post("/admin/outbox", {"action": "retry", "ids": str(failed)})
        assert retried.status_code == 303
        row = await conn.fetchrow("SELECT * FROM outbox WHERE id = $1", failed)
        assert (row["status"], row["attempts"]) == ("waiting", 0)
        assert row["next_attempt_at"] <= datetime.now(UTC)
        await conn.execute("UPDATE outbox SET status = 'failed' WHERE id = $1", failed)
        assert (await owner.post("/admin/outbox", {"action": "retry_failed"})).status_code == 303
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'failed'") == 0
        assert await conn.fetchval("SELECT status FROM outbox WHERE subject = 'Sent one'") == "sent"
        assert (
            await owner.post("/admin/outbox", {"action": "retry", "ids": "x"})
        ).status_code == 400
