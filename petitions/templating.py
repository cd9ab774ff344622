"""The Jinja2 environment: templates/ plus the filters pages share."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from markupsafe import Markup, escape
from starlette.templating import Jinja2Templates

from . import i18n
from .countries import country_name, country_names, flag
from .markdown import render_markdown
from .paths import TEMPLATES_DIR
from .signatories import initials
from .signature import MODERATOR_ACTIONS, ORGANISATION_TYPE_LABELS, Display, Kind, Status


@lru_cache(maxsize=8192)
def _number(value: int | None, locale: str = "en") -> str:
    return format_decimal(value or 0, locale=locale.replace("-", "_"))


def _date(value: datetime | None, locale: str = "en") -> str:
    return format_date(value, "medium", locale=locale.replace("-", "_")) if value else ""


def _datetime(value: datetime | None, locale: str = "en") -> str:
    return format_datetime(value, "medium", locale=locale.replace("-", "_")) if value else ""


@lru_cache(maxsize=64)
def _country_option_list(language: str) -> str:
    return "".join(
        f'<option value="{code}">{escape(name)}</option>'
        for code, name in country_names(language).items()
    )


def country_options(language: str, selected: str | None = None) -> Markup:
    """The <option>s of a country <select>: built once per language, since every page has two."""
    options = _country_option_list(language or "en")
    if selected and len(selected) == 2 and selected.isalpha():
        options = options.replace(f'value="{selected}">', f'value="{selected}" selected>', 1)
    return Markup(options)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    i18n.install(env)
    env.filters.update(
        markdown=render_markdown,
        country_name=country_name,
        flag=flag,
        number=_number,
        date=_date,
        datetime=_datetime,
        initials=initials,
        organisation_type=lambda t: ORGANISATION_TYPE_LABELS.get(t or "", ""),
    )
    env.globals.update(
        country_options=country_options,
        organisation_types=ORGANISATION_TYPE_LABELS,
        # The signature's vocabulary, for templates: statuses in one order everywhere.
        Status=Status,
        Kind=Kind,
        Display=Display,
        moderator_actions=MODERATOR_ACTIONS,
        text_direction=i18n.text_direction,
        current_language=i18n.current_language,
        interface_languages=i18n.LANGUAGES,
    )
    return templates
