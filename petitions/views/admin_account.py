"""An admin's own second factor: enrol (secret, otpauth:// URI, QR code, a first code), or remove it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .. import audit, totp
from ..crypto import cipher_for
from ..db import raw_connection
from .admin_base import admin_page, must_enrol, notify, render, see_other

ACTIONS = ("start", "confirm", "remove")


async def _page(request: Request, error: str | None = None, status: int = 200) -> Response:
    admin = request.state.admin
    settings = request.app.state.settings
    context: dict = {"error": error, "required": must_enrol(request, admin)}
    async with raw_connection(request.app.state.db) as conn:
        context["enabled_at"] = await conn.fetchval(
            "SELECT totp_enabled_at FROM admins WHERE id = $1", admin.id
        )
        secret = await totp.pending_secret(conn, cipher_for(settings), admin.id)
    context["owner_must_keep"] = admin.is_owner and settings.require_totp_for_owners
    if secret is not None and context["enabled_at"] is None:
        uri = totp.provisioning_uri(secret, admin.email, totp.issuer_for(settings.base_url))
        context.update(
            secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            uri=uri,
            qr=totp.qr_svg(uri),
        )
    return render(request, "totp.html", context, status)


@admin_page(enrolment=True)
async def totp_page(request: Request) -> Response:
    if request.method == "GET":
        return await _page(request)
    admin = request.state.admin
    settings = request.app.state.settings
    cipher = cipher_for(settings)
    form = request.state.form
    action = form.get("action")
    if action not in ACTIONS:
        return await _page(request, "Choose what to do with the buttons on this page.", 400)
    async with raw_connection(request.app.state.db) as conn, conn.transaction():
        if action == "start":
            if admin.has_totp:
                return await _page(request, "Your second factor is already set up.", 400)
            await totp.start_enrolment(conn, cipher, admin.id)
            return see_other(request.url_for("admin_totp"))
        code = totp.normalise_code(form.get("code"))
        if code is None:
            return await _page(request, "Give the six-digit code your app shows.", 400)
        if action == "confirm":
            if admin.has_totp or not await totp.confirm_enrolment(conn, cipher, admin.id, code):
                return await _page(
                    request,
                    "That code is not right. Check that your app added this secret and that "
                    "the time on your phone is right, then give the code it shows now.",
                    400,
                )
            await audit.record(conn, admin.id, "admin.totp.enrol")
            notify(request, "Your second factor is set up: logging in now asks for a code.")
            return see_other(request.url_for("admin_home"))
        # remove
        if admin.is_owner and settings.require_totp_for_owners:
            return await _page(request, "Owners of this site must keep a second factor.", 403)
        if not await totp.check_code(conn, cipher, admin.id, code):
            return await _page(request, "That code is not right, or was already used.", 400)
        await totp.remove(conn, admin.id)
        await audit.record(conn, admin.id, "admin.totp.remove")
    notify(request, "Your second factor is removed: logging in asks for your password only.")
    return see_other(request.url_for("admin_totp"))
