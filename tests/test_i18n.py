"""The language helpers: lists joined as each interface language joins them."""

import pytest

from petitions import i18n


@pytest.mark.parametrize("code", sorted(i18n.LANGUAGES))
@pytest.mark.parametrize("style", ["standard", "or", "unit"])
def test_every_language_joins_a_list_in_its_own_words(code, style):
    with i18n.language(code):
        joined = i18n.format_list(["Iran", "Iraq", "Türkiye"], style)
        assert i18n.format_list(["Iran"], style) == "Iran"
    assert all(name in joined for name in ("Iran", "Iraq", "Türkiye"))
    if code != "en":
        assert " or " not in joined and " and " not in joined, joined


def test_central_kurdish_says_or_in_kurdish():
    with i18n.language("ckb"):
        assert i18n.format_list(["A", "B", "C"], "or") == "A، B یان C"
