"""Admin pages about email: updates to a petition's signers, and the outbox."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..auth import admin_page
from ..fields import BadValue, FieldErrors, parse_after, parse_ids, parse_row_id
from ..markdown import render_markdown
from ..outbox_admin import (
    PURPOSES,
    STATUSES,
    get_message,
    list_outbox,
    retry,
    retry_all_failed,
    status_counts,
)
from ..updates import (
    DuplicateUpdate,
    confirmation,
    confirmation_valid,
    count_recipients,
    list_updates,
    preview,
    read_update,
    send_test,
    send_update,
)
from .admin_base import form_list, load_petition, notify, render, see_other


@admin_page()
async def updates(request: Request) -> Response:
    petition = await load_petition(request)
    db = request.app.state.db
    context = {
        "petition": petition,
        "recipients": await count_recipients(db, petition.id),
        "sent_updates": await list_updates(db, petition.id),
        "values": {"subject": "", "body": ""},
        "errors": {},
    }
    if request.method == "GET":
        return render(request, "updates.html", context)

    form = request.state.form
    action = form.get("action")
    values = {k: v if isinstance(v := form.get(k), str) else "" for k in ("subject", "body")}
    context["values"] = values
    try:
        draft = read_update(form)
    except FieldErrors as error:
        return render(request, "updates.html", {**context, "errors": error.errors}, 400)

    admin = request.state.admin
    mailer = request.app.state.mailer
    secret_key = request.app.state.settings.secret_key
    message = preview(mailer, petition, draft, admin.email)
    context.update(
        preview={"subject": draft.subject, "html": render_markdown(draft.body), "text": message.text},
        confirmation=confirmation(secret_key, petition.id, draft),
    )  # fmt: skip
    if action == "preview":
        return render(request, "updates.html", context)
    if action == "test":
        await send_test(db, mailer, petition, draft, admin.id, admin.email)
        request.app.state.outbox_wakeup.set()
        context["tested"] = admin.email
        return render(request, "updates.html", context)
    if action != "send":
        return render(
            request, "updates.html", {**context, "errors": {"form": "Unknown action."}}, 400
        )
    if not confirmation_valid(secret_key, petition.id, draft, form.get("confirmation")):
        errors = {"form": "The text changed since it was previewed: check the preview, then send."}
        return render(request, "updates.html", {**context, "errors": errors}, 400)
    try:
        sent = await send_update(db, mailer, petition, draft, admin.id)
    except DuplicateUpdate:
        errors = {"form": "This update (the same subject and text) was already sent."}
        return render(request, "updates.html", {**context, "errors": errors}, 400)
    request.app.state.outbox_wakeup.set()
    notify(
        request,
        f"The update is queued for {sent.recipients:,} signer{'s' if sent.recipients != 1 else ''}.",
    )
    return see_other(request.url_for("admin_updates", slug=petition.slug))


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
        request.app.state.outbox_wakeup.set()
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
    rows, next_after = await list_outbox(db, status, purpose, after)
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
        message = await get_message(request.app.state.db, outbox_id)
    if message is None:
        raise HTTPException(404, "There is no such email in the outbox.")
    return render(request, "outbox_message.html", {"message": message})
