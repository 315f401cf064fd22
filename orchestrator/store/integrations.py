"""Integrations: one per (environment, unique key), naming the provider it talks to."""

from __future__ import annotations

import asyncpg

from orchestrator.store.types import Integration

_COLS = "id, environment_id, unique_key, provider, display_name, created_at, updated_at"


async def upsert(conn: asyncpg.Connection, environment_id: int, unique_key: str, provider: str) -> Integration:
    row = await conn.fetchrow(
        f"INSERT INTO integrations (environment_id, unique_key, provider) VALUES ($1, $2, $3)"
        f" ON CONFLICT (environment_id, unique_key) DO UPDATE SET updated_at = integrations.updated_at"
        f" RETURNING {_COLS}",
        environment_id, unique_key, provider)
    return Integration(**dict(row))


async def get(conn: asyncpg.Connection, environment_id: int, unique_key: str) -> Integration | None:
    row = await conn.fetchrow(
        f"SELECT {_COLS} FROM integrations WHERE environment_id = $1 AND unique_key = $2",
        environment_id, unique_key)
    return Integration(**dict(row)) if row else None


async def list_all(conn: asyncpg.Connection, environment_id: int) -> list[Integration]:
    rows = await conn.fetch(
        f"SELECT {_COLS} FROM integrations WHERE environment_id = $1 ORDER BY unique_key", environment_id)
    return [Integration(**dict(r)) for r in rows]
