"""CSV export of a petition's signatures, streamed in bounded memory.

The signers' personal fields are sealed (personal.py), so PostgreSQL cannot write
the whole file: it writes what it can (every column that is not personal, as
ready CSV text, with the ref's formula neutralisation) and streams it with the
sealed blobs through one `COPY (SELECT ...) TO STDOUT`. Here each batch of that
output (CHUNK_BYTES) has its blobs opened in one go, parsed as one JSON array,
and its personal cells written between PostgreSQL's; the chunk goes to a sink
that waits while the reader is slower, and meanwhile asyncpg stops reading, so
COPY waits too. A million rows take as little memory as a thousand. Where the
time goes: docs/benchmarks.md, "Export: where the time goes".

That costs some 7 µs of Python a row. The usual export (every confirmed
signature, no filter) mostly skips it: the worker keeps the finished lines of a
petition's confirmed signatures in sealed blocks (export_blocks.py), and
`copy_csv` writes each block that matches the rows it sees, and the rest as above.

Spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return as a formula ("CSV injection"). Every text cell that does gets a leading
`'`, which spreadsheets show as text; the data itself is not otherwise changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import TextIO

import asyncpg
from databases import Database

from . import export_blocks
from .crypto import ENCRYPTED_FIELDS, Cipher, signature_context
from .db import asyncpg_dsn
from .fields import FieldReader
from .signature import Kind, Status
from .streaming import stream_from_database

log = logging.getLogger(__name__)

BOM = "\ufeff".encode()
STALLED_READER_SECONDS = 300  # a reader that takes nothing for this long is given up
CHUNK_BYTES = 256 * 1024  # COPY's output turned into CSV at a time (about 350 rows)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: str | None) -> str | None:
    """A cell a spreadsheet would run as a formula, made text with a leading `'`."""
    if value and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _utc(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


def _neutralised_sql(column: str) -> str:
    return (
        f"CASE WHEN left({column}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
        f"THEN '''' || {column} ELSE {column} END"
    )


# (header, where the value comes from) in file order: a personal field (opened from
# the sealed blob, and neutralised) or an SQL expression whose text never needs CSV
# quoting (ids, codes, numbers, times), which PostgreSQL formats.
PERSONAL = "personal"
COLUMNS: tuple[tuple[str, str], ...] = (
    ("public_id", "s.public_id::text"),
    ("status", "s.status"),
    ("kind", "s.kind"),
    ("name", PERSONAL),
    ("email", PERSONAL),
    ("organisation", PERSONAL),
    ("organisation_type", PERSONAL),
    ("country", "s.country"),
    ("city", PERSONAL),
    ("occupation", PERSONAL),
    ("website", PERSONAL),
    ("members", PERSONAL),
    ("comment", PERSONAL),
    ("display", "s.display"),
    ("updates", "CASE WHEN s.updates THEN 'yes' ELSE 'no' END"),
    ("ref", _neutralised_sql("s.ref")),  # a campaign code: letters, digits, `._-`
    ("language", "s.language"),
    ("statement_version", "v.version::text"),
    ("created_at", _utc("s.created_at")),
    ("verified_at", _utc("s.verified_at")),
)
NEUTRALISED = frozenset(
    {"name", "email", "organisation", "city", "occupation", "website", "comment"}
)

HEADER = [name for name, _ in COLUMNS]
# Sealed blocks of finished lines (export_blocks.py) are bound to this: a version
# that writes other columns, or the same ones differently, never uses another's.
# Raise LINE_FORMAT with any change to how a line is written.
LINE_FORMAT = 1
LAYOUT = hashlib.sha256(f"{LINE_FORMAT}:{','.join(HEADER)}".encode()).hexdigest()[:16]


def _runs() -> list[tuple[str, ...] | str]:
    """COLUMNS as runs: a tuple of personal fields, or the SQL that writes a run of the
    other columns as ready CSV text (so Python formats only the personal cells)."""
    runs: list[tuple[str, ...] | str] = []
    for name, sql in COLUMNS:
        last = runs[-1] if runs else None
        if sql == PERSONAL:
            if isinstance(last, tuple):
                runs[-1] = (*last, name)
            else:
                runs.append((name,))
        elif isinstance(last, str):
            runs[-1] = f"{last} || ',' || coalesce({sql}, '')"
        else:
            runs.append(f"coalesce({sql}, '')")
    return runs


RUNS = _runs()

_FROM_WHERE = """
  FROM signatures s
  LEFT JOIN statement_versions v ON v.id = s.version_id
 WHERE s.petition_id = $1
   AND ($2::text IS NULL OR s.status = $2)
   AND ($3::text IS NULL OR s.kind = $3)
   AND ($4::text IS NULL OR s.country = $4)
   AND ($5::timestamptz IS NULL OR coalesce(s.verified_at, s.created_at) >= $5)
   AND ($6::bigint IS NULL OR s.id >= $6)
   AND ($7::bigint IS NULL OR s.id <= $7)
"""


@dataclass(frozen=True)
class ExportFilter:
    status: str | None = Status.VERIFIED  # None: every status
    kind: str | None = None
    country: str | None = None
    since: datetime | None = None  # confirmed (or, if never confirmed, made) at or after

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> ExportFilter:
        """Raises FieldErrors (a BadValue) naming what is wrong."""
        read = FieldReader(params)
        status = read.choice(
            "status", "", ["all", *Status], default=Status.VERIFIED,
            message=f"`status` must be all or one of {', '.join(Status)}.",
        )  # fmt: skip
        kind = read.option("kind", list(Kind), "`kind` must be individual or organisation.")
        country = read.country(
            "country", "`country` must be an ISO 3166-1 alpha-2 code such as IR."
        )
        since = read.moment("since", "`since`")
        read.check()
        return cls(None if status == "all" else status, kind, country, since)

    def arguments(
        self, petition_id: int, first_id: int | None = None, last_id: int | None = None
    ) -> tuple:
        """The values of _FROM_WHERE's parameters; first_id and last_id bound the
        signatures' ids (a run of the export, export_blocks.py)."""
        return (petition_id, self.status, self.kind, self.country, self.since, first_id, last_id)


def parse_bom(raw: object) -> bool:
    return raw in ("1", "yes", "true", "on")


def file_name(slug: str, filters: ExportFilter, today: datetime) -> str:
    return f"{slug}-signatures-{filters.status or 'all'}-{today:%Y-%m-%d}.csv"


# Per row, COPY's text format (tab-separated) brings: the public id and the sealed
# blob as one hex string (the id is the blob's associated data), or NULL for a row
# not sealed yet; for such a row the clear personal columns as hex of their JSON;
# then each run of the other columns, ready CSV text. Hex never needs COPY's
# escapes, and the runs hold no tab, newline or backslash (the schema's CHECKs keep
# ids, codes and refs to letters, digits and `._-`).
_CLEAR_JSON = "json_build_object(" + ", ".join(f"'{f}', s.{f}" for f in ENCRYPTED_FIELDS) + ")"
_EXPORT = (
    "SELECT /* petitions export */ encode(uuid_send(s.public_id) || s.sealed, 'hex'),\n"
    f"       CASE WHEN s.sealed IS NULL THEN encode(convert_to({_CLEAR_JSON}::text, 'UTF8'),"
    " 'hex') END,\n       "
    + ",\n       ".join(run for run in RUNS if isinstance(run, str))
    + _FROM_WHERE
    + " ORDER BY s.id"
)
_NO_VALUE = ""  # COPY's NULL, as asked (a hex column is never empty; an empty run reads the same)
_CONTEXT = signature_context(uuid.UUID(int=0))[:-16]  # + the 16 bytes of the public id

_FORMULA_FIRST = frozenset("".join(FORMULA_STARTS))


def _cell(value) -> str:
    """One cell as PostgreSQL's COPY ... CSV writes it: NULL as nothing, an empty
    text as "", quoted (quotes doubled) when it holds a comma, quote or line break."""
    if value is None:
        return ""
    text = value if value.__class__ is str else str(value)
    if not text or "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text  # (four `in` tests take half the time of a regular expression's search)


def _safe_cell(value) -> str:
    """`_cell(neutralised(value))`, in one call."""
    if value and value.__class__ is str and value[0] in _FORMULA_FIRST:
        value = "'" + value
    elif not value or value.__class__ is not str:
        return _cell(value)
    if "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


PERSONAL_FIELDS = tuple(name for name, sql in COLUMNS if sql == PERSONAL)
_personal = itemgetter(*PERSONAL_FIELDS)  # a blob holds every field (None when empty)


def _line(runs: list[str], values: tuple) -> str:
    """A line of the file: COPY's runs and the personal cells in COLUMNS' order
    (written out: a loop over COLUMNS costs more than the rest of the line)."""
    name, email, organisation, organisation_type, city, occupation, website, members, comment = (
        values
    )
    safe, cell = _safe_cell, _cell
    return ",".join((
        runs[0], safe(name), safe(email), safe(organisation), cell(organisation_type), runs[1],
        safe(city), safe(occupation), safe(website), cell(members), safe(comment), runs[2],
    ))  # fmt: skip


# _line is written for this layout: say so at import if COLUMNS ever changes.
if (
    RUNS[1::2] != [PERSONAL_FIELDS[:4], PERSONAL_FIELDS[4:]]
    or len(RUNS) != 5
    or (NEUTRALISED != set(PERSONAL_FIELDS) - {"organisation_type", "members"})
):
    raise RuntimeError("export.COLUMNS changed: write _line for the new layout")


def _plaintexts(cipher: Cipher, rows: list[list[str]]) -> list[bytes]:
    """Each row's personal fields as JSON: its sealed blob opened (a batch at once),
    or its clear columns (a row not sealed yet)."""
    hexes = [row[0] for row in rows]
    if _NO_VALUE not in hexes:
        raws = list(map(bytes.fromhex, hexes))
        return cipher.open_many([(raw[16:], _CONTEXT + raw[:16]) for raw in raws])
    plaintexts = []
    for row in rows:
        if row[0] != _NO_VALUE:
            raw = bytes.fromhex(row[0])
            plaintexts += cipher.open_many([(raw[16:], _CONTEXT + raw[:16])])
        else:
            plaintexts.append(bytes.fromhex(row[1]))
    return plaintexts


def _opened(cipher: Cipher, rows: list[list[str]]) -> list[tuple]:
    """Each row's personal fields in PERSONAL_FIELDS' order (None when erased),
    parsed as one JSON array per batch."""
    plaintexts = _plaintexts(cipher, rows)
    values = json.loads(b"[" + b",".join(plaintexts) + b"]") if plaintexts else []
    if len(values) != len(plaintexts):  # a blob that is not one JSON value: fail as it does alone
        values = [json.loads(p) for p in plaintexts]
    try:
        return list(map(_personal, values))
    except KeyError:  # a blob without every field: the missing ones are None
        return [tuple(map(v.get, PERSONAL_FIELDS)) for v in values]


def csv_lines(cipher: Cipher, copied: str) -> str:
    """Lines of COPY's text output (each ending in \\n) as CSV lines: the personal
    cells opened, neutralised and quoted, between the runs PostgreSQL wrote."""
    if "\\" in copied:  # a COPY escape: cannot come from this query (see _EXPORT)
        raise ValueError("unexpected escape in the export's COPY output")
    rows = [line.split("\t") for line in copied.split("\n")[:-1]]
    lines = [
        _line(row[2:], values) for row, values in zip(rows, _opened(cipher, rows), strict=True)
    ]
    lines.append("")
    return "\n".join(lines)


async def copy_lines(
    conn: asyncpg.Connection,
    petition_id: int,
    filters: ExportFilter,
    write: Callable[[bytes], Awaitable[object]],
    *,
    cipher: Cipher,
    first_id: int | None = None,
    last_id: int | None = None,
) -> None:
    """Write the CSV lines (no header) of the signatures `filters` selects, with ids
    from first_id to last_id when given, to `write`, a chunk per CHUNK_BYTES or so of
    COPY's output (one statement; COPY waits while `write` does)."""
    pieces: list[bytes] = []  # COPY's output not written yet; the last line may be partial
    waiting = 0

    async def flush() -> None:
        nonlocal waiting
        data = b"".join(pieces)
        end = data.rfind(b"\n") + 1
        pieces[:] = [data[end:]]
        waiting = len(pieces[0])
        if end:
            await write(csv_lines(cipher, data[:end].decode()).encode())

    async def take(piece: bytes) -> None:
        nonlocal waiting
        pieces.append(piece)  # asyncpg hands over a few kB at a time: gather them
        waiting += len(piece)
        if waiting >= CHUNK_BYTES:
            await flush()

    await conn.copy_from_query(
        _EXPORT, *filters.arguments(petition_id, first_id, last_id), output=take, null=_NO_VALUE
    )
    await flush()


async def copy_csv(
    conn: asyncpg.Connection,
    petition_id: int,
    filters: ExportFilter,
    write: Callable[[bytes], Awaitable[object]],
    *,
    cipher: Cipher,
) -> None:
    """Write the CSV (header first) to `write`, in chunks, from one consistent
    snapshot. Every confirmed signature with no other filter (the usual export)
    comes from the petition's sealed blocks of finished lines where they match the
    rows (export_blocks.py), and from the table elsewhere; the bytes are the same."""
    header = (",".join(HEADER) + "\n").encode()

    async def write_after_header(chunk: bytes) -> None:
        nonlocal header
        if chunk:  # the header goes with the first lines, so a failure before them is
            await write(header + chunk)  # still an error page, not a cut file
            header = b""

    unusable: list[int] = []
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        plan = None
        if filters == ExportFilter():
            plan = await export_blocks.plan(conn, petition_id)
        if plan is None:
            await copy_lines(conn, petition_id, filters, write_after_header, cipher=cipher)
        else:
            unusable += plan.unusable
            for piece in plan.pieces:
                lines = None
                if piece.block is not None:
                    lines = await export_blocks.open_block(conn, cipher, petition_id, piece.block)
                    if lines is None:
                        unusable.append(piece.first_id)
                if lines is None:
                    await copy_lines(
                        conn, petition_id, filters, write_after_header, cipher=cipher,
                        first_id=piece.first_id, last_id=piece.last_id,
                    )  # fmt: skip
                else:
                    await write_after_header(lines)
    if header:  # no rows
        await write(header)
    if unusable:  # out of date without being emptied, or sealed under a key now gone
        try:
            await export_blocks.empty(conn, petition_id, unusable)
        except Exception:  # the file is whole; the next export finds them out of date again
            log.warning("could not mark %d out-of-date export blocks", len(unusable))


async def count_rows(conn: asyncpg.Connection, petition_id: int, filters: ExportFilter) -> int:
    return await conn.fetchval("SELECT count(*)" + _FROM_WHERE, *filters.arguments(petition_id))


async def stream_csv(
    db: Database, petition_id: int, filters: ExportFilter, bom: bool = False, *, cipher: Cipher
) -> AsyncIterator[bytes]:
    """The CSV as an async iterator of chunks, for a streaming response (read by a
    background task, a batch at a time, waiting while the reader is slower: streaming.py)."""

    async def produce(conn: asyncpg.Connection, write) -> None:
        await copy_csv(conn, petition_id, filters, write, cipher=cipher)

    if bom:
        yield BOM
    chunks = stream_from_database(db, produce, STALLED_READER_SECONDS)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()


# The command line ---------------------------------------------------------------


class ProgressBar:
    """`rows / total` on a terminal, redrawn at most ten times a second."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total, self.stream, self.width = total, stream, width
        self.rows = 0
        self._drawn_at = 0.0

    def advance(self, rows: int) -> None:
        self.rows = min(self.rows + rows, self.total)
        now = time.monotonic()
        if now - self._drawn_at >= 0.1:
            self._drawn_at = now
            self.draw()

    def draw(self) -> None:
        share = self.rows / self.total if self.total else 1.0
        filled = round(self.width * share)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r  [{bar}] {self.rows:,} / {self.total:,} rows ({share:.0%})")
        self.stream.flush()

    def finish(self) -> None:
        self.rows = self.total
        self.draw()
        self.stream.write("\n")
        self.stream.flush()


async def export_to_file(
    db_url: str,
    slug: str,
    filters: ExportFilter,
    output: Path | None,
    bom: bool = False,
    progress: TextIO | None = None,
    *,
    cipher: Cipher,
) -> int:
    """Write the CSV of petition `slug` to `output` (standard output when None); return
    the number of signatures. A file appears only once complete. LookupError: no petition."""
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        petition_id = await conn.fetchval("SELECT id FROM petitions WHERE slug = $1", slug)
        if petition_id is None:
            raise LookupError(f"no petition with the address {slug!r}")
        total = await count_rows(conn, petition_id, filters)
        bar = ProgressBar(total, progress) if progress is not None else None
        draft = output.with_name(output.name + ".part") if output is not None else None
        out = draft.open("wb") if draft is not None else sys.stdout.buffer
        header_seen = False
        try:
            if bom:
                out.write(BOM)

            async def write(chunk: bytes) -> None:
                nonlocal header_seen
                out.write(chunk)
                if bar is not None:
                    lines = chunk.count(b"\n")
                    if not header_seen and lines:
                        header_seen, lines = True, lines - 1
                    bar.advance(lines)  # a comment with line breaks counts more: close enough

            await copy_csv(conn, petition_id, filters, write, cipher=cipher)
            out.flush()
        except BaseException:
            if draft is not None:
                out.close()
                draft.unlink(missing_ok=True)
            raise
        if draft is not None:
            out.close()
            os.replace(draft, output)
        if bar is not None:
            bar.finish()
        return total
    finally:
        await conn.close()
