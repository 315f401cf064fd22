"""Incoming provider webhooks (table `webhook_payloads`): stored before they are acknowledged, so none is lost."""

from __future__ import annotations

from typing import Any

import asyncpg


async def add(conn: asyncpg.Connection, *, public_id: str, environment_id: int, integration_id: int,
              event_type: str | None, headers: dict[str, str], body: bytes) -> int:
    """Store a verified payload as 'received'; returns its id."""
    return await conn.fetchval(
        "INSERT INTO webhook_payloads (public_id, environment_id, integration_id, event_type, headers, body)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        public_id, environment_id, integration_id, event_type, headers, body)


async def for_routing(conn: asyncpg.Connection, payload_id: int) -> dict[str, Any] | None:
    """What routing needs: the payload (id, event_type, body, headers, status, integration_id) and its
    integration's `webhook_routing`, `unique_key`, `provider`, `forward_webhooks` and whether it checks the
    provider's signature (`signed`: it has a webhook secret, so every stored payload was verified)."""
    row = await conn.fetchrow(
        "SELECT w.id, w.event_type, w.body, w.headers, w.status, w.integration_id, i.webhook_routing, i.unique_key,"
        " i.provider, i.forward_webhooks, i.webhook_secret IS NOT NULL AS signed FROM webhook_payloads w"
        " JOIN integrations i ON i.id = w.integration_id WHERE w.id = $1", payload_id)
    return dict(row) if row else None


async def mark_routed(conn: asyncpg.Connection, payload_id: int, status: str, connections: list[str],
                      error: str | None = None) -> None:
    """'dispatched' (to these connections), 'ignored' (no script subscribes) or 'unmatched' (no connection
    matches; `error` says why)."""
    await conn.execute("UPDATE webhook_payloads SET status = $2, connections = $3, error = $4 WHERE id = $1",
                       payload_id, status, connections, error)


async def mark_finished(conn: asyncpg.Connection, payload_id: int, failed_jobs: int) -> None:
    """'processed', or 'failed' when one of its jobs failed; an ignored or unmatched payload stays so."""
    await conn.execute(
        "UPDATE webhook_payloads SET status = CASE WHEN status IN ('ignored', 'unmatched') THEN status WHEN $2 > 0"
        " THEN 'failed' ELSE 'processed' END, processed_at = now() WHERE id = $1", payload_id, failed_jobs)


async def stuck(conn: asyncpg.Connection, *, limit: int = 500) -> list[dict[str, Any]]:
    """Payloads received over a minute ago and never routed (their workflow never started): id, public_id,
    env_id, env, unique_key."""
    rows = await conn.fetch(
        "SELECT w.id, w.public_id, e.id AS env_id, e.name AS env, i.unique_key FROM webhook_payloads w"
        " JOIN environments e ON e.id = w.environment_id JOIN integrations i ON i.id = w.integration_id"
        " WHERE w.status = 'received' AND w.received_at < now() - interval '1 minute' ORDER BY w.id LIMIT $1",
        limit)
    return [dict(r) for r in rows]


async def list_for_environment(conn: asyncpg.Connection, environment_id: int, *, before: int | None,
                               limit: int) -> list[dict[str, Any]]:
    """An environment's incoming payloads, newest first (the body cut to 2000 bytes)."""
    rows = await conn.fetch(
        "SELECT w.id, w.public_id, w.event_type, w.status, w.connections, w.error, w.received_at, w.processed_at,"
        " substring(w.body from 1 for 2000) AS body, w.forward_attempts, i.unique_key"
        " FROM webhook_payloads w JOIN integrations i ON i.id = w.integration_id WHERE w.environment_id = $1"
        " AND ($2::bigint IS NULL OR w.id < $2) ORDER BY w.id DESC LIMIT $3", environment_id, before, limit)
    return [dict(r) for r in rows]


async def add_forward_attempt(conn: asyncpg.Connection, payload_id: int, attempt: dict[str, Any]) -> None:
    """One delivery attempt of the payload's forward to the customer's app (url, connection, status, error, at)."""
    await conn.execute("UPDATE webhook_payloads SET forward_attempts = forward_attempts || $2::jsonb WHERE id = $1",
                       payload_id, [attempt])
