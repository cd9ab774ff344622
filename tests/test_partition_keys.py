"""Past one primary (docs/scaling.md): every query that the sign, confirm, list and live
paths send to a table that would be distributed by `petition_id` names the petition.

The SQL is captured as it is sent (asyncpg's query logger on every connection the app
opens), while real requests go through a served app: the petition page, sign POSTs (one
at a time and batched), confirmations (one and batched), the signatory list and its JSON
with filters, a search and a next page, count.json, the badge, and an event stream, live
and reconnecting with Last-Event-ID. Each captured statement that touches a distributed
table is planned with EXPLAIN (VERBOSE): every scan of a distributed table must have its
own `petition_id` in a condition that applies to it (its filter, its index condition, or
the join that brings it in), and every INSERT into one must give `petition_id`. The few
exceptions are named below and explained in docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import asyncpg
import httpx
import pytest

from conftest import add_signature, make_petition, wait_until
from livekit import event_stream, serving
from petitions import events, sign_batch, signature, signing
from petitions.app import create_app
from petitions.db import raw_connection
from petitions.petitions import get_petition
from petitions.signing import parse_sign_form, submit_signature, verify_signature

# Distributed by petition_id and colocated (docs/scaling.md). Every other table is a
# reference table or stays on the coordinator.
DISTRIBUTED = frozenset({
    "signatures", "signature_tallies", "petition_events",
    "log_queue", "log_leaves", "log_nodes", "log_state", "log_heads", "export_blocks",
})  # fmt: skip

_NAMED = re.compile(r"\b(" + "|".join(sorted(DISTRIBUTED)) + r")\b")


def normalised(sql: str) -> str:
    return " ".join(sql.split())


# The named exceptions (docs/scaling.md, "What the test allows").
#
# A link in an email (confirm, and the receipt mailed when it confirms) carries only the
# signature's public id, so these find the signature by public_id alone: on Citus, a
# lookup on each shard's public_id index until the links carry the petition too.
LINK_LOOKUPS = {
    normalised(sql): name
    for name, sql in (
        ("signature.confirm", signature._CONFIRM),
        ("signature.confirm_many", signature._CONFIRM_MANY),
        ("signature.signature_state", signature._STATE),
        ("signature.confirm_many, the others' states", signature._STATES),
        (
            "signing._mail_receipt",
            "SELECT id, public_id, petition_id, sealed, name, email, language FROM signatures"
            " WHERE public_id = $1",
        ),
    )
}
# The live hub's own upkeep in the background, across petitions by design: where its
# event ids start, and the event retention pass. Not on any request path.
BACKGROUND = {
    normalised("SELECT coalesce(max(id), 0) FROM petition_events"): "events._latest_event_id",
    normalised(
        f"DELETE FROM petition_events WHERE created_at < now() - interval '{events.EVENT_RETENTION}'"
    ): "events retention",
}

_OWN_CONDITIONS = ("Index Cond", "Recheck Cond", "Filter", "TID Cond")
_JOIN_CONDITIONS = ("Hash Cond", "Merge Cond", "Join Filter")
_INSERT = re.compile(r"\bINSERT INTO (\w+)(?: AS \w+)?\s*(\(([^)]*)\))?", re.IGNORECASE)


def plan_violations(plan: dict) -> list[str]:
    """Each scan of a distributed table in an EXPLAIN (VERBOSE, FORMAT JSON) plan whose
    own petition_id is compared with a petition in none of the conditions that apply to
    it (its own, or those of the joins above it)."""
    found: list[str] = []
    others = _aliases_of_other_tables(plan)

    def walk(node: dict, joins: list[str]) -> None:
        relation = node.get("Relation Name")
        if relation in DISTRIBUTED and node["Node Type"] != "ModifyTable":
            alias = node.get("Alias", relation)
            conditions = [node[key] for key in _OWN_CONDITIONS if key in node] + joins
            if not any(names_petition(c, alias, others) for c in conditions):
                shown = "; ".join(conditions) or "no condition"
                found.append(f"{node['Node Type']} on {relation} {alias}: {shown}")
        here = joins + [node[key] for key in _JOIN_CONDITIONS if key in node]
        for child in node.get("Plans", ()):
            walk(child, here + _hashed_probe(child, text))

    text = json.dumps(plan)
    walk(plan, [])
    return found


def _hashed_probe(child: dict, text: str) -> list[str]:
    """A correlated EXISTS (or IN) that the planner runs as a hashed subplan reads its
    table once and matches each outer row by the columns the subplan outputs (which
    EXPLAIN shows only as "hashed SubPlan N"): those columns are its join condition."""
    name = child.get("Subplan Name")
    if child.get("Parent Relationship") != "SubPlan" or not name:
        return []
    if not re.search(rf"\bhashed {re.escape(name)}\b", text):
        return []
    return [f"({column} = hashed probe)" for column in child.get("Output", ())]


def _aliases_of_other_tables(plan: dict) -> set[str]:
    """The aliases of the plan's scans of tables that are not distributed (petitions...)."""
    aliases = set()

    def walk(node: dict) -> None:
        if node.get("Relation Name") and node["Relation Name"] not in DISTRIBUTED:
            aliases.add(node.get("Alias", node["Relation Name"]))
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan)
    return aliases


def names_petition(condition: str, alias: str, others: set[str]) -> bool:
    """`condition` compares `alias`.petition_id with a petition: a parameter, a constant,
    a list of them, a value given row by row, or another distributed table's
    petition_id (a colocated join). A join to another table's column (`p.id` of the
    petitions) says nothing about which petition's rows are read."""
    column = rf"(?<![\w.]){re.escape(alias)}\.petition_id"
    sides = re.findall(column + r"\s*=\s*(?:ANY\s*\(\s*)?\(?([^\s()]+)", condition)
    sides += re.findall(r"([^\s()]+)\s*=\s*" + column, condition)
    return any(side.split(".", 1)[0] not in others for side in sides)


def insert_violations(sql: str) -> list[str]:
    """Each INSERT into a distributed table that does not give petition_id."""
    found = []
    for match in _INSERT.finditer(sql):
        table, columns = match.group(1), match.group(3)
        if table in DISTRIBUTED and (
            columns is None or "petition_id" not in re.split(r"[\s,]+", columns)
        ):
            found.append(f"INSERT INTO {table} without petition_id")
    return found


async def violations(conn: asyncpg.Connection, sql: str, args) -> list[str]:
    """What keeps `sql` (sent with `args`) from naming the petition on every distributed
    table it touches; [] when it does."""
    found = insert_violations(sql)
    explained = await conn.fetchval(
        "EXPLAIN (VERBOSE, COSTS OFF, FORMAT JSON) " + sql, *(args or ())
    )
    plan = json.loads(explained)[0]["Plan"]
    return found + plan_violations(plan)


class SentSQL:
    """Every statement the app's connections send while `on` (asyncpg's query logger,
    added to each connection as it is made)."""

    def __init__(self) -> None:
        self.on = False
        self.statements: dict[str, tuple] = {}  # normalised text -> (text, args)

    def record(self, logged) -> None:
        if self.on:
            self.statements.setdefault(normalised(logged.query), (logged.query, logged.args))

    def seen(self, sql: str) -> bool:
        return normalised(sql) in self.statements


@pytest.fixture
def sent_sql(monkeypatch):
    sent = SentSQL()
    made = asyncpg.Connection.__init__

    def init(self, *args, **kwargs):
        made(self, *args, **kwargs)
        self.add_query_logger(sent.record)

    monkeypatch.setattr(asyncpg.Connection, "__init__", init)
    return sent


FORM = {
    "kind": "individual", "name": "Leyla Ahmadi", "email": "leyla@example.org",
    "country": "SE", "city": "Malmö", "occupation": "Bus driver", "display": "public",
}  # fmt: skip

BAD_STATEMENT = "SELECT count(*) FROM signatures WHERE status = 'verified'"


async def test_every_query_on_the_sign_confirm_list_and_live_paths_names_the_petition(
    settings, conn, sent_sql
):
    petition_id = await make_petition(conn)
    await make_petition(conn, slug="another-one")  # so that a query without it could mix them
    pending = [
        await add_signature(conn, petition_id, status="pending", name=f"Pending {i}")
        for i in range(8)
    ]
    for i in range(6):
        await add_signature(conn, petition_id, name=f"Maria Silva {i}", country="BR")
    app = create_app(settings, run_outbox_worker=False)
    app.state.page_cache.seconds = 0

    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        await wait_until(lambda: app.state.live.connected.is_set(), what="the live listener")
        tokens = app.state.tokens
        sent_sql.on = True

        # The live path: a stream open while signatures are confirmed (the fan-out), and
        # one reconnecting with Last-Event-ID (the replay).
        async with event_stream(base) as stream:
            await stream.next()
            # Confirm, one at a time, through the link.
            link = tokens.signature_link("verify", pending[0]["public_id"])
            assert (await http.get(f"/verify/{link}")).status_code == 200
            seen = await stream.until(lambda e: e.kind == "signature")
        # Confirm, batched (the group commit of concurrent confirmations).
        await asyncio.gather(
            *(
                verify_signature(app.state.db, p["public_id"], app.state.mailer)
                for p in pending[1:6]
            )
        )
        async with event_stream(base, headers={"Last-Event-ID": seen.id}) as stream:
            await stream.until(lambda e: e.kind == "signature" and e.data["name"] == "Pending 5")

        # The sign path: the page and a POST, then concurrent signers (the batched insert).
        page = await http.get("/p/release-them")
        assert page.status_code == 200
        form_token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
        signed = await http.post(
            "/p/release-them/sign", data={**FORM, "form_token": form_token},
            headers={"Origin": base},
        )  # fmt: skip
        assert signed.status_code == 303
        petition = await get_petition(app.state.db, "release-them")
        signers = [
            parse_sign_form({**FORM, "email": f"signer{i}@union.example.org"}, petition)
            for i in range(6)
        ]
        outcomes = await asyncio.gather(
            *(submit_signature(app.state.db, app.state.mailer, petition, s, "198.51.100.7")
              for s in signers)
        )  # fmt: skip
        assert {o.outcome for o in outcomes} == {"stored"}

        # The list path: the page, the JSON with each filter, a search, the next page.
        assert (await http.get("/p/release-them/signatures")).status_code == 200
        for query in ({}, {"kind": "individual"}, {"country": "BR"}, {"q": "mari"}):
            assert (await http.get("/p/release-them/signatures.json", params=query)).is_success
        first = (await http.get("/p/release-them/signatures.json", params={"limit": 2})).json()
        assert (await http.get(first["next"])).status_code == 200
        assert (await http.get("/p/release-them/count.json")).status_code == 200
        assert (await http.get("/p/release-them/badge.svg")).status_code == 200

        # The self-check: a statement that does not name the petition, sent on a pool
        # connection as any path would send it, is caught.
        async with raw_connection(app.state.db) as pooled:
            await pooled.fetchval(BAD_STATEMENT)
        await asyncio.sleep(0.05)  # the logger's callbacks run on the next loop turns
        sent_sql.on = False

    # What was captured covers each path (a capture that missed a connection would
    # otherwise pass by seeing nothing).
    for path, sql in (
        ("sign", signing._INSERT_SIGNATURE),
        ("sign, batched", sign_batch._INSERT),
        ("confirm", signature._CONFIRM),
        ("confirm, batched", signature._CONFIRM_MANY),
    ):
        assert sent_sql.seen(sql), f"the {path} statement was not captured"
    texts = list(sent_sql.statements)
    assert any("FROM petition_events e JOIN signatures s" in t for t in texts), "live events"
    assert any(t.startswith("SELECT public_id, kind") for t in texts), "the list query"
    assert sent_sql.seen(BAD_STATEMENT)

    problems = {}
    allowed = set()
    for key, (sql, args) in sent_sql.statements.items():
        if not _NAMED.search(sql):
            continue
        found = await violations(conn, sql, args)
        if key in LINK_LOOKUPS or key in BACKGROUND:
            allowed.add(LINK_LOOKUPS.get(key) or BACKGROUND[key])
            continue
        if found:
            problems[key] = found
    assert problems.pop(normalised(BAD_STATEMENT), None), "the self-check was not caught"
    # The list stays honest: an exception that names the petition now comes off it.
    for key, name in LINK_LOOKUPS.items():
        if key in sent_sql.statements:
            sql, args = sent_sql.statements[key]
            assert await violations(conn, sql, args), f"{name} names the petition now"
    assert not problems, "statements that do not name the petition:\n" + "\n".join(
        f"{sql}\n    -> {found}" for sql, found in problems.items()
    )
    assert "signature.confirm" in allowed


async def test_the_check_catches_what_citus_could_not_route(conn):
    """The analysis itself, on known statements: a table read without its petition, a
    join to signatures that is not on petition_id, an insert without it; and the
    shapes our paths use pass."""
    await make_petition(conn)
    bad = {
        "SELECT count(*) FROM signatures WHERE status = 'verified'": (),
        "SELECT s.name FROM petition_events e JOIN signatures s ON s.id = e.signature_id"
        " WHERE e.petition_id = $1": (1,),
        "SELECT created_at FROM petition_events WHERE id = $1": (1,),
        "SELECT sum(n) FROM signature_tallies": (),
        "INSERT INTO log_queue (signature_id, counted, reason, hour)"
        " VALUES (1, true, 'verified', now())": (),
        "UPDATE signatures SET updates = false WHERE email_hash = $1": (b"x" * 32,),
        # A join to the petitions on petition_id does not say which petition.
        "UPDATE signatures s SET updates = false FROM petitions p"
        " WHERE p.id = s.petition_id AND s.public_id = $1": (uuid.uuid4(),),
    }
    for sql, args in bad.items():
        assert await violations(conn, sql, args), sql
    good = {
        "SELECT count(*) FROM signatures WHERE petition_id = $1 AND status = 'verified'": (1,),
        "SELECT s.name FROM petition_events e JOIN signatures s"
        " ON s.petition_id = e.petition_id AND s.id = e.signature_id"
        " WHERE e.petition_id = $1": (1,),
        "SELECT sum(n) FROM signature_tallies WHERE petition_id = ANY($1::bigint[])": ([1, 2],),
        "INSERT INTO log_queue (petition_id, signature_id, counted, reason, hour)"
        " VALUES ($1, 1, true, 'verified', now())": (1,),
        "SELECT id FROM petitions WHERE slug = $1": ("release-them",),
    }
    for sql, args in good.items():
        assert await violations(conn, sql, args) == [], sql
    # A correlated EXISTS over many outer rows, which the planner may run as a hashed
    # subplan (one read of the table, rows matched by the subplan's output): it names
    # the petition only if the petition is among the columns matched.
    many = ([1] * 2000, [bytes([i % 256]) * 32 for i in range(2000)])
    per_row = """SELECT EXISTS (SELECT 1 FROM signatures s WHERE {match})
                   FROM unnest($1::bigint[], $2::bytea[]) AS t(petition_id, email_hash)"""
    named = "s.petition_id = t.petition_id AND s.email_hash = t.email_hash"
    assert await violations(conn, per_row.format(match=named), many) == []
    assert await violations(conn, per_row.format(match="s.email_hash = t.email_hash"), many)
    # The exceptions are exactly the link lookups: they name no petition.
    for sql in (signature._STATE,):
        assert await violations(conn, sql, (uuid.uuid4(),))
