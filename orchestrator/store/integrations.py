"""Integrations: one per (environment, unique key), naming the provider it talks to."""

from __future__ import annotations

from typing import Any

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


async def create(conn: asyncpg.Connection, environment_id: int, unique_key: str, provider: str) -> Integration | None:
    """A new integration; None when the key is taken (by a request racing this one, too)."""
    row = await conn.fetchrow(
        f"INSERT INTO integrations (environment_id, unique_key, provider) VALUES ($1, $2, $3)"
        f" ON CONFLICT (environment_id, unique_key) DO NOTHING RETURNING {_COLS}",
        environment_id, unique_key, provider)
    return Integration(**dict(row)) if row else None


async def get(conn: asyncpg.Connection, environment_id: int, unique_key: str) -> Integration | None:
    row = await conn.fetchrow(
        f"SELECT {_COLS} FROM integrations WHERE environment_id = $1 AND unique_key = $2",
        environment_id, unique_key)
    return Integration(**dict(row)) if row else None


async def list_all(conn: asyncpg.Connection, environment_id: int) -> list[Integration]:
    rows = await conn.fetch(
        f"SELECT {_COLS} FROM integrations WHERE environment_id = $1 ORDER BY unique_key", environment_id)
    return [Integration(**dict(r)) for r in rows]


async def by_id(conn: asyncpg.Connection, integration_id: int) -> Integration | None:
    row = await conn.fetchrow(f"SELECT {_COLS} FROM integrations WHERE id = $1", integration_id)
    return Integration(**dict(row)) if row else None


async def list_every(conn: asyncpg.Connection) -> list[Integration]:
    """Every integration of every environment, by id (the maintenance loop repairs them all)."""
    rows = await conn.fetch(f"SELECT {_COLS} FROM integrations ORDER BY id")
    return [Integration(**dict(r)) for r in rows]


async def keys_for_provider(conn: asyncpg.Connection, environment_id: int, provider: str) -> list[str]:
    """The unique keys of the environment's integrations that use this provider."""
    rows = await conn.fetch(
        "SELECT unique_key FROM integrations WHERE environment_id = $1 AND provider = $2 ORDER BY unique_key",
        environment_id, provider)
    return [r["unique_key"] for r in rows]


async def summaries(conn: asyncpg.Connection, environment_id: int) -> list[dict[str, Any]]:
    """id, unique_key, provider, display_name, created_at and how many connections each integration has."""
    rows = await conn.fetch(
        "SELECT i.id, i.unique_key, i.provider, i.display_name, i.created_at,"
        " (SELECT count(*) FROM connections c WHERE c.integration_id = i.id) AS connections"
        " FROM integrations i WHERE i.environment_id = $1 ORDER BY i.unique_key", environment_id)
    return [dict(r) for r in rows]


async def settings(conn: asyncpg.Connection, integration_id: int) -> dict[str, Any] | None:
    """The OAuth app and webhook settings: oauth_client_id, oauth_client_secret (sealed), oauth_scopes,
    oauth_authorization_url, oauth_token_url, webhook_routing, webhook_secret (sealed), has_secret,
    webhook_accept_unsigned and forward_webhooks."""
    row = await conn.fetchrow(
        "SELECT oauth_client_id, oauth_client_secret, oauth_scopes, oauth_authorization_url, oauth_token_url,"
        " webhook_routing, webhook_secret, webhook_secret IS NOT NULL AS has_secret, webhook_accept_unsigned,"
        " forward_webhooks FROM integrations WHERE id = $1", integration_id)
    return dict(row) if row else None


async def update_settings(
    conn: asyncpg.Connection, integration_id: int, *, display_name: str | None = None,
    oauth_client_id: str | None = None, sealed_client_secret: bytes | None = None,
    sealed_webhook_secret: bytes | None = None, webhook_routing: dict[str, Any] | None = None,
    oauth_scopes: str | None = None, oauth_authorization_url: str | None = None, oauth_token_url: str | None = None,
    webhook_accept_unsigned: bool | None = None, forward_webhooks: bool | None = None,
) -> None:
    """Change what is given; None keeps the current value (secrets come sealed)."""
    await conn.execute(
        "UPDATE integrations SET display_name = COALESCE($2, display_name),"
        " oauth_client_id = COALESCE($3, oauth_client_id),"
        " oauth_client_secret = COALESCE($4, oauth_client_secret),"
        " webhook_secret = COALESCE($5, webhook_secret),"
        " webhook_routing = COALESCE($6, webhook_routing),"
        " oauth_scopes = COALESCE($7, oauth_scopes),"
        " oauth_authorization_url = COALESCE($8, oauth_authorization_url),"
        " oauth_token_url = COALESCE($9, oauth_token_url),"
        " webhook_accept_unsigned = COALESCE($10, webhook_accept_unsigned),"
        " forward_webhooks = COALESCE($11, forward_webhooks), updated_at = now() WHERE id = $1",
        integration_id, display_name, oauth_client_id, sealed_client_secret, sealed_webhook_secret, webhook_routing,
        oauth_scopes, oauth_authorization_url, oauth_token_url, webhook_accept_unsigned, forward_webhooks)


async def egress_allow(conn: asyncpg.Connection, integration_id: int) -> list[str]:
    """The hosts the integration's scripts and proxy calls may reach besides its provider's (public ones only)."""
    value = await conn.fetchval("SELECT egress_allow FROM integrations WHERE id = $1", integration_id)
    return list(value or [])


async def set_egress_allow(conn: asyncpg.Connection, integration_id: int, entries: list[str]) -> None:
    await conn.execute("UPDATE integrations SET egress_allow = $2, updated_at = now() WHERE id = $1",
                       integration_id, entries)


async def rename(conn: asyncpg.Connection, integration_id: int, unique_key: str) -> bool:
    """False when the key is taken (by a request racing this one, too); the caller's transaction stays usable."""
    try:
        async with conn.transaction():  # a savepoint: the unique violation rolls back only this statement
            await conn.execute("UPDATE integrations SET unique_key = $2 WHERE id = $1", integration_id, unique_key)
    except asyncpg.UniqueViolationError:
        return False
    return True


async def delete(conn: asyncpg.Connection, integration_id: int) -> None:
    """Delete the integration; its connections, scripts and records go with it (ON DELETE CASCADE)."""
    await conn.execute("DELETE FROM integrations WHERE id = $1", integration_id)


async def forwards_webhooks(conn: asyncpg.Connection, integration_id: int) -> bool:
    return bool(await conn.fetchval("SELECT forward_webhooks FROM integrations WHERE id = $1", integration_id))
