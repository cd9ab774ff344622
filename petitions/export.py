"""CSV export of a petition's signatures, streamed in bounded memory.

The signers' personal fields are sealed (personal.py), so the file is written
here rather than by PostgreSQL: a server-side cursor hands over rows a batch
at a time, each batch's blobs are opened and written as CSV, and the chunk goes
to a sink that waits while the reader is slower (and meanwhile no more rows are
fetched). So a million rows take as little memory as a thousand.

Spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return as a formula ("CSV injection"). Every text cell that does gets a leading
`'`, which spreadsheets show as text; the data itself is not otherwise changed.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import asyncpg
from databases import Database

from .crypto import Cipher
from .db import asyncpg_dsn
from .fields import FieldReader
from .personal import personal_of
from .signature import Kind, Status
from .streaming import stream_from_database

BOM = "\ufeff".encode()
STALLED_READER_SECONDS = 300  # a reader that takes nothing for this long is given up
FETCH_ROWS = 500  # rows per fetch from the cursor, and per chunk of the file

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
"""

# The clear columns too: a row not sealed yet (see sealing.py) is read from them.
_EXPORT = (
    "/* petitions export */ SELECT s.public_id, s.sealed, s.name, s.email, s.organisation,"
    " s.organisation_type, s.city, s.occupation, s.website, s.members, s.comment,\n       "
    + ",\n       ".join(f"{run} AS run_{i}" for i, run in enumerate(RUNS) if isinstance(run, str))
    + _FROM_WHERE
    + " ORDER BY s.id"
)


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

    def arguments(self, petition_id: int) -> tuple:
        return (petition_id, self.status, self.kind, self.country, self.since)


def parse_bom(raw: object) -> bool:
    return raw in ("1", "yes", "true", "on")


def file_name(slug: str, filters: ExportFilter, today: datetime) -> str:
    return f"{slug}-signatures-{filters.status or 'all'}-{today:%Y-%m-%d}.csv"


_QUOTE_WHEN = re.compile(r'[,"\r\n]')


def _csv_cell(value) -> str:
    """One cell as PostgreSQL's COPY ... CSV writes it: NULL as nothing, an empty
    text as "", quoted (quotes doubled) when it holds a comma, quote or line break."""
    if value is None:
        return ""
    text = str(value)
    if not text or _QUOTE_WHEN.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def _line(cipher: Cipher, row) -> str:
    personal = personal_of(cipher, row)
    parts = []
    for i, run in enumerate(RUNS):
        if isinstance(run, str):
            parts.append(row[f"run_{i}"])
        else:
            parts.extend(
                _csv_cell(neutralised(personal[f]) if f in NEUTRALISED else personal[f])
                for f in run
            )
    return ",".join(parts)


def csv_chunk(cipher: Cipher, rows, header: bool = False) -> bytes:
    """Rows (opened and neutralised) as CSV lines, each ending in \\n."""
    lines = [",".join(HEADER)] if header else []
    lines.extend(_line(cipher, row) for row in rows)
    return "".join(line + "\n" for line in lines).encode()


async def copy_csv(
    conn: asyncpg.Connection,
    petition_id: int,
    filters: ExportFilter,
    write: Callable[[bytes], Awaitable[object]],
    *,
    cipher: Cipher,
) -> None:
    """Write the CSV (header first) to `write`, a chunk per batch of rows, as a cursor
    reads them (one transaction, a consistent snapshot)."""
    async with conn.transaction(readonly=True):
        cursor = await conn.cursor(_EXPORT, *filters.arguments(petition_id))
        first = True
        while True:
            rows = await cursor.fetch(FETCH_ROWS)
            if not rows and not first:
                break
            await write(csv_chunk(cipher, rows, header=first))
            first = False
            if len(rows) < FETCH_ROWS:
                break


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
