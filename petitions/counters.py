"""Counts and petition summaries kept in memory per process.

Embeds on busy sites read counts on every page view, so they are never counted
per request: each process keeps the tallies of the petitions it has been asked
about, refreshes a petition when a notification says it changed (see events.py),
and reconciles everything with the database periodically.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from databases import Database

from .db import raw_connection
from .disclosure import public_time_text
from .petitions import Counts, get_counts_for, valid_slug


@dataclass(frozen=True)
class CachedPetition:
    """What counters, badges and event streams need to know of a petition."""

    id: int
    slug: str
    status: str
    goal: int | None
    closes_at: datetime | None

    @property
    def is_public(self) -> bool:
        return self.status != "draft"


@dataclass(frozen=True)
class CountSnapshot:
    """One petition's counts at one moment. A new snapshot replaces it when they change,
    so what is derived from it is computed once, not on every count.json request."""

    petition: CachedPetition
    counts: Counts

    @cached_property
    def payload(self) -> dict:
        return {
            "slug": self.petition.slug,
            "count": self.counts.total,
            "individuals": self.counts.individuals,
            "organisations": self.counts.organisations,
            "goal": self.petition.goal,
            # The time of the latest signature would single its signer out: the hour only.
            "updated_at": public_time_text(self.counts.updated_at),
        }

    @cached_property
    def body(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode()

    @cached_property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


class CountCache:
    """Petition summaries by slug and id, and their counts, in this process's memory."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_id: dict[int, CountSnapshot] = {}
        self._slugs: dict[str, int] = {}
        # Reads of the tallies are numbered as they start; each snapshot keeps the number
        # of the read it came from. Two refreshes may overlap (the listener's catch-up
        # after a reconnect beside a pass of events): a read that started later saw every
        # commit the earlier one saw, so the earlier one's answer, if it comes back last,
        # is dropped rather than put back over a newer count.
        self._reads = itertools.count()
        self._read_of: dict[int, int] = {}

    def cached(self, slug: str) -> CountSnapshot | None:
        """The snapshot of `slug` if this process holds it (no database, no await)."""
        petition_id = self._slugs.get(slug)
        return None if petition_id is None else self._by_id.get(petition_id)

    async def by_slug(self, slug: str) -> CountSnapshot | None:
        if not valid_slug(slug):
            return None
        snapshot = self.cached(slug)
        if snapshot is not None:
            return snapshot
        summary = await self._load_summary("slug = $1", slug)
        if summary is None:
            return None
        await self.refresh([summary.id], {summary.id: summary})
        return self._by_id.get(summary.id)

    async def by_id(self, petition_id: int) -> CountSnapshot | None:
        if petition_id in self._by_id:
            return self._by_id[petition_id]
        summary = await self._load_summary("id = $1", petition_id)
        if summary is None:
            return None
        await self.refresh([summary.id], {summary.id: summary})
        return self._by_id.get(summary.id)

    def cached_ids(self) -> list[int]:
        return list(self._by_id)

    def forget(self, petition_id: int) -> None:
        """A petition changed (slug, goal, status): load it afresh when next asked."""
        snapshot = self._by_id.pop(petition_id, None)
        if snapshot is not None:
            self._slugs.pop(snapshot.petition.slug, None)

    async def refresh(
        self, petition_ids: list[int], summaries: dict[int, CachedPetition] | None = None
    ) -> None:
        """Re-read the tallies of these petitions (one query for all of them)."""
        known = set(self._by_id) | set(summaries or {})
        ids = [pid for pid in petition_ids if pid in known]
        if not ids:
            return
        read = next(self._reads)
        counts = await get_counts_for(self.db, ids)
        for pid in ids:
            if self._read_of.get(pid, -1) > read:
                continue  # a read that started after this one has stored its count
            known = self._by_id.get(pid)
            summary = (summaries or {}).get(pid) or (known.petition if known else None)
            if summary is None:
                continue  # forgotten meanwhile: loaded afresh when next asked
            self._by_id[pid] = CountSnapshot(summary, counts[pid])
            self._read_of[pid] = read
            self._slugs[summary.slug] = pid

    async def reconcile(self) -> None:
        """Reload every cached petition's summary and counts from the database."""
        ids = self.cached_ids()
        if not ids:
            return
        async with raw_connection(self.db) as conn:
            rows = await conn.fetch(_SUMMARY_SQL + " WHERE id = ANY($1::bigint[])", ids)
        summaries = {r["id"]: CachedPetition(**dict(r)) for r in rows}
        for pid in set(ids) - set(summaries):
            self.forget(pid)
        for pid, summary in summaries.items():
            old = self._by_id.get(pid)
            if old is not None and old.petition.slug != summary.slug:
                self._slugs.pop(old.petition.slug, None)
        await self.refresh(list(summaries), summaries)

    async def _load_summary(self, where: str, value) -> CachedPetition | None:
        async with raw_connection(self.db) as conn:
            row = await conn.fetchrow(f"{_SUMMARY_SQL} WHERE {where}", value)
        return CachedPetition(**dict(row)) if row else None


_SUMMARY_SQL = "SELECT id, slug, status, goal, closes_at FROM petitions"
