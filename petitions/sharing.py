"""Sharing a petition: one plain link per channel, each carrying its own `ref`.

No share button loads anything from the sites it names: every channel is an
ordinary link (a navigation the signer chooses), so the page's Content-Security-
Policy stays "self only". The `ref` of the shared address comes back with the
people who follow it and is stored with their signature, so the referrer table
of the admin's dashboard shows which channel worked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from babel.core import get_global

from .i18n import N_, _

# Channel codes are the `ref` values of shared links (signing._REF accepts them).
WHATSAPP, TELEGRAM, X, FACEBOOK, EMAIL, COPY, SHARE = (
    "whatsapp", "telegram", "x", "facebook", "email", "copy", "share",
)  # fmt: skip
CHANNELS = (WHATSAPP, TELEGRAM, X, FACEBOOK, EMAIL, COPY, SHARE)

# A referrer code, as links, embeds and share buttons carry it in `?ref=`.
REF_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def valid_ref(text: str | None) -> str | None:
    """The referrer code, or None when it is not one (a bad code is not the signer's fault)."""
    text = (text or "").strip()
    return text if REF_CODE.match(text) else None


# Names of the link channels as a button shows them (brand names are not translated,
# but "Email" is).
_LABELS = {
    WHATSAPP: "WhatsApp",
    TELEGRAM: "Telegram",
    X: "X",
    FACEBOOK: "Facebook",
    EMAIL: N_("Email"),
}


def _q(text: str) -> str:
    return quote(text, safe="")


def petition_url(
    base_url: str, slug: str, *, lang: str | None = None, ref: str | None = None
) -> str:
    """The absolute address of a petition page (from BASE_URL, never the Host header)."""
    query = {k: v for k, v in (("lang", lang), ("ref", ref)) if v}
    return f"{base_url}/p/{_q(slug)}" + (f"?{urlencode(query)}" if query else "")


def _link(channel: str, url: str, text: str, title: str) -> str:
    if channel == WHATSAPP:
        return f"https://wa.me/?text={_q(f'{text} {url}')}"
    if channel == TELEGRAM:
        return f"https://t.me/share/url?url={_q(url)}&text={_q(text)}"
    if channel == X:
        return f"https://twitter.com/intent/tweet?url={_q(url)}&text={_q(text)}"
    if channel == FACEBOOK:
        return f"https://www.facebook.com/sharer/sharer.php?u={_q(url)}"
    # RFC 6068: spaces as %20, never "+", or mail programs show the pluses.
    body = text + "\n\n" + url
    return f"mailto:?subject={_q(title)}&body={_q(body)}"


@dataclass(frozen=True)
class ShareLink:
    channel: str
    label: str
    href: str


@dataclass(frozen=True)
class Sharing:
    """What a share box shows: the links, and the addresses copy-link and the Web
    Share API hand out."""

    text: str
    title: str
    links: tuple[ShareLink, ...]
    copy_url: str
    share_url: str


def share_text(title: str) -> str:
    """The words that go with a shared link, in the interface's language."""
    return _("I signed: %(title)s") % {"title": title}


def sharing(base_url: str, slug: str, title: str, lang: str | None = None) -> Sharing:
    """Every channel's link to petition `slug`, in the current interface language.

    `lang` is kept in the shared address when given (a petition in several languages):
    the people a signer shares with usually read what the signer read.
    """
    text = share_text(title)

    def url(channel: str) -> str:
        return petition_url(base_url, slug, lang=lang, ref=channel)

    links = tuple(
        ShareLink(
            channel,
            _(label) if channel == EMAIL else label,
            _link(channel, url(channel), text, title),
        )
        for channel, label in _LABELS.items()
    )
    return Sharing(text, title, links, url(COPY), url(SHARE))


def og_locale(language: str) -> str:
    """Open Graph's locale (language_TERRITORY) for a language code: fa -> fa_IR."""
    code = language.replace("-", "_")
    likely = get_global("likely_subtags").get(code.split("_")[0].lower())
    if "_" in code:
        return code
    if likely:
        parts = likely.split("_")
        return f"{parts[0]}_{parts[-1]}" if len(parts) > 1 else parts[0]
    return code


def count_step(count: int) -> int:
    """The count a share image shows: exact below 100, then rounded down to two
    significant digits (1,234 -> 1,200), so an image is drawn again only when the
    count has grown by about a hundredth, and a cached copy is never wrong."""
    if count < 100:
        return max(count, 0)
    unit = 10 ** (len(str(count)) - 2)
    return count // unit * unit


@dataclass(frozen=True)
class LinkPreview:
    """The Open Graph / Twitter card addresses of a petition page, all absolute."""

    url: str  # what link previews point to: the page, with the visitor's `ref` kept
    canonical: str  # a path: the page's <link>s never name another origin
    image: str
    locale: str


def page_language(petition) -> str | None:
    """The `lang` a petition's shared and canonical addresses carry: only a petition in
    several languages needs one."""
    return petition.language if len(petition.languages) > 1 else None


def share_image_url(base_url: str, slug: str, lang: str, count: int) -> str:
    """The share picture; `v` changes with the count step, so a link-preview service
    that keeps pictures by address fetches the new one."""
    query = urlencode({"lang": lang, "v": count_step(count)})
    return f"{base_url}/p/{_q(slug)}/share.png?{query}"


def link_preview(base_url: str, petition, count: int, lang: str, ref: str | None) -> LinkPreview:
    """`ref` must already be checked (signing.valid_ref): it is kept so that a
    preview's link (Facebook's, say) still says which channel brought people."""
    text_lang = page_language(petition)
    return LinkPreview(
        url=petition_url(base_url, petition.slug, lang=text_lang, ref=ref),
        canonical=petition_url("", petition.slug, lang=text_lang),
        image=share_image_url(base_url, petition.slug, lang, count),
        locale=og_locale(lang),
    )


def sharing_for(base_url: str, petition) -> Sharing:
    return sharing(base_url, petition.slug, petition.title, page_language(petition))
