"""The connect page a customer's frontend opens: Nango's frontend SDK's `openConnectUI({baseURL})` pointed at
`{API}/connect/ui/`, or the `connect_link` of a connect session opened directly.

The page gets its connect session token from the SDK by postMessage (it says `ready`, the SDK answers with
`{type: "session_token"}`) or from `?session_token=`; it lists the integrations the session allows
(`GET /connect/session`, authorized by that token), shows a form for API-key and basic integrations and a
button that runs the OAuth popup (the same WebSocket contract as the SDK's `auth()`), and tells its parent
how it went: `{type: "connect", payload: {providerConfigKey, connectionId}}`, `{type: "error", payload:
{errorType, errorMessage}}`, `{type: "close"}`. No secret key ever reaches the page.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from orchestrator.api.common import json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.api.oauth import session_for_token
from orchestrator.providers.custom import find_provider
from orchestrator.store import integrations as integrations_repo

routes = web.RouteTableDef()


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
                      "auth_mode": provider.auth_mode if provider else None})
    return json_response({"data": {
        "allowed_integrations": [i["unique_key"] for i in shown], "integrations": shown,
        "end_user": session.get("end_user"), "is_reconnecting": bool(session.get("reconnect")),
        "connection_id": session.get("connection_id")}})
