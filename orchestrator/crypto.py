"""Sealing secrets at rest (credentials, client secrets) with AES-GCM from `cryptography`."""

from __future__ import annotations

import hashlib
import os
import secrets

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orchestrator.logging import hide

_VERSION = b"\x01"


class Sealer:
    """Encrypts JSON values with one 32-byte key; the nonce travels with the ciphertext."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("encryption key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, value: object) -> bytes:
        nonce = os.urandom(12)
        hide(value)  # a secret on its way to rest: no log line of this request or run may show it
        return _VERSION + nonce + self._aead.encrypt(nonce, orjson.dumps(value), None)

    def open(self, blob: bytes) -> object:
        if not blob or blob[:1] != _VERSION:
            raise ValueError("unknown sealed-value version")
        nonce, ct = blob[1:13], blob[13:]
        value = orjson.loads(self._aead.decrypt(nonce, ct, None))
        hide(value)  # every log line of the request or run that opened it masks it
        return value


def hash_secret_key(key: str) -> str:
    """Secret keys are stored hashed; a fast hash is right for 256-bit random keys."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_secret_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)
