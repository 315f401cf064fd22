"""OAuth 1.0 request signing (RFC 5849 section 3), for OAUTH1 and TBA connections.

Every request to the provider is signed for its own method, URL and form body: the signature base string is the
method, the base URI (scheme and host lower-cased, default port dropped, no query) and the sorted, encoded
parameters (query, form body, `oauth_*`), each part percent-encoded as RFC 3986 says (only unreserved characters
kept). The key is the consumer secret and the token secret, encoded and joined by `&`. Written from the RFC with
the standard library; the demo provider checks it with oauthlib, an independent implementation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, urlsplit

SignatureMethod = str  # "HMAC-SHA1" | "HMAC-SHA256" | "PLAINTEXT"
FORM = "application/x-www-form-urlencoded"


def encode(value: str) -> str:
    """RFC 5849 3.6: percent-encode everything but ALPHA, DIGIT, '-', '.', '_' and '~' (UTF-8 first)."""
    return quote(value, safe="-._~")


def base_uri(url: str) -> str:
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    if port is not None and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path or '/'}"


def base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    pairs = sorted((encode(k), encode(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join((method.upper(), encode(base_uri(url)), encode(normalized)))


def signature(method_name: SignatureMethod, text: str, consumer_secret: str, token_secret: str) -> str:
    key = f"{encode(consumer_secret)}&{encode(token_secret)}"
    if method_name == "PLAINTEXT":
        return key
    digest = {"HMAC-SHA1": hashlib.sha1, "HMAC-SHA256": hashlib.sha256}.get(method_name)
    if digest is None:
        raise ValueError(f"unsupported OAuth 1.0 signature method {method_name!r}")
    return base64.b64encode(hmac.new(key.encode(), text.encode(), digest).digest()).decode()


def authorization(method: str, url: str, *, consumer_key: str, consumer_secret: str, token: str | None = None,
                  token_secret: str = "", signature_method: SignatureMethod = "HMAC-SHA1",
                  realm: str | None = None, body: bytes | None = None, content_type: str = "",
                  extra: dict[str, str] | None = None) -> str:
    """The `Authorization: OAuth ...` header for one request. `extra` adds protocol parameters of a step of the
    three-legged flow (`oauth_callback`, `oauth_verifier`); a form-encoded body's parameters are signed too."""
    oauth = {"oauth_consumer_key": consumer_key, "oauth_signature_method": signature_method,
             "oauth_timestamp": str(int(time.time())), "oauth_nonce": secrets.token_hex(16),
             "oauth_version": "1.0", **(extra or {})}
    if token:
        oauth["oauth_token"] = token
    params = list(oauth.items()) + parse_qsl(urlsplit(url).query, keep_blank_values=True)
    if body and content_type.split(";", 1)[0].strip().lower() == FORM:
        params += parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    oauth["oauth_signature"] = signature(signature_method, base_string(method, url, params), consumer_secret,
                                         token_secret)
    fields = ([f'realm="{realm}"'] if realm is not None else []) + [
        f'{encode(k)}="{encode(v)}"' for k, v in oauth.items()]
    return "OAuth " + ", ".join(fields)


def tba_realm(account_id: str) -> str:
    """NetSuite's realm: the account id upper-cased with `_` where its host form has `-` (1234567-sb1 ->
    1234567_SB1)."""
    return account_id.replace("-", "_").upper()
