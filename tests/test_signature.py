"""The signature's lifecycle: the transition table, and the database keeping the same rule."""

from __future__ import annotations

import asyncpg
import pytest

from conftest import add_signature, make_petition
from petitions import signature
from petitions.signature import (
    COUNTED,
    MODERATOR_ACTIONS,
    TRANSITIONS,
    Status,
    allowed_moves,
    counted_sql,
)


def test_every_status_is_reachable_and_every_move_is_named():
    reachable = {signature.INITIAL_STATUS}
    for transition in TRANSITIONS.values():
        reachable |= transition.targets
    assert reachable == set(Status)
    assert signature.INITIAL_STATUS == Status.PENDING


def test_the_moves_of_the_lifecycle():
    moves = allowed_moves()
    # A signature is counted only after its email was confirmed, or a moderator approved it.
    into_counted = {(a, b) for a, b in moves if b in COUNTED and a not in COUNTED}
    assert into_counted == {
        ("pending", "verified"),
        ("held", "verified"),
        ("rejected", "verified"),
        ("invalidated", "verified"),  # reinstated: it counted before its invalidation
    }
    # Withdrawn is final: no move leaves it, and every other status can reach it.
    assert not any(a == Status.WITHDRAWN for a, _ in moves)
    assert {a for a, b in moves if b == Status.WITHDRAWN} == set(Status) - {Status.WITHDRAWN}
    # Nothing moves to where it already is.
    assert all(a != b for a, b in moves)


def test_moderator_actions_are_the_audited_ones():
    assert [t.name for t in MODERATOR_ACTIONS] == ["approve", "reject", "restore"]
    assert TRANSITIONS["approve"].applies_to("held")
    assert not TRANSITIONS["approve"].applies_to("pending")
    assert TRANSITIONS["reject"].applies_to("verified")
    assert not TRANSITIONS["reject"].applies_to("withdrawn")
    assert TRANSITIONS["restore"].applies_to("rejected")
    assert all(t.label for t in MODERATOR_ACTIONS)
    assert not TRANSITIONS["verify"].by_moderator and not TRANSITIONS["withdraw"].by_moderator


def test_counted_sql_names_exactly_the_counted_statuses():
    assert counted_sql("s.status") == "s.status IN ('verified')"


async def test_the_database_allows_exactly_the_same_moves(conn):
    rows = await conn.fetch("SELECT name, from_status, to_status FROM signature_transitions")
    assert {(r["from_status"], r["to_status"]) for r in rows} == allowed_moves()
    for row in rows:
        transition = TRANSITIONS[row["name"]]
        assert row["from_status"] in transition.sources
        assert row["to_status"] in transition.targets


async def test_the_database_counts_the_same_statuses(conn):
    for status in Status:
        assert await conn.fetchval("SELECT counted_status($1)", status.value) == (status in COUNTED)


@pytest.mark.parametrize(
    ("start", "end"),
    [("withdrawn", "verified"), ("pending", "pending_x"), ("verified", "held"),
     ("withdrawn", "pending"), ("held", "pending")],
)  # fmt: skip
async def test_a_stray_update_cannot_make_a_move_the_table_does_not_allow(conn, start, end):
    petition_id = await make_petition(conn)
    row = await add_signature(conn, petition_id, status="pending")
    if start != "pending":
        # Reach `start` through allowed moves.
        path = {"withdrawn": ["withdrawn"], "verified": ["verified"], "held": ["held"]}[start]
        for status in path:
            await conn.execute(
                "UPDATE signatures SET status = $2, verified_at = now() WHERE id = $1",
                row["id"],
                status,
            )
    tally_before = await conn.fetchval(
        "SELECT coalesce(sum(n), 0) FROM signature_tallies WHERE petition_id = $1", petition_id
    )
    with pytest.raises((asyncpg.CheckViolationError,)):
        await conn.execute("UPDATE signatures SET status = $2 WHERE id = $1", row["id"], end)
    assert await conn.fetchval("SELECT status FROM signatures WHERE id = $1", row["id"]) == start
    assert (
        await conn.fetchval(
            "SELECT coalesce(sum(n), 0) FROM signature_tallies WHERE petition_id = $1",
            petition_id,
        )
        == tally_before
    )


async def test_every_allowed_move_is_accepted_by_the_database(conn):
    petition_id = await make_petition(conn)
    for start, end in sorted(allowed_moves()):
        row = await add_signature(conn, petition_id, status=start)
        await conn.execute(
            "UPDATE signatures SET status = $2, verified_at = coalesce(verified_at, now()) "
            "WHERE id = $1",
            row["id"],
            end,
        )
        assert await conn.fetchval("SELECT status FROM signatures WHERE id = $1", row["id"]) == end
    counted = await conn.fetchval(
        "SELECT count(*) FROM signatures WHERE petition_id = $1 AND status = 'verified'",
        petition_id,
    )
    tallied = await conn.fetchval(
        "SELECT coalesce(sum(n), 0) FROM signature_tallies WHERE petition_id = $1", petition_id
    )
    assert tallied == counted


async def test_moderating_a_signature_the_action_does_not_fit_changes_nothing(conn):
    petition_id = await make_petition(conn)
    pending = await add_signature(conn, petition_id, status="pending")
    changed = await signature.moderate(conn, petition_id, None, "approve", [pending["id"]])
    assert changed == 0
    assert await conn.fetchval("SELECT status FROM signatures WHERE id = $1", pending["id"]) == (
        "pending"
    )
    with pytest.raises(ValueError):
        await signature.moderate(conn, petition_id, None, "withdraw", [pending["id"]])


def test_the_retention_moves():
    """Retention's moves (petitions/retention.py): a signature never confirmed is
    deleted; a rejected one is erased, for good but for a withdrawal."""
    purge, erase = TRANSITIONS["purge"], TRANSITIONS["erase"]
    assert purge.sources == {Status.PENDING} and purge.targets == frozenset()
    assert erase.sources == {Status.REJECTED} and erase.targets == {Status.ERASED}
    assert not purge.by_moderator and not erase.by_moderator
    assert Status.ERASED not in COUNTED
    moves = allowed_moves()
    assert {b for a, b in moves if a == Status.ERASED} == {Status.WITHDRAWN}
    assert {a for a, b in moves if b == Status.ERASED} == {Status.REJECTED}


async def test_the_database_refuses_to_bring_back_an_erased_signature(conn):
    petition_id = await make_petition(conn)
    row = await add_signature(conn, petition_id, status="rejected")
    await conn.execute("UPDATE signatures SET status = 'erased' WHERE id = $1", row["id"])
    for status in ("verified", "pending", "rejected"):
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE signatures SET status = $2 WHERE id = $1", row["id"], status)
