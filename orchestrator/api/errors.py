"""The error envelope Nango clients expect: {"error": {"code", "message", ...}}."""

from __future__ import annotations

from typing import Any, NoReturn

import orjson
from aiohttp import web


def error_body(code: str, message: str, **extra: Any) -> str:
    return orjson.dumps({"error": {"code": code, "message": message, **extra}}).decode()


def raise_error(status: int, code: str, message: str, **extra: Any) -> NoReturn:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
           405: web.HTTPMethodNotAllowed, 409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge,
           422: web.HTTPUnprocessableEntity, 500: web.HTTPInternalServerError,
           502: web.HTTPBadGateway, 503: web.HTTPServiceUnavailable}.get(status, web.HTTPBadRequest)
    if cls is web.HTTPMethodNotAllowed:
        raise web.HTTPBadRequest(text=error_body(code, message, **extra), content_type="application/json")
    if cls is web.HTTPRequestEntityTooLarge:  # its constructor wants the sizes; the message already says them
        raise cls(0, 0, text=error_body(code, message, **extra), content_type="application/json")
    raise cls(text=error_body(code, message, **extra), content_type="application/json")
