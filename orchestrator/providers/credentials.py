"""Token refresh (OAuth2 refresh tokens) and re-minting (OAUTH2_CC, APP, JWT exchanged at a token URL):
before expiry (the background refresher, control/refresher.py, or on use), on a 401, or
when a script forces it."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
import structlog

from orchestrator import metrics
from orchestrator.errors import InvalidInputError, OrchestratorError, TransientError
from orchestrator.platform import Platform
from orchestrator.providers import auth_webhooks, client_credentials, jwt_auth
from orchestrator.providers.catalog import token_url
from orchestrator.providers.custom import resolve_provider
from orchestrator.providers.egress import Egress, EgressRefused, strict_egress
from orchestrator.providers.model import Provider
from orchestrator.providers.token_endpoint import TokenRefusedError, expiry
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import locks
from orchestrator.store.types import (
    AppCredentials,
    Connection,
    Credentials,
    JwtCredentials,
    OAuth2ClientCredentials,
    OAuth2Credentials,
    credentials_to_json,
)

log = structlog.get_logger(__name__)

class RefreshError(OrchestratorError):
    code = "refresh_failed"


def expires_soon(connection: Connection) -> bool:
    """Due for renewal (`connections_repo.refresh_due_at`, None for credentials without an expiry): the same
    time the background refresher goes by."""
    due = connections_repo.refresh_due_at(connection.credentials)
    return due is not None and due <= datetime.now(UTC)


async def _mint(platform: Platform, egress: Egress, provider: Provider, url: str,
                creds: OAuth2ClientCredentials | AppCredentials | JwtCredentials, row: Any,
                connection_config: dict[str, Any]) -> dict[str, Any]:
    """A new token for a mode the platform mints itself: the credentials' changed fields."""
    if isinstance(creds, OAuth2ClientCredentials):
        secret = creds.client_secret.get_secret_value()
        if not secret:  # minted with the integration's OAuth app (`minting.first_credentials`): read it now
            if row is None or not row["oauth_client_secret"]:
                raise InvalidInputError("the connection uses its integration's OAuth app, which has no client secret")
            secret = str(platform.sealer.open(row["oauth_client_secret"]))
        return await client_credentials.mint(egress, provider, url, creds.client_id, secret,
                                             oauth_scopes=row["oauth_scopes"] if row is not None else None)
    if isinstance(creds, JwtCredentials):
        return await jwt_auth.exchange(egress, provider, url, credentials_to_json(creds), connection_config)
    if row is None or not row["oauth_client_id"] or not row["oauth_client_secret"]:
        raise InvalidInputError("the integration has no app_id and private_key to sign the app's JWT with")
    return await jwt_auth.installation_token(egress, url, row["oauth_client_id"],
                                             str(platform.sealer.open(row["oauth_client_secret"])))


def refused(connection: Connection) -> RefreshError:
    """The error of a connection whose last refresh the provider refused."""
    error = connection.refresh_error or {}
    return RefreshError(f"the token of connection '{connection.connection_id}' could not be refreshed "
                        f"(since {error.get('at', '?')}: {error.get('message', 'refused')}); reconnect it, or "
                        "force a refresh once the cause is fixed", failed_at=error.get("at"))


async def refresh(platform: Platform, connection: Connection, *, force: bool = False) -> Connection:
    """Refresh the connection's OAuth2 token when it expires soon (or always with force).

    A refusal by the provider (an HTTP 4xx, an answer without a token, no client credentials) marks the
    connection: later calls without `force` fail at once with that reason instead of asking again. Network
    errors, 5xx and 429 are transient (TransientError) and mark nothing."""
    creds = connection.credentials
    if not connections_repo.refreshable(creds):
        return connection
    if not force and not expires_soon(connection):
        return connection
    if not force and connection.refresh_error:
        raise refused(connection)
    try:
        return await _refresh(platform, connection, creds, force=force)
    except TransientError:
        with contextlib.suppress(Exception):  # counting never replaces the error the caller retries on
            async with platform.pool.acquire() as conn:
                await _count(conn, connection, "error")
        raise
    except RefreshError as exc:
        if exc.fields.get("failed_at"):  # refused before: already marked
            raise
        async with platform.pool.acquire() as conn:
            error = await connections_repo.mark_refresh_failed(conn, connection.id, exc.message)
            await _count(conn, connection, "refused")
        log.warning("token_refresh_refused", connection=connection.connection_id,
                    integration=connection.integration_key, error=exc.message)
        await auth_webhooks.send(platform, auth_webhooks.AuthEvent(
            connection.environment_id, connection.integration_key, connection.provider, connection.connection_id,
            connection.credentials.type, "refresh", False, "refresh_token_external_error", exc.message))
        raise refused(connection.model_copy(update={"refresh_error": error})) from None


async def _count(conn: asyncpg.Connection, connection: Connection, outcome: str) -> None:
    """Count a refresh that asked the provider, under its environment's name: one lookup, on a path that has
    just called a token endpoint (never on a request's or a run's hot path)."""
    env = await environments_repo.by_id(conn, connection.environment_id)
    metrics.TOKEN_REFRESHES.labels(env.name if env else "", connection.integration_key, outcome).inc()


async def _refresh(platform: Platform, connection: Connection, creds: Credentials, *, force: bool) -> Connection:
    pool, sealer, egress = platform.pool, platform.sealer, platform.egress or strict_egress()
    async with pool.acquire() as conn, conn.transaction():
        # one refresher at a time per connection: others wait, then see the fresh token
        await locks.lock_for_transaction(conn, "refresh", connection.id)
        current = await connections_repo.get_by_pk(conn, sealer, connection.id)
        if current is None:
            raise RefreshError(f"connection '{connection.connection_id}' no longer exists")
        if not force and current.refresh_error:
            raise refused(current)  # another process was refused while we waited
        if not force and not expires_soon(current):
            return current
        if current.credentials.model_dump() != creds.model_dump() and force:
            return current  # somebody refreshed while we waited
        row = await integrations_repo.settings(conn, connection.integration_id)
        provider = await resolve_provider(conn, connection.environment_id, connection.provider)
        url = token_url(provider, connection.connection_config)
        cur_creds = current.credentials
        if isinstance(cur_creds, OAuth2ClientCredentials | AppCredentials | JwtCredentials):  # minted again
            if not url:
                raise RefreshError(f"cannot mint a token for connection '{connection.connection_id}': provider "
                                   f"'{provider.name}' has no token URL")
            try:
                fields = await _mint(platform, egress, provider, url, cur_creds, row, current.connection_config)
            except (TokenRefusedError, InvalidInputError) as exc:
                raise RefreshError(f"minting a token for connection '{connection.connection_id}' failed: "
                                   f"{exc.message}") from None
            minted = cur_creds.model_copy(update=fields)
            await connections_repo.update_credentials(conn, sealer, connection.id, minted)
            await _count(conn, connection, "refreshed")
            log.info("token_minted", connection=connection.connection_id, mode=cur_creds.type)
            return current.model_copy(update={"credentials": minted})
        if not url or row is None or not row["oauth_client_id"]:
            raise RefreshError(f"cannot refresh the token of connection '{connection.connection_id}': the "
                               f"integration '{connection.integration_key}' has no OAuth client credentials")
        secret = sealer.open(row["oauth_client_secret"]) if row["oauth_client_secret"] else ""
        assert isinstance(cur_creds, OAuth2Credentials) and cur_creds.refresh_token is not None
        form = {"grant_type": "refresh_token", "refresh_token": cur_creds.refresh_token.get_secret_value(),
                "client_id": row["oauth_client_id"], "client_secret": str(secret)}
        try:
            async with egress.post_outbound(url, data=form, headers={"Accept": "application/json"},
                                            timeout=aiohttp.ClientTimeout(total=30)) as resp:
                raw = await resp.read()
                status = resp.status
        except EgressRefused as blocked:  # a token URL aimed inside: no retry can fix that
            raise RefreshError(f"cannot refresh the token of connection '{connection.connection_id}': "
                               f"{blocked}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"token endpoint unreachable: {exc}") from None
        try:
            body: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {}
        if status >= 500 or status == 429:  # the provider's trouble, not a verdict on this refresh token
            raise TransientError(f"token endpoint answered HTTP {status} for connection "
                                 f"'{connection.connection_id}'")
        if status >= 400 or "access_token" not in body:
            raise RefreshError(f"token refresh for connection '{connection.connection_id}' failed: HTTP {status} "
                               f"{body.get('error') or raw[:200].decode(errors='replace')}")
        new = OAuth2Credentials(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token") or cur_creds.refresh_token.get_secret_value(),
            expires_at=expiry(body),
            raw=body,
        )
        await connections_repo.update_credentials(conn, sealer, connection.id, new)
        await _count(conn, connection, "refreshed")
        log.info("token_refreshed", connection=connection.connection_id)
        return current.model_copy(update={"credentials": new})
