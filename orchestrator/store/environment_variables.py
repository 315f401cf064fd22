"""Environment variables of an environment: values sealed at rest, opened for the API and script runs."""

from __future__ import annotations

import asyncpg

from orchestrator.crypto import Sealer
from orchestrator.store import environments as environments_repo


async def list_all(conn: asyncpg.Connection, sealer: Sealer, environment_id: int) -> list[dict[str, str]]:
    rows = await conn.fetch("SELECT name, value FROM environment_variables WHERE environment_id = $1 ORDER BY name",
                            environment_id)
    return [{"name": r["name"], "value": str(sealer.open(r["value"]))} for r in rows]


async def replace(conn: asyncpg.Connection, sealer: Sealer, environment_id: int,
                  variables: list[tuple[str, str]]) -> None:
    """Replace the whole set (the caller owns the transaction). The environment's row is locked first: two
    replacements at once would otherwise both delete, then insert into each other's set (a unique-name error,
    or the union of both sets)."""
    await environments_repo.lock(conn, environment_id)
    await conn.execute("DELETE FROM environment_variables WHERE environment_id = $1", environment_id)
    if variables:
        await conn.executemany(
            "INSERT INTO environment_variables (environment_id, name, value) VALUES ($1, $2, $3)",
            [(environment_id, name, sealer.seal(value)) for name, value in variables])
