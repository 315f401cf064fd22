"""OAUTH2_CC: minting a token with the client's own id and secret (RFC 6749 section 4.4).

The same call mints a connection's first token (POST /connections, so a connection whose client is refused is
never stored) and every later one (credentials.refresh, before the token expires). The client authenticates in
the form body, the provider's `token_params` and the integration's scopes go along; an answer that is not a token
(HTML, an error object, no `access_token`) is a clear error naming what came back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from pydantic import SecretStr

from orchestrator.errors import OrchestratorError, TransientError
from orchestrator.providers.egress import Egress, EgressRefused
from orchestrator.providers.model import Provider


class ClientRefusedError(OrchestratorError):
    """The token endpoint refused the client (wrong id or secret, a scope it may not have): no retry fixes it."""

    code = "client_credentials_refused"


async def mint(egress: Egress, provider: Provider, token_url: str, client_id: str, client_secret: str, *,
               oauth_scopes: str | None) -> dict[str, Any]:
    """A fresh token: the credentials' fields (`token`, `expires_at`, `raw`) as stored for OAUTH2_CC. The scopes
    are the integration's (`oauth_scopes`, comma or space separated), else the provider's defaults."""
    scopes = oauth_scopes.replace(",", " ").split() if oauth_scopes is not None else provider.default_scopes
    form = {**provider.token_params, "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": client_secret}
    if any(scopes):
        form["scope"] = provider.scope_separator.join(x for x in scopes if x)
    try:
        async with egress.post_outbound(token_url, data=form, headers={"Accept": "application/json"},
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            raw, status = await resp.read(), resp.status
    except EgressRefused as refused:
        raise ClientRefusedError(f"cannot mint a token: {refused}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"token endpoint unreachable: {type(exc).__name__}: {exc}") from None
    if status >= 500 or status == 429:
        raise TransientError(f"token endpoint answered HTTP {status}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        shown = raw[:120].decode(errors="replace").strip()
        raise ClientRefusedError(f"the token endpoint answered HTTP {status} with no token but {shown!r}")
    if status >= 400 or not body.get("access_token"):
        detail = ": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k)) or (
            f"HTTP {status} without access_token")
        raise ClientRefusedError(f"the token endpoint refused the client credentials: {detail}")
    expires_at = None
    try:
        if body.get("expires_in"):
            expires_at = datetime.now(UTC) + timedelta(seconds=int(body["expires_in"]))
    except (TypeError, ValueError):
        expires_at = None
    return {"token": SecretStr(str(body["access_token"])), "expires_at": expires_at, "raw": body}
