"""What every page handler shares: rendering, the petition in the path, its live counts,
reading a posted form, and the same-origin check. Views import this, never each other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from databases import Database
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..clients import same_origin
from ..counters import CountSnapshot
from ..disclosure import PublicBreakdown, public_breakdown
from ..i18n import _
from ..locales import choose_language, likely_text_language, use_choice
from ..log_display import current_head
from ..petitions import Counts, Petition, get_counts, get_petition, statement_history
from ..read_your_writes import written_position
from ..signatories import list_signatories

# Answers any site may read (counters, embeds, the transparency log).
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag"}
MAX_FORM_FIELDS = 40
MAX_FIELD_BYTES = 8 * 1024
READ_REPLICA = "read_replica"  # in the request's state: the replica it reads from
T = TypeVar("T")


def render(request: Request, template: str, context: dict, status_code: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(
        request, template, context, status_code=status_code
    )


async def load_petition(request: Request) -> Petition:
    """The petition named in the path, or a 404 (drafts are not public); its statement
    in the language chosen for this request (locales.choose_language), which the
    interface then follows for the rest of the request."""
    slug = request.path_params["slug"]
    requested = request.query_params.get("lang")
    accept = request.headers.get("accept-language")
    petition = await _recent_petition(request, slug, likely_text_language(requested, accept))
    if petition is None or not petition.is_public:
        raise HTTPException(404, _("There is no petition at this address."))
    choice = choose_language(requested, accept, petition.languages, petition.default_language)
    if choice.text != petition.language:
        petition = await _recent_petition(request, slug, choice.text) or petition
    use_choice(request.scope.setdefault("state", {}), choice)
    return petition


async def _recent_petition(request: Request, slug: str, language: str | None):
    """The petition as read at most the page cache's seconds ago: public pages and the
    sign form's POST read it on every request. (Whether it still takes signatures is
    decided again by the statement that stores one.)"""
    recent = request.app.state.recent_petitions
    petition = recent.get((slug, language))
    if petition is None:
        petition = await get_petition(request.app.state.db, slug, language)
        if petition is not None:
            recent.put((slug, language), petition)
    return petition


async def petition_snapshot(request: Request) -> CountSnapshot:
    """The petition's summary and counts from this process's memory (404 for drafts)."""
    snapshot = await request.app.state.live.counts.by_slug(request.path_params["slug"])
    if snapshot is None or not snapshot.petition.is_public:
        raise HTTPException(404, _("There is no petition at this address."))
    return snapshot


def cache_headers(etag: str, max_age: int) -> dict[str, str]:
    return {
        **CORS,
        "ETag": etag,
        "Cache-Control": f"public, max-age={max_age}, stale-while-revalidate={max_age * 3}",
    }


def cached_response(
    request: Request, body: bytes, etag: str, media_type: str, max_age: int
) -> Response:
    """`body` for anyone to cache for `max_age` seconds, or 304 when they have it."""
    headers = cache_headers(etag, max_age)
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


async def live_counts(request: Request, petition_id: int) -> Counts:
    """Counts from this process's memory (kept fresh by live events)."""
    snapshot = await request.app.state.live.counts.by_id(petition_id)
    return snapshot.counts if snapshot else await get_counts(request.app.state.db, petition_id)


async def public_read(request: Request, read: Callable[[Database], Awaitable[T]]) -> T:
    """`read(db)`, a plain read for a public page, on a read replica when one may
    answer (replicas.py), else on the primary. Only for a GET (a form shown again after
    a POST reads the primary); one replica for the whole request; a visitor who just
    changed something reads a replica that has the change, or the primary
    (read_your_writes.py)."""
    replicas = request.app.state.replicas
    if replicas is None or request.method not in ("GET", "HEAD"):
        return await read(request.app.state.db)
    state = request.scope.setdefault("state", {})
    if READ_REPLICA not in state:
        state[READ_REPLICA] = replicas.choose(written_position(request))
    result, state[READ_REPLICA] = await replicas.read(state[READ_REPLICA], read)
    return result


def disclosed(request: Request, counts: Counts) -> PublicBreakdown:
    """What the public may see of these counts by country (PUBLIC_MIN_GROUP applied):
    every public page, list and filter names countries through this."""
    return public_breakdown(counts, request.app.state.settings.public_min_group)


def posted_from_here(request: Request) -> bool:
    """A browser's POST names the page it came from; another site's page may not post here."""
    headers = request.headers
    return same_origin(
        headers.get("origin") or headers.get("referer"),
        f"{request.url.scheme}://{request.url.netloc}",
        request.app.state.settings.base_url,
    )


async def read_form(
    request: Request, max_fields: int = MAX_FORM_FIELDS, max_field_bytes: int = MAX_FIELD_BYTES
) -> FormData:
    """A posted form, bounded: no files, at most `max_fields` fields of `max_field_bytes`."""
    return await request.form(max_files=0, max_fields=max_fields, max_part_size=max_field_bytes)


async def render_petition_form(
    request: Request,
    petition: Petition,
    form: dict,
    errors: dict,
    status_code: int,
    template: str = "petition.html",
    **extra,
) -> Response:
    """The petition page (or its embed); after a bad submission, with what was typed
    and a message per field."""
    full_page = template == "petition.html"
    counts = await live_counts(request, petition.id)
    breakdown = disclosed(request, counts)
    latest = []
    if full_page:
        latest, _ = await public_read(
            request,
            lambda db: list_signatories(db, petition.id, limit=10, countries=breakdown.named),
        )
    context = {
        "petition": petition,
        "counts": counts,
        "breakdown": breakdown,
        "latest": latest,
        "form": form,
        "errors": errors,
        "form_token": request.app.state.tokens.form_token(petition.slug),
        **extra,
    }
    if full_page and petition.version > 1:
        context["versions"] = await public_read(
            request, lambda db: statement_history(db, petition.id)
        )
    if full_page:  # "How to check this count": the latest checkpoint of the public log
        context["log_head"] = await public_read(request, lambda db: current_head(db, petition.id))
    return render(request, template, context, status_code)
