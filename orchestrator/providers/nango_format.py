"""Entries of Nango's own `providers.yaml` format mapped to our Provider model.

An operator who already keeps a catalog in Nango's shape (`proxy.base_url`, `proxy.paginate`,
`connection_config` as field objects, `alias` inheritance) points PROVIDERS_FILE at it instead of
rewriting it. What our model cannot express is dropped with one log line per entry; an entry that
cannot become a usable provider is skipped with its reason. Nothing here raises on a bad entry:
one odd provider must not take the whole catalog down.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from orchestrator.providers.model import DECLARED, NAME_PATTERN, Provider, RateLimit, placeholders
from orchestrator.sdk.pagination import PaginationConfig

log = logging.getLogger(__name__)

# Nango's modes that ours share by name; any other (CUSTOM, TABLEAU, BILL, TWO_STEP, SIGNATURE...) is skipped.
_MODES = {"OAUTH2", "OAUTH2_CC", "OAUTH1", "TBA", "APP", "JWT", "API_KEY", "BASIC", "NONE"}
# fields that only describe the provider to people (Nango's UI and docs): dropped without a word
_COSMETIC = {"display_name", "categories", "docs", "docs_connect", "setup_guide_url", "alias", "logo", "credentials",
             "auth_mode", "proxy", "connection_config", "signature"}
_SIMPLE = ("authorization_url", "token_url", "scope_separator", "request_url", "signature_method")
_MAPPED = {"default_scopes", "authorization_params", "token_params", "request_params", "token"}
# in a JWT template: anything but ${credentials.x[.id|.secret]} and ${connectionConfig.x}, or Nango's `a||b`
_JWT_UNSUPPORTED = re.compile(r"\$\{(?!credentials\.[A-Za-z0-9_]+(?:\.id|\.secret)?\}|connectionConfig\.)[^}]*\}?|\|\|")
_OTHER_PLACEHOLDER = re.compile(r"\$\{(?!connectionConfig\.)[^}]*\}")


def is_nango_entry(body: Any) -> bool:
    """Ours always has a top-level base_url; Nango's keeps it under `proxy`."""
    return isinstance(body, dict) and "base_url" not in body


def convert_entries(raw: dict[str, Any], *, source: str) -> dict[str, Provider]:
    """Every convertible Nango-shaped entry of a mapping, by name; the others are logged and skipped.
    Entries in our own shape are left out (the caller parses them) but may still be aliased."""
    out: dict[str, Provider] = {}
    for name, body in raw.items():
        if not is_nango_entry(body):
            continue
        provider = convert_entry(str(name), _with_alias(raw, body), source=source)
        if provider is not None:
            out[provider.name] = provider
    return out


def _with_alias(raw: dict[str, Any], body: Any) -> Any:
    """Nango's `alias: other` inherits every field of `other` the entry does not set (one level, as Nango)."""
    if not isinstance(body, dict) or not isinstance(raw.get(body.get("alias")), dict):
        return body
    base = raw[body["alias"]]
    merged = {**base, **body}
    if isinstance(base.get("proxy"), dict) and isinstance(body.get("proxy"), dict):
        merged["proxy"] = {**base["proxy"], **body["proxy"]}
    return merged


def convert_entry(name: str, body: Any, *, source: str) -> Provider | None:
    """One Nango entry -> a Provider, or None (logged) when it cannot be one."""
    def skip(reason: str) -> None:
        log.warning("%s: provider '%s' skipped: %s", source, name, reason)

    if not isinstance(body, dict):
        return skip("not a mapping of fields")
    if not re.match(NAME_PATTERN, name):
        return skip(f"name does not match {NAME_PATTERN}")
    mode = body.get("auth_mode")
    if mode not in _MODES:
        return skip(f"auth_mode {mode!r} has no equivalent here")
    proxy = body.get("proxy") if isinstance(body.get("proxy"), dict) else {}
    base_url = proxy.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        return skip("no proxy.base_url")
    dropped: list[str] = [k for k in body if k not in _COSMETIC and k not in _SIMPLE and k not in _MAPPED]
    out: dict[str, Any] = {"name": name, "display_name": str(body.get("display_name") or name), "auth_mode": mode,
                           "base_url": base_url}
    if isinstance(body.get("docs"), str):
        out["docs"] = body["docs"]
    for key in _SIMPLE:
        if isinstance(body.get(key), str):
            out[key] = body[key]
        elif key in body:
            dropped.append(f"{key} (not a string)")
    scopes = body.get("default_scopes")
    if isinstance(scopes, list):
        out["default_scopes"] = [str(s) for s in scopes]
    for key in ("authorization_params", "token_params", "request_params"):
        if isinstance(body.get(key), dict):
            out[key] = {str(k): _text(v) for k, v in body[key].items()}
    out["connection_config"] = _connection_config(body.get("connection_config"))
    if mode in ("JWT", "TBA"):
        out["credentials"] = _connection_config(body.get("credentials"))
    if isinstance(body.get("token"), dict):   # JWT: how the token is signed
        out["token"] = {k: v for k, v in body["token"].items()
                        if k in ("signing_key", "header", "payload", "expires_in_ms")}
        unknown = _JWT_UNSUPPORTED.findall(str(out["token"]))
        if unknown:
            return skip(f"its token uses {', '.join(sorted(set(unknown)))}, which is not signed here")
        if str((body.get("signature") or {}).get("hmac_secret_encoding", "")).lower() in ("hex", "base64"):
            out["token"]["signing_key_encoding"] = body["signature"]["hmac_secret_encoding"].lower()
    for url in (base_url, out.get("authorization_url"), out.get("token_url"), out.get("request_url")):
        if url and _OTHER_PLACEHOLDER.search(url):
            return skip(f"{url} uses a placeholder other than ${{connectionConfig.x}}")
        for key in placeholders(url or ""):   # Nango fills it from the connection whether declared or not
            out["connection_config"].setdefault(key, f"{key} (used by the provider's URLs)")
    _proxy_fields(proxy, out, dropped)
    try:
        provider = Provider.model_validate(out, context=DECLARED)
    except ValueError as exc:
        return skip(str(exc).replace("\n", " "))
    if dropped:
        log.info("%s: provider '%s': no equivalent here for %s", source, name, ", ".join(sorted(dropped)))
    return provider



def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _connection_config(raw: Any) -> dict[str, str]:
    """Nango describes each value as {type, title, description, ...}; ours keeps one sentence."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, str] = {}
    for key, field in raw.items():
        if isinstance(field, dict):
            out[str(key)] = str(field.get("description") or field.get("title") or key)
        else:
            out[str(key)] = str(field or key)
    return out


def _proxy_fields(proxy: dict[str, Any], out: dict[str, Any], dropped: list[str]) -> None:
    """headers (the API key's header found in them), query (the key as a parameter), retry, paginate."""
    headers: dict[str, str] = {}
    for header, value in (proxy.get("headers") or {}).items():
        text = _text(value)
        if "${apiKey}" in text and out["auth_mode"] == "API_KEY" and "api_key_header" not in out:
            out["api_key_header"], out["api_key_template"] = str(header), _OTHER_PLACEHOLDER.sub(
                lambda m: m.group(0) if m.group(0) == "${apiKey}" else "", text)
        elif "${accessToken}" in text and _OTHER_PLACEHOLDER.search(text.replace("${accessToken}", "")) is None:
            out["token_header"], out["token_template"] = str(header), text
        elif "${" in text:
            dropped.append(f"proxy.headers.{header} (a template)")
        else:
            headers[str(header)] = text
    if headers:
        out["headers"] = headers
    for param, value in (proxy.get("query") or {}).items():
        if _text(value) == "${apiKey}" and out["auth_mode"] == "API_KEY":
            out["api_key_query"] = str(param)
        else:
            dropped.append(f"proxy.query.{param}")
    retry = proxy.get("retry")
    if isinstance(retry, dict):
        limit: dict[str, str] = {}
        if _first(retry.get("at")):
            limit["reset_header"] = _first(retry["at"])
        if _first(retry.get("after")):
            limit["retry_after_header"] = _first(retry["after"])
        out["rate_limit"] = RateLimit(**limit)
    paginate = proxy.get("paginate")
    if isinstance(paginate, dict):
        known = {k: v for k, v in paginate.items() if k in PaginationConfig.field_names()}
        dropped.extend(f"proxy.paginate.{k}" for k in paginate if k not in known)
        try:
            PaginationConfig.from_dict(known)
            out["pagination"] = known
        except (TypeError, ValueError) as exc:
            dropped.append(f"proxy.paginate ({exc})")
    dropped.extend(f"proxy.{k}" for k in proxy if k not in {"base_url", "headers", "query", "retry", "paginate"})


def _first(value: Any) -> str:
    """Nango lists candidate headers; ours reads one."""
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return str(value) if value else ""
