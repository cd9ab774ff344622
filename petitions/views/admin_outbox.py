"""The outbox as an owner sees it: emails waiting, sent and failed; retrying failed ones."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..fields import BadValue, parse_after, parse_ids, parse_row_id
from ..outbox import (
    PURPOSES,
    STATUSES,
    get_message,
    list_outbox,
    retry,
    retry_all_failed,
    status_counts,
)
from .admin_base import admin_page, form_list, notify, render, see_other


@admin_page("owner")
async def outbox(request: Request) -> Response:
    db = request.app.state.db
    if request.method == "POST":
        admin = request.state.admin
        if request.state.form.get("action") == "retry_failed":
            n = await retry_all_failed(db, admin.id)
        else:
            try:
                ids = parse_ids(form_list(request, "ids"))
            except BadValue as error:
                raise HTTPException(400, str(error)) from None
            n = await retry(db, admin.id, ids)
        notify(request, f"{n} email{'s' if n != 1 else ''} will be tried again now.")
        return see_other(request.url_for("admin_outbox"))

    params = request.query_params
    status = params.get("status") or None
    purpose = params.get("purpose") or None
    if status is not None and status not in STATUSES:
        raise HTTPException(400, f"`status` must be one of {', '.join(STATUSES)}.")
    if purpose is not None and purpose not in PURPOSES:
        raise HTTPException(400, f"`purpose` must be one of {', '.join(PURPOSES)}.")
    try:
        after = parse_after(params.get("after"))
    except BadValue as error:
        raise HTTPException(400, str(error)) from None
    rows, next_after = await list_outbox(db, request.app.state.cipher, status, purpose, after)
    query = {k: v for k, v in (("status", status), ("purpose", purpose)) if v}
    url = request.url_for("admin_outbox")
    return render(
        request,
        "outbox.html",
        {
            "rows": rows,
            "counts": await status_counts(db),
            "status": status,
            "purpose": purpose,
            "purposes": PURPOSES,
            "next_url": url.include_query_params(**query, after=next_after) if next_after else None,
            "first_url": url.include_query_params(**query) if after else None,
        },
    )


@admin_page("owner")
async def outbox_message(request: Request) -> Response:
    outbox_id = parse_row_id(request.path_params["id"])
    message = None
    if outbox_id is not None:
        message = await get_message(request.app.state.db, request.app.state.cipher, outbox_id)
    if message is None:
        raise HTTPException(404, "There is no such email in the outbox.")
    return render(request, "outbox_message.html", {"message": message})
