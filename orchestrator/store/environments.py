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

_COLUMNS = "id, name, webhook_url, script_log_level, record_validation"


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


async def list_all(conn: asyncpg.Connection, *, search: str | None = None, limit: int | None = None
                   ) -> list[dict[str, Any]]:
    """Every environment (whose name contains `search`, case-insensitive) with what an operator wants to see
    (never a key or its hash), by name."""
    rows = await conn.fetch(
        "SELECT e.id, e.name, e.created_at, e.webhook_url, e.webhook_url_secondary, e.secret_key_rotated_at,"
        " CASE WHEN e.previous_key_expires_at > now() THEN e.previous_key_expires_at END AS previous_key_expires_at,"
        " (SELECT count(*) FROM integrations i WHERE i.environment_id = e.id) AS integrations,"
        " (SELECT count(*) FROM connections c WHERE c.environment_id = e.id) AS connections"
        " FROM environments e WHERE ($1::text IS NULL OR strpos(lower(e.name), lower($1)) > 0)"
        " ORDER BY e.name LIMIT $2", search, limit)
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


async def delete(conn: asyncpg.Connection, env_id: int) -> None:
    await conn.execute("DELETE FROM environments WHERE id = $1", env_id)


async def with_key_hash(conn: asyncpg.Connection, env_id: int) -> dict[str, Any] | None:
    """id, name, webhook_url and the current key's hash (the dashboard ties a session to the key it began with)."""
    row = await conn.fetchrow("SELECT id, name, webhook_url, secret_key_hash FROM environments WHERE id = $1", env_id)
    return dict(row) if row else None


async def webhook_settings(conn: asyncpg.Connection, env_id: int) -> dict[str, Any] | None:
    """Where and how webhooks are sent: name, webhook_url, webhook_url_secondary, webhook_secret (sealed),
    has_secret, notify_on_empty, on_auth_creation, on_auth_refresh_error, alert_after_failures, plus
    secret_key_rotated_at and previous_key_expires_at (only while valid)."""
    row = await conn.fetchrow(
        "SELECT name, webhook_url, webhook_url_secondary, webhook_secret, webhook_secret IS NOT NULL AS has_secret,"
        " notify_on_empty, on_auth_creation, on_auth_refresh_error, alert_after_failures, secret_key_rotated_at,"
        " CASE WHEN previous_key_expires_at > now() THEN previous_key_expires_at END AS previous_key_expires_at"
        " FROM environments WHERE id = $1", env_id)
    return dict(row) if row else None


async def update_webhook_settings(conn: asyncpg.Connection, env_id: int, *, set_url: bool, url: str | None,
                                  sealed_secret: bytes | None, notify_on_empty: bool | None, set_secondary: bool,
                                  secondary_url: str | None, on_auth_creation: bool | None = None,
                                  on_auth_refresh_error: bool | None = None,
                                  alert_after_failures: int | None = None) -> None:
    """A URL is changed only when `set_...` says so ('' clears it); a None secret, flag or number keeps the
    current one."""
    await conn.execute(
        "UPDATE environments SET webhook_url = CASE WHEN $2 THEN NULLIF($3, '') ELSE webhook_url END,"
        " webhook_secret = COALESCE($4, webhook_secret), notify_on_empty = COALESCE($5, notify_on_empty),"
        " webhook_url_secondary = CASE WHEN $6 THEN NULLIF($7, '') ELSE webhook_url_secondary END,"
        " on_auth_creation = COALESCE($8, on_auth_creation),"
        " on_auth_refresh_error = COALESCE($9, on_auth_refresh_error),"
        " alert_after_failures = COALESCE($10, alert_after_failures)"
        " WHERE id = $1", env_id, set_url, url, sealed_secret, notify_on_empty, set_secondary, secondary_url,
        on_auth_creation, on_auth_refresh_error, alert_after_failures)


async def set_script_settings(conn: asyncpg.Connection, env_id: int, *, script_log_level: str | None = None,
                              record_validation: str | None = None) -> None:
    """Set the script settings given (see migration 0028); a None keeps the current one."""
    await conn.execute(
        "UPDATE environments SET script_log_level = COALESCE($2, script_log_level),"
        " record_validation = COALESCE($3, record_validation) WHERE id = $1",
        env_id, script_log_level, record_validation)


async def counts(conn: asyncpg.Connection, env_id: int) -> dict[str, int]:
    """How many integrations and connections the environment holds."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM integrations WHERE environment_id = $1) AS integrations,"
        " (SELECT count(*) FROM connections WHERE environment_id = $1) AS connections", env_id)
    return dict(row)


async def sync_schedule_keys(conn: asyncpg.Connection, env_id: int, integration_id: int | None = None,
                             connection_pk: int | None = None) -> list[dict[str, Any]]:
    """(unique_key, connection_id, name, variant) of every sync schedule the environment (or one integration of
    it, or one connection) should have: each deployed sync of each connection, and each variant."""
    rows = await conn.fetch(
        "SELECT i.unique_key, c.connection_id, s.name, 'base' AS variant FROM connections c"
        " JOIN integrations i ON i.id = c.integration_id"
        " JOIN deployed_scripts s ON s.integration_id = i.id AND s.kind = 'sync'"
        " WHERE c.environment_id = $1 AND ($2::bigint IS NULL OR i.id = $2) AND ($3::bigint IS NULL OR c.id = $3)"
        " UNION SELECT i.unique_key, c.connection_id, v.sync_name, v.variant FROM sync_variants v"
        " JOIN connections c ON c.id = v.connection_pk JOIN integrations i ON i.id = c.integration_id"
        " WHERE c.environment_id = $1 AND ($2::bigint IS NULL OR i.id = $2) AND ($3::bigint IS NULL OR c.id = $3)",
        env_id, integration_id, connection_pk)
    return [dict(r) for r in rows]


async def lock(conn: asyncpg.Connection, env_id: int) -> None:
    """Serialize read-modify-write of an environment's settings (inside the caller's transaction)."""
    await conn.execute("SELECT id FROM environments WHERE id = $1 FOR UPDATE", env_id)


RETENTION = ("records_retention_days", "jobs_retention_days", "webhooks_retention_days")


async def retention(conn: asyncpg.Connection, env_id: int) -> dict[str, int | None]:
    """The environment's retention settings in days (None: kept forever), keyed as RETENTION."""
    row = await conn.fetchrow(f"SELECT {', '.join(RETENTION)} FROM environments WHERE id = $1", env_id)
    return dict(row) if row else dict.fromkeys(RETENTION)


async def set_retention(conn: asyncpg.Connection, env_id: int, days: dict[str, int | None]) -> None:
    """Set the retention settings given (keys of RETENTION; None means keep forever); the others stay."""
    given = [k for k in RETENTION if k in days]
    if given:
        await conn.execute(f"UPDATE environments SET {', '.join(f'{k} = ${n + 2}' for n, k in enumerate(given))}"
                           " WHERE id = $1", env_id, *(days[k] for k in given))


async def with_retention(conn: asyncpg.Connection, defaults: dict[str, int | None] | None = None
                         ) -> list[dict[str, Any]]:
    """Every environment with a retention in force: id, name and the RETENTION columns, each its own setting or,
    where it has none, the installation's default from `defaults` (same keys; None or 0 keeps forever)."""
    rows = await conn.fetch(f"SELECT id, name, {', '.join(RETENTION)} FROM environments ORDER BY id")
    out = []
    for row in rows:
        env = dict(row)
        for key in RETENTION:
            if env[key] is None:
                env[key] = (defaults or {}).get(key) or None
        if any(env[key] for key in RETENTION):
            out.append(env)
    return out
