"""Bulk invalidation of signatures by network, email domain and time window, with a
preview first, and reinstating (invalidation.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from ..dashboard import petition_overviews
from ..fields import BadValue, parse_row_id
from ..invalidation import invalidate, parse_criteria, preview, recent, reinstate
from ..petitions import get_petition, valid_slug
from .admin_base import admin_page, notify, render, see_other

FIELDS = ("network", "domain", "since", "until", "petition")


def _values(source) -> dict[str, str]:
    return {k: v[:300] if isinstance(v := source.get(k), str) else "" for k in FIELDS}


async def _criteria(request: Request, values: dict[str, str]):
    """The criteria of a form or query, with the petition it names; BadValue else."""
    petition = None
    slug = values["petition"].strip()
    if slug:
        if valid_slug(slug):
            petition = await get_petition(request.app.state.db, slug)
        if petition is None:
            raise BadValue("There is no petition with that address.")
    return parse_criteria(
        values, request.app.state.settings.secret_key, petition.id if petition else None,
        petition.slug if petition else None, datetime.now(UTC),
    )  # fmt: skip


async def _page(request, values, *, criteria=None, counts=None, error=None, status_code=200):
    db = request.app.state.db
    context = {
        "values": values,
        "criteria": criteria,
        "preview": counts,
        "error": error,
        "petitions": await petition_overviews(db),
        "invalidations": await recent(db),
    }
    return render(request, "invalidation.html", context, status_code)


@admin_page()
async def invalidations(request: Request) -> Response:
    if request.method == "POST":
        return await _act(request)
    values = _values(request.query_params)
    if not (values["network"] or values["domain"]):
        return await _page(request, values)
    try:
        criteria = await _criteria(request, values)
    except BadValue as error:
        return await _page(request, values, error=str(error), status_code=400)
    counts = await preview(request.app.state.db, criteria)
    return await _page(request, values, criteria=criteria, counts=counts)


async def _act(request: Request) -> Response:
    form = request.state.form
    admin_id = request.state.admin.id
    back = see_other(request.url_for("admin_invalidations"))
    if form.get("action") == "reinstate":
        invalidation_id = parse_row_id(form.get("id"))
        moved = (
            await reinstate(request.app.state.db, admin_id, invalidation_id)
            if (invalidation_id is not None)
            else None
        )
        if moved is None:
            notify(request, "That invalidation was already reinstated.", "error")
        else:
            notify(request, f"Reinstated {moved} signature(s): each is back where it was.")
        return back
    values = _values(form)
    try:
        criteria = await _criteria(request, values)
        expected = parse_row_id(form.get("expected"))
    except BadValue as error:
        return await _page(request, values, error=str(error), status_code=400)
    _, moved = await invalidate(request.app.state.db, admin_id, criteria)
    message = f"Invalidated {moved} signature(s)."
    if expected is not None and moved != expected:
        message += f" (The preview counted {expected}: some changed status meanwhile.)"
    notify(request, message, "ok" if moved == expected else "error")
    return back
