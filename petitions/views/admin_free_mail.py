"""Owners edit the free-mail domains exempt from the per-domain sign limit."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..db import raw_connection
from ..fields import BadValue
from ..free_mail import list_domains, parse_domains, replace_domains
from .admin_base import admin_page, notify, render, see_other


async def _page(request: Request, text: str | None = None, error: str | None = None,
                status_code: int = 200) -> Response:  # fmt: skip
    settings = request.app.state.settings
    if text is None:
        async with raw_connection(request.app.state.db) as conn:
            text = "\n".join(await list_domains(conn))
    context = {
        "text": text,
        "error": error,
        "limit": settings.sign_limit_per_hour,
        "ceiling": settings.sign_ceiling_per_hour,
    }
    return render(request, "free_mail.html", context, status_code)


@admin_page("owner")
async def free_mail(request: Request) -> Response:
    if request.method == "GET":
        return await _page(request)
    text = request.state.form.get("domains")
    text = text if isinstance(text, str) else ""
    try:
        domains = parse_domains(text)
        async with raw_connection(request.app.state.db) as conn:
            added, removed = await replace_domains(conn, request.state.admin.id, domains)
    except BadValue as error:
        return await _page(request, text, str(error), 400)
    notify(request, f"Free-mail domains saved: {len(added)} added, {len(removed)} removed.")
    return see_other(request.url_for("admin_free_mail"))
