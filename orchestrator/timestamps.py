"""The one form of every timestamp the platform shows outside: the API's answers and the webhooks it sends."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | str | None) -> str | None:
    """UTC, milliseconds, `Z` (2026-12-03T18:20:42.123Z), as Nango writes them, so a client that compares or parses
    them as text sees one shape. A string (a time a lower room already rendered) is read as ISO 8601 first; a naive
    time is UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """This moment in the one form."""
    return iso(datetime.now(UTC))  # type: ignore[return-value]
