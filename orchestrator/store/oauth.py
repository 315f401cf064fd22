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
                       end_user: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                       ws_client_id: str | None = None, request_token: str | None = None,
                       sealed_request_token_secret: bytes | None = None) -> None:
    """Store one authorization attempt's state; states expired for over a day are swept on the way."""
    await conn.execute("DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day'")
    await conn.execute(
        "INSERT INTO oauth_states (state, environment_id, integration_id, connection_id, connection_config,"
        " metadata, redirect_uri, return_url, expires_at, end_user, tags, ws_client_id, request_token,"
        " request_token_secret)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        state, environment_id, integration_id, connection_id, connection_config, metadata, redirect_uri,
        return_url, expires_at, end_user, tags or {}, ws_client_id, request_token, sealed_request_token_secret)


async def consume_state(conn: asyncpg.Connection, state: str) -> dict[str, Any] | None:
    """Use a state once: its row (environment_id, integration_id, connection_id, connection_config, metadata,
    redirect_uri, return_url, end_user, tags, the OAuth 1.0a request token and its sealed secret, when the flow
    started), or None when
    it is unknown, expired or already used."""
    row = await conn.fetchrow(
        "UPDATE oauth_states SET used_at = now() WHERE state = $1 AND used_at IS NULL AND expires_at > now()"
        " RETURNING environment_id, integration_id, connection_id, connection_config, metadata, redirect_uri,"
        " return_url, end_user, tags, ws_client_id, request_token, request_token_secret, created_at", state)
    return dict(row) if row else None


async def set_result(conn: asyncpg.Connection, state: str, result: dict[str, Any]) -> None:
    """How the flow ended, for the browser's WebSocket (its `message_type` is success or error)."""
    await conn.execute("UPDATE oauth_states SET result = $2 WHERE state = $1", state, result)


async def results_for_sockets(conn: asyncpg.Connection, ws_client_ids: list[str]) -> dict[str, dict[str, Any]]:
    """How the flows of these sockets ended, for those that have (the newest flow of each): one query for all."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (ws_client_id) ws_client_id, result FROM oauth_states"
        " WHERE ws_client_id = ANY($1::text[]) AND result IS NOT NULL ORDER BY ws_client_id, created_at DESC",
        ws_client_ids)
    return {r["ws_client_id"]: dict(r["result"]) for r in rows}
