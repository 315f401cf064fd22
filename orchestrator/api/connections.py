"""Connections: list, read (with credentials), create with credentials, delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import credentials as credentials_mod
from orchestrator import events
from orchestrator.api.common import environment, json_body, json_response, load_connection
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import HTTP, POOL, SEALER, SETTINGS, TEMPORAL
from orchestrator.reconcile import reconcile_integration
from orchestrator.store import connections as connections_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import (
    ApiKeyCredentials,
    BasicCredentials,
    Connection,
    Credentials,
    OAuth2Credentials,
    credentials_to_json,
)
from orchestrator.temporal import names, schedules

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def summary(c: Connection) -> dict[str, Any]:
    return {"id": c.id, "connection_id": c.connection_id, "provider_config_key": c.integration_key,
            "provider": c.provider, "created": c.created_at.isoformat(), "metadata": c.metadata, "errors": [],
            "end_user": None, "tags": {}}


def full(c: Connection) -> dict[str, Any]:
    return {"id": c.id, "connection_id": c.connection_id, "provider_config_key": c.integration_key,
            "provider": c.provider, "created_at": c.created_at.isoformat(), "updated_at": c.updated_at.isoformat(),
            "last_fetched_at": datetime.now(UTC).isoformat(), "connection_config": c.connection_config,
            "metadata": c.metadata or None, "errors": [], "end_user": None, "tags": {},
            "credentials": credentials_to_json(c.credentials)}


@routes.get("/connections")
async def list_connections(request: web.Request) -> web.Response:
    env = environment(request)
    q = request.query
    try:
        limit = min(int(q.get("limit", "1000")), 10_000)
        page = max(int(q.get("page", "0")), 0)
    except ValueError:
        raise_error(400, "invalid_query_params", "limit and page must be integers")
    async with request.app[POOL].acquire() as conn:
        found = await connections_repo.list_for_environment(
            conn, request.app[SEALER], env.id, integration_key=q.get("integrationId") or None,
            connection_id=q.get("connectionId") or None, limit=limit, offset=page * limit)
    search = (q.get("search") or "").lower()
    if search:
        found = [c for c in found if search in c.connection_id.lower()]
    return json_response({"connections": [summary(c) for c in found]})


@routes.get("/connections/{connection_id}")
async def get_connection(request: web.Request) -> web.Response:
    integration = request.query.get("provider_config_key", "").strip()
    if not integration:
        raise_error(400, "missing_provider_config_key", "provider_config_key is required")
    connection = await load_connection(request, integration, request.match_info["connection_id"])
    force = _flag(request.query.get("force_refresh"))
    if force or credentials_mod.expires_soon(connection):
        connection = await credentials_mod.refresh(request.app[POOL], request.app[SEALER], request.app[HTTP],
                                                   connection, force=force)
    return json_response(full(connection))


class OAuth2Body(BaseModel):
    type: Literal["OAUTH2"] = "OAUTH2"
    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    expires_in: int | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class CreateConnectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider_config_key: str = Field(min_length=1)
    connection_id: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.@\-:]+$")
    credentials: dict[str, Any] | None = None
    # Nango's flat import form
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    connection_config: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_credentials(self) -> Credentials:
        c = dict(self.credentials or {})
        kind = str(c.get("type", "")).upper()
        if kind == "OAUTH2" or (not kind and (self.access_token or c.get("access_token"))):
            flat = {"access_token": self.access_token, "refresh_token": self.refresh_token,
                    "expires_at": self.expires_at}
            body = OAuth2Body(**{**c, "type": "OAUTH2", **{k: v for k, v in flat.items() if v}})
            expires = body.expires_at
            if expires is None and body.expires_in:
                expires = datetime.now(UTC) + timedelta(seconds=body.expires_in)
            return OAuth2Credentials(access_token=body.access_token, refresh_token=body.refresh_token,
                                     expires_at=expires, raw=body.raw)
        if kind == "API_KEY" or (not kind and (self.api_key or c.get("apiKey") or c.get("api_key"))):
            key = self.api_key or c.get("apiKey") or c.get("api_key")
            if not key:
                raise_error(400, "invalid_body", "credentials.apiKey is required for API_KEY")
            return ApiKeyCredentials(apiKey=key)
        if kind == "BASIC" or (not kind and (self.username or c.get("username"))):
            username = self.username or c.get("username")
            if not username:
                raise_error(400, "invalid_body", "credentials.username is required for BASIC")
            return BasicCredentials(username=username, password=self.password or c.get("password") or "")
        raise_error(400, "invalid_body",
                    "credentials are required: {type: OAUTH2, access_token, refresh_token?, expires_at?} or "
                    "{type: API_KEY, apiKey} or {type: BASIC, username, password}")


@routes.post("/connections")
@routes.post("/connection")
async def create_connection(request: web.Request) -> web.Response:
    env = environment(request)
    body = CreateConnectionBody.model_validate(await json_body(request))
    creds = body.to_credentials()
    app = request.app
    async with app[POOL].acquire() as conn:
        integration = await integrations_repo.get(conn, env.id, body.provider_config_key)
        if integration is None:
            raise_error(404, "unknown_provider_config",
                        f"no integration '{body.provider_config_key}' in environment '{env.name}'")
        pk, created = await connections_repo.create(
            conn, app[SEALER], environment_id=env.id, integration_id=integration.id,
            connection_id=body.connection_id, credentials=creds, connection_config=body.connection_config,
            metadata=body.metadata)
        connection = await connections_repo.get_by_pk(conn, app[SEALER], pk)
    assert connection is not None
    settings = app[SETTINGS]
    if created:
        failures = [r for r in await events.fire(app[POOL], app[TEMPORAL], env, connection, events.VALIDATE,
                                                 timeout_s=settings.runner_event_timeout_s,
                                                 prefix=settings.task_queue_prefix) if not r.ok]
        if failures:
            async with app[POOL].acquire() as conn:
                await connections_repo.delete(conn, connection.id)
            raise_error(400, "connection_validation_failed",
                        "validate-connection rejected the connection: "
                        + "; ".join(f.error_message or "failed" for f in failures))
    await reconcile_integration(app[POOL], app[SEALER], app[TEMPORAL], integration,
                                task_queue_prefix=settings.task_queue_prefix)
    if created:
        await events.fire(app[POOL], app[TEMPORAL], env, connection, events.POST_CREATION,
                          timeout_s=settings.runner_event_timeout_s, prefix=settings.task_queue_prefix, wait=False)
    log.info("connection_saved", connection=body.connection_id, created=created)
    return json_response(full(connection), status=201 if created else 200)


@routes.delete("/connections/{connection_id}")
async def delete_connection(request: web.Request) -> web.Response:
    env = environment(request)
    integration_key = request.query.get("provider_config_key", "").strip()
    if not integration_key:
        raise_error(400, "missing_provider_config_key", "provider_config_key is required")
    connection = await load_connection(request, integration_key, request.match_info["connection_id"])
    app = request.app
    settings = app[SETTINGS]
    for failure in [r for r in await events.fire(app[POOL], app[TEMPORAL], env, connection, events.PRE_DELETION,
                                                 timeout_s=settings.runner_event_timeout_s,
                                                 prefix=settings.task_queue_prefix) if not r.ok]:
        log.warning("pre_deletion_script_failed", connection=connection.connection_id, error=failure.error_message)
    async with app[POOL].acquire() as conn:
        syncs = [s for s in await scripts_repo.list_for_integration(conn, connection.integration_id)
                 if s.kind == "sync"]
    for s in syncs:
        await schedules.delete(app[TEMPORAL], names.sync_schedule_id(env.name, integration_key,
                                                                     connection.connection_id, s.name))
    async with app[POOL].acquire() as conn:
        await connections_repo.delete(conn, connection.id)
    return json_response({"success": True})
