"""The share picture of a petition: GET /p/{slug}/share.png?lang=.."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ..i18n import DEFAULT_LANGUAGE, _, interface_language, language, ngettext, text_direction
from ..numbers import format_number
from ..share_image import ShareCard
from ..sharing import count_step
from .base import live_counts, load_petition

# Part of every cache key and ETag: change it when the drawing changes.
DRAWING_VERSION = "1"
CACHE_CONTROL = "public, max-age=600"


def count_text(total: int, shown: int, language: str) -> str:
    """What the picture says of the count, in the language's own digits."""
    if total == 0:
        return _("Be one of the first to sign")
    number = format_number(shown, language)
    if shown == total:
        return ngettext("%(n)s signature", "%(n)s signatures", total) % {"n": number}
    return ngettext("Over %(n)s signature", "Over %(n)s signatures", shown) % {"n": number}


async def share_image(request: Request) -> Response:
    """The picture link previews show. Drawn once per petition, text, interface language
    and count step (sharing.count_step), then served from memory; unknown or missing
    `lang` falls back to the petition's own language."""
    petition = await load_petition(request)  # drafts: 404
    interface = (
        interface_language(request.query_params.get("lang"))
        or interface_language(petition.language)
        or DEFAULT_LANGUAGE
    )
    total = (await live_counts(request, petition.id)).total
    shown = count_step(total)
    site = urlsplit(request.app.state.settings.base_url).netloc
    key = (
        DRAWING_VERSION, petition.id, petition.version_id, petition.language, petition.title,
        interface, shown, petition.goal, site,
    )  # fmt: skip
    etag = '"' + hashlib.sha256(repr(key).encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    with language(interface):
        card = ShareCard(
            title=petition.title,
            count=count_text(total, shown, interface),
            footer=_("Sign at %(site)s") % {"site": site},
            progress=shown / petition.goal if petition.goal else None,
            rtl=text_direction(petition.language) == "rtl",
        )
    image = await request.app.state.share_images.get(key, card)
    return Response(image, media_type="image/png", headers=headers)
