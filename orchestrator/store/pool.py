"""The asyncpg pool: one per process, jsonb decoded the same way on every connection."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson

from orchestrator.config.settings import Settings


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def create_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        password=settings.database_password.get_secret_value() or None,
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
        init=init_connection,
    )
    assert pool is not None
    return pool


CLOSE_TIMEOUT_S = 10.0  # at shutdown, how long the pool waits for its last connections to come back


async def close_pool(pool: asyncpg.Pool, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close once every connection is released; past `timeout_s`, terminate the rest.

    By then the process's users of the pool have stopped (the worker's task queues drained, the API's loops
    and listeners ended), so a connection still out is a lost cause: terminating it ends the shutdown at once
    instead of asyncpg's "Pool.close() is taking over 60 seconds" and a hang."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except TimeoutError:
        pool.terminate()


async def ping(pool: asyncpg.Pool) -> None:
    """Raise unless the pool hands out a connection that answers (health checks)."""
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
