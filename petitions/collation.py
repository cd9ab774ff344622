"""Alphabetical order as a reader of each language expects it.

The Unicode Collation Algorithm (`pyuca`, pure Python, with the DUCET table)
gives the root order, which is already right for English, French, Spanish,
German and Central Kurdish: "Åland Islands" sorts with A, "Türkiye" with T.
Persian, Arabic and Turkish order some letters differently, so before the root
key is taken their letters are rewritten as CLDR's tailoring of that language
sorts them:

- Persian: آ comes before ا, و before ه (root has ه first); ة sorts as ه and
  ي, ى as ی; ئ is a letter right after ا; the hamza on أ إ ؤ does not make a new letter.
- Arabic: آ comes before ا; the hamza on أ إ ؤ ئ does not make a new letter.
- Turkish: ç, ğ, ı, ö, ş, ü are letters of their own after c, g, h, o, s, u
  (and I is the capital of ı).

A letter that sorts "after x" becomes x followed by a private-use character,
whose implicit weight is above every letter's: after all words with x, before
the next letter. The browser test checks the order against Chromium's ICU.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import lru_cache

from pyuca import Collator

_AFTER = "\ue000"  # "sorts right after the letter before it"
_HAMZA_MARKS = {0x0654: None, 0x0655: None}  # hamza above and below
# آ is a letter before ا: after the hamza ء, which no word here starts with.
_ALEF_MADDA = {0x0622: "\u0621" + _AFTER}

_TAILORINGS: dict[str, dict[int, str | None]] = {
    "fa": {
        **_HAMZA_MARKS,
        **_ALEF_MADDA,
        ord("\u0647"): "\u0648" + _AFTER,  # ه after و
        ord("\u0629"): "\u0648" + _AFTER,  # ة as ه
        ord("\u06c0"): "\u0648" + _AFTER,  # ۀ as ه
        ord("\u06d5"): "\u0648" + _AFTER,  # ە as ه
        ord("\u0626"): "\u0627" + _AFTER,  # ئ a letter after ا
        ord("\u064a"): "\u06cc",  # ي as ی
        ord("\u0649"): "\u06cc",  # ى as ی
        ord("\u0643"): "\u06a9",  # ك as ک
    },
    "ar": {**_HAMZA_MARKS, **_ALEF_MADDA},
    "tr": {
        ord("ç"): "c" + _AFTER,
        ord("Ç"): "C" + _AFTER,
        ord("ğ"): "g" + _AFTER,
        ord("Ğ"): "G" + _AFTER,
        ord("ı"): "h" + _AFTER,
        ord("I"): "H" + _AFTER,
        ord("İ"): "i",
        ord("ö"): "o" + _AFTER,
        ord("Ö"): "O" + _AFTER,
        ord("ş"): "s" + _AFTER,
        ord("Ş"): "S" + _AFTER,
        ord("ü"): "u" + _AFTER,
        ord("Ü"): "U" + _AFTER,
    },
}


@lru_cache(maxsize=1)
def _collator() -> Collator:
    return Collator()  # loads the DUCET table once (about 0.1 s)


def _tailoring(language: str) -> dict[int, str | None] | None:
    return _TAILORINGS.get(language.replace("_", "-").split("-")[0].lower())


def sort_key(language: str) -> Callable[[str], tuple]:
    """A key function ordering text as `language` does."""
    collator = _collator()
    table = _tailoring(language)

    def key(text: str) -> tuple:
        root = collator.sort_key(text)
        if table is None:
            return (root,)
        # Composed letters first (Turkish İ is not I), then the marks of the rest.
        tailored = unicodedata.normalize("NFC", text).translate(table)
        tailored = unicodedata.normalize("NFD", tailored).translate(table)
        return (collator.sort_key(tailored), root)

    return key


def sort_texts(texts, language: str) -> list[str]:
    return sorted(texts, key=sort_key(language))
