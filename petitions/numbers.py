"""Numbers and dates as the reader's language writes them, and counts as people type them.

One numbering system per interface language (`NUMBERING_SYSTEMS`): a Persian
page shows Persian digits everywhere, in what the server renders and in what
`live.js` and `embed.js` write later. The server formats with Babel and then
writes the digits of that system (Babel formats with the system's separators but
keeps Latin digits); the browser formats with
`Intl.NumberFormat(lang + "-u-nu-" + system)`, reading the system from the
page's `<html data-numbering>` (live.js) or from the copy of the table in
embed.js, which a test keeps equal to this one.

`parse_count` reads a whole number typed in any one script's digits with the
group separators people use ("۱۲۵۰۰", "12 500", "12.500", "١٢٬٥٠٠").
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime
from functools import lru_cache

from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_decimal

from . import i18n
from .i18n import _

# The digits each interface language is shown in. CLDR's default for Persian is
# "arabext" (۰-۹) and for Central Kurdish "arab" (٠-٩). For Arabic, CLDR now
# defaults to Latin digits but its Mashriq locales (Egypt, Iraq, Syria, the
# Gulf), where most of this platform's Arabic readers live, use "arab": so do we.
NUMBERING_SYSTEMS: dict[str, str] = {
    "en": "latn",
    "fa": "arabext",
    "ar": "arab",
    "ckb": "arab",
    "tr": "latn",
    "fr": "latn",
    "es": "latn",
    "de": "latn",
}
DIGITS: dict[str, str] = {
    "latn": "0123456789",
    "arab": "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",
    "arabext": "\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f8\u06f9",
}
_TO_DIGITS = {system: str.maketrans("0123456789", digits) for system, digits in DIGITS.items()}

# CLDR's minimumGroupingDigits: Spanish writes 1000 to 9999 without a separator
# (as browsers do); Babel does not apply it, so we do.
_MINIMUM_GROUPING = {"es": 2}


def numbering_system(language: str | None = None) -> str:
    """The numbering system of an interface language (the current one by default)."""
    code = i18n.interface_language(language) if language else i18n.current_language()
    return NUMBERING_SYSTEMS.get(code or i18n.DEFAULT_LANGUAGE, "latn")


def _locale(language: str | None) -> str:
    return i18n.interface_language(language) or i18n.current_language()


def localise_digits(text: str, system: str) -> str:
    """Write the Latin digits of `text` in `system`'s digits."""
    return text.translate(_TO_DIGITS[system]) if system != "latn" else text


@lru_cache(maxsize=16384)
def _format_number(value: int, language: str) -> str:
    system = numbering_system(language)
    grouping = abs(value) >= 10 ** (2 + _MINIMUM_GROUPING.get(language, 1))
    text = format_decimal(value, locale=language, group_separator=grouping, numbering_system=system)
    return localise_digits(text, system)


def format_number(value: int | None, language: str | None = None) -> str:
    """A count in the language of the page: 12500 is "12,500", "12 500" (fr, with a
    narrow no-break space), "۱۲٬۵۰۰" (fa)."""
    return _format_number(int(value or 0), _locale(language))


def format_date(value: date | datetime | None, language: str | None = None) -> str:
    if not value:
        return ""
    code = _locale(language)
    return localise_digits(babel_format_date(value, "medium", locale=code), numbering_system(code))


def format_datetime(value: datetime | None, language: str | None = None) -> str:
    if not value:
        return ""
    code = _locale(language)
    text = babel_format_datetime(value, "medium", locale=code)
    return localise_digits(text, numbering_system(code))


def numbering_table_json() -> str:
    """The table as embed.js holds it (a test compares the two)."""
    return json.dumps(NUMBERING_SYSTEMS, separators=(",", ":"))


# Reading counts ---------------------------------------------------------------

MAX_COUNT_INPUT = 40  # characters: room for "1 000 000 000" with spaces around
MAX_COUNT_DIGITS = 15

# What people put between groups of three digits: spaces of every width, the
# comma, the full stop, apostrophes (Swiss) and the Arabic thousands separator.
_GROUP_SEPARATORS = " ,.'\u2019\u066c"
_SPACES = re.compile(r"[\s\u00a0\u2007\u2009\u202f]+")
# The decimal separators: a count has no decimal part. The Arabic one (٫) is never
# a group separator.
_DECIMAL_SEPARATORS = ",.\u066b"
_SEPARATORS = _GROUP_SEPARATORS + "\u066b"
# Persian keyboards type some Arabic-Indic digits (٤ ٥ ٦) among the Persian ones:
# to a reader they are the same digits, so the two count as one script.
_SAME_DIGITS = {0x0660: 0x06F0}


class BadCount(ValueError):
    """Text that is not a count; the message is translated and safe to show."""


def _digits_of(text: str) -> str | None:
    """Every digit written as ASCII, or None when the digits mix scripts."""
    zeros = set()
    out = []
    for char in text:
        value = unicodedata.decimal(char)
        zero = ord(char) - value
        zeros.add(_SAME_DIGITS.get(zero, zero))
        out.append(str(value))
    return "".join(out) if len(zeros) <= 1 else None


def parse_count(raw: str) -> int | None:
    """A whole number of zero or more as people type it, in any one script's digits,
    grouped by threes with one kind of separator: "12500", "12 500", "12,500",
    "12.500", "۱۲۵۰۰", "١٢٬٥٠٠". None for an empty field; BadCount otherwise.

    "12,5" or "1.25" (a decimal part) is refused rather than guessed at.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None
    if len(raw) > MAX_COUNT_INPUT:
        raise BadCount(_("This is too long for a number."))
    text = unicodedata.normalize("NFKC", raw).strip()
    text = _SPACES.sub(" ", text)
    if text[:1] in "-\u2212\u2013":
        raise BadCount(_("Give a number of zero or more."))
    if not all(c.isdecimal() or c in _SEPARATORS for c in text):
        raise BadCount(_("Give a whole number, such as %(example)s.") % _example())
    separators = {c for c in text if not c.isdecimal()}
    groups = re.split(f"[{re.escape(_SEPARATORS)}]", text)
    if len(separators) > 1 or not all(groups):
        raise BadCount(_("Give a whole number, such as %(example)s.") % _example())
    grouped = len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])
    if separators and (not grouped or "\u066b" in separators):
        if separators <= set(_DECIMAL_SEPARATORS) and len(groups) == 2:
            raise BadCount(
                _("A count is a whole number, without a decimal part: such as %(example)s.")
                % _example()
            )
        raise BadCount(_("Give a whole number, such as %(example)s.") % _example())
    digits = _digits_of("".join(groups))
    if digits is None:
        raise BadCount(_("Write the number in one kind of digits."))
    digits = digits.lstrip("0") or "0"
    if len(digits) > MAX_COUNT_DIGITS:
        raise BadCount(_("This number is too large."))
    return int(digits)


def _example() -> dict[str, str]:
    # Ungrouped: "12,500" would look like the "12,5" it answers.
    return {"example": localise_digits("12500", numbering_system())}
