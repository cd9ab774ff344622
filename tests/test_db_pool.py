"""Pool connections go back without asyncpg's reset query (db.PooledConnection): nothing
a request did may outlive it on the connection the next request gets."""

from __future__ import annotations

import asyncio

from test_signing import INDIVIDUAL, sign

from conftest import make_petition
from petitions.db import raw_connection


async def test_no_session_state_outlives_a_request(app, client, conn):
    await make_petition(conn)
    answers = await asyncio.gather(
        *(sign(client, {**INDIVIDUAL, "email": f"p{i}@example.org"}) for i in range(30))
    )
    assert all(a.status_code == 303 for a in answers)
    # The sign limits' advisory locks are transaction-level: none is left held.
    assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def test_a_transaction_left_open_is_rolled_back_on_release(app, conn):
    db = app.state.db
    async with raw_connection(db) as c:
        await c.transaction().start()  # and never committed: released mid-transaction
        await c.execute("INSERT INTO petitions (slug) VALUES ('left-open')")
        assert c.is_in_transaction()
    for _ in range(5):  # whichever pool connection comes next
        async with raw_connection(db) as c:
            assert not c.is_in_transaction()
    assert await conn.fetchval("SELECT count(*) FROM petitions WHERE slug = 'left-open'") == 0
