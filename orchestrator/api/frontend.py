"""What Nango's frontend SDK (`@nangohq/frontend`) calls on the API, from the customer's web page.

- `auth()` for an API key or basic credentials POSTs them as JSON to `/api-auth/api-key/{integration}` or
  `/api-auth/basic/{integration}` with the connect session token in the query; the answer is
  `{providerConfigKey, connectionId}`. The page is on the customer's origin, so these routes answer CORS
  (any origin: the session token in the URL is the credential, no cookie is involved).
- `auth()` with TBA credentials (`{token_id, token_secret}`), JWT credentials (`{type: 'JWT', ...}`) or OAuth2
  client credentials (`{client_id, client_secret}`) POSTs them to `/auth/tba/{integration}`, `/auth/jwt/...` or
  `/oauth2/auth/...` the same way; `params[key]` in the query fills the connection config keys the provider
  declares (a NetSuite account id).
- `auth()` for OAuth opens a popup on `/oauth/connect/{integration}` and waits on a WebSocket at the SDK's
  `websocketsPath` (`/` by default): the server acknowledges with a `ws_client_id` that the popup's URL carries,
  and sends `success` or `error` once the callback is done. The outcome is written on the flow's state row
  (oauth.py), so the socket may be held by another API replica than the one the callback reached: each socket
  reads its outcome from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.common import json_body, json_response
from orchestrator.api.connections import ConnectionValidationError, mint_first, save_connection
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.api.oauth import flow_start, query_config
from orchestrator.api.socket_results import SOCKETS
from orchestrator.providers.custom import find_provider
from orchestrator.store import integrations as integrations_repo
from orchestrator.store.types import ApiKeyCredentials, BasicCredentials, Credentials, TbaCredentials

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

SOCKET_LIFETIME_S = 15 * 60.0  # an OAuth flow the user has not finished by then is abandoned
CORS_PREFIXES = ("/api-auth/", "/auth/tba/", "/auth/jwt/", "/oauth2/auth/")
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600"}


class ApiKeyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    apiKey: str = Field(min_length=1, max_length=10_000)  # Nango's name


class BasicBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    username: str = Field(min_length=1, max_length=1000)
    password: str = Field("", max_length=10_000)


@web.middleware
async def cors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """CORS for the routes a customer's page calls; everything else stays same-origin."""
    if not request.path.startswith(CORS_PREFIXES):
        return await handler(request)
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(CORS)
        raise
    response.headers.update(CORS)
    return response


async def _credentials_auth(request: web.Request, mode: str, creds: Credentials | dict[str, Any]) -> web.Response:
    """Save a connection from credentials the page sent; `creds` as a dict is a minted mode's input (its first
    token is minted before anything is stored)."""
    env, session, key, connection_id = await flow_start(request)
    async with request.app[PLATFORM].pool.acquire() as conn:
        integration = await integrations_repo.get(conn, env.id, key)
    if integration is None:
        raise_error(404, "unknown_provider_config", f"no integration '{key}' in environment '{env.name}'")
    provider = await find_provider(request.app[PLATFORM].pool, env.id, integration.provider)
    if provider is None or provider.auth_mode != mode:
        raise_error(400, "invalid_auth_mode", f"integration '{key}' does not use {mode} "
                    f"(its provider uses {provider.auth_mode if provider else 'nothing known'})")
    connection_config = query_config(request, provider, session)
    if isinstance(creds, dict):
        creds = await mint_first(request, env, integration, {**creds, "type": mode}, connection_config)
    try:
        connection, _created = await save_connection(
            request.app, env, integration, connection_id, creds,
            connection_config=connection_config, metadata=session.get("metadata") or {},
            end_user=session.get("end_user"), tags=session.get("tags") or None)
    except ConnectionValidationError as exc:
        raise_error(400, exc.code, exc.message)
    return json_response({"providerConfigKey": key, "connectionId": connection.connection_id})


@routes.post("/api-auth/api-key/{integration}")
async def api_key_auth(request: web.Request) -> web.Response:
    body = ApiKeyBody.model_validate(await json_body(request))
    return await _credentials_auth(request, "API_KEY", ApiKeyCredentials(apiKey=body.apiKey))


@routes.post("/api-auth/basic/{integration}")
async def basic_auth(request: web.Request) -> web.Response:
    body = BasicBody.model_validate(await json_body(request))
    return await _credentials_auth(request, "BASIC", BasicCredentials(username=body.username,
                                                                      password=body.password))


class TbaBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token_id: str = Field(min_length=1, max_length=1000)
    token_secret: str = Field(min_length=1, max_length=1000)
    oauth_client_id_override: str | None = Field(None, max_length=1000)
    oauth_client_secret_override: str | None = Field(None, max_length=10_000)


@routes.post("/auth/tba/{integration}")
async def tba_auth(request: web.Request) -> web.Response:
    body = TbaBody.model_validate(await json_body(request))
    override = {k: v for k, v in (("client_id", body.oauth_client_id_override),
                                  ("client_secret", body.oauth_client_secret_override)) if v}
    return await _credentials_auth(request, "TBA", TbaCredentials(token_id=body.token_id,
                                                                  token_secret=body.token_secret,
                                                                  config_override=override))


class JwtBody(BaseModel):
    """The provider's credential fields, by the names its `credentials` declare (privateKey, issuerId, ...)."""
    model_config = ConfigDict(extra="allow")
    type: str | None = "JWT"


@routes.post("/auth/jwt/{integration}")
async def jwt_auth(request: web.Request) -> web.Response:
    """The provider's credential fields (`privateKey`, `issuerId`, ...): signed now, so a key that cannot sign
    is refused before anything is stored."""
    body = await json_body(request)
    if not isinstance(body, dict) or len(body) > 20:
        raise_error(400, "invalid_body", "expected the JWT credentials as a JSON object")
    fields = {str(k): str(v)[:20_000] for k, v in body.items() if k != "type" and isinstance(v, str | int)}
    return await _credentials_auth(request, "JWT", fields)


class ClientCredentialsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    client_id: str = Field(min_length=1, max_length=1000)
    client_secret: str = Field(min_length=1, max_length=10_000)


@routes.post("/oauth2/auth/{integration}")
async def client_credentials_auth(request: web.Request) -> web.Response:
    body = ClientCredentialsBody.model_validate(await json_body(request))
    return await _credentials_auth(request, "OAUTH2_CC", body.model_dump())


async def socket(request: web.Request) -> web.StreamResponse:
    """The SDK's WebSocket: acknowledge with an id, then send how the OAuth flow carrying that id ended (one
    poll for every socket of the process, `socket_results`; a process already holding its maximum refuses)."""
    waiting = request.app[SOCKETS]
    if waiting.full():
        raise_error(503, "too_many_sockets", f"this API process already holds {waiting.max_sockets} connect "
                    "sockets; try again in a moment")
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    client_id = str(uuid.uuid4())
    await ws.send_json({"message_type": "connection_ack", "ws_client_id": client_id})
    reader = asyncio.ensure_future(ws.receive())  # a close from the browser ends the wait
    outcome = waiting.wait(client_id)
    try:
        async with asyncio.timeout(SOCKET_LIFETIME_S):
            await asyncio.wait({reader, outcome}, return_when=asyncio.FIRST_COMPLETED)
        if outcome.done() and not outcome.cancelled():
            await ws.send_json(outcome.result())
    except TimeoutError:
        await ws.send_json({"message_type": "error", "error_type": "timeout",
                            "error_desc": "the authorization was not completed in time"})
    finally:
        waiting.forget(client_id)
        reader.cancel()
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


@routes.get("/connect/ws")
async def socket_route(request: web.Request) -> web.StreamResponse:
    return await socket(request)


def wants_socket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket" and request.method == "GET"

