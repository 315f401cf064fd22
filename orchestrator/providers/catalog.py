"""The provider catalog: data (YAML) validated by a pydantic schema, loaded once per process."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import InvalidInputError, NotFoundError


class RateLimit(BaseModel):
    reset_header: str | None = None
    reset_format: Literal["epoch_seconds", "seconds", "iso"] = "epoch_seconds"


class WebhookSignature(BaseModel):
    signature_header: str
    algorithm: Literal["hmac-sha256", "hmac-sha1"] = "hmac-sha256"
    prefix: str = ""
    event_type_path: str | None = None


class Provider(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    display_name: str
    auth_mode: Literal["OAUTH2", "API_KEY", "BASIC", "NONE"]
    authorization_url: str | None = None
    token_url: str | None = None
    default_scopes: list[str] = Field(default_factory=list)
    base_url: str
    headers: dict[str, str] = Field(default_factory=dict)
    api_key_header: str | None = None   # e.g. "Authorization: Bearer ${apiKey}" style handled by template
    api_key_template: str = "Bearer ${apiKey}"
    api_key_query: str | None = None
    pagination: dict[str, Any] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    webhook: WebhookSignature | None = None

    def resolve_base_url(self, connection_config: dict[str, Any]) -> str:
        override = connection_config.get("base_url")
        template = str(override) if override else self.base_url
        return fill(template, connection_config).rstrip("/")


_PLACEHOLDER = re.compile(r"\$\{connectionConfig\.([A-Za-z0-9_]+)\}")


def fill(template: str, connection_config: dict[str, Any]) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in connection_config:
            raise InvalidInputError(f"connection_config lacks '{key}', which the provider URL {template} needs")
        return str(connection_config[key])
    return _PLACEHOLDER.sub(sub, template)


@cache
def builtin_providers() -> dict[str, Provider]:
    text = (resources.files("orchestrator.providers") / "providers.yaml").read_text()
    raw = yaml.safe_load(text) or {}
    return {name: Provider(name=name, **body) for name, body in raw.items()}


def get_provider(name: str) -> Provider:
    provider = builtin_providers().get(name)
    if provider is None:
        raise NotFoundError(f"unknown provider '{name}'", provider=name)
    return provider
