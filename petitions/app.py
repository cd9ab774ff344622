"""The Starlette application: routes, middleware, error pages, lifespan."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from http import HTTPStatus

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import delivery
from .auth import AdminSessions, session_key
from .counter_fast_path import CountFastPath
from .crypto import cipher_for
from .db import open_database, raw_connection
from .db_errors import (
    CANNOT_SAVE_RETRY_AFTER,
    DATABASE_CANNOT_SAVE,
    DATABASE_UNAVAILABLE,
    UNAVAILABLE_RETRY_AFTER,
)
from .events import LiveHub
from .hosts import SiteOrigin
from .i18n import N_, _
from .in_flight import RequestsInFlight
from .locales import ChooseLanguage
from .logs import RequestLog, configure_logging, logged_path
from .mail import Mailer
from .metrics import Metrics, RequestCounter
from .pagecache import PageCache, RecentObjects
from .paths import STATIC_DIR
from .read_your_writes import ReadYourWrites
from .replicas import ReadReplicas
from .sealing import check_data_key
from .security import ADMIN_MAX_BODY_BYTES, BodySizeLimit, SecurityHeaders
from .serving import SHUTDOWN_HOOK
from .settings import Settings
from .share_image import ShareImages
from .templating import make_templates
from .tokens import Tokens
from .views import (
    admin,
    admin_account,
    admin_export,
    admin_free_mail,
    admin_invalidation,
    admin_moderation,
    admin_outbox,
    admin_petitions,
    admin_screening,
    admin_trending,
    admin_updates,
    admin_users,
    embed,
    live,
    printout,
    privacy,
    public,
    sharing,
    signing,
    transparency,
)

log = logging.getLogger(__name__)

# Error pages' titles, translated when shown.
ERROR_TITLES = {
    400: N_("That request could not be understood"),
    404: N_("Page not found"),
    405: N_("Method not allowed"),
    403: N_("Not allowed"),
    413: N_("Too much data"),
    429: N_("Too many attempts"),
    501: N_("Not available yet"),
    503: N_("Busy"),
}
# Starlette's own details are its status phrases ("Not Found"), in English: these say
# the same in the page's language.
DEFAULT_ERROR_MESSAGES = {
    404: N_(
        "There is nothing at this address. Check the link, or start from the list of petitions."
    ),
    405: N_("This address does not take that kind of request."),
}


def _error_message(exc: HTTPException) -> str:
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = None
    if exc.detail != phrase:
        return exc.detail
    title = ERROR_TITLES.get(exc.status_code, N_("Something is wrong"))
    return _(DEFAULT_ERROR_MESSAGES.get(exc.status_code, title))


GET_POST = ["GET", "POST"]

# The campaign's admin: every page but the login needs a logged-in admin
# (`views.admin_base.admin_page`, which also names the role it needs).
admin_routes = [
    Route("/admin", admin.home, name="admin_home"),
    Route("/admin/login", admin.login, methods=GET_POST, name="admin_login"),
    Route("/admin/logout", admin.logout, methods=GET_POST, name="admin_logout"),
    Route("/admin/password", admin.password, methods=GET_POST, name="admin_password"),
    Route("/admin/account/totp", admin_account.totp_page, methods=GET_POST, name="admin_totp"),
    Route("/admin/petitions/new", admin_petitions.new_petition, methods=GET_POST,
          name="admin_new_petition"),
    Route("/admin/petitions/{slug}", admin_petitions.edit_petition, methods=GET_POST,
          name="admin_petition"),
    Route("/admin/petitions/{slug}/dashboard", admin_petitions.petition_dashboard,
          name="admin_petition_dashboard"),
    Route("/admin/petitions/{slug}/signatures", admin_moderation.moderation,
          methods=GET_POST, name="admin_moderation"),
    Route("/admin/petitions/{slug}/export.csv", admin_export.export_csv, name="admin_export"),
    Route("/admin/petitions/{slug}/embed", admin_petitions.embed_help, name="admin_embed"),
    Route("/admin/petitions/{slug}/updates", admin_updates.updates, methods=GET_POST,
          name="admin_updates"),
    Route("/admin/trending", admin_trending.trending_page, name="admin_trending"),
    Route("/admin/invalidations", admin_invalidation.invalidations, methods=GET_POST,
          name="admin_invalidations"),
    # Owners only:
    Route("/admin/outbox", admin_outbox.outbox, methods=GET_POST, name="admin_outbox"),
    Route("/admin/outbox/{id}", admin_outbox.outbox_message, name="admin_outbox_message"),
    Route("/admin/users", admin_users.users, methods=GET_POST, name="admin_users"),
    Route("/admin/free-mail", admin_free_mail.free_mail, methods=GET_POST,
          name="admin_free_mail"),
    Route("/admin/users/{id}", admin_users.change_user, methods=["POST"], name="admin_user"),
    Route("/admin/screening", admin_screening.screening, methods=GET_POST,
          name="admin_screening"),
]  # fmt: skip


def create_app(settings: Settings, run_outbox_worker: bool | None = None) -> Starlette:
    """The app; it also delivers email in the background when `run_outbox_worker`
    (by default `settings.run_outbox_worker`; tests turn it off here)."""
    if run_outbox_worker is None:
        run_outbox_worker = settings.run_outbox_worker
    if settings.database_url is None:
        raise ValueError("create_app needs a database URL (start the embedded server first)")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        db = open_database(settings.database_url, pooler=settings.database_pooler)
        await db.connect()
        app.state.db = db
        try:  # a DATA_KEY that cannot read the signer data stops the start, clearly
            async with raw_connection(db) as conn:
                await check_data_key(conn, app.state.cipher)
        except BaseException:
            await db.disconnect()
            raise
        # LISTEN and the worker keep session state: DATABASE_SESSION_URL, past any pooler.
        live = app.state.live = LiveHub(
            db, settings.session_url, min_group=lambda: app.state.settings.public_min_group
        )
        await live.start()
        if settings.database_replica_urls:  # public reads on replicas (replicas.py)
            app.state.replicas = ReadReplicas(
                db, settings.database_replica_urls, settings.replica_max_lag,
                pooler=settings.database_pooler,
            )  # fmt: skip
            await app.state.replicas.start()
        stop = asyncio.Event()
        worker = worker_db = None
        if run_outbox_worker:
            worker_db = db
            if settings.session_url != settings.database_url:
                worker_db = open_database(settings.session_url, max_size=4)
                await worker_db.connect()
            worker_settings = settings.with_database(settings.session_url)
            worker = asyncio.create_task(
                delivery.run_outbox_worker(worker_db, worker_settings, stop)
            )
        try:
            # The server calls this as it begins to shut down (serving.py): event
            # streams end at once, each with a reconnect hint, instead of being cut off.
            yield {SHUTDOWN_HOOK: live.drain}
        finally:
            stop.set()
            if worker is not None:
                await worker
            await live.stop()
            if app.state.replicas is not None:
                await app.state.replicas.stop()
                app.state.replicas = None
            if worker_db is not None and worker_db is not db:
                await worker_db.disconnect()
            await db.disconnect()

    metrics = Metrics()
    routes = [
        Route("/", public.home, name="home"),
        Route("/healthz", public.healthz, name="healthz"),
        Route("/privacy", privacy.privacy_page, name="privacy"),
        Route("/metrics", metrics.render, name="metrics"),
        Route("/p/{slug}", public.petition_page, name="petition"),
        Route("/p/{slug}/sign", signing.sign, methods=["POST"], name="sign"),
        Route("/p/{slug}/thanks", signing.thanks, name="thanks"),
        Route("/verify/resend", signing.verify_resend, methods=["POST"], name="verify_resend"),
        Route("/verify/{token}", signing.verify, name="verify"),
        Route("/withdraw/{token}", signing.withdraw, methods=["GET", "POST"], name="withdraw"),
        Route(
            "/unsubscribe/{token}",
            signing.unsubscribe_page,
            methods=["GET", "POST"],
            name="unsubscribe",
        ),
        Route("/p/{slug}/signatures", public.signatures_page, name="signatures"),
        Route("/p/{slug}/signatures.json", public.signatures_json, name="signatures_json"),
        Route("/p/{slug}/count.json", live.count_json, name="count_json"),
        Route("/p/{slug}/badge.svg", live.badge_svg, name="badge"),
        Route("/p/{slug}/print", printout.print_document, name="print"),
        Route("/p/{slug}/share.png", sharing.share_image, name="share_image"),
        Route("/p/{slug}/events", live.events, name="events"),
        Route("/p/{slug}/log.json", transparency.log_json, name="log_json"),
        Route("/p/{slug}/log/heads.json", transparency.heads_json, name="log_heads"),
        Route("/p/{slug}/log/entries.json", transparency.entries_json, name="log_entries"),
        Route("/p/{slug}/log/proof.json", transparency.proof_json, name="log_proof"),
        Route(
            "/p/{slug}/log/consistency.json", transparency.consistency_json,
            name="log_consistency",
        ),
        Route(
            "/p/{slug}/receipt", transparency.receipt_page, methods=["GET", "POST"],
            name="receipt",
        ),
        Route("/p/{slug}/embed", embed.embed, methods=["GET"], name="embed"),
        Route("/p/{slug}/embed", signing.sign_embedded, methods=["POST"], name="embed_sign"),
        Route("/embed.js", embed.embed_js, name="embed_js"),
        Route("/texts.json", embed.texts_json, name="texts_json"),
        Route("/favicon.ico", public.favicon, name="favicon"),
        *admin_routes,
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]  # fmt: skip
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            # Outermost: an unknown Host is refused, and from here on every absolute
            # address is BASE_URL's (hosts.py).
            Middleware(SiteOrigin),
            # A count held in memory is answered here, without the rest (it counts
            # itself in the metrics and adds SecurityHeaders' headers).
            Middleware(
                CountFastPath, metrics=metrics, hsts=settings.base_url.startswith("https://")
            ),
            # A request id for each request and its log lines; one access line each.
            Middleware(RequestLog),
            # Requests at once, event streams apart (in_flight.py).
            Middleware(RequestsInFlight),
            Middleware(ChooseLanguage),  # error pages are in the chosen language too
            Middleware(RequestCounter, metrics=metrics, routes=routes),
            Middleware(SecurityHeaders, hsts=settings.base_url.startswith("https://")),
            Middleware(BodySizeLimit, larger={"/admin/": ADMIN_MAX_BODY_BYTES}),
            Middleware(
                AdminSessions,
                secret_key=session_key(settings.secret_key),
                https_only=settings.base_url.startswith("https://"),
            ),
            # With read replicas: who just changed a public page reads the change.
            *([Middleware(ReadYourWrites)] if settings.database_replica_urls else []),
        ],
        exception_handlers={
            HTTPException: http_error,
            ClientDisconnect: client_gone,
            **dict.fromkeys(DATABASE_UNAVAILABLE, database_unavailable),
            **dict.fromkeys(DATABASE_CANNOT_SAVE, database_cannot_save),
            Exception: server_error,
        },
    )
    app.state.settings = settings
    app.state.templates = make_templates()
    app.state.tokens = Tokens(settings.secret_key)
    app.state.mailer = Mailer(settings)
    app.state.cipher = cipher_for(settings)  # signer data at rest (crypto.py)
    app.state.page_cache = PageCache()
    app.state.replicas = None  # ReadReplicas, when DATABASE_REPLICA_URL names some
    app.state.recent_petitions = RecentObjects(app.state.page_cache)
    app.state.share_images = ShareImages()  # link-preview pictures (share_image.py)
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
        {
            "title": _(ERROR_TITLES.get(exc.status_code, N_("Something is wrong"))),
            "message": _error_message(exc),
        },
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
    """The client left mid-request (a closed tab, a load generator stopping): nothing to do."""
    return Response(status_code=400)


async def database_unavailable(request: Request, exc: Exception) -> Response:
    """PostgreSQL restarting or out of reach (db_errors.py): try again in a few seconds."""
    log.warning("database unavailable on %s %s: %r", request.method, logged_path(request), exc)
    return _error_page(
        request,
        503,
        _("Back in a moment"),
        _("The database is restarting or out of reach. Please try again in a few seconds."),
        {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


async def database_cannot_save(request: Request, exc: Exception) -> Response:
    """PostgreSQL cannot store anything (its disk is full, db_errors.py); nothing was."""
    log.error("database cannot save on %s %s: %r", request.method, logged_path(request), exc)
    return _error_page(
        request,
        503,
        _("Back in a moment"),
        _(
            "We cannot save anything just now, so nothing was stored. "
            "Please try again in a few minutes."
        ),
        {"Retry-After": str(CANNOT_SAVE_RETRY_AFTER)},
    )


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, logged_path(request))
    return _error_page(
        request, 500, _("Something went wrong"), _("The error has been logged. Please try again.")
    )


def _error_page(
    request: Request, status: int, title: str, message: str, headers: dict | None = None
) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status, headers=headers)
    return request.app.state.templates.TemplateResponse(
        request,
        "error.html",
        {"title": title, "message": message},
        status_code=status,
        headers=headers,
    )


def create_app_from_environment() -> Starlette:
    """Factory for `uvicorn --factory` worker processes (see `petitions serve --workers`)."""
    from .settings import load_settings

    settings = load_settings()
    # A worker process of its own: the parent's logging setup did not come with it.
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
