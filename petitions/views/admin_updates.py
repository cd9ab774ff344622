"""Updates to a petition's signers: write, preview, test on yourself, send."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..fields import FieldErrors
from ..log_display import current_head
from ..markdown import render_markdown
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
from .admin_base import admin_page, load_petition, notify, render, see_other


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
    log_head = await current_head(db, petition.id)
    message = preview(mailer, petition, draft, admin.email, log_head)
    context.update(
        preview={"subject": draft.subject, "html": render_markdown(draft.body), "text": message.text},
        confirmation=confirmation(secret_key, petition.id, draft),
    )  # fmt: skip
    if action == "preview":
        return render(request, "updates.html", context)
    if action == "test":
        await send_test(db, mailer, petition, draft, admin.id, admin.email)
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
    notify(
        request,
        f"The update is queued for {sent.recipients:,} signer{'s' if sent.recipients != 1 else ''}.",
    )
    return see_other(request.url_for("admin_updates", slug=petition.slug))
