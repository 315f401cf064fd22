"""Rows as the rest of the platform sees them: typed, credentials already opened."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr

ScriptLogLevel = Literal["debug", "info", "warn", "error"]
RecordValidation = Literal["off", "warn", "reject"]


class Environment(BaseModel):
    id: int
    name: str
    webhook_url: str | None = None
    # the lowest level of a script's log lines kept, and whether saved records are checked against their model
    script_log_level: ScriptLogLevel = "debug"
    record_validation: RecordValidation = "off"


class Integration(BaseModel):
    id: int
    environment_id: int
    unique_key: str
    provider: str
    display_name: str | None = None
    created_at: datetime
    updated_at: datetime


class OAuth2Credentials(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["OAUTH2"] = "OAUTH2"
    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: datetime | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class OAuth2ClientCredentials(BaseModel):
    """OAUTH2_CC: a token the platform mints with the client's own id and secret (RFC 6749 4.4), and mints again
    before it expires; Nango's shape."""
    model_config = ConfigDict(extra="allow")
    type: Literal["OAUTH2_CC"] = "OAUTH2_CC"
    token: SecretStr
    expires_at: datetime | None = None
    client_id: str
    client_secret: SecretStr
    raw: dict[str, Any] = Field(default_factory=dict)


class AppCredentials(BaseModel):
    """APP (GitHub App): an installation token minted with a JWT signed by the app's private key (kept on the
    integration), minted again before it expires; Nango's shape."""
    model_config = ConfigDict(extra="allow")
    type: Literal["APP"] = "APP"
    access_token: SecretStr
    expires_at: datetime | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class JwtCredentials(BaseModel):
    """JWT: the fields the provider signs with (`privateKey`, `issuerId`, ... as the provider names them, kept
    in the extra fields) and the last token. A provider with a token URL exchanges the signed assertion for an
    access token (RFC 7523) that `expires_at` dates; otherwise the signed JWT itself is the token, signed again
    on use (providers/jwt_auth.py)."""
    model_config = ConfigDict(extra="allow")
    type: Literal["JWT"] = "JWT"
    token: SecretStr | None = None
    expires_at: datetime | None = None


class OAuth1Credentials(BaseModel):
    """OAUTH1 (RFC 5849): the access token and its secret; the consumer is the integration's OAuth app."""
    model_config = ConfigDict(extra="allow")
    type: Literal["OAUTH1"] = "OAUTH1"
    oauth_token: str
    oauth_token_secret: SecretStr
    raw: dict[str, Any] = Field(default_factory=dict)


class TbaCredentials(BaseModel):
    """TBA (NetSuite token-based auth): a token id and secret; the consumer is the integration's OAuth app unless
    `config_override` names another (`client_id`, `client_secret`)."""
    model_config = ConfigDict(extra="forbid")
    type: Literal["TBA"] = "TBA"
    token_id: str
    token_secret: SecretStr
    config_override: dict[str, str] = Field(default_factory=dict)


class ApiKeyCredentials(BaseModel):
    type: Literal["API_KEY"] = "API_KEY"
    api_key: SecretStr = Field(alias="apiKey")
    model_config = ConfigDict(populate_by_name=True)


class BasicCredentials(BaseModel):
    type: Literal["BASIC"] = "BASIC"
    username: str
    password: SecretStr


Credentials = (OAuth2Credentials | OAuth2ClientCredentials | AppCredentials | JwtCredentials | OAuth1Credentials
               | TbaCredentials | ApiKeyCredentials | BasicCredentials)


class Consumer(BaseModel):
    """The OAuth 1.0 consumer a connection's requests are signed with (OAUTH1, TBA): the integration's OAuth app,
    or a TBA connection's own override. Loaded with the connection, never part of its credentials' JSON."""
    key: str
    secret: SecretStr

    @classmethod
    def of(cls, creds: Credentials, app_key: str | None, app_secret: Callable[[], str]) -> Consumer | None:
        """Who signs this connection's requests: a TBA connection's own override, else the integration's OAuth app
        (`app_secret` is asked for only then); None for a mode that is not OAuth 1.0 or without an app."""
        if isinstance(creds, TbaCredentials) and creds.config_override.get("client_id"):
            return cls(key=creds.config_override["client_id"], secret=creds.config_override.get("client_secret", ""))
        if isinstance(creds, OAuth1Credentials | TbaCredentials) and app_key:
            return cls(key=app_key, secret=app_secret())
        return None


class CredentialsEnvelope(BaseModel):
    credentials: Credentials = Field(discriminator="type")


def credentials_to_json(creds: Credentials) -> dict[str, Any]:
    """Plain JSON with the secrets revealed: only for sealing and for the connection API."""
    out: dict[str, Any] = {}
    for key, value in creds.model_dump(by_alias=True, mode="python").items():
        out[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(out.get("expires_at"), datetime):
        out["expires_at"] = out["expires_at"].isoformat()
    return out


class Connection(BaseModel):
    id: int
    environment_id: int
    integration_id: int
    integration_key: str
    provider: str
    connection_id: str
    credentials: Credentials = Field(discriminator="type")
    connection_config: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    # the provider refused a token refresh ({id, message, at}); cleared by a reconnect or a refresh that works
    refresh_error: dict[str, Any] | None = None
    # who the connection was made for (Nango's end user, with its organization) and its tags
    end_user: dict[str, Any] | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    # OAUTH1 and TBA: who signs with the connection's token (excluded from every dump)
    consumer: Consumer | None = Field(None, exclude=True)


class DeployedScript(BaseModel):
    id: int
    environment_id: int
    integration_id: int
    integration_key: str
    name: str
    kind: Literal["sync", "action", "event"]
    bundle_sha256: str
    bundle_key: str
    module_path: str
    config: dict[str, Any]
    enabled: bool
    version: int
    deployed_at: datetime
    script_sha256: str | None = None


class Job(BaseModel):
    """One script run of any kind (sync, action, webhook, event): a row of `jobs`, with the connection id
    and integration key it ran for. `counts` is filled only by the readers that say so."""
    id: int
    environment_id: int
    connection_pk: int
    script_name: str
    variant: str
    kind: str
    status: str
    full_resync: bool
    started_at: datetime
    ended_at: datetime | None
    error_type: str | None = None
    error: str | None = None
    error_details: str | None = None
    error_payload: Any = None
    public_id: UUID | None = None
    input: Any = None
    output: Any = None
    attempts: int = 0
    workflow_id: str | None = None
    run_id: str | None = None
    connection_id: str | None = None
    integration_key: str | None = None
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)

    @property
    def error_text(self) -> str | None:
        """The error as callers have always seen it: "type: message" when the run gave a type."""
        if self.error_type is None:
            return self.error
        return f"{self.error_type}: {self.error}"
