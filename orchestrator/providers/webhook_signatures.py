"""Provider webhook signatures: the HMAC header each provider sends, checked against the integration's secret."""

from __future__ import annotations

import base64
import hashlib
import hmac

from orchestrator.errors import InvalidInputError
from orchestrator.providers.catalog import Provider


class SignatureError(InvalidInputError):
    code = "invalid_signature"


class SecretRequiredError(SignatureError):
    """The integration has no signing secret and did not opt in to unsigned webhooks."""

    code = "webhook_secret_required"


def unsigned_refusal(integration: str) -> SecretRequiredError:
    """The error an integration without a secret answers a webhook with: what is wrong and the two ways out."""
    return SecretRequiredError(
        f"integration '{integration}' has no webhook signing secret, so it refuses provider webhooks: set the "
        f"secret the provider signs with (PATCH /integrations/{integration} {{\"webhook_secret\": \"...\"}}), "
        f"or accept unsigned webhooks explicitly (PATCH /integrations/{integration} "
        f"{{\"webhook_accept_unsigned\": true}})")


def verify_signature(secret: str | None, headers: dict[str, str], body: bytes,
                     provider: Provider | None = None, *, integration: str = "",
                     accept_unsigned: bool = False) -> None:
    """Check the provider's HMAC header against the integration's webhook secret.

    Without a secret a webhook is refused (anyone who knows the URL could post one), unless the
    integration explicitly accepts unsigned webhooks (`accept_unsigned`).
    """
    if not secret:
        if accept_unsigned:
            return
        raise unsigned_refusal(integration)
    scheme = provider.webhook if provider else None
    header_name = scheme.signature_header if scheme else "X-Signature-256"
    algorithm = hashlib.sha1 if scheme and scheme.algorithm == "hmac-sha1" else hashlib.sha256
    prefix = scheme.prefix if scheme else ""
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get(header_name.lower())
    if not given:
        raise SignatureError(f"missing webhook signature header {header_name}")
    digest = hmac.new(secret.encode(), body, algorithm)
    base64_encoded = scheme is not None and scheme.encoding == "base64"
    encoded = base64.b64encode(digest.digest()).decode() if base64_encoded else digest.hexdigest()
    expected = prefix + encoded
    # as bytes: compare_digest refuses str with non-ASCII, and a header's non-UTF-8 bytes come as lone surrogates
    if not hmac.compare_digest(given.strip().encode(errors="surrogateescape"), expected.encode()):
        raise SignatureError(f"webhook signature in {header_name} does not match the integration's secret")
