"""Custom providers (table `custom_providers`): each row is a provider definition as JSON."""

from __future__ import annotations

from typing import Any


async def get(conn: Any, environment_id: int, name: str) -> dict[str, Any] | None:
    return await conn.fetchval("SELECT definition FROM custom_providers WHERE environment_id = $1 AND name = $2",
                               environment_id, name)


async def list_all(conn: Any, environment_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT definition FROM custom_providers WHERE environment_id = $1 ORDER BY name",
                            environment_id)
    return [r["definition"] for r in rows]


async def upsert(conn: Any, environment_id: int, name: str, definition: dict[str, Any]) -> bool:
    """Create or replace; True when it was created."""
    return await conn.fetchval(
        "INSERT INTO custom_providers (environment_id, name, definition) VALUES ($1, $2, $3)"
        " ON CONFLICT (environment_id, name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()"
        " RETURNING (xmax = 0)", environment_id, name, definition)


async def delete(conn: Any, environment_id: int, name: str) -> bool:
    return await conn.fetchval("DELETE FROM custom_providers WHERE environment_id = $1 AND name = $2 RETURNING true",
                               environment_id, name) is not None
