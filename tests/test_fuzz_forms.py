"""Every form, public and admin, fuzzed: arbitrary text, sizes and encodings.

The forms are found the way a visitor finds them, by reading the pages (so a form
added later is fuzzed too). Hypothesis draws the values; each is posted as a browser
would, and some bodies are raw bytes in broken encodings. Whatever is sent, the answer
is never a 5xx, and an answer that refuses (4xx) leaves every stored row as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_support import admin_client, anonymous
from conftest import add_signature, make_petition

pytestmark = pytest.mark.slow  # hundreds of requests

SLUG = "release-them"
EXAMPLES_PER_FORM = 25

# What a refused request must leave alone: the content of the site.
CONTENT_TABLES = {
    "petitions": "*",
    "statement_versions": "*",
    "statement_texts": "*",
    "signatures": "*",
    "petition_updates": "*",
    "admins": "id, email, role, password_hash",
}

NASTY = [
    "",
    "\x00",
    "a\x00b",
    "0",
    "-1",
    "9" * 40,
    "1e309",
    "NaN",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%00%ff",
    "\u202e\u200b\ufeff",
    "ẞ" * 3000,
    "x" * 70_000,
    "١٢٥٠٠",
    '=HYPERLINK("http://evil.example")',
    "owner@example.org",
    "https://evil.example/reset",
]
TEXT = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=200, max_size=4000),
)


@dataclass
class Form:
    page: str
    action: str
    fields: dict[str, list[str]] = field(default_factory=dict)  # name -> values seen


class FormFinder(HTMLParser):
    """The POST forms of a page: action and every named control with its values."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.page = page
        self.forms: list[Form] = []
        self.current: Form | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "get").lower() == "post":
            action = (a.get("action") or self.page).split("#")[0]
            self.current = Form(self.page, re.sub(r"^https?://[^/]+", "", action) or self.page)
            self.forms.append(self.current)
        elif self.current and tag in ("input", "select", "textarea", "button", "option"):
            name = a.get("name")
            if tag == "option" and self._last_select:
                self.current.fields[self._last_select].append(a.get("value") or "")
            elif name:
                self.current.fields.setdefault(name, [])
                if a.get("value") is not None:
                    self.current.fields[name].append(a["value"])
                self._last_select = name if tag == "select" else None

    _last_select: str | None = None

    def handle_endtag(self, tag):
        if tag == "form":
            self.current = None
        if tag == "select":
            self._last_select = None


def find_forms(page: str, html: str) -> list[Form]:
    finder = FormFinder(page)
    finder.feed(html)
    return [f for f in finder.forms if not f.action.endswith("/admin/logout")]


def values_for(form: Form):
    """A Hypothesis strategy for one submission: each field junk or one of its own values
    (so submissions get past the first check and reach the deeper ones)."""
    strategies = {}
    for name, seen in form.fields.items():
        if name == "csrf_token":
            strategies[name] = st.one_of(st.just(seen[0] if seen else ""), TEXT)
        elif seen:
            strategies[name] = st.one_of(st.sampled_from(seen), TEXT)
        else:
            strategies[name] = TEXT
    return st.fixed_dictionaries(
        {}, optional=strategies
    )  # some fields left out, as a hand-made request would


BROKEN_BODIES = [
    b"name=%ff%fe%00&email=\xff\xfe",
    b"\xff" * 2000,
    b"a=" + b"%" * 5000,
    b"=&&==&" * 1000,
]


def collect(strategy) -> list:
    """Draw examples from a strategy outside an async test (Hypothesis runs sync tests)."""
    drawn: list = []

    @settings(
        max_examples=EXAMPLES_PER_FORM,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def draw(value):
        drawn.append(value)

    draw()
    return drawn


async def fingerprint(conn) -> dict[str, str]:
    prints = {}
    for table, columns in CONTENT_TABLES.items():
        prints[table] = await conn.fetchval(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
            f"FROM (SELECT {columns} FROM {table}) t"
        )
    return prints


async def fuzz(http, conn, forms: list[Form], headers: dict) -> int:
    sent = 0
    for form in forms:
        for values in collect(values_for(form)):
            before = await fingerprint(conn)
            response = await http.post(form.action, data=values, headers=headers)
            sent += 1
            assert response.status_code < 500, (form.action, sorted(values), response.text[:300])
            if 400 <= response.status_code < 500:
                assert await fingerprint(conn) == before, (form.action, response.status_code)
        for body in BROKEN_BODIES:
            before = await fingerprint(conn)
            response = await http.post(
                form.action,
                content=body,
                headers={**headers, "content-type": "application/x-www-form-urlencoded"},
            )
            sent += 1
            assert response.status_code < 500, (form.action, body[:40])
            if response.status_code >= 400:
                assert await fingerprint(conn) == before, form.action
    return sent


async def test_public_forms_never_fail_and_refusals_change_nothing(app, conn):
    pid = await make_petition(conn, accepts_organisations=True)
    signer = await add_signature(conn, pid)
    tokens = app.state.tokens
    pages = [
        f"/p/{SLUG}",
        f"/p/{SLUG}/embed",
        "/withdraw/" + tokens.signature_link("withdraw", signer["public_id"]),
        "/unsubscribe/" + tokens.signature_link("unsubscribe", signer["public_id"]),
        "/verify/not-a-token",
    ]
    async with anonymous(app) as http:
        forms = []
        for page in pages:
            forms += find_forms(page, (await http.get(page)).text)
        actions = {f.action for f in forms}
        assert {f"/p/{SLUG}/sign", f"/p/{SLUG}/embed"} <= {a.split("?")[0] for a in actions}
        sent = await fuzz(http, conn, forms, {"origin": "http://testserver"})
    assert sent >= len(forms) * (1 + len(BROKEN_BODIES))  # every form, every way


ADMIN_PAGES = [
    "/admin",
    "/admin/password",
    "/admin/account/totp",
    "/admin/petitions/new",
    f"/admin/petitions/{SLUG}",
    f"/admin/petitions/{SLUG}/dashboard",
    f"/admin/petitions/{SLUG}/signatures",
    f"/admin/petitions/{SLUG}/signatures?status=held",
    f"/admin/petitions/{SLUG}/updates",
    f"/admin/petitions/{SLUG}/embed",
    "/admin/outbox",
    "/admin/users",
    "/admin/screening",
    "/admin/trending",
    "/admin/invalidations",
]


async def test_admin_forms_never_fail_and_refusals_change_nothing(app, conn):
    pid = await make_petition(conn, accepts_organisations=True)
    for _ in range(3):
        await add_signature(conn, pid)
    await add_signature(conn, pid, status="held")
    async with admin_client(app, conn) as owner:
        forms: list[Form] = []
        for page in ADMIN_PAGES:
            response = await owner.get(page)
            if response.status_code == 404:
                continue  # a page another part of the product has not added
            assert response.status_code == 200, page
            forms += find_forms(page, response.text)
        assert len(forms) >= 8, [f.action for f in forms]
        # Posts carry the session's CSRF token unless Hypothesis replaces it.
        for form in forms:
            form.fields["csrf_token"] = [owner.token]
        sent = await fuzz(owner.http, conn, forms, {"origin": "http://testserver"})
    assert sent >= len(forms) * (1 + len(BROKEN_BODIES))  # every form, every way
