"""The campaign's admin: logging in and out, the dashboard, changing one's password.

Every page but the login page needs a logged-in admin (`admin_base.admin_page`);
the routes table is in app.py.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .. import audit, devices
from ..admins import AdminError, change_password
from ..auth import (
    LoginOutcome,
    await_second_factor,
    awaiting_second_factor,
    check_second_factor,
    current_admin,
    end_other_sessions,
    end_session,
    log_in,
    refresh_session_key,
    revoke_session,
    safe_next,
    start_session,
)
from ..crypto import cipher_for
from ..dashboard import petition_overviews
from ..db import raw_connection
from ..totp import normalise_code
from .admin_base import admin_page, check_post, notify, render, see_other

MAX_EMAIL = 254
MAX_PASSWORD = 1024


def _wait_text(seconds: int) -> str:
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _slowed_down(request: Request, template: str, context: dict, seconds: int) -> Response:
    response = render(
        request,
        template,
        {**context, "throttled": True,
         "error": f"Too many failed attempts from here. For your safety, logging in from this "
                  f"browser and network is slowed down: try again in {_wait_text(seconds)}. "
                  "Your account is not locked: from a browser you logged in with before, "
                  "you can log in now."},
        429,
    )  # fmt: skip
    response.headers["Retry-After"] = str(seconds)
    return response


async def _logged_in(request: Request, outcome: LoginOutcome, next_url: str | None) -> Response:
    async with raw_connection(request.app.state.db) as conn:
        await start_session(conn, request.session, outcome.admin, outcome.fingerprint)
    response = see_other(next_url or request.url_for("admin_home"))
    settings = request.app.state.settings
    devices.set_cookie(
        response, settings.secret_key, outcome.admin.id, outcome.device,
        https=settings.base_url.startswith("https://"),
    )  # fmt: skip
    return response


async def login(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"))
    if await current_admin(request) is not None:
        return see_other(next_url or request.url_for("admin_home"))
    pending = awaiting_second_factor(request.session)
    if request.method == "GET":
        template = "login_code.html" if pending else "login.html"
        return render(request, template, {"email": "", "next": next_url})

    form = await check_post(request)
    next_url = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    if pending and "restart" in form:
        end_session(request.session)
        return see_other(request.url_for("admin_login"))
    if pending and "code" in form:
        return await _second_factor(request, form, pending, next_url)

    email = form.get("email") if isinstance(form.get("email"), str) else ""
    password = form.get("password") if isinstance(form.get("password"), str) else ""
    context = {"email": email[:MAX_EMAIL], "next": next_url}
    if not email.strip() or not password:
        return render(
            request, "login.html", {**context, "error": "Give your email and password."}, 400
        )
    client = request.client.host if request.client else None
    settings = request.app.state.settings
    outcome = await log_in(
        request.app.state.db, settings.secret_key, email[:MAX_EMAIL + 1],
        password[:MAX_PASSWORD + 1], client, request.cookies.get(devices.DEVICE_COOKIE),
    )  # fmt: skip
    if outcome.throttled:
        return _slowed_down(request, "login.html", context, outcome.retry_after)
    if outcome.disabled:
        return render(request, "login.html", {**context, "error": "This account is disabled."}, 403)
    if outcome.admin is None:
        return render(request, "login.html", {**context, "error": "Wrong email or password."}, 400)
    if outcome.needs_code:
        await_second_factor(request.session, outcome.admin, outcome.fingerprint)
        return render(request, "login_code.html", {"next": next_url})
    return await _logged_in(request, outcome, next_url)


async def _second_factor(
    request: Request, form, pending: tuple[int, str], next_url: str | None
) -> Response:
    admin_id, fingerprint = pending
    settings = request.app.state.settings
    client = request.client.host if request.client else None
    outcome = await check_second_factor(
        request.app.state.db, settings.secret_key, cipher_for(settings), admin_id, fingerprint,
        normalise_code(form.get("code")), client, request.cookies.get(devices.DEVICE_COOKIE),
    )  # fmt: skip
    context = {"next": next_url}
    if outcome.throttled:
        return _slowed_down(request, "login_code.html", context, outcome.retry_after)
    if outcome.admin is not None:
        return await _logged_in(request, outcome, next_url)
    if outcome.needs_code:
        error = "That code is not right, or was already used. Give the code your app shows now."
        return render(request, "login_code.html", {**context, "error": error}, 400)
    end_session(request.session)
    return render(request, "login.html", {"email": "", "next": next_url,
                                          "error": "Log in again."}, 400)  # fmt: skip


@admin_page(enrolment=True)
async def logout(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "logout.html", {})
    admin = request.state.admin
    async with raw_connection(request.app.state.db) as conn:
        await audit.record(conn, admin.id, "admin.logout")
        await revoke_session(conn, request.session)
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
            await end_other_sessions(conn, request.session, admin.id)
    except AdminError as error:
        return render(request, "password.html", {"error": str(error)}, 400)
    refresh_session_key(request.session, request.app.state.settings.secret_key, admin.id, new_hash)
    notify(request, "Your password is changed. Your other sessions have ended.")
    return see_other(request.url_for("admin_home"))
