"""CSV export of a petition's signatures, streamed from PostgreSQL with COPY.

PostgreSQL writes the CSV itself (`COPY (SELECT ...) TO STDOUT`), and the rows
flow through in chunks: asyncpg hands each chunk to a sink, the sink waits while
the reader is slower, and asyncpg stops reading from the server meanwhile. So a
million rows take as little memory as a hundred.

Spreadsheets run a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return as a formula ("CSV injection"). Every text cell that does gets a leading
`'`, which spreadsheets show as text; the data itself is not otherwise changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import asyncpg
from databases import Database

from .db import asyncpg_dsn, raw_connection
from .fields import FieldReader
from .signature import Kind, Status

BOM = "\ufeff".encode()
QUEUE_CHUNKS = 8  # chunks waiting between PostgreSQL and a slow reader, at most
STALLED_READER_SECONDS = 300  # a reader that takes nothing for this long is given up


def _neutralised(column: str) -> str:
    return (
        f"CASE WHEN left({column}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
        f"THEN '''' || {column} ELSE {column} END"
    )


def _utc(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


# (header, SQL expression) in file order. Text that a signer typed is neutralised.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("public_id", "s.public_id"),
    ("status", "s.status"),
    ("kind", "s.kind"),
    ("name", _neutralised("s.name")),
    ("email", _neutralised("s.email")),
    ("organisation", _neutralised("s.organisation")),
    ("organisation_type", "s.organisation_type"),
    ("country", "s.country"),
    ("city", _neutralised("s.city")),
    ("occupation", _neutralised("s.occupation")),
    ("website", _neutralised("s.website")),
    ("members", "s.members"),
    ("comment", _neutralised("s.comment")),
    ("display", "s.display"),
    ("updates", "CASE WHEN s.updates THEN 'yes' ELSE 'no' END"),
    ("ref", _neutralised("s.ref")),
    ("language", "s.language"),
    ("statement_version", "v.version"),
    ("created_at", _utc("s.created_at")),
    ("verified_at", _utc("s.verified_at")),
)

HEADER = [name for name, _ in COLUMNS]

_FROM_WHERE = """
  FROM signatures s
  LEFT JOIN statement_versions v ON v.id = s.version_id
 WHERE s.petition_id = $1
   AND ($2::text IS NULL OR s.status = $2)
   AND ($3::text IS NULL OR s.kind = $3)
   AND ($4::text IS NULL OR s.country = $4)
   AND ($5::timestamptz IS NULL OR coalesce(s.verified_at, s.created_at) >= $5)
"""

_EXPORT = (
    "SELECT "
    + ",\n       ".join(f"{sql} AS {name}" for name, sql in COLUMNS)
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


async def copy_csv(
    conn: asyncpg.Connection,
    petition_id: int,
    filters: ExportFilter,
    write: Callable[[bytes], Awaitable[object]],
) -> None:
    """COPY the CSV (header first) to `write`, chunk by chunk, as PostgreSQL produces it."""
    await conn.copy_from_query(
        _EXPORT, *filters.arguments(petition_id), output=write, format="csv", header=True
    )


async def count_rows(conn: asyncpg.Connection, petition_id: int, filters: ExportFilter) -> int:
    return await conn.fetchval("SELECT count(*)" + _FROM_WHERE, *filters.arguments(petition_id))


_DONE = object()


async def stream_csv(
    db: Database, petition_id: int, filters: ExportFilter, bom: bool = False
) -> AsyncIterator[bytes]:
    """The CSV as an async iterator of chunks, for a streaming response.

    A background task runs the COPY on its own pooled connection and hands the
    chunks over through a short queue: when the reader falls behind, the COPY
    waits. Closing the iterator early (the client went away) cancels the COPY.
    """
    chunks: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    async def hand_over(chunk: bytes) -> None:
        async with asyncio.timeout(STALLED_READER_SECONDS):  # not wait_for: no extra task
            await chunks.put(bytes(chunk))

    async def produce() -> None:
        try:
            async with raw_connection(db) as conn:
                await copy_csv(conn, petition_id, filters, hand_over)
        except Exception as error:  # handed to the reader, which raises it
            await chunks.put(error)
        else:
            await chunks.put(_DONE)

    producer = asyncio.create_task(produce())
    try:
        if bom:
            yield BOM
        while True:
            chunk = await chunks.get()
            if chunk is _DONE:
                break
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


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

            await copy_csv(conn, petition_id, filters, write)
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
