"""What public pages, JSON and live events may reveal beyond a signature itself.

Nothing public may single a signer out. Two rules live here, so that every
public surface applies the same ones:

- **Times** are no finer than the hour: `public_time` rounds down to the hour
  (UTC) every time that leaves the app on a public channel.
- **Breakdowns** name a group only when it has at least `PUBLIC_MIN_GROUP`
  (k) counted signatures. `public_breakdown` is the one place that decides
  which countries may be named, from the counts this process holds in memory
  (counters.py) at that moment; pages fold the others into "other
  countries", the JSON list and the live stream leave their `country` out,
  and a `?country=` filter for one of them answers exactly as for a country
  nobody signed from. Since every endpoint asks the same function with the
  same counts, no endpoint can name a country that another one hides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from .petitions import Counts


def public_time(moment: datetime | None) -> datetime | None:
    """`moment` rounded down to the hour, in UTC: the finest time the public sees."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def public_time_text(moment: datetime | None) -> str | None:
    """`public_time` as ISO 8601 text (as JSON and live events carry it)."""
    rounded = public_time(moment)
    return rounded.isoformat() if rounded else None


@dataclass(frozen=True)
class PublicBreakdown:
    """The counts by country as the public may see them.

    `countries`: (code, count) of every country with at least `min_group`
    signatures, most first; `other`: the signatures of all the others together
    (never split, never named)."""

    countries: tuple[tuple[str, int], ...]
    other: int
    min_group: int

    @property
    def named(self) -> frozenset[str]:
        return frozenset(code for code, _ in self.countries)

    def names(self, code: str | None) -> bool:
        """May this country be named publicly now?"""
        return code is not None and code in self.named

    def country(self, code: str | None) -> str | None:
        """`code` if it may be named, else None."""
        return code if self.names(code) else None


def fold_small_groups(
    groups: Iterable[tuple[str, int]], min_group: int
) -> tuple[tuple[tuple[str, int], ...], int]:
    """Split (name, count) pairs into those with at least `min_group` and the sum of the rest."""
    named, other = [], 0
    for name, n in groups:
        if n >= min_group:
            named.append((name, n))
        else:
            other += n
    return tuple(named), other


def public_breakdown(counts: Counts, min_group: int) -> PublicBreakdown:
    """The one decision of which countries may be named, from `counts` (Counts.by_country
    holds the counted signatures per country, most first)."""
    named, other = fold_small_groups(counts.by_country, max(1, min_group))
    return PublicBreakdown(named, other, max(1, min_group))
