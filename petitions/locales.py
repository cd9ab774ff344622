"""Which language a request is answered in, and keeping that choice in the links a page makes.

A page of a petition: `?lang=` first (a language of the petition's statement, or an
interface language), then the best match of `Accept-Language` among the statement's
languages, then the petition's default language. Any other page: `?lang=`, then
`Accept-Language`, among the interface languages, then English. The interface
follows the statement: a Persian statement gets Persian chrome, and a statement in
a language the interface lacks gets English chrome.

`ChooseLanguage` (middleware) makes the site-wide choice for every request;
`views.base.load_petition` refines it once the petition's languages are known.
A `?lang=` that decided is carried on by `lang_url()` in every link the page makes;
a choice made from `Accept-Language` needs no parameter (the next request, from the
same browser, is answered the same way) but makes the answer `Vary: Accept-Language`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from starlette.datastructures import URL, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import i18n

# Headers are read only this far, and only so many languages in them: browsers send
# a handful; anything longer is noise or an attack.
MAX_HEADER_CHARS = 1000
MAX_WISHES = 20
MAX_TAG_CHARS = 35
_TAG = re.compile(r"^[a-z]{1,8}(-[a-z0-9]{1,8})*$")
_QUALITY = re.compile(r"^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$")  # RFC 9110 qvalue

# Pages that stay English whatever the browser says (the admin).
ENGLISH_ONLY_PREFIXES = ("/admin",)


def normalise_tag(value: object) -> str | None:
    """A language tag as we compare them ('fa-ir' for 'fa_IR'), or None if it is not one."""
    if not isinstance(value, str) or len(value) > MAX_TAG_CHARS:
        return None
    tag = value.strip().replace("_", "-").lower()
    return tag if _TAG.match(tag) else None


def accepted_languages(header: str | None) -> list[str]:
    """The languages of an Accept-Language header, most wanted first (by q, then order);
    those with q=0, wildcards and malformed entries left out."""
    if not header:
        return []
    wishes: list[tuple[float, int, str]] = []
    for position, part in enumerate(header[:MAX_HEADER_CHARS].split(",")[:MAX_WISHES]):
        tag_text, *parameters = part.split(";")
        tag = normalise_tag(tag_text)
        if tag is None:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                quality = float(value) if _QUALITY.match(value) else 0.0
        if quality > 0:
            wishes.append((-quality, position, tag))
    seen: dict[str, None] = {}
    for _, _, tag in sorted(wishes):
        seen.setdefault(tag, None)
    return list(seen)


def match(tag: str, available: Iterable[str]) -> str | None:
    """The available language (as it is spelled there) that serves `tag`: the same tag,
    then the tag cut short ('zh-hant-tw', 'zh-hant', 'zh'; RFC 4647 lookup), then
    another variety of the same language ('pt' for 'pt-BR')."""
    by_tag = {code.lower(): code for code in available}
    parts = tag.split("-")
    while parts:
        found = by_tag.get("-".join(parts))
        if found is not None:
            return found
        parts.pop()
    primary = tag.split("-", 1)[0]
    return next(
        (code for lowered, code in sorted(by_tag.items()) if lowered.split("-")[0] == primary),
        None,
    )


def best_match(wishes: Sequence[str], available: Iterable[str]) -> str | None:
    available = tuple(available)
    for wish in wishes:
        found = match(wish, available)
        if found is not None:
            return found
    return None


def _interface_for(code: str) -> str:
    return i18n.interface_language(code) or i18n.DEFAULT_LANGUAGE


@dataclass(frozen=True)
class LanguageChoice:
    text: str  # the language of the text to show (statement, or the interface's own)
    interface: str  # the language of the interface around it
    link: str | None  # what links carry as ?lang=: the ?lang= that decided, if one did
    negotiated: bool  # Accept-Language was consulted: the answer varies with it


def choose_language(
    requested: object,
    accept_language: str | None,
    available: Iterable[str],
    default: str,
) -> LanguageChoice:
    """`?lang=` (`requested`), then `Accept-Language`, among the `available` texts, then
    `default`. A `?lang=` that is no text's language but an interface language keeps
    the default text in that interface."""
    available = tuple(available)
    wanted = normalise_tag(requested)
    if wanted:
        text = match(wanted, available)
        if text is not None:
            return LanguageChoice(text, _interface_for(text), text, negotiated=False)
        interface = i18n.interface_language(wanted)
        if interface is not None:
            return LanguageChoice(default, interface, interface, negotiated=False)
    text = best_match(accepted_languages(accept_language), available) or default
    return LanguageChoice(text, _interface_for(text), None, negotiated=True)


def choose_site_language(requested: object, accept_language: str | None) -> LanguageChoice:
    """For pages without a petition: the interface languages, then English."""
    return choose_language(requested, accept_language, i18n.LANGUAGES, i18n.DEFAULT_LANGUAGE)


def likely_text_language(requested: object, accept_language: str | None) -> str | None:
    """A first guess at the statement language, to fetch the right text in one query
    (views.base.load_petition checks it against the petition's languages)."""
    wanted = normalise_tag(requested)
    if wanted:
        return wanted.split("-")[0]
    wishes = accepted_languages(accept_language)
    return wishes[0].split("-")[0] if wishes else None


def page_variant(requested: object, accept_language: str | None) -> str:
    """What, beside the URL, decides a page's language (for the page cache's key):
    nothing when `?lang=` names an interface language, else the Accept-Language wishes."""
    wanted = normalise_tag(requested)
    if wanted and i18n.interface_language(wanted):
        return ""
    return ",".join(accepted_languages(accept_language))


# The choice for the rest of a request --------------------------------------------

_link_language: ContextVar[str | None] = ContextVar("link_language", default=None)


def use_choice(scope_state: dict, choice: LanguageChoice) -> None:
    """Make `choice` the language of the rest of this request (and of its response's
    headers, through the request's state)."""
    i18n.use_language(choice.interface)
    _link_language.set(choice.link)
    scope_state["language"] = choice


def link_language() -> str | None:
    return _link_language.get()


def lang_url(url: object, **params: object) -> str:
    """`url` with `params` (those not None or empty) and the page's `?lang=`, if one decided."""
    extra = {name: str(value) for name, value in params.items() if value not in (None, "")}
    code = _link_language.get()
    if code:
        extra["lang"] = code
    return str(URL(str(url)).include_query_params(**extra)) if extra else str(url)


@lru_cache(maxsize=256)
def own_name(code: str) -> str:
    """A language by its own name: 'فارسی' for fa, 'português (Brasil)' for pt-BR."""
    if code in i18n.LANGUAGES:
        return i18n.LANGUAGES[code]
    try:
        name = Locale.parse(code.replace("-", "_")).get_display_name(code.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        name = None
    return name[:1].upper() + name[1:] if name else code


@dataclass(frozen=True)
class LanguageLink:
    code: str
    name: str
    href: str
    current: bool


def language_links(
    codes: Iterable[str], current: str, path: str, query: QueryParams | None = None
) -> list[LanguageLink]:
    """Links to the same page (`path` with `query`) in each language of `codes`."""
    kept = [(k, v) for k, v in (query or QueryParams()).multi_items() if k != "lang"]
    links = []
    for code in codes:
        href = f"{path}?{QueryParams(kept + [('lang', code)])}"
        links.append(LanguageLink(code, own_name(code), href, code == current))
    return links


def switcher_links(request, petition=None) -> list[LanguageLink]:
    """The language switcher of a page: a petition's statement languages (the one shown
    marked), or on other pages the interface languages. Links lead to the same page;
    a page answering a form (POST) links to its petition, or to the home page."""
    if request.url.path.startswith(ENGLISH_ONLY_PREFIXES):
        return []
    if petition is not None:  # the petition's own language first
        codes = sorted(petition.languages, key=lambda code: code != petition.default_language)
        current = petition.language
    else:
        codes, current = tuple(i18n.LANGUAGES), i18n.current_language()
    if request.method in ("GET", "HEAD"):
        return language_links(codes, current, request.url.path, request.query_params)
    if petition is None:
        path = "/"
    elif request.url.path.endswith("/embed"):
        path = request.url.path
    else:
        path = f"/p/{petition.slug}"
    return language_links(codes, current, path)


ENGLISH = LanguageChoice("en", "en", None, negotiated=False)


@lru_cache(maxsize=512)
def _site_choice(requested: str | None, accept: bytes | None) -> LanguageChoice:
    """`choose_site_language` for one request's `?lang=` and Accept-Language header:
    the same few pairs come again and again, so they are remembered (within bounds)."""
    return choose_site_language(requested, None if accept is None else accept.decode("latin-1"))


class ChooseLanguage:
    """Chooses every request's language from `?lang=` and `Accept-Language` among the
    interface languages (a petition's pages refine it: views.base.load_petition), and
    marks HTML answers that depend on Accept-Language with `Vary: Accept-Language`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if scope["path"].startswith(ENGLISH_ONLY_PREFIXES):
            choice = ENGLISH
        else:
            query = scope.get("query_string", b"")
            # Parsed only when it may name a language (`%` for an encoded "lang").
            requested = (
                QueryParams(query).get("lang") if b"lang" in query or b"%" in query else None
            )
            accept = next((v for k, v in scope["headers"] if k == b"accept-language"), None)
            # Cut to what is read anyway, so that remembering them stays small.
            if requested is not None and len(requested) > MAX_TAG_CHARS:
                requested = ""  # no language tag, as any longer value
            choice = _site_choice(requested, accept and accept[:MAX_HEADER_CHARS])
        use_choice(state, choice)

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start" and state["language"].negotiated:
                raw = message.get("headers", [])
                content_type = next((v for k, v in raw if k == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    message["headers"] = _vary_on_language(list(raw))
            await send(message)

        await self.app(scope, receive, send_with_vary)


def _vary_on_language(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    for index, (name, value) in enumerate(raw):
        if name.lower() == b"vary":
            if b"accept-language" not in value.lower():
                raw[index] = (name, value + b", Accept-Language")
            return raw
    return raw + [(b"vary", b"Accept-Language")]
