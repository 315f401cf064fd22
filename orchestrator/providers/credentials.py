"""OAuth2 token refresh: before expiry, on a 401, or when a script forces it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import structlog

from orchestrator.errors import OrchestratorError, TransientError
from orchestrator.platform import Platform
from orchestrator.providers.catalog import fill
from orchestrator.providers.custom import resolve_provider
from orchestrator.providers.egress import EgressRefused, strict_egress
from orchestrator.store import connections as connections_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import locks
from orchestrator.store.types import Connection, OAuth2Credentials

log = structlog.get_logger(__name__)

REFRESH_MARGIN = timedelta(minutes=15)


class RefreshError(OrchestratorError):
    code = "refresh_failed"


def expires_soon(connection: Connection, margin: timedelta = REFRESH_MARGIN) -> bool:
    creds = connection.credentials
    return (isinstance(creds, OAuth2Credentials) and creds.expires_at is not None
            and creds.expires_at - datetime.now(UTC) < margin)


async def refresh(platform: Platform, connection: Connection, *, force: bool = False) -> Connection:
    """Refresh the connection's OAuth2 token when it expires soon (or always with force)."""
    pool, sealer, egress = platform.pool, platform.sealer, platform.egress or strict_egress()
    creds = connection.credentials
    if not isinstance(creds, OAuth2Credentials) or creds.refresh_token is None:
        return connection
    if not force and not expires_soon(connection):
        return connection
    async with pool.acquire() as conn, conn.transaction():
        # one refresher at a time per connection: others wait, then see the fresh token
        await locks.lock_for_transaction(conn, "refresh", connection.id)
        current = await connections_repo.get_by_pk(conn, sealer, connection.id)
        if current is None:
            raise RefreshError(f"connection '{connection.connection_id}' no longer exists")
        if not force and not expires_soon(current):
            return current
        if current.credentials.model_dump() != creds.model_dump() and force:
            return current  # somebody refreshed while we waited
        row = await integrations_repo.settings(conn, connection.integration_id)
        provider = await resolve_provider(conn, connection.environment_id, connection.provider)
        token_url = connection.connection_config.get("token_url") or (
            provider.token_url and fill(provider.token_url, connection.connection_config))
        if not token_url or row is None or not row["oauth_client_id"]:
            raise RefreshError(f"cannot refresh the token of connection '{connection.connection_id}': the "
                               f"integration '{connection.integration_key}' has no OAuth client credentials")
        secret = sealer.open(row["oauth_client_secret"]) if row["oauth_client_secret"] else ""
        cur_creds = current.credentials
        assert isinstance(cur_creds, OAuth2Credentials) and cur_creds.refresh_token is not None
        form = {"grant_type": "refresh_token", "refresh_token": cur_creds.refresh_token.get_secret_value(),
                "client_id": row["oauth_client_id"], "client_secret": str(secret)}
        try:
            async with egress.post_outbound(token_url, data=form, headers={"Accept": "application/json"},
                                            timeout=aiohttp.ClientTimeout(total=30)) as resp:
                raw = await resp.read()
                status = resp.status
        except EgressRefused as refused:  # a token URL aimed inside: no retry can fix that
            raise RefreshError(f"cannot refresh the token of connection '{connection.connection_id}': "
                               f"{refused}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"token endpoint unreachable: {exc}") from None
        try:
            body: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {}
        if status >= 400 or "access_token" not in body:
            raise RefreshError(f"token refresh for connection '{connection.connection_id}' failed: HTTP {status} "
                               f"{body.get('error') or raw[:200].decode(errors='replace')}")
        new = OAuth2Credentials(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token") or cur_creds.refresh_token.get_secret_value(),
            expires_at=(datetime.now(UTC) + timedelta(seconds=int(body["expires_in"])))
            if body.get("expires_in") else None,
            raw=body,
        )
        await connections_repo.update_credentials(conn, sealer, connection.id, new)
        log.info("token_refreshed", connection=connection.connection_id)
        return current.model_copy(update={"credentials": new})
