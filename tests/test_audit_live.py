"""`petitions audit` against a real `petitions serve`, and an operator rewriting history
in the database behind it: each kind of tampering is caught with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from served import serve, stop

from conftest import add_signature, make_petition
from petitions import merkle, transparency
from petitions.db import open_database
from petitions.log_keys import LogKey, log_key_for, sign_head
from petitions.signing import verify_signature, withdraw_signature

SLUG = "release-them"
pytestmark = pytest.mark.slow


def audit(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "petitions.cli", "audit", *arguments],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip


@pytest.fixture
async def served_log(db_url, settings, conn, tmp_path):
    """A served petition with 600 signatures confirmed, 60 withdrawn, heads signed along
    the way; (address, database, settings)."""
    process, base = serve(db_url, tmp_path)
    db = open_database(db_url)
    await db.connect()
    try:
        pid = await make_petition(conn)
        signers = [await add_signature(conn, pid, status="pending") for _ in range(600)]
        key = log_key_for(settings)
        for start in range(0, 600, 150):
            for s in signers[start : start + 150]:
                await verify_signature(db, s["public_id"])
            for s in signers[start : start + 150 : 10]:
                await withdraw_signature(db, s["public_id"])
            await transparency.sequence(db)
            await transparency.sign_due_heads(db, key, base, 0)
        yield base, db, conn, pid, key
    finally:
        await db.disconnect()
        stop(process)


async def test_an_honest_log_audits_and_every_rewrite_is_caught(served_log, tmp_path):
    base, db, conn, pid, key = served_log
    url = f"{base}/p/{SLUG}"
    saved = tmp_path / "kept"
    honest = audit(url, "--save", str(saved))
    assert honest.returncode == 0, honest.stdout + honest.stderr
    assert "540" in honest.stdout and "660" in honest.stdout  # the count and the size
    assert json.loads((saved / "log.json").read_text())["count"] == 540
    # Offline, from the saved copy, and proving growth since the saved head.
    assert audit("--from", str(saved)).returncode == 0
    assert audit(url, "--since", str(saved / "log.json")).returncode == 0

    # The operator changes one leaf's commitment (the stored hash left alone).
    await conn.execute("ALTER TABLE log_leaves DISABLE TRIGGER log_leaves_append_only")
    await conn.execute(
        "UPDATE log_leaves SET commitment = sha256(commitment) WHERE petition_id = $1"
        " AND leaf_index = 42",
        pid,
    )
    changed = audit(url)
    assert changed.returncode == 1 and "FAILED" in changed.stdout + changed.stderr
    assert "head at size" in changed.stdout + changed.stderr

    # ...and rewrites history consistently: leaf hashes, subtrees and a freshly signed
    # head all agree with the changed leaf. Only someone who kept an older head can tell.
    await _rebuild_and_resign(conn, pid, key, base)
    rewritten = audit(url, "--since", str(saved / "log.json"))
    assert rewritten.returncode == 1, rewritten.stdout + rewritten.stderr
    out = rewritten.stdout + rewritten.stderr
    assert "FAILED" in out


async def test_a_removed_leaf_and_a_swapped_pair_are_named(served_log):
    base, db, conn, pid, key = served_log
    url = f"{base}/p/{SLUG}"
    await conn.execute("ALTER TABLE log_leaves DISABLE TRIGGER log_leaves_append_only")
    await _swap(conn, pid, 100, 101)
    swapped = audit(url)
    out = swapped.stdout + swapped.stderr
    # The first head covering them (heads were signed at 165, 330, 495 and 660 leaves).
    assert swapped.returncode == 1 and "FAILED: head at size 165" in out, out
    await _swap(conn, pid, 100, 101)
    assert audit(url).returncode == 0  # put back: the log checks again

    await conn.execute("DELETE FROM log_leaves WHERE petition_id = $1 AND leaf_index = 300", pid)
    removed = audit(url)
    out = removed.stdout + removed.stderr
    assert removed.returncode == 1 and "leaf 300" in out, out


async def test_a_forked_head_is_caught(served_log, tmp_path):
    """The operator signs a second head for a size already signed, over another root: a
    view shown to some visitors only. Whoever holds both sees the fork."""
    base, db, conn, pid, key = served_log
    url = f"{base}/p/{SLUG}"
    saved = tmp_path / "kept"
    assert audit(url, "--save", str(saved)).returncode == 0
    head = json.loads((saved / "log.json").read_text())
    other_root = merkle.leaf_hash(b"another history")
    fork = sign_head(
        key, head["origin"], head["size"], other_root, head["count"], head["time"]
    ).as_json()
    forked = tmp_path / "fork.json"
    forked.write_text(json.dumps(fork))
    result = audit(url, "--since", str(forked))
    assert result.returncode == 1, result.stdout + result.stderr
    # A short checkpoint from an email works the same way.
    short = tmp_path / "short.txt"
    short.write_text(f"{head['size']}:{other_root.hex()[:16]}\n")
    assert audit(url, "--since", str(short)).returncode == 1
    short.write_text(head["short"] + "\n")
    assert audit(url, "--since", str(short)).returncode == 0


async def _swap(conn, pid: int, first: int, second: int) -> None:
    async with conn.transaction():
        for old, new in ((first, 10**9), (second, first), (10**9, second)):
            await conn.execute(
                "UPDATE log_leaves SET leaf_index = $3 WHERE petition_id = $1 AND leaf_index = $2",
                pid, old, new,
            )  # fmt: skip


async def _rebuild_and_resign(conn, pid: int, key: LogKey, base: str) -> None:
    """Recompute every stored hash from the (changed) leaves and sign a new head over
    them, as a dishonest operator holding the key could."""
    from petitions.log_format import Leaf
    from petitions.log_keys import hour_text

    rows = await conn.fetch(
        "SELECT * FROM log_leaves WHERE petition_id = $1 ORDER BY leaf_index", pid
    )
    await conn.execute("ALTER TABLE log_nodes DISABLE TRIGGER log_nodes_append_only")
    await conn.execute("ALTER TABLE log_heads DISABLE TRIGGER log_heads_append_only")
    hashes = []
    for r in rows:
        leaf = Leaf(
            r["leaf_index"], r["kind"], hour_text(r["hour"]), r["version"], r["commitment"],
            r["target"], r["reason"],
        )  # fmt: skip
        hashes.append(merkle.leaf_hash(leaf.data()))
        await conn.execute(
            "UPDATE log_leaves SET leaf_hash = $3 WHERE petition_id = $1 AND leaf_index = $2",
            pid, r["leaf_index"], hashes[-1],
        )  # fmt: skip
    await conn.execute("DELETE FROM log_nodes WHERE petition_id = $1", pid)
    await conn.execute("DELETE FROM log_heads WHERE petition_id = $1", pid)
    for level in range(8, len(hashes).bit_length()):
        width = 1 << level
        for index in range(len(hashes) // width):
            await conn.execute(
                "INSERT INTO log_nodes VALUES ($1, $2, $3, $4)",
                pid, level, index, merkle.root_of(hashes[index * width : (index + 1) * width]),
            )  # fmt: skip
    count = await conn.fetchval("SELECT count FROM log_state WHERE petition_id = $1", pid)
    head = sign_head(
        key, f"{base}/p/{SLUG}", len(hashes), merkle.root_of(hashes), count, "2026-01-01T00Z"
    )
    await conn.execute(
        """INSERT INTO log_heads (petition_id, size, root_hash, count, origin, time, key_id,
                                  public_key, signature)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        pid, head.size, head.root, head.count, head.origin, head.time, head.key_id,
        head.public_key, head.signature,
    )  # fmt: skip
