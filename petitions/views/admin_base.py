"""What every admin page shares: the login and role guard with its CSRF check, rendering
with the admin's context, notices, the petition in the path."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..auth import CSRF_FIELD, ROLES, Admin, csrf_token, csrf_valid, current_admin, end_session
from ..petitions import Petition, get_petition, valid_slug
from .base import posted_from_here, read_form

MAX_FORM_FIELDS = 1000
MAX_FIELD_BYTES = 1024 * 1024

MAX_NOTICES = 5


def render(request: Request, template: str, context: dict, status_code: int = 200) -> Response:
    """An admin page: it knows who is logged in, carries the CSRF token, shows the
    notices left by the previous action, and is never stored by a cache."""
    session = request.session
    notices = session.pop("notices", []) if "notices" in session else []
    response = request.app.state.templates.TemplateResponse(
        request,
        f"admin/{template}",
        {
            "admin": getattr(request.state, "admin", None),
            "csrf_token": csrf_token(session),
            "notices": notices,
            **context,
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def notify(request: Request, message: str, kind: str = "ok") -> None:
    """A notice for the next page this admin sees (after a redirect)."""
    notices = list(request.session.get("notices", []))[-(MAX_NOTICES - 1) :]
    notices.append({"kind": kind, "message": message})
    request.session["notices"] = notices


def see_other(url: object, query: dict[str, str] | None = None) -> RedirectResponse:
    target = str(url)
    if query:
        target += "?" + urlencode(query)
    return RedirectResponse(target, status_code=303)


async def load_petition(request: Request, language: str | None = None) -> Petition:
    """The petition named in the path, whatever its status, or 404."""
    slug = request.path_params["slug"]
    petition = None
    if valid_slug(slug):
        petition = await get_petition(request.app.state.db, slug, language)
    if petition is None:
        raise HTTPException(404, "There is no petition at this address.")
    return petition


def form_list(request: Request, name: str) -> list[str]:
    form = getattr(request.state, "form", None)
    if form is None:
        return []
    return [v for v in form.getlist(name) if isinstance(v, str)]


async def check_post(request: Request) -> FormData:
    """Read a POSTed admin form and refuse it (403) unless it carries the session's CSRF token."""
    if not posted_from_here(request):
        raise HTTPException(403, "This form was sent from another website.")
    form = await read_form(request, MAX_FORM_FIELDS, MAX_FIELD_BYTES)
    if not csrf_valid(request.session, form.get(CSRF_FIELD)):
        raise HTTPException(
            403,
            "This form could not be checked (its security token is missing or out of date). "
            "Go back, reload the page and send it again.",
        )
    return form


def login_url(request: Request) -> str:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    login = request.url_for("admin_login").include_query_params(next=target)
    return str(login)


Handler = Callable[[Request], Awaitable[Response]]


def must_enrol(request: Request, admin: Admin) -> bool:
    settings = request.app.state.settings
    return (
        admin.is_owner
        and not admin.has_totp
        and getattr(settings, "require_totp_for_owners", False)
    )


def admin_page(role: str = "editor", enrolment: bool = False) -> Callable[[Handler], Handler]:
    """Guard a handler: anonymous -> 303 to the login page; a too-small role -> 403;
    a POST without the CSRF token -> 403; an owner who must enrol a second factor
    (REQUIRE_TOTP_FOR_OWNERS) and has not -> 303 to the enrolment page, unless this
    page is one they need for it (`enrolment`). The handler finds
    `request.state.admin` and, for a POST, the checked form in `request.state.form`."""
    if role not in ROLES:
        raise ValueError(role)

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            admin = await current_admin(request)
            if admin is None:
                if "admin" in request.session:  # a session that ended: forget it
                    end_session(request.session)
                return RedirectResponse(login_url(request), status_code=303)
            if role == "owner" and not admin.is_owner:
                raise HTTPException(403, "Only an owner of this site may do this.")
            request.state.admin = admin
            if not enrolment and must_enrol(request, admin):
                notify(request, "Set up your second factor before anything else.", "error")
                return RedirectResponse(str(request.url_for("admin_totp")), status_code=303)
            if request.method == "POST":
                request.state.form = await check_post(request)
            return await handler(request)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded

    return decorate
