"""The texts the browser scripts show (live.js, embed.js), in the current language.

The scripts carry no texts of their own: pages render `browser_texts()` as JSON into
`<script type="application/json" id="browser-texts">`, and embed.js, which runs on
other sites, fetches the same from `GET /texts.json?lang=`. The texts are marked
here like any other, so extraction finds them and translators see them once.

A plural text is sent as one form per CLDR plural category ("one", "few", "other",
...): the script picks one with `Intl.PluralRules`, which follows the same CLDR
rules as the catalogue's plural forms. Placeholders stay `%(name)s`; the scripts
fill them.
"""

from __future__ import annotations

from functools import lru_cache

from babel import Locale

from . import i18n
from .i18n import _, ngettext
from .signature import ORGANISATION_TYPE_LABELS

# Numbers whose plural category a language might single out (CLDR's examples
# lie in these ranges), so that every category of every language gets a sample.
_SAMPLES = (*range(0, 200), 1000, 10000, 100000, 1000000)


def _plural_texts() -> dict[str, callable]:
    # Each call is a real ngettext call, so extraction sees the texts.
    return {
        "signatures": lambda n: ngettext("%(count)s signature", "%(count)s signatures", n),
        "organisations": lambda n: ngettext("%(count)s organisation", "%(count)s organisations", n),
        "individuals": lambda n: ngettext("%(count)s individual", "%(count)s individuals", n),
        "members": lambda n: ngettext("%(count)s member", "%(count)s members", n),
    }


@lru_cache(maxsize=16)
def _category_samples(language: str) -> dict[str, int]:
    """One number per plural category of `language`: {"one": 1, "other": 0, ...}."""
    rule = Locale.parse(language.replace("-", "_")).plural_form
    samples: dict[str, int] = {}
    for n in _SAMPLES:
        samples.setdefault(rule(n), n)
    return samples


def _texts(language: str) -> dict:
    samples = _category_samples(language)
    return {
        "plurals": {
            key: {category: text(n) for category, n in samples.items()}
            for key, text in _plural_texts().items()
        },
        "organisation_types": {
            value: _(label) for value, label in ORGANISATION_TYPE_LABELS.items()
        },
        "signed_by": _("signed by %(name)s"),
        "signed_by_role": _("signed by %(name)s, %(role)s"),
        "of_goal": _("Goal: %(goal)s"),
    }


_cache: dict[str, dict] = {}


def browser_texts() -> dict:
    """The scripts' texts in the current language (made once per language)."""
    language = i18n.current_language()
    if language not in _cache:
        _cache[language] = _texts(language)
    return _cache[language]
