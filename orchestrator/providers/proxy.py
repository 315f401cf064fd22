"""Requests to a connection's API with its credentials injected: used by scripts and `/proxy`.

Every request passes the egress policy (egress.py): the provider's host, hosts the operator or the
integration allows, never an internal address the operator did not list; redirects are followed
here, each hop checked again, and the connection's credentials go to the provider's host only.

Retries (network errors, 5xx, 429 and any extra statuses asked for) back off exponentially with
jitter; `Retry-After` and the provider's reset header set the wait when present.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import structlog
from opentelemetry.trace import SpanKind
from yarl import URL

from orchestrator import metrics, tracing
from orchestrator.errors import InvalidInputError
from orchestrator.providers import egress, jwt_auth, oauth1
from orchestrator.providers.catalog import Provider
from orchestrator.providers.egress import Egress, EgressPolicy, EgressRefused
from orchestrator.store.types import (
    ApiKeyCredentials,
    AppCredentials,
    BasicCredentials,
    Connection,
    JwtCredentials,
    OAuth1Credentials,
    OAuth2ClientCredentials,
    OAuth2Credentials,
    TbaCredentials,
)

log = structlog.get_logger(__name__)

MAX_WAIT_S = 300.0
BASE_BACKOFF_S = 0.5


@dataclass
class ProxyRequest:
    method: str
    endpoint: str
    params: dict[str, Any] | str | None = None
    data: Any = None
    headers: dict[str, str] | None = None
    retries: int = 0
    retry_on: Sequence[int] = ()
    base_url_override: str | None = None
    absolute_url: str | None = None
    response_type: str = "json"


@dataclass
class ProxyResult:
    status: int
    headers: dict[str, str]
    data: Any
    raw: bytes
    url: str


class UpstreamError(Exception):
    """The API could not be reached (after retries)."""


def bearer_token(connection: Connection, provider: Provider) -> str | None:
    """The token a token-carrying mode sends (OAUTH2, OAUTH2_CC, APP, JWT); None for the others."""
    creds = connection.credentials
    if isinstance(creds, OAuth2Credentials | AppCredentials):
        return creds.access_token.get_secret_value()
    if isinstance(creds, OAuth2ClientCredentials):
        return creds.token.get_secret_value()
    if isinstance(creds, JwtCredentials):
        if creds.expires_at is not None and creds.token is not None:   # exchanged at the provider's token URL
            return creds.token.get_secret_value()
        return jwt_auth.direct_token(connection.id, provider, creds, connection.connection_config)[0]
    return None


def auth_headers_and_query(connection: Connection, provider: Provider) -> tuple[dict[str, str], dict[str, str]]:
    """The credentials as headers and query parameters, for every mode but the OAuth 1.0 ones, which sign each
    request (sign_request)."""
    creds = connection.credentials
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    token = bearer_token(connection, provider)
    if token is not None:
        headers[provider.token_header] = provider.token_template.replace("${accessToken}", token)
    elif isinstance(creds, ApiKeyCredentials):
        key = creds.api_key.get_secret_value()
        if provider.api_key_query:
            query[provider.api_key_query] = key
        else:
            headers[provider.api_key_header or "Authorization"] = provider.api_key_template.replace("${apiKey}", key)
    elif isinstance(creds, BasicCredentials):
        token = base64.b64encode(f"{creds.username}:{creds.password.get_secret_value()}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers, query


def sign_request(connection: Connection, provider: Provider, method: str, url: str, body: bytes | None,
                 headers: dict[str, str]) -> dict[str, str]:
    """OAUTH1 and TBA: the `Authorization` header signing this very request (method, URL, form body); {} for
    the other modes."""
    creds, consumer = connection.credentials, connection.consumer
    if not isinstance(creds, OAuth1Credentials | TbaCredentials):
        return {}
    if consumer is None:
        raise InvalidInputError(f"integration '{connection.integration_key}' has no OAuth consumer key and secret "
                                "to sign requests with; set credentials.client_id and client_secret on it")
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if isinstance(creds, OAuth1Credentials):
        token, secret, method_name, realm = (creds.oauth_token, creds.oauth_token_secret.get_secret_value(),
                                             provider.signature_method, None)
    else:
        account = str(connection.connection_config.get("accountId") or "")
        token, secret, method_name = creds.token_id, creds.token_secret.get_secret_value(), "HMAC-SHA256"
        realm = oauth1.tba_realm(account) if account else None
    return {"Authorization": oauth1.authorization(
        method, url, consumer_key=consumer.key, consumer_secret=consumer.secret.get_secret_value(), token=token,
        token_secret=secret, signature_method=method_name, realm=realm, body=body, content_type=content_type)}


def build_url(connection: Connection, provider: Provider, req: ProxyRequest) -> str:
    if req.absolute_url:
        return req.absolute_url
    base = (req.base_url_override or provider.resolve_base_url(connection.connection_config)).rstrip("/")
    endpoint = req.endpoint if req.endpoint.startswith("/") else "/" + req.endpoint
    url = base + endpoint
    if isinstance(req.params, str) and req.params:
        url += ("&" if "?" in url else "?") + req.params.lstrip("?")
    elif isinstance(req.params, dict) and req.params:
        flat = {k: ("true" if v is True else "false" if v is False else v) for k, v in req.params.items()
                if v is not None}
        url += ("&" if "?" in url else "?") + urlencode(flat, doseq=True)
    return url


def policy_for(egress_: Egress, connection: Connection, provider: Provider, integration_allow: Iterable[str] = (),
               integration_key: str = "") -> EgressPolicy:
    """The egress rules of one connection: its resolved base URL's host is the provider's host."""
    try:
        base_url: str | None = provider.resolve_base_url(connection.connection_config)
    except InvalidInputError:
        base_url = None   # a placeholder lacks its value: no provider host (build_url says why)
    return egress_.policy(base_url, integration_allow, integration_key or connection.integration_key)


def provider_entry(connection: Connection, provider: Provider) -> str:
    """The allow-list entry naming the connection's provider host ("" when its base URL cannot be
    filled): what `nango dryrun`, on the author's own machine, lists so a local provider is reachable."""
    try:
        return egress.entry_for(provider.resolve_base_url(connection.connection_config))
    except (InvalidInputError, ValueError):
        return ""


def _seconds_until(at: datetime) -> float:
    """Seconds from now until `at`; a time without a zone (an HTTP date in -0000, an ISO reset without an
    offset) is read as UTC, as HTTP dates are."""
    return max(0.0, (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() - time.time())


def _wait_from_headers(headers: dict[str, str], provider: Provider) -> float | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    retry_after = lowered.get(provider.rate_limit.retry_after_header.lower())
    if retry_after:
        try:
            return float(retry_after)
        except ValueError:
            try:
                return _seconds_until(parsedate_to_datetime(retry_after))
            except (TypeError, ValueError):
                pass
    reset_header = provider.rate_limit.reset_header
    remaining = lowered.get(provider.rate_limit.remaining_header.lower(), "1")
    if reset_header and lowered.get(reset_header.lower()) and remaining == "0":
        value = lowered[reset_header.lower()]
        try:
            if provider.rate_limit.reset_format == "epoch_seconds":
                return max(0.0, float(value) - time.time())
            if provider.rate_limit.reset_format == "epoch_ms":
                return max(0.0, float(value) / 1000 - time.time())
            if provider.rate_limit.reset_format == "seconds":
                return float(value)
            return _seconds_until(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _decode(raw: bytes, content_type: str, response_type: str) -> Any:
    if response_type == "text":
        return raw.decode(errors="replace")
    if not raw:
        return None
    if "json" in content_type or response_type == "json":
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw.decode(errors="replace")
    return raw.decode(errors="replace")


REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
# Headers a script or caller may set that must not follow a redirect to another host.
_PRIVATE_HEADERS = {"authorization", "proxy-authorization", "cookie"}


async def send(
    policy: EgressPolicy, connection: Connection, provider: Provider, req: ProxyRequest,
    *, refresh: Callable[[], Awaitable[Connection]] | None = None, timeout_s: float = 120.0,
    environment: str = "",
) -> ProxyResult:
    """One logical request, retried as asked; a 401 on OAuth2 refreshes the token once.

    Every hop (the first URL and each redirect) passes the egress policy; the connection's
    credentials go only to the provider's own host. Raises EgressRefused (never retried) when the
    policy refuses a hop, UpstreamError when the API cannot be reached. Each attempt and retry is
    counted under `environment` (the connection's environment name) and the integration."""
    attempt = 0
    refreshed = False
    while True:
        try:
            result = await _exchange(policy, connection, provider, req, timeout_s)
        except EgressRefused:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            refused = egress.refusal(exc)
            if refused is not None:
                raise refused from None
            metrics.PROVIDER_REQUESTS.labels(environment, connection.integration_key, "error").inc()
            if attempt < req.retries:
                metrics.PROVIDER_RETRIES.labels(environment, connection.integration_key, "error").inc()
                attempt += 1
                await asyncio.sleep(_backoff(attempt))
                continue
            url = build_url(connection, provider, req)
            raise UpstreamError(f"{req.method} {_safe(url)} failed: {type(exc).__name__}: {exc}") from None
        status = str(result.status)
        metrics.PROVIDER_REQUESTS.labels(environment, connection.integration_key, status).inc()
        if (result.status == 401 and refresh is not None and not refreshed
                and refreshable_mode(connection)):
            refreshed = True
            connection = await refresh()
            continue
        retryable = result.status >= 500 or result.status == 429 or result.status in req.retry_on
        if retryable and attempt < req.retries:
            metrics.PROVIDER_RETRIES.labels(environment, connection.integration_key, status).inc()
            attempt += 1
            wait = _wait_from_headers(result.headers, provider)
            await asyncio.sleep(min(MAX_WAIT_S, wait if wait is not None else _backoff(attempt)))
            continue
        return result


async def _exchange(policy: EgressPolicy, connection: Connection, provider: Provider, req: ProxyRequest,
                    timeout_s: float) -> ProxyResult:
    """One attempt: the request and the redirects it leads to, each hop checked by the policy."""
    auth_headers, auth_query = auth_headers_and_query(connection, provider)
    url = build_url(connection, provider, req)
    if auth_query and not req.absolute_url and policy.is_provider(url):
        url += ("&" if "?" in url else "?") + urlencode(auth_query)
    method = req.method
    body: bytes | None = None
    own_headers = {**provider.headers, **(req.headers or {})}
    if req.data is not None and req.method not in ("GET", "HEAD"):
        if isinstance(req.data, bytes | str):
            body = req.data.encode() if isinstance(req.data, str) else req.data
        else:
            body = orjson.dumps(req.data)
            if not any(k.lower() == "content-type" for k in own_headers):
                own_headers["Content-Type"] = "application/json"
    first = egress.origin(url)
    deadline = time.monotonic() + timeout_s
    for _hop in range(MAX_REDIRECTS + 1):
        target = URL(url)
        policy.check(target)
        headers = dict(own_headers)
        if egress.origin(target) != first:
            headers = {k: v for k, v in headers.items() if k.lower() not in _PRIVATE_HEADERS}
        if policy.is_provider(target):
            headers.update(auth_headers)
            headers.update(sign_request(connection, provider, method, str(target), body, headers))
        remaining = max(0.1, deadline - time.monotonic())
        # a CLIENT span per hop, its URL without the query (keys travel there); no traceparent goes to the provider
        with tracing.span(method, {"http.request.method": method, "server.address": target.host or "",
                                   "url.full": _safe(str(target))}, kind=SpanKind.CLIENT) as span:
            async with policy.egress.session.request(
                    method, target, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=remaining)) as resp:
                tracing.http_status(span, resp.status)
                location = resp.headers.get("Location")
                if resp.status in REDIRECTS and location:
                    url = str(resp.url.join(URL(location)))
                    if (resp.status == 303 and method != "HEAD") or (resp.status in (301, 302) and method == "POST"):
                        method, body = "GET", None
                        own_headers = {k: v for k, v in own_headers.items() if k.lower() != "content-type"}
                    continue
                raw = await resp.read()
                return ProxyResult(resp.status, dict(resp.headers), _decode(
                    raw, resp.headers.get("Content-Type", ""), req.response_type), raw, str(resp.url))
    raise UpstreamError(f"{req.method} {_safe(build_url(connection, provider, req))} failed: more than "
                        f"{MAX_REDIRECTS} redirects")


def refreshable_mode(connection: Connection) -> bool:
    """Whether a 401 may be cured by a new token: one the platform can redeem or mint again."""
    creds = connection.credentials
    return isinstance(creds, OAuth2Credentials | OAuth2ClientCredentials | AppCredentials) or (
        isinstance(creds, JwtCredentials) and creds.expires_at is not None)


def _backoff(attempt: int) -> float:
    return min(MAX_WAIT_S, BASE_BACKOFF_S * (2 ** (attempt - 1))) * (0.5 + random.random() / 2)


def _safe(url: str) -> str:
    """URL for logs and errors without its query (API keys may travel there)."""
    return url.split("?", 1)[0]
