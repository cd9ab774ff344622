"""The campaign's admin: logging in and out, the dashboard, changing one's password.

Every page but the login page needs a logged-in admin (`admin_base.admin_page`);
the routes table is in app.py.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .. import audit
from ..admins import AdminError, change_password
from ..auth import (
    LOGIN_PERIOD,
    current_admin,
    end_session,
    log_in,
    refresh_session_key,
    safe_next,
    start_session,
)
from ..dashboard import petition_overviews
from ..db import raw_connection
from .admin_base import admin_page, check_post, notify, render, see_other

MAX_EMAIL = 254
MAX_PASSWORD = 1024


async def login(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"))
    if await current_admin(request) is not None:
        return see_other(next_url or request.url_for("admin_home"))
    if request.method == "GET":
        return render(request, "login.html", {"email": "", "next": next_url})

    form = await check_post(request)
    email = form.get("email") if isinstance(form.get("email"), str) else ""
    password = form.get("password") if isinstance(form.get("password"), str) else ""
    next_url = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    context = {"email": email[:MAX_EMAIL], "next": next_url}
    if not email.strip() or not password:
        return render(
            request, "login.html", {**context, "error": "Give your email and password."}, 400
        )
    client = request.client.host if request.client else None
    outcome = await log_in(
        request.app.state.db, request.app.state.settings.secret_key, email[:MAX_EMAIL + 1],
        password[:MAX_PASSWORD + 1], client,
    )  # fmt: skip
    if outcome.throttled:
        minutes = int(LOGIN_PERIOD.total_seconds() // 60)
        response = render(
            request,
            "login.html",
            {**context, "throttled": True,
             "error": f"Too many failed attempts. For your safety, logging in is paused: "
                      f"try again in {minutes} minutes."},
            429,
        )  # fmt: skip
        response.headers["Retry-After"] = str(int(LOGIN_PERIOD.total_seconds()))
        return response
    if outcome.disabled:
        return render(request, "login.html", {**context, "error": "This account is disabled."}, 403)
    if outcome.admin is None:
        return render(request, "login.html", {**context, "error": "Wrong email or password."}, 400)
    start_session(request.session, outcome.admin, outcome.fingerprint)
    return see_other(next_url or request.url_for("admin_home"))


@admin_page()
async def logout(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "logout.html", {})
    admin = request.state.admin
    async with raw_connection(request.app.state.db) as conn:
        await audit.record(conn, admin.id, "admin.logout")
    end_session(request.session)
    notify(request, "You are logged out.")
    return see_other(request.url_for("admin_login"))


@admin_page()
async def home(request: Request) -> Response:
    petitions = await petition_overviews(request.app.state.db)
    return render(request, "home.html", {"petitions": petitions})


@admin_page()
async def password(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "password.html", {})
    form = request.state.form
    current, new, repeat = (
        form.get(name) if isinstance(form.get(name), str) else ""
        for name in ("current", "new", "repeat")
    )
    admin = request.state.admin
    if new != repeat:
        return render(request, "password.html", {"error": "The two new passwords differ."}, 400)
    try:
        async with raw_connection(request.app.state.db) as conn, conn.transaction():
            new_hash = await change_password(conn, admin.id, current, new)
            await audit.record(conn, admin.id, "admin.password")
    except AdminError as error:
        return render(request, "password.html", {"error": str(error)}, 400)
    refresh_session_key(request.session, request.app.state.settings.secret_key, admin.id, new_hash)
    notify(request, "Your password is changed. Your other sessions have ended.")
    return see_other(request.url_for("admin_home"))
