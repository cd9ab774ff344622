"""The Jinja2 environment: templates/ plus the filters pages share."""

from __future__ import annotations

from functools import lru_cache

from jinja2 import pass_context
from markupsafe import Markup, escape
from starlette.templating import Jinja2Templates

from . import i18n
from .browser_texts import browser_texts
from .countries import country_name, country_names, flag, sort_by_country_name
from .locales import lang_url, link_language, switcher_links
from .log_display import format_log_hour
from .markdown import render_markdown
from .numbers import format_date, format_datetime, format_number, numbering_system
from .paths import TEMPLATES_DIR
from .sharing import link_preview, sharing_for, valid_ref
from .signatories import initials
from .signature import (
    MODERATOR_ACTIONS,
    ORGANISATION_TYPE_LABELS,
    Display,
    Kind,
    Status,
    organisation_type_label,
)


@lru_cache(maxsize=64)
def _country_option_list(language: str) -> str:
    return "".join(
        f'<option value="{code}">{escape(name)}</option>'
        for code, name in country_names(language).items()
    )


def bdi(value: object) -> Markup:
    """Isolate a name, number or country inside a sentence, so that a Latin name in a
    Persian sentence (or a Persian name in an English one) keeps its own direction."""
    return Markup("<bdi>%s</bdi>") % (value,)


def country_options(language: str | None = None, selected: str | None = None) -> Markup:
    """The <option>s of a country <select>, in the interface language unless another is
    named, sorted as that language sorts: built once per language, since every page has two."""
    options = _country_option_list(language or i18n.current_language())
    if selected and len(selected) == 2 and selected.isalpha():
        options = options.replace(f'value="{selected}">', f'value="{selected}" selected>', 1)
    return Markup(options)


class PageTemplates(Jinja2Templates):
    """Every page knows its language as `lang` (the interface language chosen for the
    request: locales.py), unless its view says otherwise."""

    def TemplateResponse(self, request, name, context=None, *args, **kwargs):  # noqa: N802
        context = dict(context or {})
        context.setdefault("lang", i18n.current_language())
        return super().TemplateResponse(request, name, context, *args, **kwargs)


@pass_context
def _language_links(context) -> list:
    """The language switcher's links for this page (locales.switcher_links)."""
    request = context.get("request")
    return switcher_links(request, context.get("petition")) if request is not None else []


def make_templates() -> Jinja2Templates:
    templates = PageTemplates(directory=str(TEMPLATES_DIR))
    env = templates.env
    i18n.install(env)
    env.filters.update(
        markdown=render_markdown,
        country_name=country_name,
        flag=flag,
        by_country_name=sort_by_country_name,
        number=format_number,
        date=format_date,
        datetime=format_datetime,
        log_hour=format_log_hour,  # a transparency log's hour (log_display.py)
        initials=initials,
        bdi=bdi,
        organisation_type=organisation_type_label,
        # Lists joined as the current language joins them ("a, b or c").
        or_list=lambda items: i18n.format_list(items, "or"),
        and_list=lambda items: i18n.format_list(items, "standard"),
    )
    env.globals.update(
        country_options=country_options,
        # Texts for live.js and petition.js, rendered as JSON into the page.
        browser_texts=browser_texts,
        organisation_types=ORGANISATION_TYPE_LABELS,
        # The signature's vocabulary, for templates: statuses in one order everywhere.
        Status=Status,
        Kind=Kind,
        Display=Display,
        moderator_actions=MODERATOR_ACTIONS,
        text_direction=i18n.text_direction,
        current_language=i18n.current_language,
        # The page's digits, for <html data-numbering> (live.js formats with them).
        numbering_system=numbering_system,
        interface_languages=i18n.LANGUAGES,
        # Share buttons and link previews (sharing.py); absolute addresses from BASE_URL.
        share_links=lambda request, petition: sharing_for(
            request.app.state.settings.base_url, petition
        ),
        link_preview=lambda request, petition, count, lang: link_preview(
            request.app.state.settings.base_url,
            petition,
            count,
            lang,
            valid_ref(request.query_params.get("ref")),
        ),  # fmt: skip
    )
    # The request's language in links, and the language switcher (locales.py).
    env.globals.update(
        lang_url=lang_url, link_language=link_language, language_links=_language_links
    )
    return templates
