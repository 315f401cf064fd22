"""Variants of a sync for one connection (table `sync_variants`): each has its own schedule, state and records."""

from __future__ import annotations

from typing import Any

import asyncpg


async def add(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str) -> None:
    """Create the variant (creating it again is a no-op)."""
    await conn.execute("INSERT INTO sync_variants (connection_pk, sync_name, variant) VALUES ($1, $2, $3)"
                       " ON CONFLICT DO NOTHING", connection_pk, sync_name, variant)


async def delete(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str) -> bool:
    """True when the variant existed."""
    return bool(await conn.fetchval(
        "DELETE FROM sync_variants WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3 RETURNING true",
        connection_pk, sync_name, variant))


async def for_integration(conn: asyncpg.Connection, integration_id: int, sync_name: str | None = None
                          ) -> list[dict[str, Any]]:
    """Every variant of the integration's connections (of one sync when given): connection_pk, connection_id,
    sync_name, variant, in (connection, sync, variant) order."""
    rows = await conn.fetch(
        "SELECT v.connection_pk, c.connection_id, v.sync_name, v.variant FROM sync_variants v"
        " JOIN connections c ON c.id = v.connection_pk WHERE c.integration_id = $1"
        " AND ($2::text IS NULL OR v.sync_name = $2) ORDER BY v.connection_pk, v.sync_name, v.variant",
        integration_id, sync_name)
    return [dict(r) for r in rows]
