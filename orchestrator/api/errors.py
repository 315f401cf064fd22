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


JSONRPC_INVALID_REQUEST = -32600


def jsonrpc_refusal(exc: web.HTTPException) -> web.Response:
    """A refusal of a request to the MCP server (missing or wrong key, bad headers, unknown connection) as a
    JSON-RPC error with the same HTTP status, so an MCP client shows its message: `error.message` is where our
    other routes put it, `error.data.code` our error code."""
    try:
        error = orjson.loads(exc.text or "{}").get("error") or {}
    except orjson.JSONDecodeError:
        error = {}
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": JSONRPC_INVALID_REQUEST,
                                                   "message": error.get("message") or exc.reason,
                                                   "data": {"code": error.get("code")}}}
    return web.Response(body=orjson.dumps(body), status=exc.status, content_type="application/json")
