"""The dashboard's signed session cookie and its CSRF token.

The cookie is `base64url(json) . base64url(hmac-sha256)`, keyed by a key derived from
ENCRYPTION_KEY, so it needs no server-side storage and no new dependency. A session made with a
secret key remembers a fingerprint of that key's hash: rotating the key ends the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

import orjson

COOKIE = "nango_dashboard"
LIFETIME_S = 12 * 3600


def derive_key(encryption_key: bytes) -> bytes:
    return hmac.new(encryption_key, b"nango-dashboard-session-v1", hashlib.sha256).digest()


def key_fingerprint(secret_key_hash: str) -> str:
    return hashlib.sha256(secret_key_hash.encode()).hexdigest()[:16]


@dataclass
class Session:
    environment_id: int | None
    admin: bool = False  # logged in with the dashboard password: may pick any environment
    key_fp: str = ""
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    expires: int = field(default_factory=lambda: int(time.time()) + LIFETIME_S)
    flash: str = ""
    flash_error: bool = False

    def check_csrf(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf.encode(), str(token).encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def dump(key: bytes, session: Session) -> str:
    body = _b64(orjson.dumps({"e": session.environment_id, "a": session.admin, "k": session.key_fp,
                              "c": session.csrf, "x": session.expires, "f": session.flash,
                              "fe": session.flash_error}))
    return body + "." + _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def load(key: bytes, cookie: str | None) -> Session | None:
    """The session in a cookie, or None when it is missing, forged, malformed or expired."""
    if not cookie or "." not in cookie:
        return None
    body, _, sig = cookie.partition(".")  # a header's bytes that are not UTF-8 come as lone surrogates: no match
    expected = _b64(hmac.new(key, body.encode(errors="surrogateescape"), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), sig.encode(errors="surrogateescape")):
        return None
    try:
        data = orjson.loads(_unb64(body))
        session = Session(environment_id=data["e"], admin=bool(data["a"]), key_fp=str(data["k"]),
                          csrf=str(data["c"]), expires=int(data["x"]), flash=str(data.get("f") or ""),
                          flash_error=bool(data.get("fe")))
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None
    if session.expires < time.time() or len(session.csrf) < 16:
        return None
    return session
