"""The connect page a customer's frontend opens: Nango's frontend SDK's `openConnectUI({baseURL})` pointed at
`{API}/connect/ui/`, or the `connect_link` of a connect session opened directly.

The page gets its connect session token from the SDK by postMessage (it says `ready`, the SDK answers with
`{type: "session_token"}`) or from `?session_token=`; it lists the integrations the session allows
(`GET /connect/session`, authorized by that token, with each integration's form: the connection-config values
and credential fields to ask for, described, never a secret of the integration). API key, basic, TBA, JWT and
OAuth2 client credentials get a form POSTed to frontend.py's routes; OAuth2, OAuth 1.0a and GitHub-style apps
run the popup (the same WebSocket contract as the SDK's `auth()`). Connection-config values go in the query as
`params[key]`, asked before the popup when the provider declares some. It tells its parent how it went:
`{type: "connect", payload: {providerConfigKey, connectionId}}`, `{type: "error", payload: {errorType,
errorMessage}}`, `{type: "close"}`. `?lang=` (en, fr, de, es; else the browser's, else English) and `?theme=`
(light, dark, system: prefers-color-scheme), which openConnectUI puts on its iframe URL, pick its words and
palette. One static file, no external asset (the CSP allows only 'self'); no secret key ever reaches it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web

from orchestrator.api.common import json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.api.oauth import RESERVED_CONFIG, session_for_token
from orchestrator.providers.custom import find_provider
from orchestrator.providers.model import Provider
from orchestrator.store import integrations as integrations_repo

routes = web.RouteTableDef()

APP_FILLED = frozenset({"appPublicLink", "installation_id"})   # from the integration and the app's callback
TBA_FIELDS = {"token_id": "the access token's id", "token_secret": "the access token's secret"}


@routes.get("/connect/ui")
async def connect_ui_bare(request: web.Request) -> web.Response:
    raise web.HTTPFound("/connect/ui/" + (f"?{request.query_string}" if request.query_string else ""))


@routes.get("/connect/ui/")
async def connect_ui(_request: web.Request) -> web.Response:
    page = (resources.files("orchestrator.api") / "static" / "connect.html").read_text()
    return web.Response(text=page, content_type="text/html", headers={
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                   "style-src 'unsafe-inline'; connect-src 'self' ws: wss:; frame-ancestors *"})


def form_fields(provider: Provider | None, fixed: dict[str, Any]) -> dict[str, dict[str, str]]:
    """What the page asks the end user for (name -> description): the connection-config values the provider
    declares, minus those the platform fills (RESERVED_CONFIG, an APP's link and installation) or the session
    already fixed, and the credential fields of a mode whose credentials the end user types in. Descriptions
    only: the integration's own secrets never leave the server."""
    if provider is None:
        return {"connection_config": {}, "credentials": {}}
    platform_filled = RESERVED_CONFIG | (APP_FILLED if provider.auth_mode == "APP" else frozenset())
    config = {k: v for k, v in provider.connection_config.items() if k not in platform_filled and k not in fixed}
    credentials: dict[str, str] = {}
    if provider.auth_mode == "JWT":
        credentials = dict(provider.credentials)
    elif provider.auth_mode == "TBA":   # the route takes these two; a provider may describe them better
        credentials = {k: provider.credentials.get(k, v) for k, v in TBA_FIELDS.items()}
    return {"connection_config": config, "credentials": credentials}


@routes.get("/connect/session")
async def connect_session(request: web.Request) -> web.Response:
    """Nango's `GET /connect/session`, authorized by the session token (`Authorization: Bearer <token>`): what the
    connect page shows."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip().startswith("nango_connect_session_"):
        raise_error(401, "invalid_connect_session_token", "send the connect session token as a Bearer token")
    env, session = await session_for_token(request, token.strip())
    platform = request.app[PLATFORM]
    async with platform.pool.acquire() as conn:
        every = await integrations_repo.list_all(conn, env.id)
    allowed = session.get("allowed_integrations")
    shown = []
    for i in every:
        if allowed is not None and i.unique_key not in allowed:
            continue
        provider = await find_provider(platform.pool, env.id, i.provider)
        shown.append({"unique_key": i.unique_key, "provider": i.provider,
                      "display_name": i.display_name or (provider.display_name if provider else i.provider),
                      "auth_mode": provider.auth_mode if provider else None,
                      **form_fields(provider, session.get("connection_config") or {})})
    return json_response({"data": {
        "allowed_integrations": [i["unique_key"] for i in shown], "integrations": shown,
        "end_user": session.get("end_user"), "is_reconnecting": bool(session.get("reconnect")),
        "connection_id": session.get("connection_id")}})
