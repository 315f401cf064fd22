"""Request context, authentication and the one place errors become JSON."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import aiohttp.http_exceptions
import asyncpg
import pydantic
import structlog
from aiohttp import web

from orchestrator.api import functions
from orchestrator.api.errors import error_body, jsonrpc_refusal, raise_error
from orchestrator.api.keys import ENVIRONMENT, PLATFORM
from orchestrator.errors import InvalidInputError, NotFoundError, OrchestratorError
from orchestrator.logging import clear_hidden, hide
from orchestrator.store import environments as environments_repo
from orchestrator.store import faults

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# /admin/ is authorized by the admin key, in orchestrator/api/environments.py.
# /api-auth/, /connect/ws, /connect/ui and /connect/session are authorized by the connect session token
# (api/frontend.py, api/connect_ui.py).
PUBLIC_PREFIXES = ("/health", "/webhook/", "/oauth/", "/static/", "/dashboard", "/favicon.ico", "/admin/",
                   "/api-auth/", "/auth/tba/", "/auth/jwt/", "/oauth2/auth/", "/connect/ws", "/connect/ui")
# (the frontend SDK's credential routes above check the connect session token, or a secret key, themselves)
# exactly: /connect/sessions needs the secret key; /metrics is Prometheus' (METRICS_ENABLED)
PUBLIC_PATHS = ("/", "/openapi.json", "/connect/session", "/metrics")


def _is_public(request: web.Request) -> bool:
    path = request.path
    return path in PUBLIC_PATHS or any(path.startswith(p) for p in PUBLIC_PREFIXES)


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    structlog.contextvars.clear_contextvars()
    clear_hidden()  # a keep-alive connection serves several requests in one task: start each afresh
    structlog.contextvars.bind_contextvars(request_id=request.headers.get("X-Request-Id") or uuid.uuid4().hex[:12],
                                           method=request.method, path=request.path)
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type != "application/json" and exc.status >= 400:
            if (unsupported := functions.unsupported_answer(request)) is not None:
                raise unsupported from None  # a Nango feature we lack: 501 naming it, not a bare 404
            code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status, "http_error")
            # a Response, not type(exc)(...): some exceptions' constructors need more (405: method and allowed
            # methods; 413: sizes)
            return web.Response(status=exc.status, text=error_body(code, exc.reason or code),
                                content_type="application/json",
                                headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"})
        raise
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise_error(400, "invalid_body", f"{where}: {first.get('msg')}",
                    errors=[{"path": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                            for e in exc.errors()[:20]])
    except aiohttp.http_exceptions.HttpProcessingError as exc:
        # a malformed body the handler tried to parse (multipart part headers, chunking, ...)
        raise_error(400, "invalid_request", f"malformed request: {exc.message or type(exc).__name__}")
    except asyncpg.DataError as exc:
        # a value PostgreSQL cannot store or compare (NUL in text or JSON, out-of-range number): the caller's input
        raise_error(400, "invalid_request", f"a value in the request cannot be used: {type(exc).__name__}")
    except NotFoundError as exc:
        raise_error(404, exc.code, exc.message)
    except InvalidInputError as exc:
        raise_error(400, exc.code, exc.message)
    except OrchestratorError as exc:
        log.warning("request_failed", error=exc.message, code=exc.code)
        raise_error(500 if exc.terminal else 503, exc.code, exc.message)
    except Exception as exc:
        if database_unavailable(exc):
            retry_after = request.app[PLATFORM].settings.api_retry_after_s
            log.warning("database_unavailable", error=type(exc).__name__, retry_after_s=retry_after)
            raise web.HTTPServiceUnavailable(
                text=error_body("database_unavailable", "the database is unavailable; retry in a few seconds",
                                retry_after_s=retry_after),
                content_type="application/json", headers={"Retry-After": str(retry_after)}) from None
        log.exception("unhandled_error")
        raise_error(500, "server_error", f"internal error ({type(exc).__name__}); see the server log")


def database_unavailable(exc: BaseException) -> bool:
    """A fault of PostgreSQL's availability (not of the request): a dropped or refused connection, a server
    starting or shutting down, a pool that cannot connect. A bare OSError or timeout counts only when
    raised from inside asyncpg (the pool connecting), not from a provider or the bundle store."""
    if faults.is_database_error(exc):
        return faults.is_transient(exc)
    if isinstance(exc, OSError | TimeoutError):
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_globals.get("__name__", "").startswith("asyncpg"):
                return True
            tb = tb.tb_next
    return False


MCP_PATH = "/mcp"  # its refusals are JSON-RPC errors, which an MCP client shows (api/mcp.py)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_public(request):
        return await handler(request)
    if request.path == MCP_PATH:
        try:
            return await _authenticated(request, handler)
        except web.HTTPUnauthorized as exc:
            return jsonrpc_refusal(exc)
    return await _authenticated(request, handler)


async def _authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    hide(key.strip())  # the caller's secret key: masked in every line of this request, whatever raises
    if scheme.lower() != "bearer" or not key.strip():
        raise_error(401, "missing_auth_header", "Authentication failed: send 'Authorization: Bearer <secret key>'")
    async with request.app[PLATFORM].pool.acquire() as conn:
        env = await environments_repo.by_secret_key(conn, key.strip())
    if env is None:
        raise_error(401, "unknown_account", "Authentication failed: the secret key is not valid")
    request[ENVIRONMENT] = env
    structlog.contextvars.bind_contextvars(environment=env.name)
    return await handler(request)
