"""Environments and their secret keys (stored hashed).

A rotation moves the current key's hash to `previous_secret_key_hash`, valid until
`previous_key_expires_at`: the new key works at once, the old one until its grace period ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from orchestrator.crypto import hash_secret_key
from orchestrator.store.types import Environment

_COLUMNS = "id, name, webhook_url"


async def create(conn: asyncpg.Connection, name: str, secret_key: str) -> Environment:
    row = await conn.fetchrow(
        f"INSERT INTO environments (name, secret_key_hash) VALUES ($1, $2) RETURNING {_COLUMNS}",
        name, hash_secret_key(secret_key))
    return Environment(**dict(row))


async def ensure(conn: asyncpg.Connection, name: str, secret_key: str) -> Environment:
    """Create the environment, or point an existing one at this key (dev stacks reuse their data)."""
    row = await conn.fetchrow(
        "INSERT INTO environments (name, secret_key_hash) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET secret_key_hash = EXCLUDED.secret_key_hash"
        f" RETURNING {_COLUMNS}",
        name, hash_secret_key(secret_key))
    return Environment(**dict(row))


async def by_secret_key(conn: asyncpg.Connection, secret_key: str) -> Environment | None:
    """The environment of a current key, or of a previous key still inside its grace period."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM environments WHERE secret_key_hash = $1"
        " OR (previous_secret_key_hash = $1 AND previous_key_expires_at > now()) LIMIT 1",
        hash_secret_key(secret_key))
    return Environment(**dict(row)) if row else None


async def by_name(conn: asyncpg.Connection, name: str) -> Environment | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM environments WHERE name = $1", name)
    return Environment(**dict(row)) if row else None


async def by_id(conn: asyncpg.Connection, env_id: int) -> Environment | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM environments WHERE id = $1", env_id)
    return Environment(**dict(row)) if row else None


async def list_all(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every environment with what an operator wants to see (never a key or its hash)."""
    rows = await conn.fetch(
        "SELECT e.id, e.name, e.created_at, e.webhook_url, e.webhook_url_secondary, e.secret_key_rotated_at,"
        " CASE WHEN e.previous_key_expires_at > now() THEN e.previous_key_expires_at END AS previous_key_expires_at,"
        " (SELECT count(*) FROM integrations i WHERE i.environment_id = e.id) AS integrations,"
        " (SELECT count(*) FROM connections c WHERE c.environment_id = e.id) AS connections"
        " FROM environments e ORDER BY e.name")
    return [dict(r) for r in rows]


async def rotate_key(conn: asyncpg.Connection, env_id: int, new_key: str,
                     grace: timedelta) -> datetime | None:
    """Make `new_key` the key; the current one keeps working for `grace` (none when zero).
    Returns when the previous key stops working (None: it already has). A key rotated out
    earlier and still in its grace period stops working now: only one previous key is kept."""
    seconds = max(grace.total_seconds(), 0.0)
    row = await conn.fetchrow(
        "UPDATE environments SET"
        " previous_secret_key_hash = CASE WHEN $3 > 0 THEN secret_key_hash END,"
        " previous_key_expires_at = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END,"
        " secret_key_hash = $2, secret_key_rotated_at = now()"
        " WHERE id = $1 RETURNING previous_key_expires_at", env_id, hash_secret_key(new_key), seconds)
    return row["previous_key_expires_at"] if row else None


async def expire_previous_key(conn: asyncpg.Connection, env_id: int) -> bool:
    """End a rotation's grace period now; True when a previous key was still valid."""
    status = await conn.execute(
        "UPDATE environments SET previous_secret_key_hash = NULL, previous_key_expires_at = NULL"
        " WHERE id = $1 AND previous_secret_key_hash IS NOT NULL AND previous_key_expires_at > now()", env_id)
    return status.endswith(" 1")


async def delete(conn: asyncpg.Connection, env_id: int) -> None:
    await conn.execute("DELETE FROM environments WHERE id = $1", env_id)
