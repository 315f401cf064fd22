"""The OAuth2 authorization-code flow: connect session -> provider -> callback -> connection.

Who may start a flow: the browser that opens `/oauth/connect/{integration}` holds no secret key,
so the app's backend first creates a **connect session** with its secret key
(`POST /connect/sessions`, Nango's name and shape: `{data: {token, expires_at}}`). The token is
random, stored hashed, valid 30 minutes by default and limited to the integrations (and, if set,
the connection id) the backend allowed. A server-side caller may instead send its secret key as
`Authorization: Bearer` to `/oauth/connect/...` directly.

1. `GET /oauth/connect/{integration}?connect_session_token=...` (or `?connection_id=...` with the
   secret key) stores a
   one-time `state` (random, 10 minutes) and redirects (302) to the provider's authorization URL
   (the integration's `oauth_authorization_url` override, else the provider catalog's) with
   `client_id`, `redirect_uri` (= `{PUBLIC_URL}/oauth/callback`), `scope`, `state`. Under a session
   token the connection id is the session's, or a generated uuid (as Nango does): the end user who
   holds the token never names one, so it cannot overwrite another user's connection.
2. `GET /oauth/callback?code=...&state=...` consumes the state, exchanges the code at the token
   URL with the integration's client id and secret (sealed at rest), and saves the connection
   through the same code path as `POST /connections` (validate-connection, schedules,
   post-connection-creation). `expires_at` comes from `expires_in`. An integration-level token
   URL override is kept in the connection's `connection_config.token_url` so refreshes use it.
3. The answer: a redirect to the session's `return_url` with `connection_id`,
   `provider_config_key` (or `error`, `error_description`) in the query when one was given;
   otherwise JSON (`{"success": true, ...}` or the error envelope), or a small HTML page for a
   browser (`Accept: text/html`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api import end_users
from orchestrator.api.common import environment, is_number, iso, json_body, json_response
from orchestrator.api.connections import CONNECTION_ID_PATTERN, ConnectionValidationError, save_connection
from orchestrator.api.end_users import EndUser, Organization
from orchestrator.api.errors import error_body, raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.errors import InvalidInputError, TransientError
from orchestrator.providers import auth_webhooks, jwt_auth, minting, oauth1
from orchestrator.providers.catalog import fill, token_url
from orchestrator.providers.custom import find_provider
from orchestrator.providers.egress import EgressRefused, strict_egress
from orchestrator.providers.model import Provider
from orchestrator.providers.token_endpoint import TokenRefusedError, expiry
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import oauth as oauth_repo
from orchestrator.store.types import AppCredentials, Credentials, Environment, OAuth1Credentials, OAuth2Credentials

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

STATE_TTL = timedelta(minutes=10)
# connection-config keys an end user may never set: they redirect where credentials and tokens are sent
RESERVED_CONFIG = frozenset({"base_url", "token_url"})
URL_PATTERN = r"^https?://[^\s]+$"


def _hash(token: str) -> str:
    """A session token's hash; bytes of a header that are not UTF-8 are hashed as they came (no token matches)."""
    return hashlib.sha256(token.encode(errors="surrogateescape")).hexdigest()


class ConnectSessionBody(BaseModel):
    """Nango's body: `end_user` (optional here), `organization` and `tags` are kept on the connection the session
    makes (end_users.py); `integrations_config_defaults` is accepted and ignored; `connection_id`,
    `connection_config`, `metadata`, `return_url` and `ttl_seconds` are ours."""
    model_config = ConfigDict(extra="forbid")
    allowed_integrations: list[str] | None = Field(None, max_length=100)
    connection_id: str | None = Field(None, min_length=1, max_length=255, pattern=CONNECTION_ID_PATTERN)
    connection_config: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    return_url: str | None = Field(None, max_length=2000, pattern=URL_PATTERN)
    ttl_seconds: int = Field(1800, ge=60, le=24 * 3600)
    end_user: EndUser | None = None
    organization: Organization | None = None
    integrations_config_defaults: dict[str, Any] | None = None
    tags: dict[str, str] | None = Field(None, max_length=64)


class ReconnectSessionBody(BaseModel):
    """Nango's reconnect session: re-authorize one existing connection (its id and integration are fixed)."""
    model_config = ConfigDict(extra="forbid")
    connection_id: str = Field(min_length=1, max_length=255, pattern=CONNECTION_ID_PATTERN)
    integration_id: str = Field(min_length=1, max_length=255)
    end_user: EndUser | None = None
    organization: Organization | None = None
    integrations_config_defaults: dict[str, Any] | None = None
    tags: dict[str, str] | None = Field(None, max_length=64)
    return_url: str | None = Field(None, max_length=2000, pattern=URL_PATTERN)
    ttl_seconds: int = Field(1800, ge=60, le=24 * 3600)


class ConnectSessionData(BaseModel):
    token: str
    expires_at: datetime
    connect_url: str | None = None
    connect_link: str | None = None


class ConnectSessionResponse(BaseModel):
    data: ConnectSessionData


def _public_base(request: web.Request) -> str:
    return request.app[PLATFORM].settings.public_url.rstrip("/") or f"{request.scheme}://{request.host}"


@routes.post("/connect/sessions")
async def create_session(request: web.Request) -> web.Response:
    env = environment(request)
    body = ConnectSessionBody.model_validate(await json_body(request))
    allowed = list(dict.fromkeys(body.allowed_integrations)) if body.allowed_integrations is not None else None
    async with request.app[PLATFORM].pool.acquire() as conn:
        if allowed:
            known = {i.unique_key for i in await integrations_repo.list_all(conn, env.id)}
            unknown = [a for a in allowed if a not in known]
            if unknown:
                raise_error(400, "invalid_body", f"unknown integration(s) in allowed_integrations: "
                            f"{', '.join(unknown)}")
    return await _session(request, env, allowed=allowed, connection_id=body.connection_id,
                          connection_config=body.connection_config, metadata=body.metadata, return_url=body.return_url,
                          ttl_seconds=body.ttl_seconds, end_user=body.end_user, organization=body.organization,
                          tags=body.tags)


@routes.post("/connect/sessions/reconnect")
async def create_reconnect_session(request: web.Request) -> web.Response:
    """A session whose flow re-authorizes the named connection: same id, new credentials, its end user kept
    unless the body names one."""
    env = environment(request)
    body = ReconnectSessionBody.model_validate(await json_body(request))
    async with request.app[PLATFORM].pool.acquire() as conn:
        existing = await connections_repo.get(conn, request.app[PLATFORM].sealer, env.id, body.integration_id,
                                              body.connection_id)
    if existing is None:
        raise_error(404, "unknown_connection", f"no connection '{body.connection_id}' of integration "
                    f"'{body.integration_id}' in environment '{env.name}' to reconnect")
    return await _session(request, env, allowed=[body.integration_id], connection_id=body.connection_id,
                          connection_config=existing.connection_config, metadata={}, return_url=body.return_url,
                          ttl_seconds=body.ttl_seconds, end_user=body.end_user, organization=body.organization,
                          tags=body.tags, reconnect=True)


async def _session(request: web.Request, env: Environment, *, allowed: list[str] | None, connection_id: str | None,
                   connection_config: dict[str, Any], metadata: dict[str, Any], return_url: str | None,
                   ttl_seconds: int, end_user: EndUser | None, organization: Organization | None,
                   tags: dict[str, str] | None, reconnect: bool = False) -> web.Response:
    token = "nango_connect_session_" + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
    named = end_user is not None or organization is not None or tags
    async with request.app[PLATFORM].pool.acquire() as conn:
        await oauth_repo.create_session(
            conn, environment_id=env.id, token_hash=_hash(token), allowed_integrations=allowed,
            connection_id=connection_id, connection_config=connection_config, metadata=metadata,
            return_url=return_url, expires_at=expires_at, end_user=end_users.stored(end_user, organization),
            tags=end_users.tags_for(end_user, organization, tags) if named else None, reconnect=reconnect)
    connect_url = None
    if allowed and len(allowed) == 1:
        query = {"connect_session_token": token}
        if connection_id:
            query["connection_id"] = connection_id
        connect_url = f"{_public_base(request)}/oauth/connect/{allowed[0]}?{urlencode(query)}"
    # connect_link: the connect page (Nango's name), for any session; connect_url: straight into one OAuth flow
    connect_link = f"{_public_base(request)}/connect/ui/?{urlencode({'session_token': token})}"
    return json_response({"data": {"token": token, "expires_at": iso(expires_at),
                                    "connect_url": connect_url, "connect_link": connect_link}}, status=201)


async def session_for_token(request: web.Request, token: str) -> tuple[Environment, dict[str, Any]]:
    """A live connect session's environment and row, or 401."""
    async with request.app[PLATFORM].pool.acquire() as conn:
        row = await oauth_repo.session_by_token_hash(conn, _hash(token))
        if row is None or not row["live"]:
            raise_error(401, "invalid_connect_session_token", "the connect session token is unknown or expired")
        env = await environments_repo.by_id(conn, row["environment_id"])
    assert env is not None
    return env, dict(row)


async def _caller(request: web.Request) -> tuple[Environment, dict[str, Any]]:
    """The environment starting the flow, and what its connect session fixes (empty for a secret key)."""
    token = request.query.get("connect_session_token", "").strip()
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if token:
        return await session_for_token(request, token)
    async with request.app[PLATFORM].pool.acquire() as conn:
        if scheme.lower() == "bearer" and key.strip():
            env = await environments_repo.by_secret_key(conn, key.strip())
            if env is None:
                raise_error(401, "unknown_account", "Authentication failed: the secret key is not valid")
            return env, {}
    raise_error(401, "missing_connect_session_token",
                "starting an OAuth flow needs ?connect_session_token= (POST /connect/sessions) or a secret key")


async def flow_start(request: web.Request) -> tuple[Environment, dict[str, Any], str, str]:
    """Who starts a connect flow for which integration and connection id: (environment, session, integration key,
    connection id). Under a session token the id is the session's or a generated uuid, never the caller's."""
    env, session = await _caller(request)
    key = request.match_info["integration"]
    allowed = session.get("allowed_integrations")
    if allowed is not None and key not in allowed:
        raise_error(403, "integration_not_allowed", f"this connect session does not allow integration '{key}'")
    asked = request.query.get("connection_id", "").strip()
    connection_id = session.get("connection_id") or asked
    if session.get("connection_id") and asked and asked != session["connection_id"]:
        raise_error(403, "connection_id_not_allowed",
                    f"this connect session is for connection '{session['connection_id']}'")
    if session and not session.get("connection_id"):
        # the end user holding the token must not name an id: that would overwrite another user's connection
        if asked:
            raise_error(403, "connection_id_not_allowed",
                        "this connect session creates a new connection with a generated id; to connect a given "
                        "connection id, set connection_id in POST /connect/sessions")
        connection_id = str(uuid.uuid4())
    if not connection_id:
        raise_error(400, "missing_connection_id", "connection_id is required")
    if len(connection_id) > 255 or not re.fullmatch(CONNECTION_ID_PATTERN, connection_id):
        raise_error(400, "invalid_connection_id", "connection_id may hold letters, digits and _ . @ - : (max 255)")
    return env, session, key, connection_id


def query_config(request: web.Request, provider: Provider, session: dict[str, Any]) -> dict[str, str]:
    """The connection config of a flow: the session's, plus the `params[key]=value` the SDK puts in the query
    for keys the provider declares (an account id, a subdomain). Never `base_url` or `token_url`: those would
    send the connection's credentials, or the integration's own JWT, wherever the end user liked."""
    config = dict(session.get("connection_config") or {})
    for name, value in request.query.items():
        if name.startswith("params[") and name.endswith("]"):
            key = name[7:-1]
            if key in provider.connection_config and key not in RESERVED_CONFIG and key not in config:
                config[key] = value[:1000]
    return config


@routes.get("/oauth/connect/{integration}")
async def connect(request: web.Request) -> web.Response:
    env, session, key, connection_id = await flow_start(request)
    async with request.app[PLATFORM].pool.acquire() as conn:
        integration = await integrations_repo.get(conn, env.id, key)
        if integration is None:
            raise_error(404, "unknown_provider_config", f"no integration '{key}' in environment '{env.name}'")
        row = await integrations_repo.settings(conn, integration.id)
    provider = await find_provider(request.app[PLATFORM].pool, env.id, integration.provider)
    if provider is None or provider.auth_mode not in ("OAUTH2", "OAUTH1", "APP"):
        raise_error(400, "not_oauth", f"integration '{key}' does not connect through a browser flow (OAuth2, "
                    f"OAuth 1.0a or a GitHub-style app); its provider uses "
                    f"{provider.auth_mode if provider else 'nothing known'}")
    if not row["oauth_client_id"]:
        what = "app_id and private_key" if provider.auth_mode == "APP" else "OAuth client id"
        raise_error(400, "missing_oauth_client", f"integration '{key}' has no {what}; set them with "
                    "PATCH /integrations/{key}")
    connection_config = query_config(request, provider, session)
    if provider.auth_mode == "APP":  # the integration's own link, whatever the session or the query said
        connection_config["appPublicLink"] = jwt_auth.app_link(row) or ""
    template = row["oauth_authorization_url"] or provider.authorization_url
    if not template:
        raise_error(400, "missing_authorization_url", f"provider '{provider.name}' has no authorization URL")
    try:
        authorization_url = fill(template, connection_config)
    except InvalidInputError as exc:
        raise_error(400, "invalid_connection_config", exc.message)
    state = secrets.token_urlsafe(32)
    redirect_uri = f"{_public_base(request)}/oauth/callback"
    request_token: tuple[str, str] | None = None
    if provider.auth_mode == "OAUTH1":
        request_token = await _temporary_credentials(request, provider, row, f"{redirect_uri}?"
                                                     f"{urlencode({'state': state})}", connection_config)
    async with request.app[PLATFORM].pool.acquire() as conn:
        await oauth_repo.create_state(
            conn, state=state, environment_id=env.id, integration_id=integration.id, connection_id=connection_id,
            connection_config=connection_config, metadata=session.get("metadata") or {}, redirect_uri=redirect_uri,
            return_url=session.get("return_url"), expires_at=datetime.now(UTC) + STATE_TTL,
            end_user=session.get("end_user"), tags=session.get("tags") or None,
            ws_client_id=request.query.get("ws_client_id", "").strip()[:100] or None,
            request_token=request_token[0] if request_token else None,
            sealed_request_token_secret=request.app[PLATFORM].sealer.seal(request_token[1])
            if request_token else None)
    if provider.auth_mode == "OAUTH1":
        assert request_token is not None
        params = {**provider.authorization_params, "oauth_token": request_token[0]}
    elif provider.auth_mode == "APP":
        params = {"state": state}
    else:
        scopes = row["oauth_scopes"] if row["oauth_scopes"] is not None else ",".join(provider.default_scopes)
        params = {**provider.authorization_params, "response_type": "code", "client_id": row["oauth_client_id"],
                  "redirect_uri": redirect_uri, "state": state}
        scope_list = [s for s in scopes.replace(",", " ").split() if s]
        if scope_list:
            params["scope"] = provider.scope_separator.join(scope_list)
    parts = urlsplit(authorization_url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    log.info("oauth_started", integration=key, connection=connection_id, mode=provider.auth_mode)
    raise web.HTTPFound(urlunsplit(parts._replace(query=urlencode(query))))


async def _temporary_credentials(request: web.Request, provider: Provider, row: Any, callback: str,
                                 connection_config: dict[str, Any]) -> tuple[str, str]:
    """OAuth 1.0a step 1 (RFC 5849 2.1): a request token and its secret, the callback (which carries our state)
    signed in."""
    assert provider.request_url is not None
    try:
        url = fill(provider.request_url, connection_config)
    except InvalidInputError as exc:
        raise_error(400, "invalid_connection_config", exc.message)
    if provider.request_params:
        url += ("&" if "?" in url else "?") + urlencode(provider.request_params)
    secret = str(request.app[PLATFORM].sealer.open(row["oauth_client_secret"])) if row["oauth_client_secret"] else ""
    header = oauth1.authorization("POST", url, consumer_key=row["oauth_client_id"], consumer_secret=secret,
                                  signature_method=provider.signature_method, extra={"oauth_callback": callback})
    try:
        body = await _oauth1_post(request, url, header, "request token")
    except _Failure as exc:
        raise_error(exc.status, exc.code, exc.message)
    return body["oauth_token"], body["oauth_token_secret"]


async def _oauth1_post(request: web.Request, url: str, header: str, what: str) -> dict[str, str]:
    """A signed POST of the OAuth 1.0a flow; the form-encoded answer when it holds a token and its secret."""
    egress = request.app[PLATFORM].egress or strict_egress()
    try:
        async with egress.post_outbound(url, headers={"Authorization": header},
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            raw, status = await resp.read(), resp.status
    except EgressRefused as refused:
        raise _Failure(403, "egress_refused", str(refused)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Failure(502, "token_exchange_failed", f"the {what} endpoint is unreachable: "
                       f"{type(exc).__name__}") from None
    text = raw[:4000].decode(errors="replace")
    body = dict(parse_qsl(text.strip(), keep_blank_values=True)) if "<" not in text[:200] else {}
    if status >= 400 or not body.get("oauth_token") or "oauth_token_secret" not in body:
        shown = " ".join(text[:200].split())
        raise _Failure(400, "token_exchange_failed", f"the provider refused the {what} request: HTTP {status} "
                       f"{shown!r}")
    return body


class _Failure(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def _oauth1_access(request: web.Request, provider: Provider, integration_id: int, row: dict[str, Any],
                         connection_config: dict[str, Any]) -> OAuth1Credentials:
    """OAuth 1.0a step 3 (RFC 5849 2.3): the request token the user authorized, with its verifier, for the
    access token and its secret."""
    q = request.query
    verifier, token = q.get("oauth_verifier", ""), q.get("oauth_token", "")
    if not verifier or not row["request_token"]:
        raise _Failure(400, "invalid_callback", "the callback has no oauth_verifier")
    # as bytes: compare_digest refuses str with non-ASCII ("?oauth_token=é" was a TypeError, a 500)
    if token and not hmac.compare_digest(token.encode(), row["request_token"].encode()):
        raise _Failure(400, "invalid_callback", "the callback's oauth_token is not the one this flow asked for")
    async with request.app[PLATFORM].pool.acquire() as conn:
        settings = await integrations_repo.settings(conn, integration_id)
    sealer = request.app[PLATFORM].sealer
    if settings is None or not settings["oauth_client_id"] or not provider.token_url:
        raise _Failure(400, "missing_oauth_client", "the integration has no consumer key or the provider no token URL")
    consumer_secret = str(sealer.open(settings["oauth_client_secret"])) if settings["oauth_client_secret"] else ""
    try:
        url = fill(provider.token_url, connection_config)
    except InvalidInputError as exc:
        raise _Failure(400, "invalid_connection_config", exc.message) from None
    header = oauth1.authorization(
        "POST", url, consumer_key=settings["oauth_client_id"], consumer_secret=consumer_secret,
        token=row["request_token"], token_secret=str(sealer.open(row["request_token_secret"])),
        signature_method=provider.signature_method, extra={"oauth_verifier": verifier})
    body = await _oauth1_post(request, url, header, "access token")
    return OAuth1Credentials(oauth_token=body["oauth_token"], oauth_token_secret=body["oauth_token_secret"],
                             raw={k: v for k, v in body.items() if k != "oauth_token_secret"})


INSTALL_SKEW = timedelta(minutes=2)  # between the provider's clock and ours


async def _installed_during(request: web.Request, provider: Provider, settings: Any, installation: str,
                            connection_config: dict[str, Any], started: datetime) -> None:
    """Refuse an installation that was not made or configured during this flow. The callback's installation_id
    is only a query parameter (GitHub's documentation says it can be spoofed): an end user holding any connect
    session could name another customer's installation of the same app and get its token. The app itself reads
    the installation (`jwt_auth.installation`), and its `created_at` or `updated_at` must fall after the flow
    started, as it does when the user installs the app, or changes its installation, from the flow's link."""
    url = token_url(provider, connection_config)
    if not url or settings is None or not settings["oauth_client_id"] or not settings["oauth_client_secret"]:
        return  # first_credentials says what is missing
    key = str(request.app[PLATFORM].sealer.open(settings["oauth_client_secret"]))
    found = await jwt_auth.installation(request.app[PLATFORM].egress or strict_egress(), url,
                                        settings["oauth_client_id"], key)
    times = []
    for field in ("created_at", "updated_at"):
        try:
            at = datetime.fromisoformat(str(found.get(field)).replace("Z", "+00:00"))
        except ValueError:
            continue
        times.append(at if at.tzinfo else at.replace(tzinfo=UTC))
    if not times or max(times) < started - INSTALL_SKEW:
        raise _Failure(403, "installation_not_from_this_flow",
                       f"installation {installation} was not installed or changed during this connect flow; "
                       "install the app (or change its installation) from the flow's link")


async def _app_installed(request: web.Request, env: Environment, integration: Any, provider: Provider,
                         connection_config: dict[str, Any], started: datetime) -> AppCredentials:
    """A GitHub-style app was installed: the installation id the provider sent back, checked with the provider
    (`_installed_during`), and its first token."""
    installation = request.query.get("installation_id", "").strip()
    if not is_number(installation) or len(installation) > 20:
        raise _Failure(400, "invalid_callback", "the callback has no numeric installation_id")
    connection_config["installation_id"] = installation
    async with request.app[PLATFORM].pool.acquire() as conn:
        settings = await integrations_repo.settings(conn, integration.id)
    try:
        await _installed_during(request, provider, settings, installation, connection_config, started)
        creds = await minting.first_credentials(request.app[PLATFORM], provider, settings, integration.unique_key,
                                                {"type": "APP"}, connection_config)
    except TokenRefusedError as exc:
        raise _Failure(400, exc.code, exc.message) from None
    except InvalidInputError as exc:
        raise _Failure(400, "invalid_credentials", exc.message) from None
    except TransientError as exc:
        raise _Failure(502, "token_endpoint_unavailable", exc.message) from None
    assert isinstance(creds, AppCredentials)
    return creds


async def _exchange(request: web.Request, integration_id: int, code: str, redirect_uri: str,
                    connection_config: dict[str, Any], provider_token_url: str | None
                    ) -> tuple[OAuth2Credentials, str | None]:
    async with request.app[PLATFORM].pool.acquire() as conn:
        row = await integrations_repo.settings(conn, integration_id)
    template = row["oauth_token_url"] or provider_token_url
    if not template or not row["oauth_client_id"]:
        raise _Failure(400, "missing_oauth_client", "the integration has no token URL or OAuth client")
    try:
        token_url = fill(template, connection_config)
    except InvalidInputError as exc:
        raise _Failure(400, "invalid_connection_config", exc.message) from None
    secret = str(request.app[PLATFORM].sealer.open(row["oauth_client_secret"])) if row["oauth_client_secret"] else ""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": row["oauth_client_id"], "client_secret": secret}
    egress = request.app[PLATFORM].egress or strict_egress()
    try:
        async with egress.post_outbound(token_url, data=form, headers={"Accept": "application/json"},
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            raw = await resp.read()
            status = resp.status
            content_type = resp.headers.get("Content-Type", "")
    except EgressRefused as refused:
        raise _Failure(403, "egress_refused", str(refused)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Failure(502, "token_exchange_failed", f"token endpoint unreachable: {type(exc).__name__}") from None
    body: dict[str, Any]
    try:
        body = orjson.loads(raw) if "json" in content_type or raw[:1] == b"{" else dict(parse_qsl(raw.decode()))
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    if status >= 400 or body.get("error") or not body.get("access_token"):
        detail = body.get("error_description") or body.get("error") or f"HTTP {status}"
        raise _Failure(400, "token_exchange_failed", f"the provider refused the authorization code: {detail}")
    creds = OAuth2Credentials(access_token=str(body["access_token"]),
                              refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
                              expires_at=expiry(body), raw=body)  # read as a refresh's answer is
    return creds, token_url if row["oauth_token_url"] else None


def _answer(request: web.Request, return_url: str | None, status: int, payload: dict[str, Any]) -> web.Response:
    if return_url:
        flat = ({"connection_id": payload["connection_id"], "provider_config_key": payload["provider_config_key"]}
                if payload.get("success") else {"error": payload["error"]["code"],
                                                "error_description": payload["error"]["message"]})
        parts = urlsplit(return_url)
        query = parse_qsl(parts.query, keep_blank_values=True) + list(flat.items())
        raise web.HTTPFound(urlunsplit(parts._replace(query=urlencode(query))))
    if "text/html" in request.headers.get("Accept", ""):
        if payload.get("success"):
            text = (f"Connection <b>{html.escape(payload['connection_id'])}</b> to "
                    f"<b>{html.escape(payload['provider_config_key'])}</b> is ready. You can close this window.")
        else:
            text = f"Authorization failed: {html.escape(payload['error']['message'])}"
        page = f"<!doctype html><html><head><title>Nango</title></head><body><p>{text}</p></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")
    return json_response(payload, status=status)


def _failure_payload(code: str, message: str) -> dict[str, Any]:
    return orjson.loads(error_body(code, message))


@routes.get("/oauth/callback")
async def callback(request: web.Request) -> web.Response:
    q = request.query
    state = q.get("state", "")
    if not state:
        raise_error(400, "invalid_state", "the callback has no state")
    async with request.app[PLATFORM].pool.acquire() as conn:
        row = await oauth_repo.consume_state(conn, state)
        if row is None:
            raise_error(400, "invalid_state", "the OAuth state is unknown, expired or already used; start again")
        env = await environments_repo.by_id(conn, row["environment_id"])
        integration_obj = await integrations_repo.by_id(conn, row["integration_id"])
    return_url = row["return_url"]
    if env is None or integration_obj is None:
        return _answer(request, return_url, 404, _failure_payload("unknown_provider_config",
                                                                   "the integration no longer exists"))

    provider = await find_provider(request.app[PLATFORM].pool, row["environment_id"], integration_obj.provider)
    mode = provider.auth_mode if provider is not None else "OAUTH2"

    async def failed(status: int, code: str, message: str) -> web.Response:
        """The flow's end without a connection: the app's answer, and the creation-failed auth webhook."""
        assert env is not None and integration_obj is not None
        await auth_webhooks.send(request.app[PLATFORM], auth_webhooks.AuthEvent(
            env.id, integration_obj.unique_key, integration_obj.provider, row["connection_id"], mode, "creation",
            False, code, message))
        if row["ws_client_id"]:
            return await _to_socket(request, state, {"message_type": "error", "error_type": code,
                                                     "error_desc": message})
        return _answer(request, return_url, status, _failure_payload(code, message))

    if q.get("error") or q.get("denied"):
        message = q.get("error_description") or q.get("error") or "the user denied access"
        log.info("oauth_denied", integration=integration_obj.unique_key, error=q.get("error") or "denied")
        return await failed(400, "authorization_failed", f"the provider said: {message}")
    connection_config = dict(row["connection_config"] or {})
    token_url_override: str | None = None
    creds: Credentials
    try:
        if provider is None:
            raise _Failure(404, "unknown_provider", f"provider '{integration_obj.provider}' is not known")
        if mode == "OAUTH1":
            creds = await _oauth1_access(request, provider, integration_obj.id, row, connection_config)
        elif mode == "APP":
            creds = await _app_installed(request, env, integration_obj, provider, connection_config, row["created_at"])
        else:
            code = q.get("code", "")
            if not code:
                return _answer(request, return_url, 400, _failure_payload("invalid_callback",
                                                                           "the callback has no code"))
            creds, token_url_override = await _exchange(request, integration_obj.id, code, row["redirect_uri"],
                                                        connection_config, provider.token_url)
    except _Failure as exc:
        return await failed(exc.status, exc.code, exc.message)
    if token_url_override:
        connection_config["token_url"] = token_url_override
    try:
        connection, created = await save_connection(request.app, env, integration_obj, row["connection_id"], creds,
                                                    connection_config=connection_config, metadata=row["metadata"],
                                                    end_user=row["end_user"], tags=row["tags"] or None)
    except ConnectionValidationError as exc:
        return _answer(request, return_url, 400, _failure_payload(exc.code, exc.message))
    log.info("oauth_connected", integration=integration_obj.unique_key, connection=connection.connection_id,
             created=created)
    if row["ws_client_id"]:
        return await _to_socket(request, state, {"message_type": "success", "is_pending": False,
                                                 "provider_config_key": integration_obj.unique_key,
                                                 "connection_id": connection.connection_id})
    return _answer(request, return_url, 200, {"success": True, "connection_id": connection.connection_id,
                                              "provider_config_key": integration_obj.unique_key,
                                              "created": created})


POPUP_DONE = ("<!doctype html><html><head><title>Nango</title></head><body><p>{text}</p>"
              "<script>window.close()</script></body></html>")


async def _to_socket(request: web.Request, state: str, result: dict[str, Any]) -> web.Response:
    """A popup opened by Nango's frontend SDK: the outcome goes to its WebSocket (connect_ws.py, whichever API
    process holds it), and the popup closes itself."""
    async with request.app[PLATFORM].pool.acquire() as conn:
        await oauth_repo.set_result(conn, state, result)
    text = ("Connected. You can close this window." if result["message_type"] == "success"
            else f"Authorization failed: {html.escape(str(result.get('error_desc', '')))}")
    return web.Response(text=POPUP_DONE.format(text=text), content_type="text/html")
