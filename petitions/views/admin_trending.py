"""The networks and email domains signing fastest against their usual rate (trending.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from ..trending import trending
from .admin_base import admin_page, render


@admin_page()
async def trending_page(request: Request) -> Response:
    now = datetime.now(UTC)
    sources = await trending(request.app.state.db)
    return render(
        request,
        "trending.html",
        {
            "sources": sources,
            # The bulk links' window: the last hour, from the minute before it began.
            "since": (now - timedelta(hours=1, minutes=1)).strftime("%Y-%m-%dT%H:%M"),
            "threshold": request.app.state.settings.trending_alert_per_hour,
        },
    )
