"""The OAuth2 flow's short-lived rows: connect sessions (token stored hashed) and one-time states."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def create_session(conn: asyncpg.Connection, *, environment_id: int, token_hash: str,
                         allowed_integrations: list[str] | None, connection_id: str | None,
                         connection_config: dict[str, Any], metadata: dict[str, Any], return_url: str | None,
                         expires_at: datetime, end_user: dict[str, Any] | None = None,
                         tags: dict[str, str] | None = None, reconnect: bool = False) -> None:
    """Store a connect session; sessions expired for over a day are swept on the way."""
    await conn.execute("DELETE FROM connect_sessions WHERE expires_at < now() - interval '1 day'")
    await conn.execute(
        "INSERT INTO connect_sessions (environment_id, token_hash, allowed_integrations, connection_id,"
        " connection_config, metadata, return_url, expires_at, end_user, tags, reconnect)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        environment_id, token_hash, allowed_integrations, connection_id, connection_config, metadata,
        return_url, expires_at, end_user, tags or {}, reconnect)


async def session_by_token_hash(conn: asyncpg.Connection, token_hash: str) -> dict[str, Any] | None:
    """environment_id, allowed_integrations, connection_id, connection_config, metadata, return_url, end_user,
    tags, reconnect and `live` (not expired yet)."""
    row = await conn.fetchrow(
        "SELECT environment_id, allowed_integrations, connection_id, connection_config, metadata,"
        " return_url, end_user, tags, reconnect, expires_at > now() AS live FROM connect_sessions"
        " WHERE token_hash = $1", token_hash)
    return dict(row) if row else None


async def create_state(conn: asyncpg.Connection, *, state: str, environment_id: int, integration_id: int,
                       connection_id: str, connection_config: dict[str, Any], metadata: dict[str, Any],
                       redirect_uri: str, return_url: str | None, expires_at: datetime,
                       end_user: dict[str, Any] | None = None, tags: dict[str, str] | None = None) -> None:
    """Store one authorization attempt's state; states expired for over a day are swept on the way."""
    await conn.execute("DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day'")
    await conn.execute(
        "INSERT INTO oauth_states (state, environment_id, integration_id, connection_id, connection_config,"
        " metadata, redirect_uri, return_url, expires_at, end_user, tags)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        state, environment_id, integration_id, connection_id, connection_config, metadata, redirect_uri,
        return_url, expires_at, end_user, tags or {})


async def consume_state(conn: asyncpg.Connection, state: str) -> dict[str, Any] | None:
    """Use a state once: its row (environment_id, integration_id, connection_id, connection_config, metadata,
    redirect_uri, return_url, end_user, tags), or None when it is unknown, expired or already used."""
    row = await conn.fetchrow(
        "UPDATE oauth_states SET used_at = now() WHERE state = $1 AND used_at IS NULL AND expires_at > now()"
        " RETURNING environment_id, integration_id, connection_id, connection_config, metadata, redirect_uri,"
        " return_url, end_user, tags", state)
    return dict(row) if row else None
