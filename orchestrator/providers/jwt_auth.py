"""Tokens the platform signs itself: JWT connections and GitHub-App installations.

- JWT: the provider's `token` block (model.JwtTemplate) says how: the signing key, header and payload are
  templates over the connection's credentials and connection config; `iat` and `exp` are added. A provider
  with a token URL exchanges the signed assertion for an access token (RFC 7523 `jwt-bearer` grant), kept
  with the connection and minted again before it expires (credentials.refresh); otherwise the signed JWT is
  the token itself, signed again on use and cached in this process until shortly before it expires.
- APP: a JWT signed RS256 with the app's private key (`iss` = the app id, at most 10 minutes long) buys an
  installation token at the provider's token URL (GitHub: POST /app/installations/{id}/access_tokens).

Signing uses PyJWT over `cryptography`; the demo provider verifies with joserfc, an independent library.
A key that cannot be used (a malformed PEM, the wrong kind of key for the algorithm) is an InvalidInputError
that names the credential field, never the key.
"""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from typing import Any

import jwt
from pydantic import SecretStr

from orchestrator.errors import InvalidInputError
from orchestrator.providers.egress import Egress
from orchestrator.providers.model import JwtTemplate, Provider, fill, fill_text
from orchestrator.providers.token_endpoint import TokenRefusedError, exchange_json, expiry, request_token
from orchestrator.store.types import Connection, JwtCredentials, credentials_to_json

APP_INSTALL_PATH = "/installations/new"   # a GitHub-style app's installation page, under its public link
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
APP_JWT_LIFETIME_S = 9 * 60   # GitHub refuses more than 10 minutes; a minute of slack for clock skew
RESIGN_MARGIN_S = 60          # a cached JWT is signed again when it has less than this left
_CREDENTIAL = re.compile(r"\$\{credentials\.([A-Za-z0-9_]+)(?:\.(id|secret))?\}")
_cache: dict[tuple[int, str], tuple[str, float]] = {}


def _fill(template: str, credentials: dict[str, Any], connection_config: dict[str, Any]) -> str:
    def sub(match: re.Match[str]) -> str:
        name, part = match.group(1), match.group(2)
        value = credentials.get(name)
        if value is None or value == "":
            raise InvalidInputError(f"the JWT credentials lack '{name}', which the provider's token needs")
        text = str(value)
        if part is not None:   # Ghost's admin key is "<id>:<secret>"
            key_id, sep, secret = text.partition(":")
            if not sep:
                raise InvalidInputError(f"credentials.{name} must be '<id>:<secret>'")
            text = key_id if part == "id" else secret
        return text
    return fill_text(_CREDENTIAL.sub(sub, template), connection_config)


def _fill_all(value: Any, credentials: dict[str, Any], connection_config: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _fill(value, credentials, connection_config)
    if isinstance(value, list):
        return [_fill_all(v, credentials, connection_config) for v in value]
    if isinstance(value, dict):
        return {k: _fill_all(v, credentials, connection_config) for k, v in value.items()}
    return value


def _key(template: JwtTemplate, text: str) -> str | bytes:
    if not template.algorithm.startswith("HS"):
        return text.replace("\\n", "\n").strip()   # a PEM pasted into JSON often keeps its \n escaped
    try:
        if template.signing_key_encoding == "hex":
            return bytes.fromhex(text)
        if template.signing_key_encoding == "base64":
            return base64.b64decode(text, validate=True)
    except ValueError:
        raise InvalidInputError(f"the JWT signing key is not {template.signing_key_encoding}") from None
    return text.encode()


def encode(payload: dict[str, Any], key: str | bytes, algorithm: str, headers: dict[str, Any], *,
           field: str) -> str:
    """PyJWT's encode, with an unusable key reported as bad input naming the credential field."""
    try:
        return jwt.encode(payload, key, algorithm=algorithm, headers=headers or None)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        kind = "PEM private key" if not algorithm.startswith("HS") else "secret"
        reason = str(exc).split("\n", 1)[0][:160]
        raise InvalidInputError(f"{field} is not a usable {algorithm} {kind} ({type(exc).__name__}: {reason})",
                                field=field) from None


def sign(provider: Provider, credentials: dict[str, Any], connection_config: dict[str, Any]) -> tuple[str, float]:
    """A JWT as the provider's token block describes it, and when it expires (epoch seconds)."""
    template = provider.token
    if template is None:
        raise InvalidInputError(f"provider '{provider.name}' has no token block to sign a JWT with")
    now = int(time.time())
    lifetime = template.expires_in_ms // 1000
    header = {k: v for k, v in _fill_all(template.header, credentials, connection_config).items() if k != "alg"}
    payload = {**_fill_all(template.payload, credentials, connection_config), "iat": now, "exp": now + lifetime}
    if provider.token_url:
        payload.setdefault("aud", fill(provider.token_url, connection_config))
    field = _CREDENTIAL.search(template.signing_key)
    key = _key(template, _fill(template.signing_key, credentials, connection_config))
    token = encode(payload, key, template.algorithm, header,
                   field=f"credentials.{field.group(1)}" if field else "the signing key")
    return token, float(now + lifetime)


def direct_token(connection_pk: int, provider: Provider, creds: JwtCredentials,
                 connection_config: dict[str, Any]) -> tuple[str, datetime]:
    """The token of a JWT connection whose JWT is itself the token: the cached one while it has a minute left,
    else a new signature."""
    fields = credentials_to_json(creds)
    cache_key = (connection_pk, str(sorted((k, str(v)) for k, v in fields.items() if k not in ("token",
                                                                                           "expires_at"))))
    cached = _cache.get(cache_key)
    if cached is None or cached[1] - time.time() < RESIGN_MARGIN_S:
        if len(_cache) > 10_000:
            _cache.clear()
        cached = _cache[cache_key] = sign(provider, fields, connection_config)
    return cached[0], datetime.fromtimestamp(cached[1], UTC)


async def exchange(egress: Egress, provider: Provider, token_url: str, credentials: dict[str, Any],
                   connection_config: dict[str, Any]) -> dict[str, Any]:
    """RFC 7523: the signed assertion for an access token. The credentials' new `token`, `expires_at`, `raw`."""
    assertion, _ = sign(provider, credentials, connection_config)
    body = await request_token(egress, token_url, what="the signed JWT assertion",
                               data={**provider.token_params, "grant_type": JWT_BEARER_GRANT, "assertion": assertion})
    return {"token": SecretStr(str(body["access_token"])), "expires_at": expiry(body), "raw": body}


def app_jwt(app_id: str, private_key: str) -> str:
    """The JWT a GitHub App authenticates as itself with."""
    now = int(time.time())
    return encode({"iat": now - 60, "exp": now + APP_JWT_LIFETIME_S, "iss": app_id},
                  private_key.replace("\\n", "\n").strip(), "RS256", {}, field="the app's private_key")


async def installation_token(egress: Egress, token_url: str, app_id: str, private_key: str) -> dict[str, Any]:
    """An installation token for the app: the APP credentials' `access_token`, `expires_at` and `raw`."""
    body = await request_token(egress, token_url, what="the app's JWT", token_field="token",
                               headers={"Authorization": f"Bearer {app_jwt(app_id, private_key)}",
                                        "Accept": "application/vnd.github+json"})
    return {"access_token": SecretStr(str(body["token"])), "expires_at": expiry(body), "raw": body}


async def installation(egress: Egress, token_url: str, app_id: str, private_key: str) -> dict[str, Any]:
    """The installation the token URL names (`.../app/installations/<id>/access_tokens` without its last part),
    as the app sees it: GitHub's `created_at`, `updated_at`, `account`. TokenRefusedError when it is not the app's."""
    url = token_url.removesuffix("/access_tokens")
    status, _, body = await exchange_json(egress, "GET", url, "installation endpoint", headers={
        "Authorization": f"Bearer {app_jwt(app_id, private_key)}", "Accept": "application/vnd.github+json"})
    if status >= 400 or not isinstance(body, dict):
        raise TokenRefusedError(f"the app cannot read installation {url.rsplit('/', 1)[-1]}: HTTP {status}")
    return body


def with_current_token(connection: Connection, provider: Provider) -> Connection:
    """The connection as Nango shows a JWT connection, its current `token` and `expires_at` filled in when the
    signed JWT is itself the token (nothing stored changes)."""
    creds = connection.credentials
    if not isinstance(creds, JwtCredentials) or creds.expires_at is not None or provider.token is None:
        return connection
    token, expires_at = direct_token(connection.id, provider, creds, connection.connection_config)
    return connection.model_copy(update={"credentials": creds.model_copy(
        update={"token": SecretStr(token), "expires_at": expires_at})})


def app_link(settings: Any) -> str | None:
    """A GitHub-style app's public link: the integration keeps it as its installation URL."""
    url = settings["oauth_authorization_url"] or ""
    return url.removesuffix(APP_INSTALL_PATH) if url.endswith(APP_INSTALL_PATH) else None
