"""The provider model: what a provider declares (auth, URLs, pagination, rate limits, webhook signature), and
parsing a providers file in our shape. The catalog (catalog.py) and the Nango-shape converter
(nango_format.py) both build on it."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from orchestrator.errors import InvalidInputError
from orchestrator.sdk.pagination import PaginationConfig

AuthMode = Literal["OAUTH2", "OAUTH2_CC", "OAUTH1", "TBA", "APP", "JWT", "API_KEY", "BASIC", "NONE"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class RateLimit(BaseModel):
    """Where the provider says how long to wait: `Retry-After` first, then the reset header when the
    remaining-calls header reads 0."""

    model_config = ConfigDict(extra="forbid")

    reset_header: str | None = None
    reset_format: Literal["epoch_seconds", "epoch_ms", "seconds", "iso"] = "epoch_seconds"
    retry_after_header: str = "Retry-After"
    remaining_header: str = "X-RateLimit-Remaining"


class WebhookSignature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signature_header: str
    algorithm: Literal["hmac-sha256", "hmac-sha1"] = "hmac-sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    event_type_path: str | None = None   # dotted path in the body, or `header:Name`


JWT_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256")


class JwtTemplate(BaseModel):
    """How a JWT provider's token is signed (Nango's `token` block): the signing key, header and payload are
    templates over the connection's `${credentials.x}` and `${connectionConfig.x}`; `iat` and `exp` are added."""

    model_config = ConfigDict(extra="forbid")

    signing_key: str
    header: dict[str, Any] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)
    expires_in_ms: int = Field(3_600_000, ge=1000, le=24 * 3_600_000)
    # a shared (HS*) secret given as hex or base64 is decoded to its bytes first (Ghost's admin keys are hex)
    signing_key_encoding: Literal["utf8", "hex", "base64"] = "utf8"

    @property
    def algorithm(self) -> str:
        return str(self.header.get("alg", "RS256"))

    @field_validator("header")
    @classmethod
    def _alg(cls, value: dict[str, Any]) -> dict[str, Any]:
        if str(value.get("alg", "RS256")) not in JWT_ALGORITHMS:
            raise ValueError(f"token.header.alg must be one of {', '.join(JWT_ALGORITHMS)}")
        return value


class Provider(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    display_name: str
    auth_mode: AuthMode
    docs: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    default_scopes: list[str] = Field(default_factory=list)
    scope_separator: str = " "
    authorization_params: dict[str, str] = Field(default_factory=dict)
    token_params: dict[str, str] = Field(default_factory=dict)
    # OAUTH1: where the temporary credentials are asked for, what goes along, and how requests are signed
    request_url: str | None = None
    request_params: dict[str, str] = Field(default_factory=dict)
    signature_method: Literal["HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT"] = "HMAC-SHA1"
    # JWT: how the token is signed (exchanged at token_url when the provider has one, else sent as is)
    token: JwtTemplate | None = None
    # the credential fields a connection gives (JWT, TBA): name -> what it is; the connect page asks for them
    credentials: dict[str, str] = Field(default_factory=dict)
    # how a token (OAUTH2, OAUTH2_CC, APP, JWT) is sent: this header's value, `${accessToken}` filled in
    token_header: str = "Authorization"
    token_template: str = "Bearer ${accessToken}"
    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    api_key_header: str | None = None   # the header carrying the key (Authorization when unset)
    api_key_template: str = "Bearer ${apiKey}"
    api_key_query: str | None = None    # send the key as this query parameter instead
    # connection-config values the URLs use (`${connectionConfig.x}`): name -> what it is
    connection_config: dict[str, str] = Field(default_factory=dict)
    pagination: dict[str, Any] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    webhook: WebhookSignature | None = None

    @field_validator("pagination")
    @classmethod
    def _pagination(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            return value
        unknown = sorted(set(value) - PaginationConfig.field_names())
        if unknown:
            raise ValueError(f"unknown pagination field(s): {', '.join(unknown)}")
        PaginationConfig.from_dict(value)   # raises ValueError with a clear message
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Provider:
        if not (info.context or {}).get("declared"):
            return self   # built in code (tests, tools): only the field types are checked
        if self.auth_mode in ("OAUTH2", "OAUTH2_CC") and not self.token_url:
            raise ValueError(f"{self.auth_mode} provider '{self.name}' needs a token_url")
        if self.auth_mode in ("OAUTH2", "OAUTH1", "APP") and not self.authorization_url:
            raise ValueError(f"{self.auth_mode} provider '{self.name}' needs an authorization_url")
        if self.auth_mode in ("OAUTH1", "APP") and not self.token_url:
            raise ValueError(f"{self.auth_mode} provider '{self.name}' needs a token_url")
        if self.auth_mode == "OAUTH1" and not self.request_url:
            raise ValueError(f"OAUTH1 provider '{self.name}' needs a request_url (temporary credentials)")
        if self.auth_mode == "JWT" and self.token is None:
            raise ValueError(f"JWT provider '{self.name}' needs a token block (signing_key, header, payload)")
        for template in (self.base_url, self.authorization_url, self.token_url, self.request_url):
            for key in placeholders(template or ""):
                if key not in self.connection_config and key != "base_url":
                    raise ValueError(f"placeholder ${{connectionConfig.{key}}} in {template} is not declared in "
                                     "connection_config")
        return self

    def missing_connection_config(self, connection_config: dict[str, Any]) -> list[str]:
        """The `${connectionConfig.x}` values a connection's requests will fill that `connection_config` lacks or
        leaves blank: its base URL's (its own `base_url` when it has one), its token URL's and JWT template's where
        its mode mints or refreshes tokens. Checked at creation, so a connection does not fail at its first request."""
        templates: list[Any] = [connection_config.get("base_url") or self.base_url]
        if self.auth_mode in REFRESHED_MODES and self.token_url and not connection_config.get("token_url"):
            templates.append(self.token_url)
        if self.token is not None:
            templates += [self.token.signing_key, self.token.header, self.token.payload]
        needed = dict.fromkeys(key for text in _strings(templates) for key in placeholders(text))
        return [key for key in needed if not str(connection_config.get(key) or "").strip()]

    def check_url_values(self, connection_config: dict[str, Any]) -> None:
        """InvalidInputError when a value the connection's URLs need would not fit its place in them (`fill`):
        checked at creation with `missing_connection_config`, which runs first."""
        self.resolve_base_url(connection_config)
        if self.auth_mode in REFRESHED_MODES and self.token_url and not connection_config.get("token_url"):
            fill(self.token_url, connection_config)

    def resolve_base_url(self, connection_config: dict[str, Any]) -> str:
        override = connection_config.get("base_url")
        template = str(override) if override else self.base_url
        return fill(template, connection_config).rstrip("/")

    def public(self) -> dict[str, Any]:
        """What the API and `nango providers show --json` answer."""
        return self.model_dump(mode="json")


DECLARED = {"declared": True}   # validation context of a declared provider: URLs and placeholders checked too
_PLACEHOLDER = re.compile(r"\$\{connectionConfig\.([A-Za-z0-9_]+)\}")


REFRESHED_MODES = ("OAUTH2", "OAUTH2_CC", "APP", "JWT")  # modes whose tokens come from the token URL again


def _strings(value: Any) -> list[str]:
    """Every string in nested lists and mappings (a JWT template's header and payload)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for v in value for s in _strings(v)] if isinstance(value, list) else []


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


_URL_PART = re.compile(r"[A-Za-z0-9._~-]+")  # a host label or a path segment: nothing that ends either


def _url_value(key: str, value: str, template: str, *, whole: bool) -> str:
    """A connection_config value as it may go into a provider URL. In the middle of one (a subdomain, an account
    id) only letters, digits and `._~-`: an end user types these values (the Connect UI, `params[...]`), and
    `evil.example#` in `https://${connectionConfig.subdomain}.bamboohr.com/token.php` would send the
    integration's client secret to evil.example. At its start (`${connectionConfig.instance_url}`, which a
    provider's token response gives) an http(s) URL with a host and no user part."""
    shown = value if len(value) <= 60 else value[:57] + "..."
    if whole:
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.hostname and "@" not in parts.netloc \
                and not any(c.isspace() for c in value):
            return value
        raise InvalidInputError(f"connection_config.{key} {shown!r} cannot start the provider URL {template}: "
                                "it must be an http(s) URL with a host")
    if _URL_PART.fullmatch(value) and value not in (".", ".."):
        return value
    raise InvalidInputError(f"connection_config.{key} {shown!r} cannot go into the provider URL {template}: only "
                            "letters, digits and . _ ~ - are allowed")


def _substitute(template: str, connection_config: dict[str, Any], *, url: bool) -> str:
    """The template's placeholders filled from the connection config; in a URL each value checked (`_url_value`)."""
    needed_by = f"the provider URL {template}" if url else f"the provider's {template!r}"

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in connection_config:
            raise InvalidInputError(f"connection_config lacks '{key}', which {needed_by} needs")
        value = str(connection_config[key])
        return _url_value(key, value, template, whole=match.start() == 0) if url else value
    return _PLACEHOLDER.sub(sub, template)


def fill(template: str, connection_config: dict[str, Any]) -> str:
    """A provider URL with the connection's values in its placeholders, each checked (`_url_value`)."""
    return _substitute(template, connection_config, url=True)


def fill_text(template: str, connection_config: dict[str, Any]) -> str:
    """A provider's template that is not a URL (a JWT's header, payload or signing key) with the values as given."""
    return _substitute(template, connection_config, url=False)


def token_url(provider: Provider, connection_config: dict[str, Any]) -> str | None:
    """Where a connection's tokens are asked for: its own `token_url` (an integration override kept at connect
    time), else the provider's, filled from the connection config (InvalidInputError when a value is missing)."""
    return connection_config.get("token_url") or (
        fill(provider.token_url, connection_config) if provider.token_url else None)


def parse_providers(raw: Any, *, source: str) -> dict[str, Provider]:
    """A `name: {fields}` mapping (the providers.yaml shape) or a list of `{name, ...}` -> providers.

    Raises InvalidInputError naming the provider and the field that is wrong."""
    if raw is None:
        return {}
    items: list[tuple[str, Any]]
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(str(b.get("name", "")) if isinstance(b, dict) else "", b) for b in raw]
    else:
        raise InvalidInputError(f"{source}: expected a mapping of provider name to its fields")
    out: dict[str, Provider] = {}
    for name, body in items:
        if not isinstance(body, dict):
            raise InvalidInputError(f"{source}: provider '{name}' must be a mapping of fields")
        try:
            out[str(name)] = Provider.model_validate({**body, "name": str(name)}, context=DECLARED)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise InvalidInputError(f"{source}: provider '{name}' is invalid: {exc}", provider=str(name)) from None
    return out


def load_providers_file(text: str, *, source: str = "providers.yaml") -> dict[str, Provider]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{source} is not valid YAML: {exc}") from None
    if isinstance(raw, dict) and set(raw) == {"providers"}:   # `providers:` at the top is accepted too
        raw = raw["providers"]
    return parse_providers(raw, source=source)
