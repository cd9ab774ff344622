"""Live fan-out: one encoding per event for every client, bounded queues, slow clients
dropped and told to resync, the per-process client limit."""

from __future__ import annotations

import asyncio
import re
import socket
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from conftest import add_signature, make_petition, wait_until
from livekit import event_stream, serving
from petitions import events
from petitions.app import create_app

SIGNATURE_EVENT = re.compile(rb"id: \d+\nevent: signature\ndata: [^\n]*\n\n")


class RawStream:
    """The bytes of one event stream as they come (de-chunked), read in the background."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.data = bytearray()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for chunk in self.response.aiter_bytes():
            self.data += chunk

    async def until(self, pattern: bytes, what: str) -> re.Match:
        return await wait_until(lambda: re.search(pattern, self.data), what=what)

    def stop(self) -> None:
        self._reader.cancel()


@asynccontextmanager
async def raw_stream(base: str, slug: str = "release-them"):
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=60)) as client:
        async with client.stream("GET", f"{base}/p/{slug}/events") as response:
            assert response.status_code == 200
            stream = RawStream(response)
            try:
                yield stream
            finally:
                stream.stop()


def confirm(conn, row):
    return conn.execute(
        "UPDATE signatures SET status = 'verified', verified_at = now() WHERE id = $1", row["id"]
    )


async def test_every_client_of_a_petition_gets_the_same_bytes(settings, conn):
    petition_id = await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, raw_stream(base) as first, raw_stream(base) as second:
        live = app.state.live
        await wait_until(lambda: live.subscriber_count == 2, what="both streams")
        # Two more subscribers held here, to look at what the hub hands them.
        mine = [live.subscribe(petition_id), live.subscribe(petition_id)]
        row = await add_signature(conn, 1, status="pending", name="Ana Same", country="BR")
        await confirm(conn, row)

        def with_the_event(sub) -> list[bytes]:
            return [chunk for chunk in sub.pending if SIGNATURE_EVENT.search(chunk)]

        await wait_until(lambda: all(map(with_the_event, mine)), what="the event at the hub")
        # One bytes object for all: encoded once, whatever the number of clients.
        (chunk,), (other,) = map(with_the_event, mine)
        assert chunk is other
        assert b"event: count" in chunk  # the pass's count, in the same chunk
        sent = [
            (await stream.until(SIGNATURE_EVENT.pattern, "the signature event"))[0]
            for stream in (first, second)
        ]
        assert sent[0] == sent[1] == SIGNATURE_EVENT.search(chunk)[0]
        assert b'"name":"Ana Same"' in sent[0]
        for sub in mine:
            live.unsubscribe(sub)


def filler(n: int) -> bytes:
    """A large chunk as the hub would hand it out: a comment, then an event with id `n`."""
    return b": " + b"x" * (256 * 1024) + b"\n\n" + b"id: %d\nevent: filler\ndata: {}\n\n" % n


async def test_a_client_that_does_not_read_is_dropped_without_holding_up_the_others(
    settings, conn, monkeypatch
):
    monkeypatch.setattr(events, "QUEUE_SIZE", 4)
    petition_id = await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        live = app.state.live
        # A client that asks for the stream and then never reads a byte.
        address = urlsplit(base)
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect((address.hostname, address.port))
        stalled.sendall(b"GET /p/release-them/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await wait_until(lambda: live.subscriber_count == 1, what="the stalled client")
        (slow,) = live._subscribers[petition_id]
        async with raw_stream(base) as reader:
            await wait_until(lambda: live.subscriber_count == 2, what="the reading client")
            # 256 KiB at a time until the stalled client's socket buffers are full and
            # then QUEUE_SIZE chunks wait for it: it is let go.
            n = 0
            while slow.state == events.OPEN:
                n += 1
                assert n <= 400, "100 MiB sent and the stalled client was never dropped"
                live._send({petition_id: [filler(n)]})
                assert len(slow.pending) <= events.QUEUE_SIZE  # bounded all along
                # The reader has every chunk, each as soon as it was sent.
                await reader.until(b"id: %d\n" % n, f"chunk {n} at the reader")
            assert slow.state == events.BEHIND and not slow.pending  # its backlog freed
            assert live.subscriber_count == 1  # out of the fan-out; the reader is not
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(base + "/metrics")).text
            assert "\npetitions_live_fell_behind 1.0\n" in metrics
            live._send({petition_id: [filler(n + 1)]})
            await reader.until(b"id: %d\n" % (n + 1), "the reader, after the drop")

        # When the stalled client reads again it gets what was in flight, then the
        # notice to resync (an id to resume after, a retry time), and the end.
        stalled.setblocking(False)
        received = bytearray()
        loop = asyncio.get_running_loop()
        while not received.endswith(b"0\r\n\r\n"):
            chunk = await asyncio.wait_for(loop.sock_recv(stalled, 1 << 20), 30)
            assert chunk, "the connection closed before the resync notice"
            received += chunk
        stalled.close()
        notice = re.search(rb"id: (\d+)\nretry: (\d+)\n: resync\n\n\r\n0\r\n\r\n$", received)
        assert notice, bytes(received[-200:])
        assert int(notice[1]) == live.high_water
        assert 1000 <= int(notice[2]) <= 5000
        await wait_until(lambda: live.subscriber_count == 0, what="both released")


async def test_a_client_that_fell_behind_resyncs_from_where_it_was(settings, conn, monkeypatch):
    """What the browser does after the notice: reconnect with the id it was given."""
    await make_petition(conn)
    rows = [await add_signature(conn, 1, status="pending", name=f"Missed {i}") for i in range(2)]
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, raw_stream(base) as stream:
        live = app.state.live
        await wait_until(lambda: live.subscriber_count == 1, what="the stream")
        monkeypatch.setattr(events, "QUEUE_SIZE", 0)  # the next chunk finds its queue full
        await confirm(conn, rows[0])
        notice = await stream.until(rb"id: (\d+)\nretry: \d+\n: resync\n\n", "the notice")
        assert b"Missed 0" not in stream.data  # thrown away with its backlog
        monkeypatch.setattr(events, "QUEUE_SIZE", 256)
        await confirm(conn, rows[1])
        async with event_stream(base, headers={"Last-Event-ID": notice[1].decode()}) as again:
            names = set()
            while names != {"Missed 0", "Missed 1"}:
                event = await again.next()
                if event.kind == "signature":
                    names.add(event.data["name"])
            assert await again.until(lambda e: e.kind == "count" and e.data["count"] == 2)


async def test_the_client_limit_answers_503_with_retry_after(settings, conn, monkeypatch):
    monkeypatch.setattr(events, "MAX_SUBSCRIBERS", 1)
    await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, event_stream(base) as stream:
        assert (await stream.next()).kind == "count"
        async with httpx.AsyncClient() as http:
            refused = await http.get(f"{base}/p/release-them/events")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "30"
        assert "Too many live connections" in refused.text
        row = await add_signature(conn, 1, status="pending", name="Still Live")
        await confirm(conn, row)
        event = await stream.until(lambda e: e.kind == "signature")
        assert event.data["name"] == "Still Live"


def embedding_site(base: str) -> Starlette:
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Union</title>
<link rel="icon" href="data:,"></head><body>
<p><span id="counter" data-petition="release-them" data-base="{base}"></span></p>
<script src="{base}/embed.js" async></script></body></html>"""

    async def home(request):
        return HTMLResponse(page)

    return Starlette(routes=[Route("/", home)])


@pytest.mark.slow  # a real browser, and reconnections a second or more apart
async def test_live_js_and_embed_js_resync_after_falling_behind(
    browser, settings, conn, monkeypatch
):
    await make_petition(conn)
    row = await add_signature(conn, 1, status="pending", name="While Away", country="DE")
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, serving(embedding_site(base)) as site:
        live = app.state.live
        petition = await browser.new_page()
        await petition.goto(base + "/p/release-them")
        embedded = await browser.new_page()
        await embedded.goto(site + "/")
        await embedded.locator("#counter .petition-count").wait_for()
        await wait_until(lambda: live.subscriber_count == 2, what="live.js and embed.js")

        monkeypatch.setattr(events, "QUEUE_SIZE", 0)  # both fall behind at the next event
        await confirm(conn, row)
        await wait_until(lambda: live.subscriber_count == 0, what="both dropped")
        monkeypatch.setattr(events, "QUEUE_SIZE", 256)

        # They reconnect by themselves and come back with the current state.
        await wait_until(lambda: live.subscriber_count == 2, what="both back", seconds=20)
        await petition.wait_for_function(
            "() => document.querySelector('[data-count]').textContent === '1'"
        )
        new = petition.locator("[data-live-list] .is-new .sig-name")
        await new.first.wait_for()
        assert await new.all_text_contents() == ["While Away"]
        await embedded.wait_for_function(
            "() => document.querySelector('#counter .petition-count').textContent === '1'"
        )
