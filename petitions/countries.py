"""ISO 3166-1 alpha-2 country codes and their names, from Babel's CLDR data."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale, UnknownLocaleError

# CLDR lists some codes that are not countries (EU, UN, ZZ...). XK (Kosovo) is
# user-assigned but in common use, so it stays.
_NOT_COUNTRIES = {"EU", "EZ", "QO", "UN", "XA", "XB", "ZZ"}


@lru_cache(maxsize=64)
def country_names(language: str = "en") -> dict[str, str]:
    """Code -> name in `language`, sorted by name."""
    try:
        locale = Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        locale = Locale("en")
    names = {
        code: name
        for code, name in locale.territories.items()
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    }
    return dict(sorted(names.items(), key=lambda item: item[1].casefold()))


COUNTRY_CODES = frozenset(country_names("en"))


def country_name(code: str | None, language: str = "en") -> str:
    if not code:
        return ""
    return country_names(language).get(code, code)


def flag(code: str | None) -> str:
    """The flag emoji for a code (regional indicator letters)."""
    if not code or len(code) != 2:
        return ""
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code.upper())
