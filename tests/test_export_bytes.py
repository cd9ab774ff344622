"""The CSV export, byte for byte: every filter and the BOM option give exactly the file
a plain reference implementation writes from the same rows (below, in this test).

The reference is the export's contract, written the slow obvious way: each row read
whole, its personal fields opened with the cipher (or read from the clear columns of
a row not sealed yet), formula-looking personal cells and refs given a leading `'`,
personal cells quoted the way PostgreSQL's COPY ... CSV quotes (NULL as nothing,
an empty text as `""`, quotes doubled when a cell holds a comma, quote or line
break), the other columns written as they are, lines ending in `\\n`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from admin_support import admin_client
from conftest import CIPHER, SECRET, add_signature, make_petition
from petitions.cli import main
from petitions.crypto import DataKeyError, make_cipher, signature_context
from petitions.signature import ERASE_PERSONAL_DATA

URL = "/admin/petitions/release-them/export.csv"

PERSONAL = (
    "name", "email", "organisation", "organisation_type", "city", "occupation", "website",
    "members", "comment",
)  # fmt: skip
FORMULA_SAFE = {"name", "email", "organisation", "city", "occupation", "website", "comment"}


def reference_csv(rows, *, status="verified", kind=None, country=None, since=None, bom=False):
    """The export of `rows` (every signature of the petition, in id order)."""

    def personal_cell(field, value):
        if value is None:
            return ""
        text = str(value)
        if field in FORMULA_SAFE and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
            text = "'" + text
        if text == "" or any(c in text for c in ',"\r\n'):
            return '"' + text.replace('"', '""') + '"'
        return text

    def utc(moment):
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""

    lines = [
        "public_id,status,kind,name,email,organisation,organisation_type,country,city,"
        "occupation,website,members,comment,display,updates,ref,language,"
        "statement_version,created_at,verified_at"
    ]
    for row in rows:
        if status is not None and row["status"] != status:
            continue
        if kind is not None and row["kind"] != kind:
            continue
        if country is not None and row["country"] != country:
            continue
        if since is not None and (row["verified_at"] or row["created_at"]) < since:
            continue
        if row["sealed"] is not None:
            opened = json.loads(CIPHER.open(row["sealed"], signature_context(row["public_id"])))
        else:
            opened = {field: row[field] for field in PERSONAL}
        personal = {field: personal_cell(field, opened.get(field)) for field in PERSONAL}
        ref = row["ref"]
        if ref and ref[0] in "=+-@\t\r":
            ref = "'" + ref
        cells = [
            str(row["public_id"]), row["status"], row["kind"],
            personal["name"], personal["email"], personal["organisation"],
            personal["organisation_type"], row["country"] or "", personal["city"],
            personal["occupation"], personal["website"], personal["members"],
            personal["comment"], row["display"], "yes" if row["updates"] else "no",
            ref or "", row["language"],
            "" if row["version"] is None else str(row["version"]),
            utc(row["created_at"]), utc(row["verified_at"]),
        ]  # fmt: skip
        lines.append(",".join(cells))
    text = "".join(line + "\n" for line in lines)
    return ("\ufeff" if bom else "").encode() + text.encode()


async def every_row(conn, petition_id):
    return await conn.fetch(
        """SELECT s.*, v.version FROM signatures s
             LEFT JOIN statement_versions v ON v.id = s.version_id
            WHERE s.petition_id = $1 ORDER BY s.id""",
        petition_id,
    )


async def varied_signatures(conn) -> int:
    """A petition with a signature of every kind, display and status, and cells that
    test the quoting and the formula neutralisation."""
    pid = await make_petition(conn)
    version = await conn.fetchval("SELECT id FROM statement_versions")
    month_ago = await conn.fetchval("SELECT now() - interval '30 days'")
    add = add_signature
    await add(
        conn,
        pid,
        name="مریم رضایی",
        city="تهران",
        country="IR",
        ref="newsletter",
        updates=True,
        version_id=version,
        language="fa",
    )
    await add(conn, pid, name="王小明", comment='He said "solidarity",\nand left.', country="CN")
    await add(
        conn,
        pid,
        kind="organisation",
        organisation='=HYPERLINK("http://x")',
        name="+1 Caller",
        occupation="-2+3",
        city="@SUM(A1)",
        country="GB",
        comment="\tTabbed",
        ref="-ref",
        members=250,
        organisation_type="trade_union",
        version_id=version,
    )
    await add(
        conn,
        pid,
        kind="organisation",
        display="anonymous",
        organisation="@Union",
        website="=cmd|' /C calc'!A0",
        members=-3,
        country="GB",
    )
    await add(conn, pid, name="\rCarriage", status="pending", comment="one\r\ntwo")
    await add(conn, pid, name="Old Signer", country="FR", verified_at=month_ago)
    await add(
        conn,
        pid,
        name="Initials Person",
        display="initials",
        occupation="nurse",
        city="",
        comment="",
        ref="home_1.b",
    )
    await add(
        conn,
        pid,
        name="Anonymous, Person",
        display="anonymous",
        country=None,
        occupation='"quoted"',
        comment='ends with a quote"',
    )
    await add(
        conn,
        pid,
        kind="organisation",
        display="initials",
        organisation="Syndicat, CGT",
        organisation_type="trade_union",
        members=0,
        name="Zoë Ångström",
        country="FR",
        website="https://example.org/a,b",
        language="fr",
    )
    await add(
        conn,
        pid,
        name=" =leading space",
        occupation="=",
        city="-",
        comment="+",
        country="DE",
        ref="-1",
    )
    await add(conn, pid, name="😀 Emoji ‏RTL‏ e\u0301", comment="a\u2028b\x0bc", country="BR")
    await add(conn, pid, name="Held Signer", status="held", comment="@mention")
    await add(conn, pid, name="Rejected Signer", status="rejected", country="IR")
    await add(conn, pid, name="Invalidated", status="invalidated", country="IR")
    withdrawn = await add(conn, pid, name="Withdrawn Signer", comment="gone")
    erased = await add(conn, pid, name="Erased Signer", status="rejected", ref="-x")
    await conn.execute(
        f"UPDATE signatures s SET status = 'withdrawn', withdrawn_at = now(), "
        f"{ERASE_PERSONAL_DATA} WHERE s.id = $1",
        withdrawn["id"],
    )
    await conn.execute(
        f"UPDATE signatures s SET status = 'erased', {ERASE_PERSONAL_DATA} WHERE s.id = $1",
        erased["id"],
    )
    # A row from before encryption, still in clear (sealing.py seals it at the next start).
    await conn.execute(
        """INSERT INTO signatures (petition_id, kind, status, display, name, email, city,
               organisation, organisation_type, members, comment, country, verified_at, ref,
               email_hash)
           VALUES ($1, 'organisation', 'verified', 'public', '=Clear, Signer',
               'clear@example.org', '', 'Clear Union', 'trade_union', 12,
               e'line\\none "two"', 'GB', now(), 'clear.v2',
               sha256('clear'))""",
        pid,
    )
    return pid


FILTERS = [
    {},
    {"status": "all"},
    *(
        {"status": s} for s in ("pending", "held", "rejected", "withdrawn", "erased", "invalidated")
    ),  # fmt: skip
    {"kind": "individual"},
    {"kind": "organisation", "status": "all"},
    {"country": "ir", "status": "all"},
    {"country": "GB"},
    {"since": "SINCE"},
    {"since": "SINCE", "status": "all", "kind": "individual", "country": "IR"},
    {"bom": "1"},
    {"bom": "1", "status": "all"},
]


async def test_every_filter_gives_the_reference_file_byte_for_byte(app, conn):
    pid = await varied_signatures(conn)
    rows = await every_row(conn, pid)
    since = (datetime.now(UTC) - timedelta(days=7)).replace(second=0, microsecond=0)
    async with admin_client(app, conn, "editor") as editor:
        for params in FILTERS:
            params = {
                k: f"{since:%Y-%m-%dT%H:%M}" if v == "SINCE" else v for k, v in params.items()
            }
            response = await editor.get(URL, params=params)
            assert response.status_code == 200, (params, response.text)
            status = params.get("status", "verified")
            expected = reference_csv(
                rows,
                status=None if status == "all" else status,
                kind=params.get("kind"),
                country=params["country"].upper() if "country" in params else None,
                since=since if "since" in params else None,
                bom="bom" in params,
            )
            assert response.content == expected, params
    everything = reference_csv(rows, status=None)
    assert everything.count(b"\n") > len(rows)  # line breaks inside quoted cells too
    assert b"'=HYPERLINK" in everything and b'"\'=Clear, Signer"' in everything


async def test_the_command_writes_the_reference_file(conn, settings, tmp_path, monkeypatch):
    pid = await varied_signatures(conn)
    rows = await every_row(conn, pid)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    target = tmp_path / "signatures.csv"
    command = ["export", "release-them", "-o", str(target), "--status", "all", "--bom"]
    assert await asyncio.to_thread(main, command) == 0
    # (the command seals the row still in clear as it starts: the same file either way)
    assert target.read_bytes() == reference_csv(rows, status=None, bom=True)


@pytest.mark.slow  # a few thousand rows, long multi-byte cells across many chunks
async def test_long_exports_split_anywhere_give_the_reference_file(app, conn):
    pid = await make_petition(conn)
    for i in range(600):
        await add_signature(
            conn, pid, name=f"کارگر {i} ✊", country="IR",
            comment=("همبستگی، " * (i % 97)) + ('"quoted", ' if i % 5 == 0 else ""),
            city="=Tabriz" if i % 7 == 0 else "تبریز", status="verified" if i % 3 else "pending",
        )  # fmt: skip
    rows = await every_row(conn, pid)
    async with admin_client(app, conn, "editor") as editor:
        body = (await editor.get(URL, params={"status": "all"})).content
        verified = (await editor.get(URL)).content
    assert len(body) > 500_000
    assert body == reference_csv(rows, status=None)
    assert verified == reference_csv(rows)


def test_opening_a_batch_fails_as_opening_one_does():
    context = signature_context(uuid.uuid4())
    good = CIPHER.seal(b'{"name":"A"}', context)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    foreign = make_cipher("another-secret-" + "y" * 32).seal(b"{}", context)
    assert CIPHER.open_many([(good, context)] * 2) == [b'{"name":"A"}'] * 2
    for bad in (tampered, foreign, good[:20], b"\x02" + good[1:]):
        with pytest.raises(DataKeyError) as alone:
            CIPHER.open(bad, context)
        with pytest.raises(DataKeyError) as batch:
            CIPHER.open_many([(good, context), (bad, context)])
        assert str(batch.value) == str(alone.value)
