"""The public stylesheet mirrors by itself, and the sign form's markup helps every signer.

Fast checks of what the browser tests (test_phone_layout.py, test_accessibility.py)
measure: a physical left/right rule would put things on the wrong side of a
right-to-left page, and an off-screen honeypot widened one to 10,360 pixels.
"""

from __future__ import annotations

import re

from conftest import make_petition
from petitions.paths import PACKAGE_DIR

SITE_CSS = (PACKAGE_DIR / "static" / "site.css").read_text(encoding="utf-8")
PHYSICAL = re.compile(
    r"(?<![\w-])(left|right|(margin|padding|border)-(left|right)(-\w+)?|width|height|"
    r"(min|max)-(width|height))\s*:"
    r"|text-align\s*:\s*(left|right)|float\s*:\s*(left|right)"
)


def declarations(css: str) -> str:
    """The stylesheet without comments and media query conditions (which may say min-width)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    return re.sub(r"@media[^{]*\{", "", css)


def test_the_public_stylesheet_uses_logical_properties_only():
    found = [m.group(0) for m in PHYSICAL.finditer(declarations(SITE_CSS))]
    assert found == []


def test_the_honeypot_is_clipped_in_place_never_off_screen():
    rule = re.search(r"\.hp\s*\{([^}]*)\}", SITE_CSS).group(1)
    assert "clip-path: inset(50%)" in rule and "overflow: hidden" in rule
    assert not re.search(r"-\d{3,}px", rule)
    form = re.search(r"\.sign-form\s*\{([^}]*)\}", SITE_CSS).group(1)
    assert "position: relative" in form  # the honeypot's containing block


async def test_sign_form_fields_say_what_they_hold(client, conn):
    await make_petition(conn)
    html = (await client.get("/p/release-them")).text

    def field(id_: str) -> str:
        return re.search(rf'<(?:input|select|textarea) id="{id_}"[^>]*>', html).group(0)

    assert 'type="email"' in field("ind-email") and 'autocomplete="email"' in field("ind-email")
    assert 'autocomplete="name"' in field("ind-name") and 'dir="auto"' in field("ind-name")
    assert 'autocomplete="country"' in field("ind-country")
    assert 'autocomplete="address-level2"' in field("org-city")
    assert 'autocomplete="organization"' in field("org-organisation")
    assert 'autocomplete="organization-title"' in field("org-occupation")
    assert 'type="url"' in field("org-website") and 'autocomplete="url"' in field("org-website")
    # "12 500" and Persian digits are welcome, which type=number would refuse.
    members = field("org-members")
    assert 'type="text"' in members and 'inputmode="numeric"' in members
    assert 'dir="auto"' in field("ind-comment")
    for id_ in ("ind-fax", "org-fax"):
        honeypot = field(id_)
        assert 'name="fax_number"' in honeypot
        assert 'tabindex="-1"' in honeypot and 'autocomplete="off"' in honeypot
    assert html.count('<div class="hp" aria-hidden="true">') == 2
    # Every visible field has a label.
    for id_ in re.findall(r'<(?:input|select|textarea) id="([^"]+)"', html):
        assert f'<label for="{id_}"' in html or id_.split("-")[1] == "display", id_
    assert '<a class="skip-link" href="#main">' in html


async def test_a_rejected_submit_ties_each_message_to_its_field(client, conn):
    await make_petition(conn)
    page = (await client.get("/p/release-them")).text
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    html = (
        await client.post(
            "/p/release-them/sign",
            data={"kind": "individual", "email": "nope", "display": "x", "form_token": token},
        )
    ).text
    summary = re.search(r'<div class="error-summary" id="sign-errors"[^>]*>(.*?)</div>', html, re.S)
    assert 'tabindex="-1"' in summary.group(0)
    targets = re.findall(r'<a href="#([\w-]+)" data-field>', summary.group(1))
    assert targets == ["ind-name", "ind-email", "ind-country", "ind-display-public"]
    for target in targets[:3]:
        control = re.search(rf'<(?:input|select) id="{target}"[^>]*>', html).group(0)
        assert 'aria-invalid="true"' in control
        assert re.search(rf'aria-describedby="[^"]*{target}-error', control)
        assert f'id="{target}-error"' in html
    radio = re.search(r'<input type="radio" id="ind-display-public"[^>]*>', html).group(0)
    assert 'aria-describedby="ind-display-error"' in radio
    # The page opens at the summary, with or without JavaScript.
    assert html.count('action="http://testserver/p/release-them/sign#sign-errors"') == 2
