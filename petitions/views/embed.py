"""Pages for other sites: the embed page (made for an iframe) and embed.js."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..browser_texts import browser_texts
from ..pagecache import cached_page
from ..paths import STATIC_DIR
from .base import load_petition, render_petition_form


@cached_page
async def embed(request: Request) -> Response:
    """Counter and (unless ?form=0) the sign form; its form posts to the same address
    (`views.signing.sign_embedded`)."""
    petition = await load_petition(request)
    ref = request.query_params.get("ref", "")[:64]
    return await render_petition_form(
        request,
        petition,
        {"ref": ref or "embed"},
        {},
        200,
        template="embed.html",
        show_form=request.query_params.get("form") != "0",
        signed=request.query_params.get("signed") == "1",
    )


async def embed_js(request: Request) -> Response:
    return FileResponse(
        STATIC_DIR / "embed.js",
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


async def texts_json(request: Request) -> Response:
    """embed.js's texts in the language of `?lang=` (petitions/browser_texts.py)."""
    return JSONResponse(
        browser_texts(),
        headers={
            "Cache-Control": "public, max-age=3600",
            "Access-Control-Allow-Origin": "*",
            "Vary": "Accept-Language",
        },
    )
