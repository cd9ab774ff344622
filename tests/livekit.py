"""Helpers for live tests: the app on a real HTTP server, and a small SSE reader."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import httpx
import uvicorn

from conftest import free_port, wait_until


@asynccontextmanager
async def serving(app):
    """Serve `app` with uvicorn on a loopback port (its lifespan included); yield the base URL,
    which becomes the app's BASE_URL (its pages' links lead a browser back to this server)."""
    port = free_port()
    if hasattr(app.state, "settings"):  # not for a stand-in foreign site
        app.state.settings = replace(app.state.settings, base_url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_level="warning",
            timeout_graceful_shutdown=2,  # open event streams would otherwise hold it up
        )
    )
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), seconds=30, what="uvicorn to start")
    if not server.started:
        task.result()  # raises whatever stopped it
        raise RuntimeError("uvicorn stopped before it started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Event:
    kind: str
    data: dict
    id: str | None


class EventStream:
    """Reads a text/event-stream response event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, seconds: float = 10.0) -> Event:
        return await asyncio.wait_for(self._next(), seconds)

    async def _next(self) -> Event:
        kind, data, event_id = "message", [], None
        async for line in self._lines:
            if line == "":
                if data:
                    return Event(kind, json.loads("\n".join(data)), event_id)
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
        raise EOFError("the stream ended")

    async def until(self, predicate, seconds: float = 10.0) -> Event:
        """Skip events until one matches."""

        async def find():
            while True:
                event = await self._next()
                if predicate(event):
                    return event

        return await asyncio.wait_for(find(), seconds)


@asynccontextmanager
async def event_stream(base: str, slug: str = "release-them", headers: dict | None = None):
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as client:
        async with client.stream("GET", f"{base}/p/{slug}/events", headers=headers or {}) as r:
            assert r.status_code == 200, r.status_code
            assert r.headers["content-type"].startswith("text/event-stream")
            yield EventStream(r)
