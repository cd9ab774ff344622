"""The interface's languages: message catalogues, the current language, and text direction.

Texts are marked with `_()` (and `ngettext`) in templates and Python; `pybabel
extract` collects them into `petitions/translations/messages.pot`, each language's
`.po` holds its translation, and the compiled `.mo` files ship inside the package
(docs/contributing.md, "Adding a language"). Which language a request or an email
uses is a context variable: `use_language` sets it for the rest of a request, and
`language(code)` for a block (an email written by the worker, say). Everything
that translates reads it, so a function deep in the code needs no `lang` argument.
"""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

from babel.lists import format_list as _format_list
from babel.support import Translations

from .paths import PACKAGE_DIR

TRANSLATIONS_DIR = PACKAGE_DIR / "translations"
DOMAIN = "messages"

DEFAULT_LANGUAGE = "en"
# The interface's languages, each by its own name (what a language switcher shows).
LANGUAGES: dict[str, str] = {
    "en": "English",
    "fa": "فارسی",
    "ar": "العربية",
    "ckb": "کوردی",
    "tr": "Türkçe",
    "fr": "Français",
    "es": "Español",
    "de": "Deutsch",
}
RTL_LANGUAGES = frozenset({"ar", "fa", "ckb", "he", "ur", "ps", "yi", "dv", "sd", "ug"})

_current: ContextVar[str] = ContextVar("language", default=DEFAULT_LANGUAGE)


def interface_language(code: str | None) -> str | None:
    """The interface language for a language code ('fa', 'fa-IR', 'pt-BR'), if we have one."""
    if not code:
        return None
    code = code.strip().replace("_", "-").lower()
    if code in LANGUAGES:
        return code
    base = code.split("-", 1)[0]
    return base if base in LANGUAGES else None


def text_direction(code: str | None) -> str:
    return "rtl" if (code or "").split("-")[0].lower() in RTL_LANGUAGES else "ltr"


@lru_cache(maxsize=len(LANGUAGES) + 1)
def translations(code: str) -> _gettext.NullTranslations:
    """The compiled catalogue of one interface language (English is the source text)."""
    if code == DEFAULT_LANGUAGE or code not in LANGUAGES:
        return _gettext.NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [code], domain=DOMAIN)


def current_language() -> str:
    return _current.get()


def use_language(code: str | None) -> str:
    """Make `code` (or English) the language of the rest of this request or task."""
    chosen = interface_language(code) or DEFAULT_LANGUAGE
    _current.set(chosen)
    return chosen


@contextmanager
def language(code: str | None) -> Iterator[str]:
    """Translate into `code` (or English) inside the block, then go back."""
    token = _current.set(interface_language(code) or DEFAULT_LANGUAGE)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def gettext(message: str, **variables) -> str:
    """`message` in the current language; `%(name)s` placeholders filled from `variables`
    (Jinja's newstyle gettext calls it without them and fills them itself)."""
    text = translations(_current.get()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables) -> str:
    text = translations(_current.get()).ngettext(singular, plural, n)
    return text % variables if variables else text


def pgettext(context: str, message: str) -> str:
    return translations(_current.get()).pgettext(context, message)


def npgettext(context: str, singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).npgettext(context, singular, plural, n)


_ = gettext


def N_(message: str) -> str:
    """Mark a module-level text for extraction; translate it with `_()` where it is used."""
    return message


# CLDR has no list patterns for Central Kurdish (Babel falls back to English "or"):
# separator and last joiner per style.
_LIST_WORDS = {
    "ckb": {"standard": ("، ", " و "), "or": ("، ", " یان "), "unit": ("، ", " و ")},
}


def format_list(items, style: str = "standard") -> str:
    """Items joined as the current language joins a list: "a, b and c" ("standard"),
    "a, b or c" ("or"), "a, b, c" ("unit")."""
    items = [str(item) for item in items]
    if not items:
        return ""
    locale = _current.get().replace("-", "_")
    if locale in _LIST_WORDS:
        comma, last = _LIST_WORDS[locale][style]
        return items[0] if len(items) == 1 else comma.join(items[:-1]) + last + items[-1]
    try:
        return _format_list(items, style=style, locale=locale)
    except KeyError:  # CLDR lacks some styles in some languages (Persian has no "unit" start)
        return _format_list(items, style="standard", locale=locale)


def install(env) -> None:
    """Give a Jinja2 environment `_()`, `ngettext()` and `{% trans %}` in the current language."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(
        gettext, ngettext, newstyle=True, pgettext=pgettext, npgettext=npgettext
    )
