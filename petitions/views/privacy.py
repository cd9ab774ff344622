"""The privacy page: what is stored, encrypted or not, for how long, who sees it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..privacy import privacy_facts
from .base import render


async def privacy_page(request: Request) -> Response:
    facts = privacy_facts(request.app.state.settings)
    return render(request, "privacy.html", {"facts": facts})
