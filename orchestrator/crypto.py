"""Sealing secrets at rest (credentials, client secrets) with AES-GCM from `cryptography`."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orchestrator.logging import hide

_VERSION = b"\x01"


_FINGERPRINT_LABEL = b"nango-encryption-key-fingerprint-v1"


def key_fingerprint(key: bytes) -> str:
    """Names a key without revealing it: stored in the database so a process with another key refuses to start."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


class Sealer:
    """Encrypts JSON values with one 32-byte key; the nonce travels with the ciphertext.

    During an online key rotation it also holds the previous key: values sealed under it still open
    (AES-GCM's tag tells which key sealed a value), new values are always sealed under the current key.
    """

    def __init__(self, key: bytes, previous: bytes | None = None) -> None:
        if len(key) != 32 or (previous is not None and len(previous) != 32):
            raise ValueError("encryption key must be 32 bytes")
        self._aead = AESGCM(key)
        self._previous = AESGCM(previous) if previous is not None and previous != key else None
        self.fingerprint = key_fingerprint(key)
        self.previous_fingerprint = key_fingerprint(previous) if previous is not None else None

    def seal(self, value: object) -> bytes:
        nonce = os.urandom(12)
        hide(value)  # a secret on its way to rest: no log line of this request or run may show it
        return _VERSION + nonce + self._aead.encrypt(nonce, orjson.dumps(value), None)

    def open(self, blob: bytes) -> object:
        if not blob or blob[:1] != _VERSION:
            raise ValueError("unknown sealed-value version")
        value = orjson.loads(self._decrypt(blob)[0])
        hide(value)  # every log line of the request or run that opened it masks it
        return value

    def reseal(self, blob: bytes) -> bytes | None:
        """The value sealed under the current key, or None when it already is (rotation is idempotent)."""
        if not blob or blob[:1] != _VERSION:
            raise ValueError("unknown sealed-value version")
        plain, current = self._decrypt(blob)
        if current:
            return None
        hide(orjson.loads(plain))
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, None)

    def is_current(self, blob: bytes) -> bool:
        """Whether the value opens with the current key (a rotation's progress check)."""
        try:
            self._aead.decrypt(blob[1:13], blob[13:], None)
        except InvalidTag:
            return False
        return True

    def _decrypt(self, blob: bytes) -> tuple[bytes, bool]:
        nonce, ct = blob[1:13], blob[13:]
        try:
            return self._aead.decrypt(nonce, ct, None), True
        except InvalidTag:
            if self._previous is None:
                raise
        return self._previous.decrypt(nonce, ct, None), False


def hash_secret_key(key: str) -> str:
    """Secret keys are stored hashed; a fast hash is right for 256-bit random keys. A header's bytes that are not
    UTF-8 reach here as lone surrogates (aiohttp decodes with surrogateescape): hashed as they came, they match
    no key."""
    return hashlib.sha256(key.encode(errors="surrogateescape")).hexdigest()


def new_secret_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)
