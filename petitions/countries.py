"""ISO 3166-1 alpha-2 country codes and their names, from Babel's CLDR data."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError

from . import i18n
from .collation import sort_key

# CLDR lists some codes that are not countries (EU, UN, ZZ...). XK (Kosovo) is
# user-assigned but in common use, so it stays.
_NOT_COUNTRIES = {"EU", "EZ", "QO", "UN", "XA", "XB", "ZZ"}


def _language(language: str | None) -> str:
    return i18n.interface_language(language) or (language or i18n.current_language())


@lru_cache(maxsize=64)
def _names(language: str) -> dict[str, str]:
    """Code -> name in `language`, sorted as that language sorts (collation.py)."""
    try:
        locale = Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        locale = Locale("en")
    names = {
        code: name
        for code, name in locale.territories.items()
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    }
    key = sort_key(str(locale))
    return dict(sorted(names.items(), key=lambda item: key(item[1])))


def country_names(language: str | None = None) -> dict[str, str]:
    """Code -> name in `language` (the current interface language by default), in the
    order a reader of that language expects."""
    return _names(_language(language))


@lru_cache(maxsize=64)
def _ranks(language: str) -> dict[str, int]:
    return {code: i for i, code in enumerate(_names(language))}


def sort_by_country_name(pairs, language: str | None = None) -> list:
    """(code, anything) pairs in the order of their countries' names (a filter's
    options, say); unknown codes last."""
    ranks = _ranks(_language(language))
    return sorted(pairs, key=lambda pair: ranks.get(pair[0], len(ranks)))


COUNTRY_CODES = (
    frozenset(code for code in Locale("en").territories if len(code) == 2 and code.isalpha())
    - _NOT_COUNTRIES
)


def country_name(code: str | None, language: str | None = None) -> str:
    if not code:
        return ""
    return country_names(language).get(code, code)


def flag(code: str | None) -> str:
    """The flag emoji for a code (regional indicator letters)."""
    if not code or len(code) != 2:
        return ""
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code.upper())
