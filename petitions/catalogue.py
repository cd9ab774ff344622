"""The message catalogues: collect the texts marked for translation, bring every
language's `.po` up to date with them, and compile the `.mo` files the app reads.

    python -m petitions.catalogue           # extract, update the .po files, compile
    python -m petitions.catalogue --check   # change nothing; fail if anything is out of date

Extraction follows `babel.cfg` (the same file `pybabel extract -F babel.cfg` reads).
The `.pot`, the `.po` sources and the compiled `.mo` files all live in
`petitions/translations/` and are committed, so the wheel carries them and a plain
`pip install .` needs no build step; tests/test_catalogue.py checks that they agree
with the sources. A file is only rewritten when its messages change, so running
this twice leaves no diff. See docs/contributing.md, "Adding a language".
"""

from __future__ import annotations

import argparse
import configparser
import io
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

from .i18n import DEFAULT_LANGUAGE, DOMAIN, LANGUAGES
from .paths import PACKAGE_DIR


def _source_tree() -> Path:
    """The checkout whose catalogues this keeps (babel.cfg, templates/, petitions/): the
    package's own folder in a checkout or an editable install; else (the package
    installed from a wheel, as CI tests it) the current folder when it is a checkout."""
    for candidate in (PACKAGE_DIR.parent, Path.cwd()):
        if (candidate / "babel.cfg").is_file():
            return candidate
    return PACKAGE_DIR.parent


ROOT = _source_tree()
MAPPING_FILE = ROOT / "babel.cfg"
TRANSLATIONS_DIR = ROOT / "petitions" / "translations"  # the sources, not the installed copy
TEMPLATE_FILE = TRANSLATIONS_DIR / f"{DOMAIN}.pot"
COMMENT_TAGS = ("Translators:",)
# The Jinja extractor by its import path, so extraction needs no entry point lookup.
METHODS = {"jinja2": "jinja2.ext:babel_extract", "python": "python"}
# Lines of a catalogue that change on every run without any message changing.
_DATED_HEADER = re.compile(rb'^"(POT-Creation-Date|PO-Revision-Date|Generated-By): .*\n', re.M)
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def translated_languages() -> list[str]:
    return [code for code in LANGUAGES if code != DEFAULT_LANGUAGE]


def po_file(code: str) -> Path:
    return TRANSLATIONS_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_file(code: str) -> Path:
    return TRANSLATIONS_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.mo"


def _mapping() -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    parser = configparser.RawConfigParser()
    parser.read(MAPPING_FILE, encoding="utf-8")
    method_map, options_map = [], {}
    for section in parser.sections():
        method, pattern = (part.strip() for part in section.split(":", 1))
        method_map.append((pattern, METHODS.get(method, method)))
        options_map[pattern] = dict(parser.items(section))
    return method_map, options_map


def _source_dirs(method_map: Iterable[tuple[str, str]]) -> set[str]:
    return {pattern.split("/", 1)[0] for pattern, _ in method_map}


def extract() -> Catalog:
    """Every marked text of the sources, as a catalogue template (in memory)."""
    method_map, options_map = _mapping()
    roots = _source_dirs(method_map)
    template = Catalog(
        project="petitions",
        msgid_bugs_address="",
        copyright_holder="the petitions contributors",
        charset="utf-8",
        fuzzy=False,
    )

    def wanted(dirpath: str) -> bool:  # walk only the source folders, not .venv or data/
        relative = Path(dirpath).resolve().relative_to(ROOT.resolve()).parts
        return not relative or (relative[0] in roots and "__pycache__" not in relative)

    found = extract_from_dir(
        str(ROOT),
        method_map,
        options_map,
        keywords=DEFAULT_KEYWORDS,
        comment_tags=COMMENT_TAGS,
        strip_comment_tags=True,
        directory_filter=wanted,
    )
    for filename, lineno, message, comments, context in found:
        template.add(
            message,
            None,
            [(filename.replace("\\", "/"), lineno)],
            auto_comments=comments,
            context=context,
        )
    return template


def read_catalogue(path: Path, code: str | None = None) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, locale=code)


def updated_catalogue(template: Catalog, code: str) -> Catalog:
    """`code`'s catalogue brought up to `template`: new texts empty, changed ones fuzzy
    (for a translator to check), texts no longer in the sources dropped."""
    path = po_file(code)
    if path.exists():
        catalogue = read_catalogue(path, code)
    else:  # what `pybabel init` makes: the plural forms of the language from CLDR
        catalogue = Catalog(locale=code, domain=DOMAIN, project="petitions", fuzzy=False)
    catalogue.update(template, update_header_comment=False)
    catalogue.obsolete.clear()
    return catalogue


def po_bytes(catalogue: Catalog) -> bytes:
    out = io.BytesIO()
    # No line numbers: a moved line must not change every catalogue.
    write_po(out, catalogue, width=76, include_lineno=False, ignore_obsolete=True)
    return out.getvalue()


def mo_bytes(catalogue: Catalog) -> bytes:
    out = io.BytesIO()
    write_mo(out, catalogue, use_fuzzy=False)
    return out.getvalue()


def translations_of(catalogue: Catalog) -> dict:
    """msgid (or (singular, plural)) -> translation, for the entries that have one."""
    return {
        (m.context, _plain(m.id)): _plain(m.string)
        for m in catalogue
        if m.id and not m.fuzzy and (all(m.string) if m.pluralizable else m.string)
    }


def _plain(value):
    return tuple(value) if isinstance(value, list | tuple) else value


def compiled_translations(path: Path) -> dict:
    with path.open("rb") as f:
        return translations_of(read_mo(f))


def compiles_to(catalogue: Catalog) -> dict:
    """What the .mo of `catalogue` holds (an untranslated plural keeps its English)."""
    return translations_of(read_mo(io.BytesIO(mo_bytes(catalogue))))


def _same(path: Path, content: bytes) -> bool:
    if not path.exists():
        return False
    return _DATED_HEADER.sub(b"", path.read_bytes()) == _DATED_HEADER.sub(b"", content)


def _same_translations(path: Path, catalogue: Catalog) -> bool:
    """The compiled file says what the catalogue says (whichever Babel compiled it)."""
    return path.exists() and compiled_translations(path) == compiles_to(catalogue)


def _write(path: Path, content: bytes, check: bool, stale: list[str]) -> None:
    if _same(path, content):
        return
    stale.append(str(path.relative_to(ROOT)))
    if not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def run(check: bool = False, languages: Iterable[str] | None = None) -> list[str]:
    """Extract, update and compile; return the files that were (or, with `check`,
    would be) rewritten."""
    stale: list[str] = []
    template = extract()
    _write(TEMPLATE_FILE, po_bytes(template), check, stale)
    for code in languages or translated_languages():
        catalogue = updated_catalogue(template, code)
        _write(po_file(code), po_bytes(catalogue), check, stale)
        # Compiled from the .po as written, so the .mo always says what the .po says.
        if not check:
            catalogue = read_catalogue(po_file(code), code)
        if not _same_translations(mo_file(code), catalogue):
            _write(mo_file(code), mo_bytes(catalogue), check, stale)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m petitions.catalogue", description=__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("languages", nargs="*", help="only these languages (default: all)")
    args = parser.parse_args(argv)
    unknown = [code for code in args.languages if code not in translated_languages()]
    if unknown:
        parser.error(
            f"not an interface language: {', '.join(unknown)} (add it to i18n.LANGUAGES first)"
        )
    stale = run(check=args.check, languages=args.languages or None)
    for path in stale:
        print(("out of date: " if args.check else "wrote ") + path)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
