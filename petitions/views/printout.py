"""The delivery document: `GET /p/{slug}/print`, the statement and its public signatories.

The head (statement, target, count) is sent at once; the list follows a batch
at a time as a server-side cursor reads it (printout.py, streaming.py), each
batch rendered with the macros of templates/print.html.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..countries import country_names
from ..i18n import _, current_language, language
from ..log_display import current_head
from ..printout import Group, listed_signatories
from ..streaming import stream_from_database
from .base import disclosed, live_counts, load_petition

# Each document sorts the petition's whole list in the database: a few at a time
# per process, so that repeated requests cannot tie it up.
MAX_AT_ONCE = 2


class Slots:
    """How many documents this process is writing now."""

    def __init__(self, limit: int) -> None:
        self.limit, self.taken = limit, 0

    @property
    def free(self) -> bool:
        return self.taken < self.limit

    def take(self) -> None:
        self.taken += 1

    def give_back(self) -> None:
        self.taken -= 1


def _slots(request: Request) -> Slots:
    state = request.app.state
    if not hasattr(state, "print_slots"):
        state.print_slots = Slots(MAX_AT_ONCE)
    return state.print_slots


class Writer:
    """Renders the document's pieces in its language, keeping track of the open group."""

    def __init__(self, macros, lang: str) -> None:
        self.macros, self.lang = macros, lang
        self.group: Group | None = None
        self.listed = 0

    def _render(self, macro: Callable, *args) -> str:
        with language(self.lang):  # per piece: a streamed body runs in another task
            return str(macro(*args))

    def head(self) -> bytes:
        return self._render(self.macros.head).encode()

    def batch(self, entries: list[tuple[Group, dict]]) -> bytes:
        parts = []
        with language(self.lang):
            for group, run in groupby(entries, key=itemgetter(0)):
                if group != self.group:
                    if self.group is not None:
                        parts.append(str(self.macros.group_end()))
                    if self.group is None or self.group.kind != group.kind:
                        parts.append(str(self.macros.section(group.kind)))
                    parts.append(str(self.macros.group_start(group)))
                    self.group = group
                parts.append(str(self.macros.entries([entry for _, entry in run])))
        self.listed += len(entries)
        return "\n".join(parts).encode()

    def foot(self) -> bytes:
        end = str(self.macros.group_end()) if self.group is not None else ""
        return (end + self._render(self.macros.foot, self.listed)).encode()


async def print_document(request: Request) -> Response:
    petition = await load_petition(request)  # drafts are 404: only published petitions
    lang = current_language()  # chosen by load_petition (locales.py), following the statement
    counts = await live_counts(request, petition.id)
    breakdown = disclosed(request, counts)
    # Named countries in the order of their names in the reader's language.
    named = [code for code in country_names(lang) if breakdown.names(code)]
    settings = request.app.state.settings
    context = {
        "request": request,
        "p": petition,
        "c": counts,
        "lang": lang,
        "breakdown": breakdown,
        "printed_on": datetime.now(UTC),
        "petition_url": f"{settings.base_url}/p/{petition.slug}",
        # The public log's checkpoint, so a reader can later catch a rewrite of the count.
        "log_head": await current_head(request.app.state.db, petition.id),
    }
    template = request.app.state.templates.get_template("print.html")
    with language(lang):
        writer = Writer(template.make_module(context), lang)
    slots = _slots(request)
    if not slots.free:
        raise HTTPException(
            503, _("Other delivery documents are being written. Try again in a minute."),
            headers={"Retry-After": "30"},
        )  # fmt: skip
    db = request.app.state.db

    async def produce(conn, write) -> None:
        async for batch in listed_signatories(conn, petition.id, named):
            await write(writer.batch(batch))

    async def body() -> AsyncIterator[bytes]:
        slots.take()  # here, not before: a body never started holds no slot
        try:
            yield writer.head()
            async for chunk in stream_from_database(db, produce):
                yield chunk
            yield writer.foot()
        finally:
            slots.give_back()

    return StreamingResponse(
        body(),
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", "Content-Language": lang},
    )
