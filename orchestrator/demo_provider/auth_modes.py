"""The demo provider's other auth modes: OAuth 1.0a, NetSuite TBA, GitHub App and JWT.

The platform signs these requests with its own hand-written code; here every request is verified by
independent, well-kept libraries (oauthlib for RFC 5849 signatures, joserfc for JWTs), so a platform
test that passes against the demo means two implementations agree, not one with itself.

What is relaxed from oauthlib's defaults, and why:
- plain HTTP is accepted (``enforce_ssl`` off, PLAINTEXT too): the demo listens on http://127.0.0.1;
- keys, tokens, nonces and verifiers may be 1-256 characters from RFC 3986's unreserved set
  (letters, digits, ``-._~``) instead of 20-30 letters and digits: the demo's client id has dashes,
  the platform's nonces are hex or urlsafe, TBA tokens are 64 hex;
- realms are not scopes: any realm is accepted on the OAuth 1.0a steps; for TBA the realm must equal
  the token's account id (case-sensitive).
Nonces are remembered per (consumer, timestamp) and oauthlib refuses timestamps more than 10 minutes
from the wall clock (``time.time``, not ``DemoState.clock``). JWT times use ``DemoState.clock``.

This module is the only one importing oauthlib and joserfc (the ``dev`` extra); the platform never does.
"""

from __future__ import annotations

import hmac
import json
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from aiohttp import web
from joserfc import jws, jwt
from joserfc.errors import ClaimError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jwk import ECKey, Key, OctKey, RSAKey
from oauthlib.common import add_params_to_uri
from oauthlib.oauth1 import (
    SIGNATURE_HMAC_SHA1,
    SIGNATURE_HMAC_SHA256,
    SIGNATURE_PLAINTEXT,
    AccessTokenEndpoint,
    AuthorizationEndpoint,
    OAuth1Error,
    RequestTokenEndpoint,
    RequestValidator,
    ResourceEndpoint,
)
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header
from yarl import URL

FORM = "application/x-www-form-urlencoded"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
APP_DOCS = "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"
UNDECODABLE = "A JSON web token could not be decoded"
EXP_INVALID = ("'Expiration time' claim ('exp') must be a numeric value representing the future time at "
               "which the assertion expires")
EXP_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
IAT_INVALID = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
CLOCK_SKEW_SECONDS = 60
APP_JWT_MAX_SECONDS = 600  # GitHub: at most 10 minutes
DIRECT_JWT_MAX_SECONDS = 1200  # App Store Connect: at most 20 minutes
ASSERTION_MAX_SECONDS = 3600  # Google: at most one hour
JWT_ALGS = ("ES256", "RS256", "HS256")


class Host(Protocol):
    """What the modes need from DemoState (kept structural so this module does not import app.py)."""

    client_id: str
    client_secret: str
    token_ttl_seconds: int
    deny_next_authorization: bool
    clock: Callable[[], float]

    def grant_token(self, token: str, *, scopes: str, ttl_seconds: int) -> None: ...

    def user_id(self, login: str) -> int: ...


class AuthRefused(Exception):
    """A credential of one of these modes that did not verify; the message says what is wrong."""


@dataclass
class _RequestToken:
    secret: str
    client_key: str
    callback: str
    verifier: str | None = None


@dataclass(frozen=True)
class _AccessToken:
    secret: str
    client_key: str | None  # None: any known consumer may use it
    account_id: str | None = None  # set for TBA tokens: the realm they must be sent with


@dataclass(frozen=True)
class _App:
    app_id: str
    key: Key
    slug: str
    setup_url: str | None


@dataclass(frozen=True)
class _JwtKey:
    kid: str
    alg: str
    key: Key
    issuer: str | None
    audience: str | None


# ----------------------------------------------------------------------------------------- state
class AuthModes:
    """What the four modes remember: consumers, tokens, nonces, apps and keys. One per DemoState."""

    def __init__(self, host: Host, *, login: str) -> None:
        self.host = host
        self.login = login
        self.tba_consumers: dict[str, str] = {}
        self.request_tokens: dict[str, _RequestToken] = {}
        self.spent_request_tokens: set[str] = set()
        self.access_tokens: dict[str, _AccessToken] = {}
        self.nonces: dict[tuple[str, str], set[str]] = {}
        self.apps: dict[str, _App] = {}
        self.installations: dict[int, str] = {}
        self.installed_at: dict[int, float] = {}  # when each was created (or last configured), on the host's clock
        self.jwt_keys: dict[str, _JwtKey] = {}
        self._next_installation = 40_000_001

    def reset(self) -> None:
        """Forget flows in progress and nonces; registered consumers, apps, keys and tokens stay."""
        self.request_tokens.clear()
        self.spent_request_tokens.clear()
        self.nonces.clear()

    def consumer_secret(self, key: str) -> str | None:
        if key == self.host.client_id:
            return self.host.client_secret
        return self.tba_consumers.get(key)

    def use_nonce(self, client_key: str, timestamp: str, nonce: str) -> bool:
        """Remember the nonce; False when this consumer already sent it with this timestamp."""
        if len(self.nonces) > 256:  # older than oauthlib's 10-minute window: cannot come back
            oldest = int(time.time()) - 700
            self.nonces = {k: v for k, v in self.nonces.items() if not k[1].isdigit() or int(k[1]) >= oldest}
        seen = self.nonces.setdefault((client_key, timestamp), set())
        if nonce in seen:
            return False
        seen.add(nonce)
        return True

    def add_tba_token(self, account_id: str, consumer_key: str | None = None) -> dict[str, str]:
        """A NetSuite-like token id and secret (64 hex each) for `account_id`."""
        if consumer_key is not None and self.consumer_secret(consumer_key) is None:
            raise ValueError(f"unknown consumer_key {consumer_key!r}")
        token_id, token_secret = secrets.token_hex(32), secrets.token_hex(32)
        self.access_tokens[token_id] = _AccessToken(token_secret, consumer_key, account_id)
        return {"token_id": token_id, "token_secret": token_secret, "account_id": account_id}

    def add_oauth1_token(self, consumer_key: str | None = None) -> dict[str, str]:
        """An OAuth 1.0a access token as the three legs would end (for tests that do not walk them)."""
        token, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access_tokens[token] = _AccessToken(secret, consumer_key or self.host.client_id)
        return {"oauth_token": token, "oauth_token_secret": secret}

    def add_app(self, app_id: str, public_key_pem: str, slug: str, setup_url: str | None) -> None:
        self.apps[app_id] = _App(app_id, RSAKey.import_key(public_key_pem), slug, setup_url)

    def install(self, app_id: str) -> int:
        installation_id = self._next_installation
        self._next_installation += 1
        self.installations[installation_id] = app_id
        self.installed_at[installation_id] = self.host.clock()
        return installation_id

    def add_jwt_key(self, kid: str, alg: str, key: str, *, issuer: str | None = None,
                    audience: str | None = None, key_encoding: str = "utf-8") -> None:
        """Register a verification key: a public PEM (ES256, RS256) or a shared secret (HS256).

        ``key_encoding="hex"`` decodes the secret first, as Ghost's admin keys are used."""
        if alg == "HS256":
            material = bytes.fromhex(key) if key_encoding == "hex" else key.encode()
            imported: Key = OctKey.import_key(material)
        elif alg == "RS256":
            imported = RSAKey.import_key(key)
        elif alg == "ES256":
            imported = ECKey.import_key(key)
        else:
            raise ValueError(f"alg must be one of {', '.join(JWT_ALGS)}, got {alg!r}")
        self.jwt_keys[kid] = _JwtKey(kid, alg, imported, issuer, audience)

    # ----------------------------------------------------------------------------- verification
    def verify_resource(self, uri: str, method: str, body: str, headers: dict[str, str]) -> str:
        """'oauth1' or 'tba' when oauthlib accepts this API request; AuthRefused otherwise."""
        try:
            params = dict(parse_authorization_header(headers.get("Authorization", "")))
        except ValueError:
            raise AuthRefused("oauth_problem=parameter_rejected: malformed OAuth Authorization header") from None
        info = self.access_tokens.get(params.get("oauth_token", ""))
        mode = "tba" if info is not None and info.account_id is not None else "oauth1"
        validator = _Validator(self, mode)
        try:
            ok, checked = ResourceEndpoint(validator).validate_protected_resource_request(
                uri, method, body, headers)
        except ValueError:
            ok, checked = False, None
        if ok:
            return mode
        if checked is not None and checked.validator_log.get("signature") is False:
            validator.problems.append(("signature_invalid", _BAD_SIGNATURE))
        problem, advice = validator.problems[0] if validator.problems else _precheck(validator, params)
        raise AuthRefused(f"oauth_problem={problem}: {advice}")

    def verify_jwt(self, value: str) -> None:
        """A JWT sent as the API credential (App Store Connect, Ghost), checked against its `kid`."""
        header, _ = _unverified(value, UNDECODABLE)
        key = self.jwt_keys.get(str(header.get("kid")))
        if key is None:
            raise AuthRefused(f"JWT kid {header.get('kid')!r} is not a registered key")
        if header.get("alg") != key.alg:
            raise AuthRefused(f"JWT alg {header.get('alg')!r} is not the key's {key.alg}")
        claims = _verified(value, key.key, key.alg, f"JWT signature does not verify with key {key.kid!r}")
        expected: dict[str, Any] = {}
        if key.issuer:
            expected["iss"] = {"essential": True, "value": key.issuer}
        if key.audience:
            expected["aud"] = {"essential": True, "value": key.audience}
        try:
            _check_claims(claims, int(self.host.clock()), DIRECT_JWT_MAX_SECONDS, **expected)
        except ClaimError as exc:
            raise AuthRefused(f"JWT refused: {exc.description}") from None

    def verify_app_jwt(self, value: str) -> _App:
        """The app a GitHub App JWT (RS256, ``iss`` = app id) was signed by; GitHub's messages otherwise."""
        _, unverified = _unverified(value, UNDECODABLE)
        app = self.apps.get(str(unverified.get("iss")))
        if app is None:
            raise AuthRefused("'Issuer' claim ('iss') must be the ID of a registered GitHub App")
        claims = _verified(value, app.key, "RS256", UNDECODABLE)
        try:
            _check_claims(claims, int(self.host.clock()), APP_JWT_MAX_SECONDS, skip=("iss",),
                          require_iat=True)
        except _TooLong:
            raise AuthRefused(EXP_TOO_FAR) from None
        except ClaimError as exc:
            raise AuthRefused(IAT_INVALID if exc.claim == "iat" else EXP_INVALID) from None
        return app

    def verify_assertion(self, value: str, token_url: str) -> str:
        """RFC 7523: an RS256 assertion for `token_url`; returns the scopes it asks for."""
        header, unverified = _unverified(value, "The assertion is not a JWT.")
        key = self.jwt_keys.get(str(header.get("kid"))) or next(
            (k for k in self.jwt_keys.values() if k.issuer and k.issuer == unverified.get("iss")), None)
        if key is None:
            raise AuthRefused("No registered key matches the assertion's kid or iss.")
        if key.alg != "RS256" or header.get("alg") != "RS256":
            raise AuthRefused("The assertion must be signed RS256 with an RS256 key.")
        claims = _verified(value, key.key, "RS256", "Invalid JWT Signature.")
        if not _same_endpoint(claims.get("aud"), token_url):
            raise AuthRefused(f"Invalid JWT: 'aud' must be {token_url!r}, got {claims.get('aud')!r}.")
        expected: dict[str, Any] = {"iss": {"essential": True, "value": key.issuer}} if key.issuer else {}
        try:
            _check_claims(claims, int(self.host.clock()), ASSERTION_MAX_SECONDS, skip=("aud",),
                          require_iat=True, **expected)
        except ClaimError as exc:
            raise AuthRefused(f"Invalid JWT: {exc.description}.") from None
        scope = claims.get("scope")
        return scope if isinstance(scope, str) and scope else "repo"

    def mint_bearer(self, prefix: str, scopes: str = "repo") -> tuple[str, int]:
        """A Bearer token the API accepts (through DemoState's tokens) and its lifetime in seconds."""
        token = prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
        ttl = self.host.token_ttl_seconds
        self.host.grant_token(token, scopes=scopes, ttl_seconds=ttl)
        return token, ttl


_BAD_SIGNATURE = "the signature does not match the method, URL, query and form parameters with these secrets"


class _TooLong(InvalidClaimError):
    """`exp` further after `iat` than the provider allows (GitHub names this case apart)."""


def _unverified(value: str, refusal: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before any check: only to choose the key that will verify them."""
    try:
        obj = jws.extract_compact(value.encode())
        claims = json.loads(obj.payload or b"")
        header = dict(obj.headers())
    except (JoseError, ValueError):
        raise AuthRefused(refusal) from None
    if not isinstance(claims, dict):
        raise AuthRefused(refusal)
    return header, claims


def _verified(value: str, key: Key, alg: str, refusal: str) -> dict[str, Any]:
    """The claims once joserfc has checked the signature with `key` and only `alg`."""
    try:
        return jwt.decode(value, key, algorithms=[alg]).claims
    except (JoseError, ValueError):
        raise AuthRefused(refusal) from None


def _check_claims(claims: dict[str, Any], now: int, max_lifetime: int, *, skip: tuple[str, ...] = (),
                  require_iat: bool = False, **expected: Any) -> None:
    """exp, iss and aud by joserfc; the clock skew on iat and the lifetime cap (provider rules) here."""
    registry = jwt.JWTClaimsRegistry(now=now, exp={"essential": True}, **expected)
    registry.validate({k: v for k, v in claims.items() if k != "iat" and k not in skip})
    iat = claims.get("iat")
    if iat is None and require_iat:
        raise MissingClaimError("iat")
    if iat is not None and (isinstance(iat, bool) or not isinstance(iat, int | float)):
        raise InvalidClaimError("iat")
    if iat is not None and iat > now + CLOCK_SKEW_SECONDS:
        raise InvalidClaimError("iat", "Claim 'iat' is in the future")
    if claims["exp"] - (now if iat is None else iat) > max_lifetime:
        raise _TooLong("exp", f"Claim 'exp' is more than {max_lifetime} s after 'iat'")


def _same_endpoint(aud: object, expected: str) -> bool:
    """scheme://host:port/path equal, default ports made explicit (the token URL as RFC 7523 wants)."""
    if not isinstance(aud, str):
        return False
    got, want = URL(aud), URL(expected)
    return ((got.scheme.lower(), (got.host or "").lower(), got.port, got.path)
            == (want.scheme.lower(), (want.host or "").lower(), want.port, want.path))


# ------------------------------------------------------------------------------------ oauthlib
class _Validator(RequestValidator):
    """oauthlib's questions answered from AuthModes; one per HTTP request so `problems` says why it refused."""

    enforce_ssl = False
    safe_characters = set(string.ascii_letters + string.digits + "-._~")
    client_key_length = request_token_length = access_token_length = (1, 256)
    nonce_length = verifier_length = (1, 256)
    dummy_client = "dummy-client"
    dummy_request_token = "dummy-request-token"
    dummy_access_token = "dummy-access-token"

    def __init__(self, auth: AuthModes, mode: str) -> None:
        super().__init__()
        self.auth = auth
        self.mode = mode  # "oauth1" (three-legged) or "tba" (one-legged, NetSuite)
        self.problems: list[tuple[str, str]] = []  # OAuth Problem Reporting codes and advice

    @property
    def allowed_signature_methods(self) -> tuple[str, ...]:
        return (SIGNATURE_HMAC_SHA256,) if self.mode == "tba" else (SIGNATURE_HMAC_SHA1, SIGNATURE_PLAINTEXT)

    def _refuse(self, problem: str, advice: str) -> bool:
        self.problems.append((problem, advice))
        return False

    # realms are not scopes here; TBA's realm is checked against the token in validate_realms
    def check_realms(self, realms: Any) -> bool:
        return True

    def get_default_realms(self, client_key: str, request: Any) -> list[str]:
        return []

    def get_realms(self, token: str, request: Any) -> list[str]:
        return []

    def validate_requested_realms(self, client_key: str, realms: Any, request: Any) -> bool:
        return True

    def validate_realms(self, client_key: str, token: str, request: Any, uri: Any = None,
                        realms: Any = None) -> bool:
        info = self.auth.access_tokens.get(token)
        if self.mode != "tba" or info is None or request.realm == info.account_id:
            return True
        return self._refuse("parameter_rejected", f"realm {request.realm!r} is not the token's account id "
                            f"{info.account_id!r} (case-sensitive)")

    def validate_redirect_uri(self, client_key: str, redirect_uri: str, request: Any) -> bool:
        if redirect_uri == "oob" or URL(redirect_uri).absolute:
            return True
        return self._refuse("parameter_rejected", "oauth_callback must be an absolute URL or 'oob'")

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return self.auth.consumer_secret(client_key) is not None or self._refuse(
            "consumer_key_unknown", f"unknown consumer key {client_key!r}")

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.auth.consumer_secret(client_key) or "dummy"

    def validate_timestamp_and_nonce(self, client_key: str, timestamp: str, nonce: str, request: Any,
                                     request_token: str | None = None, access_token: str | None = None) -> bool:
        return self.auth.use_nonce(client_key, timestamp, nonce) or self._refuse(
            "nonce_used", f"nonce {nonce!r} was already used with timestamp {timestamp}")

    # three-legged: request token, authorization, verifier, access token
    def save_request_token(self, token: dict[str, str], request: Any) -> None:
        self.auth.request_tokens[token["oauth_token"]] = _RequestToken(
            token["oauth_token_secret"], request.client_key, request.redirect_uri)

    def verify_request_token(self, token: str, request: Any) -> bool:
        info = self.auth.request_tokens.get(token)
        if info is None and token in self.auth.spent_request_tokens:
            return self._refuse("token_used", "this request token was already used or denied")
        if info is None:
            return self._refuse("token_rejected", "unknown request token")
        if info.verifier is not None:
            return self._refuse("token_used", "this request token was already authorized")
        return True

    def save_verifier(self, token: str, verifier: dict[str, str], request: Any) -> None:
        self.auth.request_tokens[token].verifier = verifier["oauth_verifier"]

    def get_redirect_uri(self, token: str, request: Any) -> str:
        return self.auth.request_tokens[token].callback

    def validate_request_token(self, client_key: str, token: str, request: Any) -> bool:
        info = self.auth.request_tokens.get(token)
        if info is None and token in self.auth.spent_request_tokens:
            return self._refuse("token_used", "request token was already exchanged for an access token")
        if info is None or info.client_key != client_key:
            return self._refuse("token_rejected", "unknown request token for this consumer")
        return True

    def get_request_token_secret(self, client_key: str, token: str, request: Any) -> str:
        info = self.auth.request_tokens.get(token)
        return info.secret if info is not None else "dummy"

    def validate_verifier(self, client_key: str, token: str, verifier: str, request: Any) -> bool:
        info = self.auth.request_tokens.get(token)
        if info is None:
            return False  # validate_request_token said why
        if info.verifier is None:
            return self._refuse("permission_unknown", "request token not authorized yet")
        if not hmac.compare_digest(info.verifier, verifier):
            return self._refuse("verifier_invalid", "oauth_verifier does not match the request token")
        return True

    def save_access_token(self, token: dict[str, str], request: Any) -> None:
        self.auth.access_tokens[token["oauth_token"]] = _AccessToken(token["oauth_token_secret"],
                                                                     request.client_key)

    def invalidate_request_token(self, client_key: str, request_token: str, request: Any) -> None:
        """The request token and its verifier are single use: a replay names them as used."""
        self.auth.request_tokens.pop(request_token, None)
        self.auth.spent_request_tokens.add(request_token)

    # protected resources (OAuth 1.0a access tokens and TBA tokens)
    def validate_access_token(self, client_key: str, token: str, request: Any) -> bool:
        info = self.auth.access_tokens.get(token)
        if info is None or (info.account_id is not None) != (self.mode == "tba"):
            return self._refuse("token_rejected", "unknown access token")
        if info.client_key is not None and info.client_key != client_key:
            return self._refuse("token_rejected", "the token was issued to another consumer")
        return True

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        info = self.auth.access_tokens.get(token)
        return info.secret if info is not None else "dummy"


def _precheck(validator: _Validator, params: dict[str, str]) -> tuple[str, str]:
    """Why oauthlib refused before asking the validator (it swallows that reason on API requests)."""
    absent = [p for p in ("oauth_consumer_key", "oauth_token", "oauth_signature_method", "oauth_timestamp",
                          "oauth_nonce", "oauth_signature") if not params.get(p)]
    if absent:
        return "parameter_absent", f"missing {', '.join(absent)}"
    method = params["oauth_signature_method"]
    if method not in validator.allowed_signature_methods:
        return "signature_method_rejected", (
            f"signature method {method!r} is not accepted here; use {' or '.join(validator.allowed_signature_methods)}")
    stamp = params["oauth_timestamp"]
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > validator.timestamp_lifetime:
        return "timestamp_refused", "oauth_timestamp must be within 10 minutes of the server's time"
    return "parameter_rejected", "malformed OAuth parameters"


async def _oauth_inputs(request: web.Request) -> tuple[str, str, dict[str, str]]:
    """The URI as the client signed it (raw path and query), the form body, the headers."""
    body = ""
    if request.content_type == FORM and request.can_read_body:
        body = (await request.read()).decode("utf-8", "replace")
    return f"{request.scheme}://{request.host}{request.raw_path}", body, dict(request.headers)


async def authenticate(request: web.Request, auth: AuthModes) -> str | None:
    """The scheme a non-Bearer-token credential verified as: 'oauth1', 'tba' or 'jwt'.

    None when the header is none of these modes (the caller answers Bad credentials); AuthRefused
    when it is one of them and does not verify."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "oauth":
        uri, body, headers = await _oauth_inputs(request)
        return auth.verify_resource(uri, request.method, body, headers)
    if scheme == "ghost" or (scheme in ("bearer", "token") and value.count(".") == 2 and auth.jwt_keys):
        auth.verify_jwt(value)
        return "jwt"
    return None


# ---------------------------------------------------------------------------------------- routes
AUTH = web.AppKey("demo_auth_modes", AuthModes)
AUTH_SCHEME = web.RequestKey("demo_auth_scheme", str)  # what a request was verified as, for the log

routes = web.RouteTableDef()
admin_routes = web.RouteTableDef()


def _problem_reply(status: int, problem: str, advice: str) -> web.Response:
    """A refusal in OAuth Problem Reporting's words, form-encoded like every OAuth 1.0a answer."""
    body = urlencode({"oauth_problem": problem, "oauth_problem_advice": advice})
    return web.Response(status=status, text=body, content_type=FORM)


def _oauth1_reply(request: web.Request, validator: _Validator, result: tuple[Any, str | None, int]) -> web.Response:
    """oauthlib's answer; a bare 401 gets the reason (OAuth Problem Reporting) the validator recorded."""
    _, body, status = result
    if status == 200:
        request[AUTH_SCHEME] = "oauth1"
    if body is None:
        return _problem_reply(status, *(validator.problems or [("signature_invalid", _BAD_SIGNATURE)])[0])
    return web.Response(status=status, text=body, content_type=FORM)


@routes.post("/oauth1/request_token")
async def oauth1_request_token(request: web.Request) -> web.Response:
    validator = _Validator(request.app[AUTH], "oauth1")
    uri, body, headers = await _oauth_inputs(request)
    try:
        result = RequestTokenEndpoint(validator).create_request_token_response(uri, request.method, body, headers)
    except ValueError as exc:
        return _problem_reply(400, "parameter_rejected", str(exc))
    return _oauth1_reply(request, validator, result)


@routes.get("/oauth1/authorize")
async def oauth1_authorize(request: web.Request) -> web.Response:
    """Auto-approves: 302 to the callback with oauth_token and oauth_verifier (``denied`` when refused)."""
    auth = request.app[AUTH]
    token = request.query.get("oauth_token", "")
    pending = auth.request_tokens.get(token)
    if pending is not None and pending.verifier is None and auth.host.deny_next_authorization:
        auth.host.deny_next_authorization = False
        del auth.request_tokens[token]
        auth.spent_request_tokens.add(token)
        return web.Response(status=302, headers={"Location": add_params_to_uri(pending.callback, [("denied", token)])})
    validator = _Validator(auth, "oauth1")
    uri, body, _ = await _oauth_inputs(request)
    try:
        headers, text, status = AuthorizationEndpoint(validator).create_authorization_response(uri, "GET", body, {})
    except ValueError as exc:
        return _problem_reply(400, "parameter_rejected", str(exc))
    except OAuth1Error as exc:
        return _problem_reply(exc.status_code, *(validator.problems or [(exc.error, exc.description)])[0])
    return web.Response(status=status, headers=headers, text=text)


@routes.post("/oauth1/access_token")
async def oauth1_access_token(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    validator = _Validator(auth, "oauth1")
    uri, body, headers = await _oauth_inputs(request)
    user = {"user_id": str(auth.host.user_id(auth.login)), "screen_name": auth.login}
    try:
        result = AccessTokenEndpoint(validator).create_access_token_response(
            uri, request.method, body, headers, credentials=user)
    except ValueError as exc:
        return _problem_reply(400, "parameter_rejected", str(exc))
    return _oauth1_reply(request, validator, result)


def _github_error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "documentation_url": APP_DOCS, "status": str(status)},
                             status=status)


@routes.get("/apps/{slug}/installations/new")
async def app_install(request: web.Request) -> web.Response:
    """Auto-installs: 302 to the app's setup URL with installation_id, setup_action and state."""
    auth = request.app[AUTH]
    app = next((a for a in auth.apps.values() if a.slug == request.match_info["slug"]), None)
    if app is None:
        return _github_error(404, "Not Found")
    installation_id = auth.install(app.app_id)
    params = [("installation_id", str(installation_id)), ("setup_action", "install")]
    if "state" in request.query:
        params.append(("state", request.query["state"]))
    if not app.setup_url:
        return web.json_response(dict(params))
    return web.Response(status=302, headers={"Location": add_params_to_uri(app.setup_url, params)})


def _app_installation(request: web.Request) -> tuple[_App, int] | web.Response:
    """The app whose JWT signs the request and the installation of it the path names, or GitHub's error."""
    auth = request.app[AUTH]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return _github_error(401, UNDECODABLE)
    try:
        app = auth.verify_app_jwt(value.strip())
    except AuthRefused as exc:
        return _github_error(401, str(exc))
    request[AUTH_SCHEME] = "jwt"
    installation = request.match_info["installation_id"]
    if not installation.isdigit() or auth.installations.get(int(installation)) != app.app_id:
        return _github_error(404, "Not Found")
    return app, int(installation)


@routes.get("/app/installations/{installation_id}")
async def app_installation(request: web.Request) -> web.Response:
    """One installation of the app whose JWT signs the request, as GitHub answers it (the fields a client checks)."""
    auth = request.app[AUTH]
    found = _app_installation(request)
    if isinstance(found, web.Response):
        return found
    app, installation_id = found
    at = datetime.fromtimestamp(int(auth.installed_at[installation_id]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return web.json_response({
        "id": installation_id, "app_id": int(app.app_id) if app.app_id.isdigit() else app.app_id,
        "app_slug": app.slug, "target_type": "Organization", "account": {"login": auth.login, "type": "Organization"},
        "repository_selection": "all", "permissions": {"issues": "write", "metadata": "read"},
        "created_at": at, "updated_at": at, "suspended_at": None,
    })


@routes.post("/app/installations/{installation_id}/access_tokens")
async def app_access_token(request: web.Request) -> web.Response:
    """An installation token for a JWT signed by the installation's app, answered as GitHub does."""
    auth = request.app[AUTH]
    found = _app_installation(request)
    if isinstance(found, web.Response):
        return found
    token, ttl = auth.mint_bearer("ghs_")
    expires_at = datetime.fromtimestamp(int(auth.host.clock()) + ttl, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return web.json_response({
        "token": token, "expires_at": expires_at,
        "permissions": {"issues": "write", "metadata": "read"}, "repository_selection": "all",
    }, status=201)


def _oauth2_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)


@routes.post("/oauth2/jwt_token")
async def jwt_token(request: web.Request) -> web.Response:
    """RFC 7523 JWT bearer grant, as Google's service accounts use it; errors as RFC 6749 JSON."""
    auth = request.app[AUTH]
    form = await request.post()
    if form.get("grant_type") != JWT_BEARER:
        return _oauth2_error("unsupported_grant_type", f"grant_type must be {JWT_BEARER}")
    assertion = form.get("assertion")
    if not isinstance(assertion, str) or not assertion:
        return _oauth2_error("invalid_request", "assertion is required")
    try:
        scopes = auth.verify_assertion(assertion, f"{request.scheme}://{request.host}/oauth2/jwt_token")
    except AuthRefused as exc:
        return _oauth2_error("invalid_grant", str(exc))
    request[AUTH_SCHEME] = "jwt"
    token, ttl = auth.mint_bearer("ya29.", scopes)
    return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": ttl})


# ----------------------------------------------------------------------------------------- admin
async def _admin_body(request: web.Request, *required: str) -> tuple[dict[str, Any], str | None]:
    """The JSON object an admin route was sent and what is wrong with it (`required`: non-empty strings)."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return {}, "the body must be a JSON object"
    missing = [k for k in required if not isinstance(body.get(k), str) or not body[k]]
    return body, f"required strings: {', '.join(missing)}" if missing else None


def _admin_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


@admin_routes.post("/_admin/tba_consumers")
async def admin_tba_consumer(request: web.Request) -> web.Response:
    body, problem = await _admin_body(request, "consumer_key", "consumer_secret")
    if problem:
        return _admin_error(problem)
    request.app[AUTH].tba_consumers[body["consumer_key"]] = body["consumer_secret"]
    return web.json_response({"consumer_key": body["consumer_key"]}, status=201)


@admin_routes.post("/_admin/tba_tokens")
async def admin_tba_token(request: web.Request) -> web.Response:
    body, problem = await _admin_body(request, "account_id")
    if problem:
        return _admin_error(problem)
    try:
        issued = request.app[AUTH].add_tba_token(body["account_id"], body.get("consumer_key"))
    except ValueError as exc:
        return _admin_error(str(exc))
    return web.json_response(issued, status=201)


@admin_routes.post("/_admin/apps")
async def admin_app(request: web.Request) -> web.Response:
    body, problem = await _admin_body(request, "public_key_pem", "slug")
    app_id = str(body.get("app_id", ""))
    if problem or not app_id:
        return _admin_error(problem or "app_id is required (a string or an integer)")
    try:
        request.app[AUTH].add_app(app_id, body["public_key_pem"], body["slug"], body.get("setup_url"))
    except (JoseError, ValueError) as exc:
        return _admin_error(f"public_key_pem: {exc}")
    return web.json_response({"app_id": app_id, "slug": body["slug"],
                              "install_url": f"/apps/{body['slug']}/installations/new"}, status=201)


@admin_routes.post("/_admin/jwt_keys")
async def admin_jwt_key(request: web.Request) -> web.Response:
    body, problem = await _admin_body(request, "kid", "alg", "key")
    if problem:
        return _admin_error(problem)
    try:
        request.app[AUTH].add_jwt_key(body["kid"], body["alg"], body["key"], issuer=body.get("issuer"),
                                      audience=body.get("audience"),
                                      key_encoding=body.get("key_encoding", "utf-8"))
    except (JoseError, ValueError) as exc:
        return _admin_error(f"key: {exc}")
    return web.json_response({"kid": body["kid"], "alg": body["alg"]}, status=201)
