"""Admin pages of a petition: a new one, editing it (settings, status, statement), its dashboard."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..audit import recent_for_petition
from ..charts import daily_columns, horizontal_bars, stacked_bar
from ..countries import country_name
from ..dashboard import petition_stats, top_countries
from ..db import raw_connection
from ..editing import (
    STATUS_CHANGES,
    EditError,
    FieldErrors,
    change_status,
    create_petition_from,
    current_statement,
    petition_row,
    read_language,
    read_settings,
    read_statement,
    save_statement,
    settings_values,
    statement_values,
    update_settings,
)
from ..embedding import COUNTER_HEIGHT, FORM_HEIGHT, iframe_snippet
from ..log_display import current_head
from ..markdown import render_markdown
from ..petitions import Petition, get_counts, statement_history
from .admin_base import admin_page, load_petition, notify, render, see_other

TEXT_FIELDS = ("title", "summary", "target", "body", "demands", "note")
SETTINGS_FIELDS = (
    "slug", "goal", "closes_at", "accepts_individuals", "accepts_organisations",
    "moderate_organisations", "default_language", "dangerous_countries",
)  # fmt: skip


def _values(form, names) -> dict[str, str]:
    return {n: v if isinstance(v := form.get(n), str) else "" for n in names}


@admin_page()
async def new_petition(request: Request) -> Response:
    if request.method == "GET":
        values = {"accepts_individuals": "1", "accepts_organisations": "1",
                  "default_language": "en"}  # fmt: skip
        return render(request, "petition_new.html", {"values": values, "errors": {}})

    form = request.state.form
    values = _values(form, SETTINGS_FIELDS + TEXT_FIELDS)
    errors: dict[str, str] = {}
    settings = text = None
    try:
        settings = read_settings(form)
    except FieldErrors as error:
        errors.update(error.errors)
    try:
        text, _ = read_statement(form)
    except FieldErrors as error:
        errors.update(error.errors)
    preview = render_markdown(text.body) if text else None
    if errors or form.get("action") == "preview":
        context = {"values": values, "errors": errors, "preview": preview}
        return render(request, "petition_new.html", context, 400 if errors else 200)
    try:
        async with raw_connection(request.app.state.db) as conn:
            await create_petition_from(conn, settings, text, request.state.admin.id)
    except FieldErrors as error:
        context = {"values": values, "errors": error.errors, "preview": preview}
        return render(request, "petition_new.html", context, 400)
    notify(request, "The petition is created as a draft. Publish it when it is ready.")
    return see_other(request.url_for("admin_petition", slug=settings.slug))


async def _edit_page(
    request: Request,
    petition: Petition,
    *,
    language: str | None = None,
    settings: dict | None = None,
    text: dict | None = None,
    errors: dict | None = None,
    preview: str | None = None,
    status_code: int = 200,
) -> Response:
    db = request.app.state.db
    async with raw_connection(db) as conn:
        row = await petition_row(conn, petition.id)
        statement = await current_statement(conn, petition.id)
    language = language or row["default_language"]
    existing = statement.texts.get(language)
    if text is None:
        text = statement_values(existing) if existing else {}
    context = {
        "petition": petition,
        "row": row,
        "settings": settings or settings_values(row),
        "statement": statement,
        "language": language,
        "new_translation": existing is None,
        "text": text,
        "errors": errors or {},
        "preview": preview,
        "status_changes": STATUS_CHANGES[row["status"]],
        "history": await statement_history(db, petition.id),
    }
    return render(request, "petition_edit.html", context, status_code)


@admin_page()
async def edit_petition(request: Request) -> Response:
    petition = await load_petition(request)
    if request.method == "GET":
        language = read_language(request.query_params.get("lang"))
        return await _edit_page(request, petition, language=language)

    form = request.state.form
    action = form.get("action")
    admin = request.state.admin
    db = request.app.state.db
    edit_url = request.url_for("admin_petition", slug=petition.slug)

    if action == "settings":
        values = _values(form, SETTINGS_FIELDS)
        async with raw_connection(db) as conn:
            languages = (await current_statement(conn, petition.id)).texts.keys()
        try:
            settings = read_settings(form, languages)
            async with raw_connection(db) as conn:
                changed = await update_settings(conn, petition.id, settings, admin.id)
        except FieldErrors as error:
            return await _edit_page(
                request, petition, settings=values, errors=error.errors, status_code=400
            )
        notify(request, "Settings saved." if changed else "Nothing changed.")
        return see_other(request.url_for("admin_petition", slug=settings.slug))

    if action in ("open", "closed", "archived"):
        try:
            async with raw_connection(db) as conn:
                await change_status(conn, petition.id, action, admin.id)
        except EditError as error:
            return await _edit_page(
                request, petition, errors={"status": str(error)}, status_code=400
            )
        notify(request, f"The petition is now {action}.")
        return see_other(edit_url)

    language = read_language(form.get("language"))
    if language is None:
        return await _edit_page(
            request, petition, errors={"language": "Give a language code such as en, fa or pt-BR."},
            status_code=400,
        )  # fmt: skip

    if action == "remove_translation":
        try:
            async with raw_connection(db) as conn:
                saved = await save_statement(conn, petition.id, language, None, "", admin.id)
        except EditError as error:
            return await _edit_page(
                request, petition, language=language, errors={"statement": str(error)},
                status_code=400,
            )  # fmt: skip
        notify(request, _saved_message(saved, f"The {language} translation is removed"))
        return see_other(edit_url)

    if action in ("preview", "statement"):
        values = _values(form, TEXT_FIELDS)
        try:
            text, note = read_statement(form)
        except FieldErrors as error:
            return await _edit_page(
                request, petition, language=language, text=values, errors=error.errors,
                status_code=400,
            )  # fmt: skip
        if action == "preview":
            return await _edit_page(
                request, petition, language=language, text=values,
                preview=render_markdown(text.body),
            )  # fmt: skip
        try:
            async with raw_connection(db) as conn:
                saved = await save_statement(conn, petition.id, language, text, note, admin.id)
        except EditError as error:
            return await _edit_page(
                request, petition, language=language, text=values,
                errors={"statement": str(error)}, status_code=400,
            )  # fmt: skip
        notify(request, _saved_message(saved, f"The {language} text is saved"))
        return see_other(edit_url, {"lang": language})

    return await _edit_page(
        request, petition, errors={"form": "That action is not known."}, status_code=400
    )


def _saved_message(saved, done: str) -> str:
    if not saved.changed:
        return "Nothing changed."
    if saved.new_version:
        return (
            f"{done} as version {saved.version}: people had signed version {saved.version - 1}, "
            "which stays as they signed it."
        )
    return f"{done} (version {saved.version})."


@admin_page()
async def petition_dashboard(request: Request) -> Response:
    petition = await load_petition(request)
    db = request.app.state.db
    stats = await petition_stats(db, petition.id, petition.published_at)
    counts = await get_counts(db, petition.id)
    top = top_countries(stats.countries)
    countries = [(country_name(code) if code else "Other countries", n) for code, n in top]
    drawn = [(country_name(code), n) for code, n in top if code]
    statuses = stats.statuses
    charts = {
        "days": daily_columns(stats.days, "Verified signatures per day"),
        # The chart shows the leading countries; "Other countries" is in the table.
        "countries": horizontal_bars(drawn, "Verified signatures by country") if drawn else None,
        "statuses": stacked_bar(
            [
                ("Verified", "verified", statuses["verified"]),
                ("Waiting for email confirmation", "pending", statuses["pending"]),
                ("Held for moderation", "held", statuses["held"]),
            ],
            "Verified, pending and held signatures",
        ),  # fmt: skip
    }
    return render(
        request,
        "petition_dashboard.html",
        {
            "petition": petition,
            "stats": stats,
            "counts": counts,
            "charts": charts,
            "countries": countries,
            "activity": await recent_for_petition(db, petition.id),
            "log_head": await current_head(db, petition.id),
        },
    )


def embed_snippets(base_url: str, slug: str) -> list[dict[str, str]]:
    """The ways to put a petition on another site, as campaigners copy them."""
    page = f"{base_url}/p/{slug}"
    return [
        {
            "title": "Live counter (script)",
            "about": "A count that updates itself. Style it with your site's CSS "
            "(.petition-counter, .petition-count).",
            "code": f'<span data-petition="{slug}"></span>\n'
            f'<script src="{base_url}/embed.js" async></script>',
        },
        {
            "title": "Sign form (iframe)",
            "about": "The counter and both sign forms; people sign without leaving your "
            "site, and no cookies are needed. The script makes the frame exactly as tall "
            "as its content (without it the frame keeps a height that fits a phone). "
            "Change ref=website to tell sites apart in the dashboard.",
            "code": iframe_snippet(base_url, slug, "ref=website", FORM_HEIGHT, "Sign the petition"),
        },
        {
            "title": "Counter only (iframe)",
            "about": "Just the title, the count and a link to sign.",
            "code": iframe_snippet(base_url, slug, "form=0", COUNTER_HEIGHT, "Signatures"),
        },
        {
            "title": "Badge (image)",
            "about": "Works in newsletters and forums that allow images.",
            "code": f'<a href="{page}"><img src="{page}/badge.svg" alt="Signatures"></a>',
        },
        {
            "title": "Data (JSON)",
            "about": "For your own code: the count, and the public list of signatories.",
            "code": f"{page}/count.json\n{page}/signatures.json",
        },
    ]


@admin_page()
async def embed_help(request: Request) -> Response:
    petition = await load_petition(request)
    base_url = request.app.state.settings.base_url
    return render(
        request,
        "petition_embed.html",
        {"petition": petition, "snippets": embed_snippets(base_url, petition.slug)},
    )
