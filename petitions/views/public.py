"""Public pages: the list of petitions, a petition, its signatories, counts, health."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..fields import BadValue
from ..i18n import _, current_language
from ..locales import normalise_tag
from ..pagecache import cached_page
from ..paths import STATIC_DIR
from ..petitions import list_public_petitions
from ..sharing import valid_ref
from ..signatories import MAX_PAGE_SIZE, Cursor, ListFilter, ListTooSlow, list_signatories
from .base import (
    disclosed,
    live_counts,
    load_petition,
    public_read,
    render,
    render_petition_form,
)

PAGE_SIZE = 50


async def home(request: Request) -> Response:
    # Each petition's text in the language asked for (a statement may have languages
    # the interface lacks), else in the interface's language, else its own default.
    wanted = normalise_tag(request.query_params.get("lang")) or current_language()
    petitions = await public_read(request, lambda db: list_public_petitions(db, wanted))
    counts = {p.id: await live_counts(request, p.id) for p in petitions}
    return render(request, "index.html", {"petitions": petitions, "counts": counts})


@cached_page
async def petition_page(request: Request) -> Response:
    petition = await load_petition(request)
    ref = valid_ref(request.query_params.get("ref")) or ""  # kept by the sign form
    return await render_petition_form(request, petition, {"ref": ref}, {}, 200)


def _list_request(request: Request, petition_id: int) -> tuple[ListFilter, Cursor | None, int]:
    params = request.query_params
    secret_key = request.app.state.settings.secret_key
    try:
        filters = ListFilter.parse(params)
        after = None
        if params.get("after"):
            after = Cursor.decode(params["after"], secret_key, petition_id)
        limit_text = params.get("limit", str(PAGE_SIZE))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE_SIZE:
            raise BadValue(
                _("`limit` must be a whole number from 1 to %(max)s.", max=MAX_PAGE_SIZE)
            )
    except BadValue as error:
        raise HTTPException(400, str(error)) from None
    return filters, after, int(limit_text)


def _next_url(request: Request, petition_id: int, cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    after = cursor.encode(request.app.state.settings.secret_key, petition_id)
    return str(request.url.include_query_params(after=after))


async def _list(request, petition_id, filters, after, limit, countries):
    """One page of the list, from a read replica when one may answer (base.public_read)."""

    def read(db):
        return list_signatories(db, petition_id, filters, after, limit, countries)

    try:
        return await public_read(request, read)
    except ListTooSlow:
        raise HTTPException(
            503, _("That search matches too many signatures to list now. Add another word.")
        ) from None


async def signatures_page(request: Request) -> Response:
    petition = await load_petition(request)
    filters, after, limit = _list_request(request, petition.id)
    counts = await live_counts(request, petition.id)
    breakdown = disclosed(request, counts)
    entries, next_cursor = await _list(request, petition.id, filters, after, limit, breakdown.named)
    return render(
        request,
        "signatures.html",
        {
            "petition": petition,
            "counts": counts,
            "breakdown": breakdown,
            "entries": entries,
            "filters": filters,
            "next_url": _next_url(request, petition.id, next_cursor),
            "first_page_url": str(request.url.remove_query_params("after")) if after else None,
        },
    )


async def signatures_json(request: Request) -> Response:
    petition = await load_petition(request)
    filters, after, limit = _list_request(request, petition.id)
    breakdown = disclosed(request, await live_counts(request, petition.id))
    entries, next_cursor = await _list(request, petition.id, filters, after, limit, breakdown.named)
    return JSONResponse(
        {"signatures": entries, "next": _next_url(request, petition.id, next_cursor)},
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=5"},
    )


async def healthz(request: Request) -> Response:
    try:
        await request.app.state.db.fetch_val("SELECT 1")
    except Exception as error:  # any failure to reach the database is "unhealthy"
        return JSONResponse({"status": "unavailable", "database": type(error).__name__}, 503)
    return JSONResponse({"status": "ok", "database": "ok"}, headers={"Cache-Control": "no-store"})


async def favicon(request: Request) -> Response:
    return FileResponse(
        STATIC_DIR / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )
