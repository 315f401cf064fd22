"""`/proxy/*`: a request to the connection's API with its credentials injected (Nango's proxy).

Headers (as Nango's Node client sends them): `Connection-Id`, `Provider-Config-Key` (required),
`Base-Url-Override` (empty = the provider's / connection's base URL), `Retries` (0-10, network
errors, 5xx and 429 retried with backoff honouring Retry-After), `Retry-On` (extra statuses,
comma-separated), `Decompress` (accepted; responses are always decoded), and `Nango-Proxy-<Name>`
forwarded upstream as `<Name>`. A `Content-Type` is forwarded too. The query string is passed on
as is, the body byte for byte. The upstream status, headers (minus hop-by-hop ones) and body come
back unchanged; a 502 JSON error says when the upstream could not be reached at all.

Requests pass the egress policy (providers/egress.py) as scripts' do: the provider's host, hosts in
EGRESS_ALLOW or the integration's egress_allow, never an internal address the operator did not
list, every redirect checked; the connection's credentials go to the provider's host only. A
refused request answers 403 `egress_refused`, naming the host and the setting that would allow it.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from orchestrator.api.common import connection_headers, environment, int_header, is_number, load_connection
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.errors import TransientError
from orchestrator.providers import credentials as credentials_mod
from orchestrator.providers.custom import resolve_provider
from orchestrator.providers.egress import EgressRefused, strict_egress
from orchestrator.providers.proxy import ProxyRequest, UpstreamError, policy_for, send
from orchestrator.store import integrations as integrations_repo
from orchestrator.store.types import Connection

routes = web.RouteTableDef()

PREFIX = "nango-proxy-"
MAX_RETRIES = 10
MAX_BODY = 64 * 1024 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "content-length", "content-encoding"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # GET adds HEAD




def _retry_on(raw: str | None) -> list[int]:
    out: list[int] = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        if not is_number(part) or not 100 <= int(part) <= 599:
            raise_error(400, "invalid_headers", f"Retry-On takes HTTP statuses separated by commas, got {raw!r}")
        out.append(int(part))
    return out


def _base_url_override(raw: str | None) -> str | None:
    value = (raw or "").strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise_error(400, "invalid_headers", f"Base-Url-Override must be an http(s) URL, got {value!r}")
    try:  # a port out of range or an unclosed IPv6 bracket would raise later, at the request (a 500)
        URL(value)
    except ValueError as exc:
        raise_error(400, "invalid_headers", f"Base-Url-Override must be an http(s) URL, got {value!r}: {exc}")
    return value


def _forwarded_headers(request: web.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        if name.lower().startswith(PREFIX) and len(name) > len(PREFIX):
            out[name[len(PREFIX):]] = value
    if "Content-Type" in request.headers and not any(k.lower() == "content-type" for k in out):
        out["Content-Type"] = request.headers["Content-Type"]
    return out


async def proxy(request: web.Request) -> web.StreamResponse:
    integration, connection_id = connection_headers(request)
    retries = int_header(request, "Retries", MAX_RETRIES)
    retry_on = _retry_on(request.headers.get("Retry-On"))
    base_url = _base_url_override(request.headers.get("Base-Url-Override"))
    connection = await load_connection(request, integration, connection_id)
    async with request.app[PLATFORM].pool.acquire() as conn:
        provider = await resolve_provider(conn, connection.environment_id, connection.provider)
        egress_allow = await integrations_repo.egress_allow(conn, connection.integration_id)
    body = await request.read() if request.can_read_body else b""
    if len(body) > MAX_BODY:
        raise_error(413, "payload_too_large", f"proxy bodies are limited to {MAX_BODY} bytes")
    app = request.app
    try:
        if credentials_mod.expires_soon(connection):
            connection = await credentials_mod.refresh(app[PLATFORM], connection)

        async def refresh() -> Connection:
            return await credentials_mod.refresh(app[PLATFORM], connection, force=True)

        platform = app[PLATFORM]
        policy = policy_for(platform.egress or strict_egress(), connection, provider, egress_allow)
        result = await send(policy, connection, provider, ProxyRequest(
            method=request.method, endpoint="/" + request.match_info["path"],
            params=request.rel_url.raw_query_string or None, data=body or None, headers=_forwarded_headers(request),
            retries=retries, retry_on=retry_on, base_url_override=base_url, response_type="text"), refresh=refresh,
            environment=environment(request).name)
    except EgressRefused as exc:
        raise_error(403, "egress_refused", exc.message)
    except credentials_mod.RefreshError as exc:
        raise_error(400, "refresh_token_external_error", exc.message)
    except (UpstreamError, TransientError) as exc:
        raise_error(502, "upstream_unreachable", str(exc))
    headers = {k: v for k, v in result.headers.items() if k.lower() not in HOP_BY_HOP}
    return web.Response(status=result.status, body=result.raw, headers=headers)


for _method in METHODS:
    routes.route(_method, "/proxy/{path:.*}")(proxy)
