"""Environments and their secret keys (stored hashed)."""

from __future__ import annotations

import asyncpg

from orchestrator.crypto import hash_secret_key
from orchestrator.store.types import Environment


async def create(conn: asyncpg.Connection, name: str, secret_key: str) -> Environment:
    row = await conn.fetchrow(
        "INSERT INTO environments (name, secret_key_hash) VALUES ($1, $2) RETURNING id, name, webhook_url",
        name, hash_secret_key(secret_key))
    return Environment(**dict(row))


async def ensure(conn: asyncpg.Connection, name: str, secret_key: str) -> Environment:
    """Create the environment, or point an existing one at this key (dev stacks reuse their data)."""
    row = await conn.fetchrow(
        "INSERT INTO environments (name, secret_key_hash) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET secret_key_hash = EXCLUDED.secret_key_hash"
        " RETURNING id, name, webhook_url",
        name, hash_secret_key(secret_key))
    return Environment(**dict(row))


async def by_secret_key(conn: asyncpg.Connection, secret_key: str) -> Environment | None:
    row = await conn.fetchrow(
        "SELECT id, name, webhook_url FROM environments WHERE secret_key_hash = $1", hash_secret_key(secret_key))
    return Environment(**dict(row)) if row else None


async def by_name(conn: asyncpg.Connection, name: str) -> Environment | None:
    row = await conn.fetchrow("SELECT id, name, webhook_url FROM environments WHERE name = $1", name)
    return Environment(**dict(row)) if row else None


async def by_id(conn: asyncpg.Connection, env_id: int) -> Environment | None:
    row = await conn.fetchrow("SELECT id, name, webhook_url FROM environments WHERE id = $1", env_id)
    return Environment(**dict(row)) if row else None
