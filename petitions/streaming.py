"""A long answer read from PostgreSQL a batch at a time, handed to a streaming response.

A background task reads on its own pooled connection (the export's COPY, the
document's batched cursor) and hands the chunks over through a short queue: when the
client reads slowly the queue fills and the reading waits, so a million rows
take as little memory as a thousand. Closing the iterator early (the client
went away) cancels the reading. Used by the CSV export and the delivery document.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from databases import Database

from .db import raw_connection

QUEUE_CHUNKS = 8  # chunks waiting between PostgreSQL and a slow reader, at most
STALLED_READER_SECONDS = 300  # a reader that takes nothing for this long is given up

Write = Callable[[bytes], Awaitable[None]]
Produce = Callable[[asyncpg.Connection, Write], Awaitable[None]]

_DONE = object()


async def stream_from_database(
    db: Database, produce: Produce, stalled_reader_seconds: float = STALLED_READER_SECONDS
) -> AsyncIterator[bytes]:
    """The chunks `produce(conn, write)` writes, as an async iterator for a streaming
    response; `produce` runs in a task of its own on a connection from `db`'s pool."""
    chunks: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    async def hand_over(chunk: bytes) -> None:
        async with asyncio.timeout(stalled_reader_seconds):  # not wait_for: no extra task
            await chunks.put(bytes(chunk))

    async def run() -> None:
        try:
            async with raw_connection(db) as conn:
                await produce(conn, hand_over)
        except Exception as error:  # handed to the reader, which raises it
            await chunks.put(error)
        else:
            await chunks.put(_DONE)

    producer = asyncio.create_task(run())
    try:
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
