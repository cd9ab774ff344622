"""Checking every form and query string, public and admin: text, emails, web addresses,
whole numbers, times, choices, countries.

A `FieldReader` collects one message per bad field instead of stopping at the
first, so a form comes back with every problem marked at once; `check()` raises
them together as `FieldErrors`. Nothing here knows about HTTP: it reads any
mapping of names to strings. This module holds the one definition of the
characters no field may contain.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from .countries import COUNTRY_CODES
from .i18n import DEFAULT_LANGUAGE, _, current_language
from .keys import normalise_email
from .lookalikes import strip_invisible
from .numbers import BadCount, parse_count

# C0 controls (but tab and newline where multi-line text is allowed), DEL, C1
# controls, bidirectional overrides and Unicode non-characters.
_FORBIDDEN = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufffe\uffff]"
)
_FORBIDDEN_IN_LINE = re.compile(r"[\t\n\r]")

MAX_EMAIL_LENGTH = 254
EARLIEST_YEAR = 2000
LATEST_YEAR = 2100


class BadValue(ValueError):
    """A malformed query or form value; the message is safe to show."""


class FieldErrors(BadValue):
    """Bad form values: field name -> a message that is safe to show.

    As a `BadValue` its text is the messages joined, for a query string whose
    errors are shown on one error page."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


def _figure(n: int) -> str:
    """1000 and 100,000: digits grouped from five on, as most style guides write them."""
    return f"{n:,}" if n >= 10_000 else str(n)


def _whole_number(label: str, low: int, high: int) -> str:
    low_text, high_text = format(low, ","), format(high, ",")
    return _(
        "%(field)s must be a whole number from %(low)s to %(high)s.",
        field=label,
        low=low_text,
        high=high_text,
    )


def _email_problem(reason: str) -> str:
    """email-validator explains in English only: its reason is shown on English pages."""
    if current_language() == DEFAULT_LANGUAGE:
        return _("This does not look like an email address: %(reason)s", reason=reason)
    return _("This does not look like an email address.")


def has_forbidden_characters(value: str, multiline: bool = False) -> bool:
    if _FORBIDDEN.search(value):
        return True
    return not multiline and bool(_FORBIDDEN_IN_LINE.search(value))


class FieldReader:
    """Reads named values from a form or query string, noting a message per bad one."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.errors: dict[str, str] = {}

    def raw(self, name: str) -> str:
        value = self.values.get(name)
        return value if isinstance(value, str) else ""

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    def check(self) -> None:
        if self.errors:
            raise FieldErrors(dict(self.errors))

    def text(
        self,
        name: str,
        label: str,
        limit: int,
        *,
        required: bool = False,
        multiline: bool = False,
        markdown: bool = False,
        visible_only: bool = False,
    ) -> str:
        """Trimmed, NFC text; one-line text has its runs of white space folded.

        Markdown keeps its white space as typed (indentation means something
        there); only line endings are made uniform. `visible_only` (names) drops
        invisible characters that could make a look-alike of another name.
        """
        raw = self.raw(name)
        if visible_only:
            raw = strip_invisible(raw)
        if has_forbidden_characters(raw.replace("\r", "").replace("\t", " "), multiline=True):
            self.fail(name, _("%(field)s contains characters that are not allowed.", field=label))
            return ""
        text = unicodedata.normalize("NFC", raw)
        if markdown or multiline:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if markdown:
            text = text.strip("\n").rstrip()
        elif multiline:
            text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
            text = re.sub(r"\n{3,}", "\n\n", text).strip()
        else:
            text = " ".join(text.split())
        if not text:
            if required:
                self.fail(name, _("%(field)s is required.", field=label))
            return ""
        if len(text) > limit:
            self.fail(
                name,
                _(
                    "%(field)s must be at most %(limit)s characters (it has %(length)s).",
                    field=label,
                    limit=_figure(limit),
                    length=_figure(len(text)),
                ),
            )
            return ""
        return text

    def lines(self, name: str, label: str, max_lines: int, line_limit: int) -> tuple[str, ...]:
        """Non-empty lines of a text area, one item each (such as the demands)."""
        text = self.text(name, label, max_lines * (line_limit + 1), multiline=True)
        items = tuple(line.strip() for line in text.split("\n") if line.strip())
        if len(items) > max_lines:
            self.fail(name, f"{label}: at most {max_lines} lines (there are {len(items)}).")
            return ()
        for item in items:
            if len(item) > line_limit:
                self.fail(name, f"{label}: each line may have at most {line_limit} characters.")
                return ()
        return items

    def integer(
        self, name: str, label: str, low: int, high: int, *, required: bool = False
    ) -> int | None:
        try:  # "12 500", "12.500", "۱۲۵۰۰": numbers.parse_count
            value = parse_count(self.raw(name))
        except BadCount:
            self.fail(name, _whole_number(label, low, high))
            return None
        if value is None:
            if required:
                self.fail(name, _("%(field)s is required.", field=label))
            return None
        if not low <= value <= high:
            self.fail(name, _whole_number(label, low, high))
            return None
        return value

    def moment(self, name: str, label: str) -> datetime | None:
        """A date (midnight) or a date and time; without a time zone it is UTC."""
        raw = self.raw(name).strip()
        if not raw:
            return None
        value = parse_moment(raw)
        if value is None:
            self.fail(
                name,
                f"{label} must be a date such as 2025-05-01, or a date and time such as "
                "2025-05-01T18:00 (UTC).",
            )
        return value

    def choice(
        self,
        name: str,
        label: str,
        choices: Collection[str],
        default: str = "",
        message: str | None = None,
    ) -> str:
        value = self.raw(name).strip() or default
        if value not in choices:
            self.fail(name, message or _("Choose %(field)s from the list.", field=label))
            return default
        return value

    def option(self, name: str, choices: Collection[str], message: str) -> str | None:
        """A filter that may be left out: None when empty."""
        value = self.raw(name).strip()
        if not value:
            return None
        if value not in choices:
            self.fail(name, message)
            return None
        return value

    def country(self, name: str, message: str, required: bool = False) -> str | None:
        """An ISO 3166-1 alpha-2 code, in any case."""
        value = self.raw(name).strip().upper()
        if not value and not required:
            return None
        if value not in COUNTRY_CODES:
            self.fail(name, message)
            return None
        return value

    def countries(self, name: str, label: str, limit: int = 300) -> tuple[str, ...]:
        """ISO 3166-1 alpha-2 codes separated by spaces or commas, in any case: each
        once, sorted. One message names the codes that are not countries."""
        raw = self.raw(name)
        if len(raw) > limit * 4 or has_forbidden_characters(raw):
            self.fail(name, f"{label}: give at most {limit} country codes such as IR or TJ.")
            return ()
        codes = [c.upper() for c in re.split(r"[\s,;]+", raw) if c]
        unknown = [c[:10] for c in codes if c not in COUNTRY_CODES]
        if unknown:
            self.fail(
                name,
                f"{label}: {', '.join(unknown[:5])} {'is' if len(unknown) == 1 else 'are'} not "
                "an ISO country code (use two letters such as IR or TJ).",
            )
            return ()
        if len(set(codes)) > limit:
            self.fail(name, f"{label}: give at most {limit} country codes.")
            return ()
        return tuple(sorted(set(codes)))

    def search(self, name: str, limit: int) -> str | None:
        """Search text for a list: one line, bounded."""
        value = self.raw(name).strip()
        if not value:
            return None
        if len(value) > limit:
            self.fail(name, _("The search text is longer than %(limit)s characters.", limit=limit))
            return None
        if has_forbidden_characters(value):
            self.fail(name, _("The search text contains control characters."))
            return None
        return value

    def email(self, name: str, required_message: str) -> str:
        """An email address, normalised as stored (trimmed, NFC, lower case)."""
        raw = self.raw(name).strip()
        if not raw:
            self.fail(name, required_message)
            return ""
        if len(raw) > MAX_EMAIL_LENGTH or has_forbidden_characters(raw):
            self.fail(name, _("This does not look like an email address."))
            return ""
        try:
            checked = validate_email(raw, check_deliverability=False)
        except EmailNotValidError as error:
            self.fail(name, _email_problem(str(error)))
            return ""
        email = normalise_email(checked.normalized)
        if len(email) > MAX_EMAIL_LENGTH:
            self.fail(name, _("This email address is too long."))
            return ""
        return email

    def website(self, name: str, message: str, limit: int = 500) -> str | None:
        """An http(s) address; `union.example.org` is taken as https://union.example.org."""
        raw = self.raw(name).strip()
        if not raw:
            return None
        if not re.match(r"^[a-z][a-z0-9+.-]*://", raw, re.I):
            raw = "https://" + raw
        try:
            parts = urlsplit(raw)
            host = parts.hostname or ""
        except ValueError:
            parts, host = None, ""
        valid = (
            parts is not None
            and parts.scheme.lower() in ("http", "https")
            and len(raw) <= limit
            and not re.search(r"[\s<>\"'\\]", raw)
            and not has_forbidden_characters(raw)
            and "." in host
            and not parts.username
            and not parts.password
        )
        if not valid:
            self.fail(name, message)
            return None
        return parts.scheme.lower() + raw[len(parts.scheme) :]

    def flag(self, name: str) -> bool:
        return self.raw(name) in ("1", "on", "yes", "true")


def parse_moment(raw: str) -> datetime | None:
    """`2025-05-01`, `2025-05-01T18:00`, `2025-05-01 18:00:00+02:00` -> an aware datetime."""
    if len(raw) > 40 or not raw.isascii() or has_forbidden_characters(raw):
        return None
    try:
        if len(raw) == 10:
            value = datetime.combine(date.fromisoformat(raw), time(0), UTC)
        else:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        return None
    return value.astimezone(UTC)


MAX_BIGINT_DIGITS = 18  # fits a PostgreSQL bigint whatever the digits


def parse_row_id(raw: object) -> int | None:
    """A row id from a path or form, or None when it is not one."""
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit():
        return None
    if len(raw) > MAX_BIGINT_DIGITS:
        return None
    return int(raw)


def parse_ids(values: Sequence[object], max_ids: int = 500) -> list[int]:
    """Row ids chosen with checkboxes: distinct, sorted, at most `max_ids`."""
    ids = [parse_row_id(v) for v in values]
    if any(i is None for i in ids):
        raise BadValue("The chosen rows could not be read.")
    if len(ids) > max_ids:
        raise BadValue(f"Choose at most {max_ids} at a time.")
    return sorted(set(ids))  # type: ignore[arg-type]


def parse_after(raw: object) -> int | None:
    """The `after` cursor of pages ordered by row id, newest first."""
    if raw is None or raw == "":
        return None
    value = parse_row_id(raw)
    if value is None:
        raise BadValue(_("The page cursor `after` is not valid."))
    return value
