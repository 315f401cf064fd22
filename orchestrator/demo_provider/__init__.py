"""Local stand-in for a slice of GitHub's REST API, used by tests and ``make run``.

Besides Bearer tokens, the API routes (``/user``, ``/repos/{o}/{r}/issues``, ...) accept credentials of
other auth modes, verified by oauthlib and joserfc in ``auth_modes.py`` (independently of the platform):
- OAuth 1.0a (HMAC-SHA1, PLAINTEXT; consumer = ``DemoState.client_id``/``client_secret``):
  ``POST /oauth1/request_token``, ``GET /oauth1/authorize?oauth_token=`` (auto-approves; ``denied=`` when
  ``deny_next_authorization``), ``POST /oauth1/access_token``, then ``Authorization: OAuth ...``;
- NetSuite TBA (HMAC-SHA256, ``realm`` = account id): tokens from ``POST /_admin/tba_tokens``, a second
  consumer from ``POST /_admin/tba_consumers``;
- GitHub App: ``POST /_admin/apps``, ``GET /apps/{slug}/installations/new``,
  ``POST /app/installations/{id}/access_tokens`` (Bearer app JWT, RS256) -> a ``ghs_`` Bearer token;
- JWT: keys from ``POST /_admin/jwt_keys``; ``Authorization: Bearer|Ghost <jwt>`` directly, or
  ``POST /oauth2/jwt_token`` (RFC 7523 jwt-bearer grant) -> a Bearer token.
``GET /_admin/auth_log`` (and ``auth_scheme`` in ``/_admin/requests``) tells which scheme each call was
accepted as: ``bearer``, ``oauth1``, ``tba`` or ``jwt``.
"""

from orchestrator.demo_provider.app import (
    STATE,
    DemoGone,
    DemoNotFound,
    DemoState,
    DemoValidationError,
    WebhookEvent,
    create_app,
    serve,
    sign_webhook,
)

__all__ = [
    "STATE",
    "DemoGone",
    "DemoNotFound",
    "DemoState",
    "DemoValidationError",
    "WebhookEvent",
    "create_app",
    "serve",
    "sign_webhook",
]
