"""A connection's first token, for the modes whose token the platform mints (OAUTH2_CC, APP, JWT).

Minted before anything is stored, so a refused client, a malformed private key or a token endpoint that answers
HTML leaves no half-made connection: the caller gets the reason and nothing is written. Later tokens come from
credentials.refresh through the same calls.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import InvalidInputError
from orchestrator.platform import Platform
from orchestrator.providers import client_credentials, jwt_auth
from orchestrator.providers.egress import strict_egress
from orchestrator.providers.model import Provider, token_url
from orchestrator.store.types import AppCredentials, Credentials, JwtCredentials, OAuth2ClientCredentials

MINTED_MODES = ("OAUTH2_CC", "APP", "JWT")


async def first_credentials(platform: Platform, provider: Provider, settings: Any, integration_key: str,
                            given: dict[str, Any], connection_config: dict[str, Any]) -> Credentials:
    """The credentials of a new connection of a minted mode (`given['type']`), its first token included.

    `settings` is the integration's row (integrations_repo.settings): its OAuth app is the OAUTH2_CC client
    unless `given` names one, and the APP's app id and private key. Raises InvalidInputError (what is
    missing or unusable), TokenRefusedError (the provider said no) or TransientError (it could not say)."""
    kind = str(given.get("type", "")).upper()
    if provider.auth_mode != kind:
        raise InvalidInputError(f"integration '{integration_key}' uses {provider.auth_mode}, not {kind} (its "
                                f"provider is '{provider.name}')")
    egress = platform.egress or strict_egress()
    url = token_url(provider, connection_config)
    if kind == "JWT":
        fields = {k: v for k, v in given.items() if k not in ("type", "token", "expires_at")}
        missing = [name for name in provider.credentials if not fields.get(name)]
        if missing:
            raise InvalidInputError(f"a {provider.name} connection needs credentials.{', credentials.'.join(missing)}"
                                    f" ({'; '.join(f'{m}: {provider.credentials[m]}' for m in missing)})")
        if url:
            return JwtCredentials(**fields, **await jwt_auth.exchange(egress, provider, url, fields,
                                                                      connection_config))
        jwt_auth.sign(provider, fields, connection_config)   # the key is checked now, not at the first request
        return JwtCredentials(**fields)
    if not url:
        raise InvalidInputError(f"provider '{provider.name}' has no token URL")
    if kind == "APP":
        if settings is None or not settings["oauth_client_id"] or not settings["oauth_client_secret"]:
            raise InvalidInputError(f"integration '{integration_key}' has no app_id and private_key; set them with "
                                    "PATCH /integrations/{key} (credentials: {type: APP, app_id, app_link, "
                                    "private_key})")
        key = str(platform.sealer.open(settings["oauth_client_secret"]))
        return AppCredentials(**await jwt_auth.installation_token(egress, url, settings["oauth_client_id"], key))
    client_id = given.get("client_id") or (settings["oauth_client_id"] if settings is not None else None)
    client_secret = given.get("client_secret") or (
        str(platform.sealer.open(settings["oauth_client_secret"]))
        if settings is not None and settings["oauth_client_secret"] else None)
    if not client_id or not client_secret:
        raise InvalidInputError("an OAUTH2_CC connection needs credentials.client_id and client_secret, or an "
                                f"OAuth app on integration '{integration_key}'")
    fields = await client_credentials.mint(egress, provider, url, str(client_id), str(client_secret),
                                           oauth_scopes=settings["oauth_scopes"] if settings is not None else None)
    # the integration's secret is not copied into the connection (a script's get_connection shows its
    # credentials): an empty one says "the integration's", read from the integration when minting again
    own_secret = str(client_secret) if given.get("client_secret") else ""
    return OAuth2ClientCredentials(client_id=str(client_id), client_secret=own_secret, **fields)
