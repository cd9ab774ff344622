"""What every admin page shares: rendering with the admin's context, notices, the petition in the path."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..auth import csrf_token
from ..petitions import Petition, get_petition, valid_slug

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
