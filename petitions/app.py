"""The Starlette application: routes, middleware, error pages, lifespan."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .db import open_database
from .paths import STATIC_DIR
from .security import BodySizeLimit, SecurityHeaders
from .settings import Settings
from .templating import make_templates
from .views import public

log = logging.getLogger(__name__)

ERROR_TITLES = {
    400: "That request could not be understood",
    404: "Page not found",
    405: "Method not allowed",
    413: "Too much data",
    501: "Not available yet",
}


def create_app(settings: Settings) -> Starlette:
    if settings.database_url is None:
        raise ValueError("create_app needs a database URL (start the embedded server first)")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        db = open_database(settings.database_url)
        await db.connect()
        app.state.db = db
        try:
            yield
        finally:
            await db.disconnect()

    routes = [
        Route("/", public.home, name="home"),
        Route("/healthz", public.healthz, name="healthz"),
        Route("/p/{slug}", public.petition_page, name="petition"),
        Route("/p/{slug}/sign", public.sign, methods=["POST"], name="sign"),
        Route("/p/{slug}/signatures", public.signatures_page, name="signatures"),
        Route("/p/{slug}/signatures.json", public.signatures_json, name="signatures_json"),
        Route("/p/{slug}/count.json", public.count_json, name="count_json"),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders), Middleware(BodySizeLimit)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.settings = settings
    app.state.templates = make_templates()
    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json")


async def http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 304 or exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    if _wants_json(request):
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)
    return request.app.state.templates.TemplateResponse(
        request,
        "error.html",
        {"title": ERROR_TITLES.get(exc.status_code, "Something is wrong"), "message": exc.detail},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    if _wants_json(request):
        return JSONResponse({"error": "Internal error"}, 500)
    return request.app.state.templates.TemplateResponse(
        request,
        "error.html",
        {
            "title": "Something went wrong",
            "message": "The error has been logged. Please try again.",
        },
        status_code=500,
    )


def create_app_from_environment() -> Starlette:
    """Factory for `uvicorn --factory` worker processes (see `petitions serve --workers`)."""
    from .settings import load_settings

    return create_app(load_settings())
