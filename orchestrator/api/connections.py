"""Connections: list, read (with credentials), create with credentials, delete, metadata.

Shapes follow Nango's public API as its Node client reads them: the list says `created` and has
no credentials; `GET /connections/{id}` answers the full connection unwrapped, with
`credentials` (the refresh token only when `refresh_token=true` is asked for).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from temporalio.service import RPCError

from orchestrator.api import end_users
from orchestrator.api.common import environment, iso, json_body, json_response, load_connection
from orchestrator.api.end_users import EndUser, Organization
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.control import events
from orchestrator.control.reconcile import reconcile_integration, reconcile_lock
from orchestrator.errors import InvalidInputError, TransientError
from orchestrator.providers import auth_webhooks, jwt_auth, minting
from orchestrator.providers import credentials as credentials_mod
from orchestrator.providers.custom import find_provider
from orchestrator.providers.model import Provider
from orchestrator.providers.token_endpoint import TokenRefusedError
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store.types import (
    ApiKeyCredentials,
    BasicCredentials,
    Connection,
    Credentials,
    Environment,
    Integration,
    OAuth1Credentials,
    OAuth2Credentials,
    TbaCredentials,
    credentials_to_json,
)
from orchestrator.temporal import names, schedules

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

CONNECTION_ID_PATTERN = r"^[A-Za-z0-9_.@\-:]+$"
EARLIEST_EXPIRY_YEAR = 1970  # an imported token's expires_at before it is a placeholder, not a time


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def errors(c: Connection) -> list[dict[str, Any]]:
    return _auth_errors(c.refresh_error)


def _auth_errors(e: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Nango's `errors` entry for a connection whose token refresh was refused (`log_id`: the refusal's id)."""
    return [{"type": "auth", "log_id": e.get("id", ""), "message": e.get("message", ""),
             "failed_at": iso(e.get("at"))}] if e else []


def public_credentials(creds: Credentials, *, include_refresh_token: bool) -> dict[str, Any]:
    out = credentials_to_json(creds)
    if isinstance(out.get("expires_at"), str):
        out["expires_at"] = iso(out["expires_at"])
    if out.get("type") == "OAUTH2" and not include_refresh_token:
        out.pop("refresh_token", None)
        if isinstance(out.get("raw"), dict):
            out["raw"] = {k: v for k, v in out["raw"].items() if k != "refresh_token"}
    return out


def full(c: Connection, *, include_refresh_token: bool = True) -> dict[str, Any]:
    return {"id": c.id, "connection_id": c.connection_id, "provider_config_key": c.integration_key,
            "provider": c.provider, "created_at": iso(c.created_at), "updated_at": iso(c.updated_at),
            "last_fetched_at": iso(datetime.now(UTC)), "connection_config": c.connection_config,
            "webhook_url_override": None, "metadata": c.metadata or None, "errors": errors(c),
            "end_user": c.end_user, "tags": c.tags,
            "credentials": public_credentials(c.credentials, include_refresh_token=include_refresh_token)}


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise_error(400, "invalid_query_params", f"{name} must be an integer, got {raw!r}")
    if not low <= value <= high:
        raise_error(400, "invalid_query_params", f"{name} must be from {low} to {high}, got {value}")
    return value


@routes.get("/connections")
async def list_connections(request: web.Request) -> web.Response:
    """Nango's legacy and object forms: connectionId, search, integrationId (comma list), endUserId,
    endUserOrganizationId, tags[key]=value (every one must match), limit, page."""
    env = environment(request)
    q = request.query
    limit = _int_query(request, "limit", 1000, 1, 10_000)
    page = _int_query(request, "page", 0, 0, 1_000_000)
    tags = {k[5:-1]: v for k, v in q.items() if k.startswith("tags[") and k.endswith("]") and len(k) > 6}
    integrations = [i.strip() for i in (q.get("integrationId") or "").split(",") if i.strip()]
    async with request.app[PLATFORM].pool.acquire() as conn:
        rows = await connections_repo.summaries(
            conn, env.id, integration_keys=integrations, connection_id=q.get("connectionId") or None,
            search=q.get("search") or None, end_user_id=q.get("endUserId") or None,
            organization_id=q.get("endUserOrganizationId") or None, tags=tags, limit=limit, offset=page * limit)
    return json_response({"connections": [_summary_row(r) for r in rows]})


def _summary_row(r: dict[str, Any]) -> dict[str, Any]:
    """`summary`, from a row that carries no credentials (`connections_repo.summaries`)."""
    return {"id": r["id"], "connection_id": r["connection_id"], "provider_config_key": r["integration_key"],
            "provider": r["provider"], "created": iso(r["created_at"]), "metadata": r["metadata"] or None,
            "errors": _auth_errors(r["refresh_error"]), "end_user": r["end_user"], "tags": r["tags"]}


def _provider_config_key(request: web.Request) -> str:
    integration = request.query.get("provider_config_key", "").strip()
    if not integration:
        raise_error(400, "missing_provider_config_key", "provider_config_key is required")
    return integration


@routes.get("/connections/{connection_id}")
async def get_connection(request: web.Request) -> web.Response:
    connection = await load_connection(request, _provider_config_key(request), request.match_info["connection_id"])
    force = _flag(request.query.get("force_refresh"))
    if force or credentials_mod.expires_soon(connection):
        try:
            connection = await credentials_mod.refresh(request.app[PLATFORM],
                                                       connection, force=force)
        except credentials_mod.RefreshError as exc:
            raise_error(400, "refresh_token_external_error", exc.message)
        except TransientError as exc:
            raise_error(502, "refresh_token_external_error", exc.message)
    connection = await _shown(request, connection)
    return json_response(full(connection, include_refresh_token=_flag(request.query.get("refresh_token"))))


async def _shown(request: web.Request, connection: Connection) -> Connection:
    """A JWT connection whose signed JWT is its token shows the current one, as Nango does."""
    if connection.credentials.type != "JWT":
        return connection
    provider = await find_provider(request.app[PLATFORM].pool, connection.environment_id, connection.provider)
    if provider is None:
        return connection
    try:
        return jwt_auth.with_current_token(connection, provider)
    except InvalidInputError as exc:
        raise_error(400, "invalid_credentials", exc.message)


class OAuth2Body(BaseModel):
    type: Literal["OAUTH2"] = "OAUTH2"
    access_token: str = Field(min_length=1)
    refresh_token: str | None = None
    expires_at: datetime | None = None
    expires_in: int | None = Field(None, ge=0, le=10 * 365 * 24 * 3600)
    raw: dict[str, Any] = Field(default_factory=dict)

    @field_validator("expires_at")
    @classmethod
    def _plausible_expiry(cls, value: datetime | None) -> datetime | None:
        """In UTC (a time without a zone is UTC), from 1970: Go's zero time (0001-01-01T00:00:00Z) is what an
        exporter writes for "no expiry", and the refresh time 15 minutes before it is no datetime (a 500)."""
        if value is None:
            return None
        try:
            utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError:
            utc = None
        if utc is None or utc.year < EARLIEST_EXPIRY_YEAR:
            raise ValueError(f"must be a time from {EARLIEST_EXPIRY_YEAR} to 9999 in UTC; leave it out for a "
                             f"token that does not expire, got {value.isoformat()}")
        return utc


class CreateConnectionBody(BaseModel):
    """A connection with credentials: `credentials` ({type: OAUTH2|API_KEY|BASIC, ...}) or Nango's flat
    import fields (access_token, refresh_token, expires_at, api_key, username, password)."""
    model_config = ConfigDict(extra="forbid")

    provider_config_key: str = Field(min_length=1)
    connection_id: str = Field(min_length=1, max_length=255, pattern=CONNECTION_ID_PATTERN)
    credentials: dict[str, Any] | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    connection_config: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    end_user: EndUser | None = None
    organization: Organization | None = None
    tags: dict[str, str] | None = Field(None, max_length=64)

    def to_credentials(self) -> Credentials:
        c = dict(self.credentials or {})
        kind = str(c.get("type", "")).upper()
        if kind == "OAUTH2" or (not kind and (self.access_token or c.get("access_token"))):
            flat = {"access_token": self.access_token, "refresh_token": self.refresh_token,
                    "expires_at": self.expires_at}
            body = OAuth2Body(**{**c, "type": "OAUTH2", **{k: v for k, v in flat.items() if v}})
            expires = body.expires_at
            if expires is not None and expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            if expires is None and body.expires_in:
                expires = datetime.now(UTC) + timedelta(seconds=body.expires_in)
            return OAuth2Credentials(access_token=body.access_token, refresh_token=body.refresh_token,
                                     expires_at=expires, raw=body.raw)
        if kind == "API_KEY" or (not kind and (self.api_key or c.get("apiKey") or c.get("api_key"))):
            key = self.api_key or c.get("apiKey") or c.get("api_key")
            if not key or not isinstance(key, str):
                raise_error(400, "invalid_body", "credentials.apiKey is required for API_KEY")
            return ApiKeyCredentials(apiKey=key)
        if kind == "BASIC" or (not kind and (self.username or c.get("username"))):
            username = self.username or c.get("username")
            password = self.password or c.get("password") or ""
            if not username or not isinstance(username, str) or not isinstance(password, str):
                raise_error(400, "invalid_body", "credentials.username (and password) are required for BASIC")
            return BasicCredentials(username=username, password=password)
        if kind == "OAUTH1":
            return _model(OAuth1Credentials, c, "{type: OAUTH1, oauth_token, oauth_token_secret}")
        if kind == "TBA":
            return _model(TbaCredentials, c, "{type: TBA, token_id, token_secret, config_override?: {client_id, "
                          "client_secret}}")
        raise_error(400, "invalid_body",
                    "credentials are required: {type: OAUTH2, access_token, refresh_token?, expires_at?} or "
                    "{type: OAUTH2_CC, client_id?, client_secret?} or {type: API_KEY, apiKey} or "
                    "{type: BASIC, username, password} or {type: OAUTH1, oauth_token, oauth_token_secret} or "
                    "{type: TBA, token_id, token_secret} or {type: APP} (with connection_config.installation_id) "
                    "or {type: JWT, <the provider's credential fields>}")


def _model(model: type[OAuth1Credentials] | type[TbaCredentials], given: dict[str, Any], shape: str) -> Credentials:
    try:
        return model.model_validate({**given, "type": model.model_fields["type"].default})
    except ValidationError as exc:   # named by field, never echoing a value (they are secrets)
        wrong = "; ".join(f"credentials.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise_error(400, "invalid_body", f"credentials must be {shape} ({wrong})")


async def mint_first(request: web.Request, env: Environment, integration: Integration, given: dict[str, Any],
                     connection_config: dict[str, Any]) -> Credentials:
    """The first token of an OAUTH2_CC, APP or JWT connection, minted before anything is stored."""
    platform = request.app[PLATFORM]
    async with platform.pool.acquire() as conn:
        row = await integrations_repo.settings(conn, integration.id)
    provider = await find_provider(platform.pool, env.id, integration.provider)
    if provider is None:
        raise_error(400, "unknown_provider", f"integration '{integration.unique_key}' has no known provider")
    try:
        return await minting.first_credentials(platform, provider, row, integration.unique_key, given,
                                               connection_config)
    except TokenRefusedError as exc:
        raise_error(400, exc.code, exc.message)
    except InvalidInputError as exc:
        raise_error(400, "invalid_credentials", exc.message)
    except TransientError as exc:
        raise_error(502, "token_endpoint_unavailable", exc.message)


class ConnectionValidationError(Exception):
    """A connection refused before it is kept: `code` is the API's error code for it."""

    def __init__(self, message: str, code: str = "connection_validation_failed") -> None:
        super().__init__(message)
        self.message, self.code = message, code


def require_connection_config(provider: Provider | None, integration: Integration,
                              connection_config: dict[str, Any]) -> None:
    """Refuse a connection config without a value the provider's URLs need, or with one that cannot go into them
    (`Provider.check_url_values`): named now, not at the first request."""
    missing = provider.missing_connection_config(connection_config) if provider is not None else []
    if provider is None:
        return
    if not missing:
        try:
            provider.check_url_values(connection_config)
        except InvalidInputError as exc:
            raise ConnectionValidationError(exc.message, "invalid_connection_config") from None
        return
    described = "; ".join(f"{k}: {provider.connection_config[k]}" for k in missing if k in provider.connection_config)
    raise ConnectionValidationError(
        f"connection_config lacks {', '.join(missing)}, which provider '{provider.name}' of integration "
        f"'{integration.unique_key}' needs in its URLs" + (f" ({described})" if described else ""),
        "invalid_connection_config")


async def save_connection(app: web.Application, env: Environment, integration: Integration, connection_id: str,
                          creds: Credentials, *, connection_config: dict[str, Any] | None = None,
                          metadata: dict[str, Any] | None = None, end_user: dict[str, Any] | None = None,
                          tags: dict[str, str] | None = None) -> tuple[Connection, bool]:
    """Store a connection (new, or new credentials for an existing one) and run what follows:
    validate-connection (a new connection it rejects is removed), schedules, post-connection-creation.
    The one code path behind POST /connections and the OAuth callback. A new connection without a connection
    config value its provider's URLs need is refused before anything is kept (an existing one keeps its own)."""
    provider = await find_provider(app[PLATFORM].pool, env.id, integration.provider)
    async with app[PLATFORM].pool.acquire() as conn:
        async with conn.transaction():
            pk, created = await connections_repo.create(
                conn, app[PLATFORM].sealer, environment_id=env.id, integration_id=integration.id,
                connection_id=connection_id, credentials=creds, connection_config=connection_config,
                metadata=metadata, end_user=end_user, tags=tags)
            if created:  # raising here rolls the insert back
                require_connection_config(provider, integration, connection_config or {})
        connection = await connections_repo.get_by_pk(conn, app[PLATFORM].sealer, pk)
    assert connection is not None
    if created:
        failures = [r for r in await events.fire(app[PLATFORM], env, connection, events.VALIDATE) if not r.ok]
        if failures:
            async with app[PLATFORM].pool.acquire() as conn:
                await connections_repo.delete(conn, connection.id)
            error = ConnectionValidationError("validate-connection rejected the connection: "
                                              + "; ".join(f.error_message or "failed" for f in failures))
            await auth_event(app, connection, "creation", error=("connection_validation_failed", error.message))
            raise error
    await reconcile_integration(app[PLATFORM], integration, only_connections=[connection.id])
    if created:
        await events.fire(app[PLATFORM], env, connection, events.POST_CREATION, wait=False)
    await auth_event(app, connection, "creation" if created else "override")
    log.info("connection_saved", connection=connection_id, integration=integration.unique_key, created=created)
    return connection, created


async def auth_event(app: web.Application, c: Connection, operation: auth_webhooks.Operation, *,
                     error: tuple[str, str] | None = None) -> None:
    """The auth webhook for what just happened to the connection (delivered in the background)."""
    await auth_webhooks.send(app[PLATFORM], auth_webhooks.AuthEvent(
        c.environment_id, c.integration_key, c.provider, c.connection_id, c.credentials.type, operation,
        error is None, *(error or (None, None))))


@routes.post("/connections")
@routes.post("/connection")
async def create_connection(request: web.Request) -> web.Response:
    env = environment(request)
    body = CreateConnectionBody.model_validate(await json_body(request))
    minted = str((body.credentials or {}).get("type", "")).upper() in minting.MINTED_MODES
    creds = body.to_credentials() if not minted else None
    async with request.app[PLATFORM].pool.acquire() as conn:
        integration = await integrations_repo.get(conn, env.id, body.provider_config_key)
    if integration is None:
        raise_error(404, "unknown_provider_config",
                    f"no integration '{body.provider_config_key}' in environment '{env.name}'")
    try:
        if creds is None:  # minting uses the config's URLs: checked first, so the error names every missing key
            require_connection_config(await find_provider(request.app[PLATFORM].pool, env.id, integration.provider),
                                      integration, body.connection_config)
            creds = await mint_first(request, env, integration, dict(body.credentials or {}), body.connection_config)
        named = body.end_user is not None or body.organization is not None or body.tags
        connection, created = await save_connection(
            request.app, env, integration, body.connection_id, creds, connection_config=body.connection_config,
            metadata=body.metadata, end_user=end_users.stored(body.end_user, body.organization),
            tags=end_users.tags_for(body.end_user, body.organization, body.tags) if named else None)
    except ConnectionValidationError as exc:
        raise_error(400, exc.code, exc.message)
    return json_response(full(await _shown(request, connection)), status=201 if created else 200)


CANCEL_WAIT_S = 10.0  # how long a deletion waits for its running syncs to close their jobs themselves
DELETED = "cancelled: the connection was deleted"


def _workflow_id(env: Environment, job: Any) -> str | None:
    if job["kind"] == "action" and job["public_id"]:
        return f"action:{names.escape(env.name)}:{job['public_id']}"  # temporal/starter.start_action's id
    return job["workflow_id"]  # a sync's run; webhook and event runs share a workflow with other connections


async def _stop_runs(app: web.Application, env: Environment, connection: Connection) -> None:
    """Cancel the connection's runs in progress before it goes, so none ends in a foreign-key error: a sync gets
    its workflow's cancel signal and a few seconds to close its job as cancelled as any cancel does; what still
    runs then has its workflow terminated and its job closed as cancelled here."""
    platform = app[PLATFORM]
    async with platform.pool.acquire() as conn:
        running = await jobs_repo.running_for_connection(conn, connection.id)
    if not running:
        return
    for wf in filter(None, (_workflow_id(env, j) for j in running)):
        handle = platform.temporal.get_workflow_handle(wf)
        try:
            await (handle.cancel() if wf.startswith("action:") else handle.signal("cancel", DELETED))
        except RPCError as exc:  # finished meanwhile (NOT_FOUND) or Temporal unreachable: the job is closed below
            log.info("run_cancel_failed", workflow_id=wf, error=str(exc))
    deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
    while running and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        async with platform.pool.acquire() as conn:
            running = await jobs_repo.running_for_connection(conn, connection.id)
    for wf in filter(None, (_workflow_id(env, j) for j in running)):
        try:
            await platform.temporal.get_workflow_handle(wf).terminate(DELETED)
        except RPCError as exc:
            log.info("run_terminate_failed", workflow_id=wf, error=str(exc))
    if running:
        async with platform.pool.acquire() as conn:
            await jobs_repo.cancel_running(conn, connection.id, DELETED)


@routes.delete("/connections/{connection_id}")
async def delete_connection(request: web.Request) -> web.Response:
    """Delete a connection: its schedules go, its runs in progress are cancelled (`_stop_runs`), then the row
    with its records; its jobs stay readable (migration 0025 keeps them, with its id and integration key)."""
    env = environment(request)
    integration_key = _provider_config_key(request)
    connection = await load_connection(request, integration_key, request.match_info["connection_id"])
    app = request.app
    for failure in [r for r in await events.fire(app[PLATFORM], env, connection, events.PRE_DELETION) if not r.ok]:
        log.warning("pre_deletion_script_failed", connection=connection.connection_id, error=failure.error_message)
    platform = app[PLATFORM]
    # under the integration's reconcile lock: a reconcile (a deploy, the maintenance loop) cannot re-create a
    # schedule of the connection between its deletion and the row's
    async with reconcile_lock(platform.pool, connection.integration_id):
        async with platform.pool.acquire() as conn:
            keys = await environments_repo.sync_schedule_keys(conn, env.id, connection_pk=connection.id)
        for k in keys:
            await schedules.delete(platform.temporal, names.sync_schedule_id(
                env.name, integration_key, connection.connection_id, k["name"], k["variant"]), pool=platform.pool)
        await _stop_runs(app, env, connection)
        async with platform.pool.acquire() as conn:
            await connections_repo.delete(conn, connection.id)
    await auth_event(app, connection, "deletion")
    return json_response({"success": True})


class PatchConnectionBody(BaseModel):
    """Nango's PATCH /connections/{id}: a new end user and/or tags (what is given replaces what was stored);
    `metadata` is merged into the connection's (shallow, as PATCH /connections/metadata)."""
    model_config = ConfigDict(extra="forbid")
    end_user: EndUser | None = None
    organization: Organization | None = None
    tags: dict[str, str] | None = Field(None, max_length=64)
    metadata: dict[str, Any] | None = None


@routes.patch("/connections/{connection_id}")
async def patch_connection(request: web.Request) -> web.Response:
    body = PatchConnectionBody.model_validate(await json_body(request))
    connection = await load_connection(request, _provider_config_key(request), request.match_info["connection_id"])
    end_user = end_users.stored(body.end_user, body.organization) if body.end_user else None
    tags = None
    if body.tags is not None or body.end_user is not None or body.organization is not None:
        tags = end_users.tags_for(body.end_user, body.organization, body.tags)
    async with request.app[PLATFORM].pool.acquire() as conn:
        async with conn.transaction():
            await connections_repo.set_end_user_and_tags(conn, connection.id, end_user=end_user, tags=tags)
            if body.metadata is not None:
                await connections_repo.write_metadata(conn, [connection.id], body.metadata, merge=True)
    return json_response({"success": True})


class MetadataBody(BaseModel):
    """POST replaces the metadata of each named connection; PATCH merges it (shallow, top-level keys)."""
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Any]
    connection_id: str | list[str] = Field(min_length=1)
    provider_config_key: str = Field(min_length=1)


async def _write_metadata(request: web.Request, *, merge: bool) -> web.Response:
    env = environment(request)
    raw = await json_body(request)
    body = MetadataBody.model_validate(raw)
    ids = [body.connection_id] if isinstance(body.connection_id, str) else list(dict.fromkeys(body.connection_id))
    if not ids or any(not i for i in ids):
        raise_error(400, "invalid_body", "connection_id must be a non-empty string or a list of them")
    async with request.app[PLATFORM].pool.acquire() as conn, conn.transaction():
        pks = await connections_repo.lock_by_ids(conn, env.id, body.provider_config_key, ids)
        missing = sorted(set(ids) - set(pks))
        if missing:
            raise_error(404, "unknown_connection",
                        f"no connection {', '.join(repr(m) for m in missing)} for integration "
                        f"'{body.provider_config_key}' in environment '{env.name}'")
        await connections_repo.write_metadata(conn, list(pks.values()), body.metadata, merge=merge)
    return json_response(raw)


@routes.post("/connections/metadata")
async def set_metadata(request: web.Request) -> web.Response:
    return await _write_metadata(request, merge=False)


@routes.patch("/connections/metadata")
async def update_metadata(request: web.Request) -> web.Response:
    return await _write_metadata(request, merge=True)
