"""The transparency log as people read it: its hours in their language, the head to show.

The log says of time only the hour (log_keys.hour_text, "2026-11-27T02Z"); pages and
emails write it as a date and an hour in UTC, with the language's own digits.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime

from databases import Database

from . import i18n, transparency
from .db import raw_connection
from .log_keys import HOUR_FORMAT, TreeHead
from .numbers import format_date, localise_digits, numbering_system


def hour_of(text: str) -> datetime | None:
    """The hour a log text names, or None when it is not one."""
    try:
        return datetime.strptime(text, HOUR_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def format_log_hour(text: str, language: str | None = None) -> str:
    """ "2026-11-27T02Z" as "27 Nov 2026, 02:00 UTC" in the page's language."""
    moment = hour_of(text)
    if moment is None:
        return ""
    with i18n.language(language) if language else nullcontext():
        code = i18n.current_language()
        hour = localise_digits(moment.strftime("%H:00"), numbering_system(code))
        # Translators: a time in the public log, e.g. "27 Nov 2026, 02:00 UTC".
        return i18n._("%(date)s, %(hour)s UTC", date=format_date(moment, code), hour=hour)


async def current_head(db: Database, petition_id: int) -> TreeHead | None:
    """The latest signed head, to print as a checkpoint (None before the first is signed)."""
    async with raw_connection(db) as conn:
        return await transparency.latest_head(conn, petition_id)
