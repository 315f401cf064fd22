"""Connections: credentials sealed at rest, opened only when a run or the API needs them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from orchestrator.crypto import Sealer
from orchestrator.store.types import (
    Connection,
    Consumer,
    Credentials,
    CredentialsEnvelope,
    credentials_to_json,
)

_SELECT = (
    "SELECT c.id, c.environment_id, c.integration_id, i.unique_key AS integration_key, i.provider,"
    " c.connection_id, c.credentials, c.connection_config, c.metadata, c.created_at, c.updated_at, c.refresh_error,"
    " c.end_user, c.tags, i.oauth_client_id AS consumer_key, i.oauth_client_secret AS consumer_secret"
    " FROM connections c JOIN integrations i ON i.id = c.integration_id"
)


REFRESH_MARGIN = timedelta(minutes=15)


def _expiry(creds: Credentials) -> datetime | None:
    return getattr(creds, "expires_at", None)


def refresh_due_at(creds: Credentials) -> datetime | None:
    """When a token is renewed: 15 minutes before it expires, or halfway through the life its token response
    stated (`expires_in`) when that is shorter, so a short-lived token (Snowflake's live 10 minutes) is not
    renewed on every use. Credentials that do not say their lifetime (imported ones) get the 15 minutes."""
    expires = _expiry(creds)
    if expires is None:
        return None
    margin = REFRESH_MARGIN
    stated = (getattr(creds, "raw", None) or {}).get("expires_in")
    try:
        lifetime = timedelta(seconds=float(stated)) if stated is not None else None
    except (TypeError, ValueError, OverflowError):
        lifetime = None
    if lifetime is not None and lifetime > timedelta(0):
        margin = min(margin, lifetime / 2)
    try:
        return expires - margin
    except OverflowError:  # a provider's expiry in the first minutes of year 1: long due
        return expires


def refreshable(creds: Credentials) -> bool:
    """A refresh token to redeem, or a token the platform mints again: OAUTH2_CC, APP, and JWT exchanged at a
    token URL (a JWT that is itself the token has no expiry stored: it is signed again on use)."""
    return (getattr(creds, "refresh_token", None) is not None or creds.type in ("OAUTH2_CC", "APP")
            or (creds.type == "JWT" and creds.expires_at is not None))


def _row_to_connection(row: asyncpg.Record, sealer: Sealer) -> Connection:
    data = dict(row)
    key, sealed_secret = data.pop("consumer_key"), data.pop("consumer_secret")
    creds = CredentialsEnvelope(credentials=sealer.open(data["credentials"])).credentials
    data["credentials"] = creds
    data["consumer"] = Consumer.of(creds, key, lambda: str(sealer.open(sealed_secret)) if sealed_secret else "")
    return Connection(**data)


async def create(
    conn: asyncpg.Connection, sealer: Sealer, *, environment_id: int, integration_id: int,
    connection_id: str, credentials: Credentials, connection_config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None, end_user: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[int, bool]:
    """Insert or replace the credentials of a connection (a reconnect clears a failed refresh; an end user or
    tags given replace the stored ones); returns (pk, created)."""
    row = await conn.fetchrow(
        "INSERT INTO connections (environment_id, integration_id, connection_id, credentials,"
        " credentials_expires_at, connection_config, metadata, refreshable, end_user, tags, credentials_refresh_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10, '{}'::jsonb), $11)"
        " ON CONFLICT (integration_id, connection_id) DO UPDATE SET credentials = EXCLUDED.credentials,"
        " credentials_expires_at = EXCLUDED.credentials_expires_at, refreshable = EXCLUDED.refreshable,"
        " credentials_refresh_at = EXCLUDED.credentials_refresh_at,"
        " refresh_error = NULL, end_user = COALESCE($9, connections.end_user),"
        " tags = COALESCE($10, connections.tags), updated_at = now()"
        " RETURNING id, (xmax = 0) AS created",
        environment_id, integration_id, connection_id, sealer.seal(credentials_to_json(credentials)),
        _expiry(credentials), connection_config or {}, metadata or {}, refreshable(credentials), end_user, tags,
        refresh_due_at(credentials))
    return row["id"], row["created"]


async def update_credentials(conn: asyncpg.Connection, sealer: Sealer, pk: int, credentials: Credentials) -> None:
    """New credentials (a refresh that worked): whatever refresh failed before is over."""
    await conn.execute(
        "UPDATE connections SET credentials = $2, credentials_expires_at = $3, refreshable = $4,"
        " credentials_refresh_at = $5, refresh_error = NULL, updated_at = now() WHERE id = $1",
        pk, sealer.seal(credentials_to_json(credentials)), _expiry(credentials), refreshable(credentials),
        refresh_due_at(credentials))


async def due_for_refresh(conn: asyncpg.Connection, limit: int) -> list[int]:
    """Connections whose token is due (`refresh_due_at`), can be refreshed and has not been refused: most
    overdue first. A row written by a release before migration 0031 has no due time: 15 minutes before expiry."""
    rows = await conn.fetch(
        "SELECT id FROM connections WHERE refreshable AND refresh_error IS NULL"
        " AND (credentials_refresh_at < now()"
        "      OR (credentials_refresh_at IS NULL AND credentials_expires_at < now() + $2::interval))"
        " ORDER BY coalesce(credentials_refresh_at, credentials_expires_at - $2::interval) LIMIT $1",
        limit, REFRESH_MARGIN)
    return [r["id"] for r in rows]


async def mark_refresh_failed(conn: asyncpg.Connection, pk: int, message: str) -> dict[str, Any]:
    """The provider refused a refresh: remember why, so nothing calls it again for this connection until fixed."""
    error = {"id": str(uuid.uuid4()), "message": message, "at": datetime.now(UTC).isoformat()}
    await conn.execute("UPDATE connections SET refresh_error = $2 WHERE id = $1", pk, error)
    return error


async def mark_unrefreshable(conn: asyncpg.Connection, pk: int) -> None:
    await conn.execute("UPDATE connections SET refreshable = false WHERE id = $1", pk)


async def get(
    conn: asyncpg.Connection, sealer: Sealer, environment_id: int, integration_key: str, connection_id: str,
) -> Connection | None:
    row = await conn.fetchrow(
        _SELECT + " WHERE c.environment_id = $1 AND i.unique_key = $2 AND c.connection_id = $3",
        environment_id, integration_key, connection_id)
    return _row_to_connection(row, sealer) if row else None


async def get_by_pk(conn: asyncpg.Connection, sealer: Sealer, pk: int) -> Connection | None:
    row = await conn.fetchrow(_SELECT + " WHERE c.id = $1", pk)
    return _row_to_connection(row, sealer) if row else None


async def list_for_environment(
    conn: asyncpg.Connection, sealer: Sealer, environment_id: int, *, integration_key: str | None = None,
    connection_id: str | None = None, limit: int = 1000, offset: int = 0, end_user_id: str | None = None,
    organization_id: str | None = None, tags: dict[str, str] | None = None,
) -> list[Connection]:
    """The environment's connections, filtered by integration, id, end user, organization and tags (all given)."""
    rows = await conn.fetch(
        _SELECT + " WHERE c.environment_id = $1 AND ($2::text IS NULL OR i.unique_key = $2)"
        " AND ($3::text IS NULL OR c.connection_id = $3) AND ($6::text IS NULL OR c.end_user->>'id' = $6)"
        " AND ($7::text IS NULL OR c.end_user->'organization'->>'id' = $7) AND c.tags @> $8::jsonb"
        " ORDER BY c.id LIMIT $4 OFFSET $5",
        environment_id, integration_key, connection_id, limit, offset, end_user_id, organization_id, tags or {})
    return [_row_to_connection(r, sealer) for r in rows]


async def summaries(
    conn: asyncpg.Connection, environment_id: int, *, integration_keys: list[str] | None = None,
    connection_id: str | None = None, search: str | None = None, end_user_id: str | None = None,
    organization_id: str | None = None, tags: dict[str, str] | None = None, limit: int = 1000, offset: int = 0,
) -> list[dict[str, Any]]:
    """GET /connections' rows (id, connection_id, integration_key, provider, created_at, metadata, refresh_error,
    end_user, tags), every filter in SQL and no credentials opened: a search over many connections stays one
    indexed query instead of every credential decrypted to be thrown away."""
    rows = await conn.fetch(
        "SELECT c.id, c.connection_id, i.unique_key AS integration_key, i.provider, c.created_at, c.metadata,"
        " c.refresh_error, c.end_user, c.tags FROM connections c JOIN integrations i ON i.id = c.integration_id"
        " WHERE c.environment_id = $1 AND ($2::text[] IS NULL OR i.unique_key = ANY($2::text[]))"
        " AND ($3::text IS NULL OR c.connection_id = $3)"
        " AND ($4::text IS NULL OR strpos(lower(c.connection_id), lower($4)) > 0)"
        " AND ($5::text IS NULL OR c.end_user->>'id' = $5)"
        " AND ($6::text IS NULL OR c.end_user->'organization'->>'id' = $6)"
        " AND c.tags @> $7::jsonb ORDER BY c.id LIMIT $8 OFFSET $9",
        environment_id, integration_keys or None, connection_id, search or None, end_user_id, organization_id,
        tags or {}, limit, offset)
    return [dict(r) for r in rows]


async def set_end_user_and_tags(conn: asyncpg.Connection, pk: int, *, end_user: dict[str, Any] | None,
                                tags: dict[str, str] | None) -> None:
    """PATCH /connections: what is given replaces the stored end user / tags."""
    await conn.execute("UPDATE connections SET end_user = COALESCE($2, end_user), tags = COALESCE($3, tags),"
                       " updated_at = now() WHERE id = $1", pk, end_user, tags)


async def list_for_integration(conn: asyncpg.Connection, sealer: Sealer, integration_id: int) -> list[Connection]:
    rows = await conn.fetch(_SELECT + " WHERE c.integration_id = $1 ORDER BY c.id", integration_id)
    return [_row_to_connection(r, sealer) for r in rows]


async def delete(conn: asyncpg.Connection, pk: int) -> None:
    await conn.execute("DELETE FROM connections WHERE id = $1", pk)


async def ids_for_integration(conn: asyncpg.Connection, integration_id: int) -> dict[int, str]:
    """pk -> connection id, without opening credentials (schedule reconciliation needs no secret)."""
    rows = await conn.fetch("SELECT id, connection_id FROM connections WHERE integration_id = $1 ORDER BY id",
                            integration_id)
    return {r["id"]: r["connection_id"] for r in rows}


async def write_metadata(conn: asyncpg.Connection, pks: list[int], metadata: dict[str, Any], *, merge: bool
                         ) -> dict[int, dict[str, Any]]:
    """Replace (or, with merge, shallow-merge into) the metadata of these connections; returns pk -> metadata."""
    rows = await conn.fetch(
        "UPDATE connections SET metadata = CASE WHEN $3 THEN metadata || $2::jsonb ELSE $2::jsonb END,"
        " updated_at = now() WHERE id = any($1::bigint[]) RETURNING id, metadata", pks, metadata, merge)
    return {r["id"]: r["metadata"] for r in rows}


async def lock_by_ids(conn: asyncpg.Connection, environment_id: int, integration_key: str,
                      connection_ids: list[str]) -> dict[str, int]:
    """Lock these connections of one integration for update (inside the caller's transaction); returns
    connection id -> pk for those that exist."""
    rows = await conn.fetch(
        "SELECT c.id, c.connection_id FROM connections c JOIN integrations i ON i.id = c.integration_id"
        " WHERE c.environment_id = $1 AND i.unique_key = $2 AND c.connection_id = any($3::text[])"
        " FOR UPDATE OF c", environment_id, integration_key, connection_ids)
    return {r["connection_id"]: r["id"] for r in rows}


_PAGE_FILTER = (" FROM connections c JOIN integrations i ON i.id = c.integration_id WHERE c.environment_id = $1"
                " AND ($2::text IS NULL OR strpos(lower(c.connection_id), lower($2)) > 0)"
                " AND ($3::text IS NULL OR i.unique_key = $3)")


async def page(conn: asyncpg.Connection, environment_id: int, search: str | None, integration_key: str | None,
               limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """One page of connections (id, connection_id, unique_key, provider, created_at) whose id contains
    `search`, without opening credentials, and how many match in all."""
    rows = await conn.fetch(
        "SELECT c.id, c.connection_id, i.unique_key, i.provider, c.created_at" + _PAGE_FILTER
        + " ORDER BY c.connection_id, c.id LIMIT $4 OFFSET $5", environment_id, search, integration_key, limit,
        offset)
    total = await conn.fetchval("SELECT count(*)" + _PAGE_FILTER, environment_id, search, integration_key)
    return [dict(r) for r in rows], total
