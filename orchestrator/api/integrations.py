"""Integrations: the provider config keys of an environment (Nango's /integrations API)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.api import functions
from orchestrator.api.common import environment, iso, json_body, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.control import integration_schedules
from orchestrator.control.reconcile import reconcile_integration, reconcile_lock
from orchestrator.errors import InvalidInputError
from orchestrator.providers import jwt_auth
from orchestrator.providers.custom import find_provider
from orchestrator.providers.egress import SETTING as EGRESS_SETTING
from orchestrator.providers.egress import internal_entries, parse_allow_list
from orchestrator.store import integrations as integrations_repo
from orchestrator.store.types import Integration

routes = web.RouteTableDef()
URL_PATTERN = r"^https?://[^\s]+$"


class OAuthCredentials(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "OAUTH2"
    client_id: str | None = None
    client_secret: str | None = None
    scopes: str | list[str] | None = None
    webhook_secret: str | None = None
    authorization_url: str | None = Field(None, pattern=URL_PATTERN)
    token_url: str | None = Field(None, pattern=URL_PATTERN)


class WebhookRouting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body_path: str = Field(min_length=1)
    metadata_key: str | None = None
    match: str | None = Field(None, pattern="^(metadata|connection_id)$")


class IntegrationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unique_key: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.\-]+$")
    provider: str | None = None
    display_name: str | None = None
    credentials: OAuthCredentials | None = None
    webhook_secret: str | None = None
    webhook_routing: WebhookRouting | None = None
    # accept provider webhooks without a signature (only meaningful while no webhook_secret is set)
    webhook_accept_unsigned: bool | None = None
    # forward provider webhooks to the environment's webhook URLs (type "forward"), as Nango does (default on)
    forward_webhooks: bool | None = None
    # override the provider catalog's OAuth endpoints (an enterprise host, the demo provider)
    oauth_authorization_url: str | None = Field(None, pattern=URL_PATTERN)
    oauth_token_url: str | None = Field(None, pattern=URL_PATTERN)
    # hosts the integration's scripts and proxy calls may reach besides the provider's (public ones only)
    egress_allow: list[str] | None = Field(None, max_length=100)

    @field_validator("egress_allow")
    @classmethod
    def _egress_allow(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        entries = [v.strip() for v in value if v.strip()]
        allow = parse_allow_list(entries)   # ValueError names the bad entry
        internal = internal_entries(allow)
        if internal:
            raise ValueError(f"{', '.join(internal)}: an integration's egress_allow may list public hosts only; "
                             f"internal addresses are opened by the operator's {EGRESS_SETTING} setting")
        return entries


def webhook_url(request: web.Request, environment_name: str, unique_key: str) -> str:
    base = request.app[PLATFORM].settings.public_url.rstrip("/") or f"{request.scheme}://{request.host}"
    return f"{base}/webhook/{environment_name}/{unique_key}"


async def public(conn: Any, i: Integration, *, include: set[str] | None = None,
                 request: web.Request | None = None) -> dict[str, Any]:
    """ApiPublicIntegration; `include` adds `webhook` and/or `credentials` (the OAuth app, secret included:
    the caller holds the environment's secret key)."""
    provider = await find_provider(conn, i.environment_id, i.provider)
    out: dict[str, Any] = {
        "unique_key": i.unique_key, "provider": i.provider,
        "display_name": i.display_name or (provider.display_name if provider else i.provider),
        "logo": "", "forward_webhooks": await integrations_repo.forwards_webhooks(conn, i.id),
        "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at), "egress_allow": await integrations_repo.egress_allow(conn, i.id)}
    if include:
        row = await integrations_repo.settings(conn, i.id)
        if "webhook" in include:
            out["webhook_url"] = webhook_url(request, environment(request).name, i.unique_key) if request else None
            out["webhook_routing"] = row["webhook_routing"] or None
            out["has_webhook_secret"] = row["has_secret"]
            out["webhook_accept_unsigned"] = row["webhook_accept_unsigned"]
        if "credentials" in include:
            secret = row["oauth_client_secret"]
            out["credentials"] = {
                "type": provider.auth_mode if provider else None, "client_id": row["oauth_client_id"],
                "client_secret": str(request.app[PLATFORM].sealer.open(secret)) if secret and request else None,
                "scopes": row["oauth_scopes"], "authorization_url": row["oauth_authorization_url"],
                "token_url": row["oauth_token_url"]}
            if provider is not None and provider.auth_mode == "APP":   # Nango's shape for an app
                out["credentials"].update({"app_id": row["oauth_client_id"], "app_link": jwt_auth.app_link(row),
                                           "private_key": out["credentials"]["client_secret"]})
    return out


@routes.get("/integrations")
async def list_integrations(request: web.Request) -> web.Response:
    async with request.app[PLATFORM].pool.acquire() as conn:
        found = await integrations_repo.list_all(conn, environment(request).id)
        return json_response({"data": [await public(conn, i) for i in found]})


async def _get(request: web.Request, conn: Any) -> Integration:
    env = environment(request)
    found = await integrations_repo.get(conn, env.id, request.match_info["unique_key"])
    if found is None:
        raise_error(404, "not_found", f"no integration '{request.match_info['unique_key']}' in environment "
                                      f"'{env.name}'")
    return found


@routes.get("/integrations/{unique_key}")
async def get_integration(request: web.Request) -> web.Response:
    include = {p.strip() for v in request.query.getall("include", []) for p in v.split(",") if p.strip()}
    async with request.app[PLATFORM].pool.acquire() as conn:
        integration = await _get(request, conn)
        return json_response({"data": await public(conn, integration, include=include, request=request)})


async def _apply(request: web.Request, conn: Any, integration: Integration, body: IntegrationBody) -> None:
    sealer = request.app[PLATFORM].sealer
    if body.egress_allow is not None:
        await integrations_repo.set_egress_allow(conn, integration.id, body.egress_allow)
    creds = body.credentials
    if creds is not None and creds.type.upper() == "APP":
        creds = _app_credentials(creds)
    secret = body.webhook_secret or (creds.webhook_secret if creds else None)
    scopes = creds.scopes if creds else None
    if isinstance(scopes, list):
        scopes = ",".join(str(s).strip() for s in scopes if str(s).strip())
    await integrations_repo.update_settings(
        conn, integration.id, display_name=body.display_name, oauth_client_id=creds.client_id if creds else None,
        sealed_client_secret=sealer.seal(creds.client_secret) if creds and creds.client_secret else None,
        sealed_webhook_secret=sealer.seal(secret) if secret else None,
        webhook_routing=body.webhook_routing.model_dump(exclude_none=True) if body.webhook_routing else None,
        oauth_scopes=scopes,
        oauth_authorization_url=body.oauth_authorization_url or (creds.authorization_url if creds else None),
        oauth_token_url=body.oauth_token_url or (creds.token_url if creds else None),
        webhook_accept_unsigned=body.webhook_accept_unsigned, forward_webhooks=body.forward_webhooks)


def _app_credentials(creds: OAuthCredentials) -> OAuthCredentials:
    """Nango's app credentials (`app_id`, `app_link`, `private_key`) as the integration keeps them: the app id as
    its client id, the private key sealed as its secret (checked now: a key that cannot sign is refused before
    anything is stored) and the link as its installation URL."""
    extra = creds.model_extra or {}
    app_id, link, key = extra.get("app_id"), extra.get("app_link"), extra.get("private_key")
    if not app_id or not key or not link:
        raise_error(400, "invalid_body", "APP credentials need app_id, app_link (the app's public page, "
                    "https://github.com/apps/<slug>) and private_key (its PEM)")
    if not re.fullmatch(URL_PATTERN, str(link)):
        raise_error(400, "invalid_body", "credentials.app_link must be an http(s) URL")
    try:
        jwt_auth.app_jwt(str(app_id), str(key))
    except InvalidInputError as exc:
        raise_error(400, "invalid_credentials", exc.message)
    return creds.model_copy(update={"client_id": str(app_id), "client_secret": str(key),
                                    "authorization_url": str(link).rstrip("/") + jwt_auth.APP_INSTALL_PATH})


@routes.post("/integrations")
async def create_integration(request: web.Request) -> web.Response:
    body = IntegrationBody.model_validate(await json_body(request))
    if not body.unique_key or not body.provider:
        raise_error(400, "invalid_body", "unique_key and provider are required")
    env = environment(request)
    async with request.app[PLATFORM].pool.acquire() as conn, conn.transaction():
        if await find_provider(conn, env.id, body.provider) is None:
            raise_error(400, "invalid_body", f"unknown provider '{body.provider}'")
        created = await integrations_repo.create(conn, env.id, body.unique_key, body.provider)
        if created is None:  # never the other integration's settings overwritten, even by a racing create
            raise_error(409, "duplicate_integration", f"integration '{body.unique_key}' exists")
        integration = created
        await _apply(request, conn, integration, body)
        integration = await integrations_repo.get(conn, env.id, body.unique_key)
        assert integration is not None
        return json_response({"data": await public(conn, integration)}, status=201)


@routes.patch("/integrations/{unique_key}")
async def patch_integration(request: web.Request) -> web.Response:
    """A rename re-creates the integration's schedules under the new key (their ids carry it) as they stand,
    holding its reconcile lock from before the rename is committed (`control/integration_schedules.py`)."""
    body = IntegrationBody.model_validate(await json_body(request))
    platform = request.app[PLATFORM]
    async with platform.pool.acquire() as conn:
        before = await _get(request, conn)
    renaming = bool(body.unique_key and body.unique_key != before.unique_key)
    renamed_from: str | None = None
    async with reconcile_lock(platform.pool, before.id) if renaming else contextlib.nullcontext():
        async with platform.pool.acquire() as conn, conn.transaction():
            integration = await _get(request, conn)
            if body.provider and body.provider != integration.provider:
                raise_error(400, "invalid_body", "the provider of an integration cannot change; create a new one")
            if body.unique_key and body.unique_key != integration.unique_key:
                if not await integrations_repo.rename(conn, integration.id, body.unique_key):
                    raise_error(409, "duplicate_integration", f"integration '{body.unique_key}' exists")
                renamed_from = integration.unique_key
            await _apply(request, conn, integration, body)
            integration = await integrations_repo.get(conn, integration.environment_id,
                                                      body.unique_key or integration.unique_key)
            assert integration is not None
            data = await public(conn, integration)
        if renamed_from is not None:
            await integration_schedules.move(platform, environment(request), renamed_from, integration)
    if renamed_from is not None:  # a connection that had no schedule yet gets one
        await reconcile_integration(platform, integration)
    return json_response({"data": data})


@routes.delete("/integrations/{unique_key}")
async def delete_integration(request: web.Request) -> web.Response:
    async with request.app[PLATFORM].pool.acquire() as conn:
        integration = await _get(request, conn)
    await integration_schedules.delete_integration(request.app[PLATFORM], environment(request), integration)
    return json_response({"success": True})


# Nango's functions API (functions.py) is served with the integrations it reads
for _route in functions.routes:
    routes.route(_route.method, _route.path, **_route.kwargs)(_route.handler)
