"""The stored fingerprint of ENCRYPTION_KEY: one row, written once, replaced only by a rotation."""

from __future__ import annotations

import asyncpg


async def get(conn: asyncpg.Connection) -> str | None:
    return await conn.fetchval("SELECT fingerprint FROM encryption_key_fingerprint")


async def claim(conn: asyncpg.Connection, fingerprint: str) -> str:
    """Store `fingerprint` if none is stored yet; the stored one either way (the first process wins a race)."""
    await conn.execute("INSERT INTO encryption_key_fingerprint (fingerprint) VALUES ($1) ON CONFLICT DO NOTHING",
                       fingerprint)
    return await conn.fetchval("SELECT fingerprint FROM encryption_key_fingerprint")


async def replace(conn: asyncpg.Connection, old: str, new: str) -> bool:
    """Move the fingerprint from `old` to `new` (a finished rotation); False if another value is stored."""
    done = await conn.fetchval(
        "UPDATE encryption_key_fingerprint SET fingerprint = $2, updated_at = now() WHERE fingerprint IN ($1, $2)"
        " RETURNING true", old, new)
    return bool(done)
