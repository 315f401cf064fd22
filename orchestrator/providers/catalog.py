"""The provider catalog: data (YAML) validated by a pydantic schema, loaded once per process.

Built-in providers live in `providers.yaml` next to this module. Custom providers (internal or
unlisted APIs) are declared per environment with the same fields, through `POST /providers` or the
`providers.yaml` of an integrations folder that `nango deploy` uploads; they are stored in the
`custom_providers` table. `resolve_provider(conn, environment_id, name)` looks at the environment's
custom providers first, then the built-ins; `get_provider(name)` knows the built-ins only.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from orchestrator.errors import InvalidInputError, NotFoundError
from orchestrator.providers.model import (
    DECLARED,
    NAME_PATTERN,
    AuthMode,
    Provider,
    RateLimit,
    WebhookSignature,
    fill,
    load_providers_file,
    parse_providers,
    placeholders,
    token_url,
)
from orchestrator.providers.nango_format import convert_entries, is_nango_entry

__all__ = ["DECLARED", "NAME_PATTERN", "AuthMode", "Provider", "RateLimit", "WebhookSignature", "builtin_providers",
           "fill", "get_provider", "load_providers_file", "operator_provider_names", "operator_providers",
           "parse_providers", "placeholders", "token_url"]


def operator_provider_names() -> frozenset[str]:
    """The providers that come from (or were overridden by) the operator's PROVIDERS_FILE: GET /providers says so."""
    path = os.environ.get("PROVIDERS_FILE", "").strip()
    return frozenset(operator_providers(path)) if path else frozenset()


@cache
def builtin_providers() -> dict[str, Provider]:
    """The shipped catalog, extended and overridden by the operator's PROVIDERS_FILE when set.

    PROVIDERS_FILE is read from the environment here (the Settings field of that name documents it)
    because this process-wide cache is reached from call sites that hold no Settings."""
    text = (resources.files("orchestrator.providers") / "providers.yaml").read_text()
    catalog = load_providers_file(text, source="orchestrator/providers/providers.yaml")
    path = os.environ.get("PROVIDERS_FILE", "").strip()
    return {**catalog, **operator_providers(path)} if path else catalog


@cache
def operator_providers(file: str) -> dict[str, Provider]:
    """An operator's providers file: entries in our shape, or in Nango's own `providers.yaml` shape
    (`proxy.base_url`...), which are converted; a Nango entry that cannot be converted is logged and skipped.
    Read once per path (the start-up check, the catalog and GET /providers share it; a failed read is not kept).
    The mapping is shared: callers copy before they change it."""
    path = Path(file)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"PROVIDERS_FILE {path} cannot be read: {exc}") from None
    if isinstance(raw, dict) and set(raw) == {"providers"}:
        raw = raw["providers"]
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInputError(f"PROVIDERS_FILE {path}: expected a mapping of provider name to its fields")
    ours = parse_providers({k: v for k, v in raw.items() if not is_nango_entry(v)}, source=str(path))
    return {**ours, **convert_entries(raw, source=str(path))}


def get_provider(name: str) -> Provider:
    """A built-in provider; call sites that know the environment use `resolve_provider`."""
    provider = builtin_providers().get(name)
    if provider is None:
        raise NotFoundError(f"unknown provider '{name}'", provider=name)
    return provider
