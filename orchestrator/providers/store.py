"""Repository of custom providers (table `custom_providers`); the caller owns the transaction."""

from __future__ import annotations

from typing import Any

from orchestrator.providers.catalog import Provider


def _load(definition: Any) -> Provider:
    return Provider.model_validate(definition)


async def get(conn: Any, environment_id: int, name: str) -> Provider | None:
    row = await conn.fetchrow("SELECT definition FROM custom_providers WHERE environment_id = $1 AND name = $2",
                              environment_id, name)
    return _load(row["definition"]) if row else None


async def list_all(conn: Any, environment_id: int) -> list[Provider]:
    rows = await conn.fetch("SELECT definition FROM custom_providers WHERE environment_id = $1 ORDER BY name",
                            environment_id)
    return [_load(r["definition"]) for r in rows]


async def upsert(conn: Any, environment_id: int, provider: Provider) -> bool:
    """Create or replace; True when it was created."""
    return await conn.fetchval(
        "INSERT INTO custom_providers (environment_id, name, definition) VALUES ($1, $2, $3)"
        " ON CONFLICT (environment_id, name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()"
        " RETURNING (xmax = 0)", environment_id, provider.name, provider.model_dump(mode="json"))


async def delete(conn: Any, environment_id: int, name: str) -> bool:
    return await conn.fetchval("DELETE FROM custom_providers WHERE environment_id = $1 AND name = $2 RETURNING true",
                               environment_id, name) is not None
