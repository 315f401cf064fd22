"""What a script keeps beyond one run besides records: the checkpoint of an action, webhook or event script,
and the locks scripts of one connection coordinate with (migration 0029). A sync's checkpoint stays in
`sync_state` (store/jobs.py), where its run's start and success handle it."""

from __future__ import annotations

from typing import Any

import asyncpg


async def job_script(conn: asyncpg.Connection, job_id: int) -> tuple[str, str] | None:
    """(kind, script name) of a job: whose checkpoint a run reads and writes."""
    row = await conn.fetchrow("SELECT kind, script_name FROM jobs WHERE id = $1", job_id)
    return (row["kind"], row["script_name"]) if row else None


async def get_checkpoint(conn: asyncpg.Connection, connection_pk: int, kind: str, script_name: str
                         ) -> dict[str, Any] | None:
    return await conn.fetchval(
        "SELECT checkpoint FROM script_checkpoints WHERE connection_pk = $1 AND kind = $2 AND script_name = $3",
        connection_pk, kind, script_name)


async def set_checkpoint(conn: asyncpg.Connection, connection_pk: int, kind: str, script_name: str,
                         checkpoint: dict[str, Any] | None) -> None:
    """Save the checkpoint, or with None forget it."""
    if checkpoint is None:
        await conn.execute(
            "DELETE FROM script_checkpoints WHERE connection_pk = $1 AND kind = $2 AND script_name = $3",
            connection_pk, kind, script_name)
        return
    await conn.execute(
        "INSERT INTO script_checkpoints (connection_pk, kind, script_name, checkpoint) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (connection_pk, kind, script_name) DO UPDATE SET checkpoint = EXCLUDED.checkpoint,"
        " updated_at = now()", connection_pk, kind, script_name, checkpoint)


async def try_lock(conn: asyncpg.Connection, connection_pk: int, key: str, holder: str, ttl_ms: int) -> bool:
    """Take the lock for `ttl_ms` unless another holder has it and it has not expired; the holder itself
    taking it again renews it. One statement: two callers racing for a free lock get one True between them."""
    return await conn.fetchval(
        "INSERT INTO script_locks AS l (connection_pk, key, holder, expires_at)"
        " VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4::float8 / 1000))"
        " ON CONFLICT (connection_pk, key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at"
        " WHERE l.expires_at <= clock_timestamp() OR l.holder = EXCLUDED.holder RETURNING true",
        connection_pk, key, holder, ttl_ms) is True


async def release_lock(conn: asyncpg.Connection, connection_pk: int, key: str, holder: str) -> bool:
    """Release the lock if this holder has it (not expired); whether it did."""
    return await conn.fetchval(
        "WITH d AS (DELETE FROM script_locks WHERE connection_pk = $1 AND key = $2 AND holder = $3"
        " RETURNING expires_at) SELECT count(*) > 0 FROM d WHERE expires_at > clock_timestamp()",
        connection_pk, key, holder) is True


async def delete_expired_locks(conn: asyncpg.Connection, *, limit: int) -> int:
    """Delete at most `limit` locks past their expiry (free already: try_lock takes them over), skipping any a
    caller is taking right now; how many went."""
    status = await conn.execute(
        "DELETE FROM script_locks WHERE ctid = any(ARRAY(SELECT ctid FROM script_locks"
        " WHERE expires_at <= clock_timestamp() LIMIT $1 FOR UPDATE SKIP LOCKED))"
        " AND expires_at <= clock_timestamp()", limit)
    return int(status.split()[-1])


async def public_integration(conn: asyncpg.Connection, integration_id: int) -> dict[str, Any] | None:
    """The integration as a script may see it: named columns only, so its secrets (client secret, an app's
    private key, the webhook secret) never leave the database for a script's call."""
    row = await conn.fetchrow(
        "SELECT unique_key, provider, display_name, created_at, updated_at, oauth_client_id, oauth_scopes,"
        " oauth_authorization_url, oauth_token_url, webhook_routing FROM integrations WHERE id = $1", integration_id)
    return dict(row) if row else None
