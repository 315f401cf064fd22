"""OAUTH2_CC: minting a token with the client's own id and secret (RFC 6749 section 4.4).

The same call mints a connection's first token (POST /connections, so a connection whose client is refused is
never stored) and every later one (credentials.refresh, before the token expires). The client authenticates in
the form body, the provider's `token_params` and the integration's scopes go along; an answer that is not a token
(HTML, an error object, no `access_token`) is a clear error naming what came back.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from orchestrator.providers.egress import Egress
from orchestrator.providers.model import Provider
from orchestrator.providers.token_endpoint import TokenRefusedError, expiry, request_token


class ClientRefusedError(TokenRefusedError):
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
        body = await request_token(egress, token_url, data=form, what="the client credentials")
    except TokenRefusedError as exc:
        raise ClientRefusedError(exc.message) from None
    return {"token": SecretStr(str(body["access_token"])), "expires_at": expiry(body), "raw": body}
