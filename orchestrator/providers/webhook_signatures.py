"""Provider webhook signatures: the HMAC header each provider sends, checked against the integration's secret."""

from __future__ import annotations

import base64
import hashlib
import hmac

from orchestrator.errors import InvalidInputError
from orchestrator.providers.catalog import Provider


class SignatureError(InvalidInputError):
    code = "invalid_signature"


def verify_signature(secret: str | None, headers: dict[str, str], body: bytes,
                     provider: Provider | None = None) -> None:
    """Check the provider's HMAC header when the integration has a webhook secret."""
    if not secret:
        return
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
    if not hmac.compare_digest(given.strip(), expected):
        raise SignatureError(f"webhook signature in {header_name} does not match the integration's secret")
