"""Look-alike names: invisible characters and confusable letters."""

from __future__ import annotations

from petitions.lookalikes import organisation_fold, skeleton, strip_invisible
from petitions.petitions import Petition
from petitions.signing import parse_sign_form


def test_invisible_characters_are_dropped_but_persian_joiners_stay():
    assert strip_invisible("Ha\u00adft\u200b Ta\u2060peh\ufeff\U000e0041") == "Haft Tapeh"
    assert strip_invisible("می\u200cخواهیم") == "می\u200cخواهیم"  # ZWNJ spells Persian words


def test_cyrillic_and_arabic_look_alikes_fold_to_the_same_organisation():
    latin = organisation_fold("Haft Tapeh Syndicate")
    assert organisation_fold("Hаft Tаpeh Syndicate") == latin  # Cyrillic а
    assert organisation_fold("  HAFT   tapeh syndicate ") == latin
    assert organisation_fold("Haft Tapeh Sy\u00adndicate") == latin
    assert organisation_fold("Haft Tapeh Union") != latin
    # Arabic and Persian forms of yeh and kaf are one organisation.
    assert organisation_fold("سنديكاي كارگران") == organisation_fold("سندیکای کارگران")
    assert skeleton("paypal") == skeleton("раураl")


def _petition() -> Petition:
    return Petition(
        id=1, slug="p", status="open", goal=None, closes_at=None, accepts_individuals=True,
        accepts_organisations=True, moderate_organisations=False, default_language="en",
        published_at=None, version_id=1, version=1, language="en", languages=("en",),
        title="T", summary="", target="", body="", demands=(),
    )  # fmt: skip


def test_the_sign_form_stores_names_without_invisible_characters():
    signer = parse_sign_form(
        {
            "kind": "organisation",
            "name": "Esma\u200bil\u00ad Bakhshi",
            "email": "e@example.org",
            "country": "IR",
            "organisation": "Haft\u2060 Tapeh\ufeff Syndicate",
            "organisation_type": "trade_union",
        },
        _petition(),
    )
    assert signer.name == "Esmail Bakhshi"
    assert signer.organisation == "Haft Tapeh Syndicate"
