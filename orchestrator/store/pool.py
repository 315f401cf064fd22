"""The asyncpg pool: one per process, jsonb decoded the same way on every connection."""

from __future__ import annotations

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


async def ping(pool: asyncpg.Pool) -> None:
    """Raise unless the pool hands out a connection that answers (health checks)."""
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
