"""The response of one event-stream client, as light as it can be kept.

Starlette's StreamingResponse sends the same bytes and headers, but holds an anyio
task group per response (a cancel scope, two wrapper coroutines, another task): some
5 KiB per open stream, which thousands of clients a process keeps open for hours
multiply. Here the stream runs in the request's own task, and one small task waits
for the client to leave and then calls `on_gone` (which wakes the stream so that it
ends: a server that does not report a closed connection on `send` — uvicorn — would
otherwise never tell it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        on_gone: Callable[[], None],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.chunks = chunks
        self.on_gone = on_gone
        self.status_code = 200
        self.background = None
        self.init_headers(headers)  # no body: no Content-Length, as StreamingResponse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(_until_disconnected(receive))
        watcher.add_done_callback(lambda _: self.on_gone())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # servers of ASGI spec 2.4: the client is gone
            raise ClientDisconnect() from None
        finally:
            watcher.cancel()
            await self.chunks.aclose()


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
