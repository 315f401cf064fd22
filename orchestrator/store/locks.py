"""PostgreSQL advisory locks, keyed by a name and a number (e.g. ('reconcile', integration id)).

Session locks serialize work across processes that spans several transactions (and Temporal calls);
transaction locks end with the caller's transaction.
"""

from __future__ import annotations

import asyncpg


async def lock(conn: asyncpg.Connection, name: str, key: int) -> None:
    """Wait for the session lock; release it with `unlock` on the same connection."""
    await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, $2))", name, key)


async def unlock(conn: asyncpg.Connection, name: str, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, $2))", name, key)


async def lock_for_transaction(conn: asyncpg.Connection, name: str, key: int) -> None:
    """Wait for the lock; it is released when the caller's transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", name, key)
