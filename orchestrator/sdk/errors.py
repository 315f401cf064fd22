"""Errors scripts raise or see. Plain exceptions: the child imports nothing else."""

from __future__ import annotations

from typing import Any


class ActionError(Exception):
    """Raise from an action to answer the caller with 400 and this payload."""

    def __init__(self, payload: Any = None) -> None:
        super().__init__(payload if isinstance(payload, str) else repr(payload))
        self.payload = payload


class NangoError(Exception):
    """A platform call made by the script failed; `type` says which kind of failure."""

    def __init__(self, type: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.details = details


class HttpError(NangoError):
    """An upstream API answered with an error status (after any retries the script asked for)."""

    def __init__(self, message: str, status: int, data: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__("http_error", message, status=status)
        self.status = status
        self.data = data
        self.headers = headers or {}
