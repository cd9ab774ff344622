"""Editing petitions: settings, status changes, and the versioned, translated statement.

The statement's rule: signatures record the version they signed. So while no
one has signed the current version its text is corrected in place; once
someone has, a change to its text makes version N+1 (with every language's
text), and the signers of version N keep what they signed. Adding a
translation changes nothing anyone signed, so it joins the current version.

A petition's address (slug) can change only until it is first published:
after that, emails, embeds and bookmarks point at it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from . import audit
from .fields import FieldErrors, FieldReader
from .petitions import StatementText, create_petition, valid_language, valid_slug

RESERVED_SLUGS = frozenset({"new"})  # /admin/petitions/new is the form for a new one
MAX_GOAL = 1_000_000_000
MAX_DEMANDS = 50
MAX_DEMAND_LENGTH = 500

# Which status may follow which. A published petition never goes back to draft:
# people have seen and signed it.
STATUS_CHANGES: dict[str, tuple[str, ...]] = {
    "draft": ("open", "archived"),
    "open": ("closed", "archived"),
    "closed": ("open", "archived"),
    "archived": ("closed",),
}


class EditError(ValueError):
    """An edit that the rules do not allow; the message is safe to show."""


@dataclass(frozen=True)
class PetitionSettings:
    slug: str
    goal: int | None
    closes_at: datetime | None
    accepts_individuals: bool
    accepts_organisations: bool
    moderate_organisations: bool
    default_language: str
    # Where signing is dangerous: the sign form explains initials and anonymous there.
    dangerous_countries: tuple[str, ...] = ()


def read_settings(
    values: Mapping[str, object], languages: Collection[str] | None = None
) -> PetitionSettings:
    """The settings part of a petition form. `languages`: those the statement has
    (None for a new petition, whose first text is in the default language)."""
    reader = FieldReader(values)
    slug = reader.raw("slug").strip().lower()
    if not slug:
        reader.fail("slug", "The address is required.")
    elif not valid_slug(slug):
        reader.fail(
            "slug",
            "Use 1 to 80 lower-case letters, digits and hyphens, not starting or ending "
            "with a hyphen (such as free-the-workers).",
        )
    elif slug in RESERVED_SLUGS:
        reader.fail("slug", f"The address “{slug}” is reserved: choose another.")
    goal = reader.integer("goal", "The goal", 1, MAX_GOAL)
    closes_at = reader.moment("closes_at", "The closing time")
    accepts_individuals = reader.flag("accepts_individuals")
    accepts_organisations = reader.flag("accepts_organisations")
    if not (accepts_individuals or accepts_organisations):
        reader.fail("accepts", "Accept signatures from individuals, organisations, or both.")
    language = reader.raw("default_language").strip() or "en"
    if not valid_language(language):
        reader.fail("default_language", "Give a language code such as en, fa or pt-BR.")
    elif languages is not None and language not in languages:
        reader.fail(
            "default_language",
            "The statement has no text in that language yet: add the translation first.",
        )
    dangerous_countries = reader.countries(
        "dangerous_countries", "Countries where signing is dangerous"
    )
    reader.check()
    return PetitionSettings(
        slug=slug,
        goal=goal,
        closes_at=closes_at,
        accepts_individuals=accepts_individuals,
        accepts_organisations=accepts_organisations,
        moderate_organisations=reader.flag("moderate_organisations"),
        default_language=language,
        dangerous_countries=dangerous_countries,
    )


def read_statement(values: Mapping[str, object]) -> tuple[StatementText, str]:
    """The statement text of one language and the note on what changed."""
    reader = FieldReader(values)
    text = StatementText(
        title=reader.text("title", "The title", 200, required=True),
        summary=reader.text("summary", "The summary", 1000, multiline=True),
        target=reader.text("target", "The target", 300),
        body=reader.text("body", "The statement", 100_000, markdown=True),
        demands=reader.lines("demands", "The demands", MAX_DEMANDS, MAX_DEMAND_LENGTH),
    )
    note = reader.text("note", "The note", 500)
    reader.check()
    return text, note


def read_language(raw: object) -> str | None:
    code = raw.strip() if isinstance(raw, str) else ""
    return code if valid_language(code) else None


# Creating and changing petitions -------------------------------------------------------

_SLUG_TAKEN = "Another petition already uses this address."


async def create_petition_from(
    conn: asyncpg.Connection, settings: PetitionSettings, text: StatementText, admin_id: int
) -> int:
    """A new draft petition with statement version 1; FieldErrors when the slug is taken."""
    try:
        async with conn.transaction():
            petition_id = await create_petition(
                conn,
                settings.slug,
                {settings.default_language: text},
                status="draft",
                goal=settings.goal,
                closes_at=settings.closes_at,
                accepts_individuals=settings.accepts_individuals,
                accepts_organisations=settings.accepts_organisations,
                moderate_organisations=settings.moderate_organisations,
                default_language=settings.default_language,
                created_by=admin_id,
                dangerous_countries=settings.dangerous_countries,
            )
            await audit.record(
                conn, admin_id, "petition.create", petition_id=petition_id,
                details={"slug": settings.slug},
            )  # fmt: skip
    except asyncpg.UniqueViolationError:
        raise FieldErrors({"slug": _SLUG_TAKEN}) from None
    return petition_id


_SETTINGS_COLUMNS = (
    "slug", "goal", "closes_at", "accepts_individuals", "accepts_organisations",
    "moderate_organisations", "default_language", "dangerous_countries",
)  # fmt: skip


def _stored(value: object) -> object:
    """A setting as the database gives it back (arrays come back as lists)."""
    return list(value) if isinstance(value, tuple) else value


async def update_settings(
    conn: asyncpg.Connection, petition_id: int, new: PetitionSettings, admin_id: int
) -> list[str]:
    """Save a petition's settings; return the names of the ones that changed."""
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM petitions WHERE id = $1 FOR NO KEY UPDATE", petition_id
            )
            if row is None:
                raise EditError("This petition no longer exists.")
            if new.slug != row["slug"] and row["published_at"] is not None:
                raise FieldErrors(
                    {"slug": "The address of a published petition cannot change: "
                             "emails, embeds and bookmarks point at it."}
                )  # fmt: skip
            changed = [c for c in _SETTINGS_COLUMNS if _stored(getattr(new, c)) != row[c]]
            if not changed:
                return []
            await conn.execute(
                """
                UPDATE petitions
                   SET slug = $2, goal = $3, closes_at = $4, accepts_individuals = $5,
                       accepts_organisations = $6, moderate_organisations = $7,
                       default_language = $8, dangerous_countries = $9, updated_at = now()
                 WHERE id = $1
                """,
                petition_id, *(_stored(getattr(new, c)) for c in _SETTINGS_COLUMNS),
            )  # fmt: skip
            await audit.record(
                conn, admin_id, "petition.settings", petition_id=petition_id,
                details={c: {"from": row[c], "to": _stored(getattr(new, c))} for c in changed},
            )  # fmt: skip
    except asyncpg.UniqueViolationError:
        raise FieldErrors({"slug": _SLUG_TAKEN}) from None
    return changed


async def change_status(
    conn: asyncpg.Connection, petition_id: int, new_status: str, admin_id: int
) -> str:
    """Move a petition to `new_status` if the rules allow it; return the old status."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT status, closes_at FROM petitions WHERE id = $1 FOR NO KEY UPDATE", petition_id
        )
        if row is None:
            raise EditError("This petition no longer exists.")
        old = row["status"]
        if new_status not in STATUS_CHANGES.get(old, ()):
            raise EditError(f"A petition that is {old} cannot become {new_status}.")
        if new_status == "open" and row["closes_at"] and row["closes_at"] <= datetime.now(UTC):
            raise EditError("Its closing time has passed: set a later one (or none) first.")
        await conn.execute(
            """
            UPDATE petitions
               SET status = $2, updated_at = now(),
                   published_at = CASE WHEN $2 = 'open' THEN coalesce(published_at, now())
                                       ELSE published_at END
             WHERE id = $1
            """,
            petition_id,
            new_status,
        )
        await audit.record(
            conn, admin_id, "petition.status", petition_id=petition_id,
            details={"from": old, "to": new_status},
        )  # fmt: skip
    return old


async def petition_row(conn: asyncpg.Connection, petition_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM petitions WHERE id = $1", petition_id)


# The statement -------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """The current version of a petition's statement, in every language it has."""

    version_id: int
    version: int
    note: str
    texts: dict[str, StatementText]
    signed: bool  # someone signed this version: a change of its text makes a new one


async def current_statement(conn: asyncpg.Connection, petition_id: int) -> Statement:
    version = await conn.fetchrow(
        """
        SELECT id, version, note,
               EXISTS (SELECT 1 FROM signatures s
                        WHERE s.petition_id = v.petition_id AND s.version_id = v.id) AS signed
          FROM statement_versions v
         WHERE petition_id = $1 ORDER BY version DESC LIMIT 1
        """,
        petition_id,
    )
    if version is None:
        raise EditError("This petition has no statement.")
    rows = await conn.fetch(
        "SELECT language, title, summary, target, body, demands FROM statement_texts "
        "WHERE version_id = $1 ORDER BY language",
        version["id"],
    )
    texts = {
        r["language"]: StatementText(
            r["title"], r["summary"], r["target"], r["body"], tuple(r["demands"])
        )
        for r in rows
    }
    return Statement(version["id"], version["version"], version["note"], texts, version["signed"])


@dataclass(frozen=True)
class SavedStatement:
    version: int
    new_version: bool
    changed: bool


async def save_statement(
    conn: asyncpg.Connection,
    petition_id: int,
    language: str,
    text: StatementText | None,
    note: str,
    admin_id: int,
) -> SavedStatement:
    """Save the text of one language (None removes that translation), versioning as the
    rule says."""
    async with conn.transaction():
        # Locking the version row waits for signatures being stored against it (they
        # hold a key-share lock) and holds off new ones until this edit is done.
        await conn.execute(
            """
            SELECT 1 FROM statement_versions WHERE petition_id = $1
             ORDER BY version DESC LIMIT 1 FOR UPDATE
            """,
            petition_id,
        )
        current = await current_statement(conn, petition_id)
        default_language = await conn.fetchval(
            "SELECT default_language FROM petitions WHERE id = $1", petition_id
        )
        texts = dict(current.texts)
        if text is None:
            if language == default_language:
                raise EditError("The text in the petition's default language cannot be removed.")
            if language not in texts:
                return SavedStatement(current.version, False, False)
            del texts[language]
        elif texts.get(language) == text:  # the same text: at most a new note on the version
            if not note or note == current.note:
                return SavedStatement(current.version, False, False)
            await conn.execute(
                "UPDATE statement_versions SET note = $2 WHERE id = $1", current.version_id, note
            )
            await audit.record(
                conn, admin_id, "statement.note", petition_id=petition_id,
                details={"version": current.version},
            )  # fmt: skip
            return SavedStatement(current.version, False, True)
        else:
            texts[language] = text
        rewrites_signed_text = current.signed and (text is None or language in current.texts)
        if rewrites_signed_text:
            version_id = await conn.fetchval(
                """
                INSERT INTO statement_versions (petition_id, version, note, created_by)
                VALUES ($1, $2, $3, $4) RETURNING id
                """,
                petition_id, current.version + 1, note, admin_id,
            )  # fmt: skip
            version = current.version + 1
        else:
            version_id, version = current.version_id, current.version
            await conn.execute("DELETE FROM statement_texts WHERE version_id = $1", version_id)
            if note:
                await conn.execute(
                    "UPDATE statement_versions SET note = $2 WHERE id = $1", version_id, note
                )
        await conn.executemany(
            """
            INSERT INTO statement_texts (version_id, language, title, summary, target, body, demands)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            """,
            [
                (version_id, lang, t.title, t.summary, t.target, t.body, list(t.demands))
                for lang, t in sorted(texts.items())
            ],
        )
        await conn.execute("UPDATE petitions SET updated_at = now() WHERE id = $1", petition_id)
        action = "statement.remove_translation" if text is None else "statement.edit"
        await audit.record(
            conn, admin_id, action, petition_id=petition_id,
            details={"language": language, "version": version, "new_version": rewrites_signed_text},
        )  # fmt: skip
    return SavedStatement(version, rewrites_signed_text, True)


def statement_values(text: StatementText) -> dict[str, str]:
    """A statement text as the values of its form."""
    return {
        "title": text.title,
        "summary": text.summary,
        "target": text.target,
        "body": text.body,
        "demands": "\n".join(text.demands),
    }


def settings_values(row: Mapping[str, object]) -> dict[str, object]:
    """A petition's settings as the values of its form."""
    closes_at = row.get("closes_at")
    return {
        "slug": row["slug"],
        "goal": "" if row.get("goal") is None else str(row["goal"]),
        "closes_at": closes_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        if isinstance(closes_at, datetime)
        else "",
        "accepts_individuals": "1" if row["accepts_individuals"] else "",
        "accepts_organisations": "1" if row["accepts_organisations"] else "",
        "moderate_organisations": "1" if row["moderate_organisations"] else "",
        "default_language": row["default_language"],
        "dangerous_countries": " ".join(row.get("dangerous_countries") or ()),
    }
