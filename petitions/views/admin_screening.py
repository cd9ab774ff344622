"""Owners edit the allow and block lists of networks and email domains (screening.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..db import raw_connection
from ..fields import BadValue, parse_row_id
from ..screening import add_entry, list_entries, remove_entry
from .admin_base import admin_page, notify, render, see_other


async def _page(request: Request, values: dict, error: str | None = None, status_code: int = 200):
    async with raw_connection(request.app.state.db) as conn:
        entries = await list_entries(conn)
    context = {"entries": entries, "values": values, "error": error}
    return render(request, "screening.html", context, status_code)


def _text(form, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@admin_page("owner")
async def screening(request: Request) -> Response:
    if request.method == "GET":
        return await _page(request, {"list": "block"})
    form = request.state.form
    admin_id = request.state.admin.id
    if _text(form, "action") == "remove":
        entry_id = parse_row_id(_text(form, "id"))
        async with raw_connection(request.app.state.db) as conn:
            removed = await remove_entry(conn, admin_id, entry_id) if entry_id else None
        if removed is None:
            notify(request, "That entry was already removed.", "error")
        else:
            notify(request, f"{removed} is no longer on the list.")
        return see_other(request.url_for("admin_screening"))
    values = {name: _text(form, name)[:300] for name in ("list", "entry", "note")}
    try:
        async with raw_connection(request.app.state.db) as conn:
            _, value = await add_entry(
                conn, admin_id, values["list"], _text(form, "entry"), _text(form, "note")
            )
    except BadValue as error:
        return await _page(request, values, str(error), 400)
    notify(request, f"{value} is now on the {values['list']} list.")
    return see_other(request.url_for("admin_screening"))
