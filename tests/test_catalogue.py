"""The message catalogues agree with the sources: every marked text is in every
shipped language, translated, not fuzzy, with the same placeholders; the compiled
.mo files say what the .po files say; and the wheel carries them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from markupsafe import Markup

from petitions import catalogue, i18n
from petitions.browser_texts import browser_texts
from petitions.templating import make_templates

LANGUAGES = catalogue.translated_languages()
# Plural forms may leave out the number itself ("one signature", "توقيع واحد").
COUNT_NAMES = {"count", "num", "n"}


@pytest.fixture(scope="module")
def template():
    return catalogue.extract()


def _key(message) -> tuple:
    return (message.context, message.id if isinstance(message.id, str) else tuple(message.id))


def _placeholders(text: str) -> set[str]:
    return set(catalogue.PLACEHOLDER.findall(text))


def test_every_language_is_shipped():
    assert set(LANGUAGES) == {"fa", "ar", "ckb", "tr", "fr", "es", "de"}
    for code in LANGUAGES:
        assert catalogue.po_file(code).exists(), code
        assert catalogue.mo_file(code).exists(), code


def test_the_template_is_extracted_from_the_sources(template):
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id}
    # One text from each kind of source: a page, an email, Python, the scripts' texts.
    assert "How should your signature appear?" in ids  # templates/_sign_forms.html
    assert "Confirm my signature" in ids  # templates/email/*.html
    assert "Please confirm your signature by opening this link:" in ids  # email .txt
    assert "Please confirm your signature: %(title)s" in ids  # mail.py subject
    assert "%(field)s is required." in ids  # fields.py
    assert "Trade union" in ids  # signature.py, N_()
    assert "signed by %(name)s" in ids  # browser_texts.py (live.js, embed.js)
    written = catalogue.read_catalogue(catalogue.TEMPLATE_FILE)
    assert {_key(m) for m in written if m.id} == {_key(m) for m in template if m.id}, (
        "messages.pot is out of date: run `python -m petitions.catalogue`"
    )


@pytest.mark.parametrize("code", LANGUAGES)
def test_the_catalogue_matches_the_sources(template, code):
    po = catalogue.read_catalogue(catalogue.po_file(code), code)
    wanted = {_key(m) for m in template if m.id}
    present = {_key(m) for m in po if m.id}
    assert not po.obsolete, f"{code}: obsolete entries: run `python -m petitions.catalogue`"
    assert wanted - present == set(), f"{code}: missing: run `python -m petitions.catalogue`"
    assert present - wanted == set(), f"{code}: not in the sources any more"
    assert po.plural_forms == catalogue.Catalog(locale=code).plural_forms, code


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_text_is_translated_and_reviewed(code):
    po = catalogue.read_catalogue(catalogue.po_file(code), code)
    fuzzy = [m.id for m in po if m.id and m.fuzzy]
    untranslated = [
        m.id for m in po if m.id and not (all(m.string) if m.pluralizable else m.string)
    ]
    assert not fuzzy, f"{code}: {len(fuzzy)} fuzzy entries, such as {fuzzy[:3]}"
    assert not untranslated, (
        f"{code}: {len(untranslated)} texts without a translation, such as {untranslated[:3]}"
    )


@pytest.mark.parametrize("code", LANGUAGES)
def test_translations_keep_the_placeholders(code):
    po = catalogue.read_catalogue(catalogue.po_file(code), code)
    wrong = []
    for m in po:
        if not m.id:
            continue
        if m.pluralizable:
            names = _placeholders(m.id[0]) | _placeholders(m.id[1])
            for form in m.string:
                found = _placeholders(form)
                if form and (found - names or names - COUNT_NAMES - found):
                    wrong.append((m.id[0], form))
        elif m.string and _placeholders(m.string) != _placeholders(m.id):
            wrong.append((m.id, m.string))
    assert not wrong, f"{code}: placeholders differ from the English: {wrong[:3]}"


@pytest.mark.parametrize("code", LANGUAGES)
def test_the_compiled_catalogue_is_up_to_date(code):
    po = catalogue.read_catalogue(catalogue.po_file(code), code)
    assert catalogue.compiled_translations(catalogue.mo_file(code)) == (
        catalogue.compiles_to(po)
    ), f"{code}: the .mo is stale: run `python -m petitions.catalogue`"


def test_the_command_finds_nothing_to_do():
    """What CI runs: the same check, through the documented command."""
    result = subprocess.run(
        [sys.executable, "-m", "petitions.catalogue", "--check"],
        capture_output=True,
        text=True,
        cwd=catalogue.ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_python_texts_translate():
    with i18n.language("fr"):
        assert i18n._("%(field)s is required.", field="Ville") == "« Ville » est obligatoire."
        assert i18n.ngettext("%(count)s signature", "%(count)s signatures", 2, count="2") == (
            "2 signatures"
        )
        assert i18n.format_list(["Iran", "Irak"], "or") == "Iran ou Irak"
    assert i18n._("%(field)s is required.", field="City") == "City is required."


def test_a_page_renders_in_french():
    """The interface of a page follows the current language: labels, plural forms,
    and markup placed around translated words."""
    env = make_templates().env
    page = env.from_string(
        "{% set n %}<strong data-count>{{ count }}</strong>{% endset %}"
        '<p>{{ _("How should your signature appear?") }}</p>'
        '<p>{{ ngettext("%(count)s signature", "%(count)s signatures", count, count=n) }}</p>'
        "<p>{{ kind|organisation_type }}</p>"
    )
    with i18n.language("fr"):
        html = page.render(count=3, kind="trade_union")
    assert "Comment votre signature doit-elle apparaître ?" in html
    assert "<strong data-count>3</strong> signatures" in html
    assert "Syndicat" in html
    with i18n.language("en"):
        assert "How should your signature appear?" in page.render(count=1, kind="ngo")


def test_an_email_renders_in_french():
    env = make_templates().env
    with i18n.language("fr"):
        html = env.get_template("email/verification.txt").render(
            name="Ana",
            petition=type("P", (), {"title": "Libérez-les", "language": "fr"})(),
            verify_url="https://x.example/verify/t",
            withdraw_url="https://x.example/withdraw/t",
            base_url="https://x.example",
        )
    # Nobody is greeted by a typed name (tests/test_mail_abuse.py: no phishing relay).
    assert html.startswith("Bonjour,\n") and "Ana" not in html
    assert "merci d’avoir signé « Libérez-les »." in html
    assert isinstance(Markup(html), str)


def test_browser_texts_have_every_plural_category():
    with i18n.language("ar"):
        texts = browser_texts()
    assert set(texts["plurals"]["signatures"]) == {"zero", "one", "two", "few", "many", "other"}
    with i18n.language("fr"):
        texts = browser_texts()
    assert texts["plurals"]["signatures"]["one"] == "%(count)s signature"
    assert texts["plurals"]["signatures"]["other"] == "%(count)s signatures"
    assert texts["organisation_types"]["ngo"] == "ONG"


@pytest.mark.slow
def test_the_wheel_carries_the_compiled_catalogues(tmp_path: Path):
    pytest.importorskip("hatchling", reason="the wheel is built without network: needs hatchling")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(catalogue.ROOT), "--no-deps",
         "--no-build-isolation", "--no-index", "-w", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("petitions-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for code in LANGUAGES:
        assert f"petitions/translations/{code}/LC_MESSAGES/messages.mo" in names, code
