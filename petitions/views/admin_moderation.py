"""The moderation page of a petition: every signature, filters, and approve, reject, restore."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..fields import BadValue, parse_after, parse_ids
from ..moderation import (
    PAGE_SIZE,
    ModerationFilter,
    describe,
    list_signatures,
    moderate,
    parse_action,
    status_counts,
)
from .admin_base import admin_page, form_list, load_petition, notify, render, see_other


@admin_page()
async def moderation(request: Request) -> Response:
    petition = await load_petition(request)
    if request.method == "POST":
        return await _moderate(request, petition)
    try:
        filters = ModerationFilter.parse(request.query_params)
        after = parse_after(request.query_params.get("after"))
    except BadValue as error:
        raise HTTPException(400, str(error)) from None
    db = request.app.state.db
    rows, next_after = await list_signatures(
        db, petition.id, filters, after, PAGE_SIZE,
        cipher=request.app.state.cipher, secret_key=request.app.state.settings.secret_key,
    )  # fmt: skip
    url = request.url_for("admin_moderation", slug=petition.slug)
    next_url = (
        url.include_query_params(**filters.as_query(), after=next_after) if next_after else None
    )
    return render(
        request,
        "moderation.html",
        {
            "petition": petition,
            "filters": filters,
            "rows": rows,
            "counts": await status_counts(db, petition.id),
            "next_url": next_url,
            "first_url": url.include_query_params(**filters.as_query()) if after else None,
        },
    )


async def _moderate(request: Request, petition) -> Response:
    form = request.state.form
    try:
        filters = ModerationFilter.parse(form)
    except BadValue:
        filters = ModerationFilter()
    try:
        one = form.get("one")
        if isinstance(one, str) and one:
            action_text, _, id_text = one.partition(":")
            action, ids = parse_action(action_text), parse_ids([id_text])
        else:
            action, ids = parse_action(form.get("action")), parse_ids(form_list(request, "ids"))
    except BadValue as error:
        raise HTTPException(400, str(error)) from None
    back = see_other(request.url_for("admin_moderation", slug=petition.slug), filters.as_query())
    if not ids:
        notify(request, "Choose at least one signature first.", "error")
        return back
    changed = await moderate(request.app.state.db, petition.id, request.state.admin.id, action, ids)
    notify(request, describe(action, changed, len(ids)), "ok" if changed == len(ids) else "error")
    return back
