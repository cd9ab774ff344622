"""Owners manage the admins: the list, adding one, disabling, enabling, changing roles."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import audit
from ..admins import ROLES, AdminError, add_admin, change_admin, list_admins
from ..db import raw_connection
from ..fields import has_forbidden_characters, parse_row_id
from .admin_base import admin_page, notify, render, see_other

CHANGES = {
    "disable": {"disabled": True},
    "enable": {"disabled": False},
    "make_owner": {"role": "owner"},
    "make_editor": {"role": "editor"},
}


async def _page(request: Request, values: dict, error: str | None = None, status_code: int = 200):
    async with raw_connection(request.app.state.db) as conn:
        admins = await list_admins(conn)
    context = {"admins": admins, "values": values, "error": error, "roles": ROLES}
    return render(request, "users.html", context, status_code)


@admin_page("owner")
async def users(request: Request) -> Response:
    if request.method == "GET":
        return await _page(request, {"role": "editor"})
    form = request.state.form
    values = {k: v if isinstance(v := form.get(k), str) else "" for k in ("email", "role")}
    password = form.get("password") if isinstance(form.get("password"), str) else ""
    if has_forbidden_characters(values["email"]):
        return await _page(request, values, "Not a valid email address.", 400)
    try:
        async with raw_connection(request.app.state.db) as conn, conn.transaction():
            admin_id = await add_admin(conn, values["email"], password, values["role"])
            await audit.record(
                conn, request.state.admin.id, "admin.create",
                details={"admin_id": admin_id, "role": values["role"]},
            )  # fmt: skip
    except AdminError as error:
        return await _page(request, values, str(error), 400)
    notify(request, f"{values['email'].strip()} can now log in as {values['role']}.")
    return see_other(request.url_for("admin_users"))


@admin_page("owner")
async def change_user(request: Request) -> Response:
    admin_id = parse_row_id(request.path_params["id"])
    change = CHANGES.get(request.state.form.get("action"))
    if admin_id is None:
        raise HTTPException(404, "There is no such admin.")
    if change is None:
        raise HTTPException(400, "Choose disable, enable, make_owner or make_editor.")
    try:
        async with raw_connection(request.app.state.db) as conn, conn.transaction():
            changed = await change_admin(conn, request.state.admin.id, admin_id, **change)
            await audit.record(
                conn, request.state.admin.id, "admin.change",
                details={"admin_id": admin_id, **change},
            )  # fmt: skip
    except AdminError as error:
        return await _page(request, {"role": "editor"}, str(error), 400)
    state = "disabled" if changed.disabled else f"an active {changed.role}"
    notify(request, f"{changed.email} is now {state}.")
    return see_other(request.url_for("admin_users"))
