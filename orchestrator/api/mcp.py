"""The MCP server at `POST /mcp` (Streamable HTTP, stateless, JSON answers), built on the official `mcp` SDK.

As Nango's: `Authorization: Bearer <environment secret key>` (the API's auth middleware, like every route),
the connection named by the `connection-id` and `provider-config-key` headers, its integration's enabled
actions as tools. The connection is looked up in the caller's environment before the SDK sees the request,
so another environment's connection answers 404 like everywhere else. A tool call runs the action through
`actions.execute_action`, the path of `POST /action/trigger` (same job, logs, retries, limits);
`X-Max-Retries` is read as there. A failed action (bad input, ActionError, crash) is a tool result with
`isError` and the same error body the REST route answers, never a protocol error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import orjson
from aiohttp import web
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict

from orchestrator.api.actions import answer, execute_action
from orchestrator.api.asgi import serve_asgi
from orchestrator.api.common import connection_headers, int_header, load_connection
from orchestrator.api.errors import jsonrpc_refusal
from orchestrator.api.keys import PLATFORM
from orchestrator.api.middleware import MCP_PATH
from orchestrator.api.scripts import Tool, action_tool
from orchestrator.api.unified import deployed_models
from orchestrator.config.nango_yaml import NangoConfig
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Connection, DeployedScript

routes = web.RouteTableDef()

PATH = MCP_PATH
CALLER = "nango.caller"  # the ASGI scope key the tool handlers find the caller under
MANAGER = web.AppKey("mcp_manager", StreamableHTTPSessionManager)
MODELS = web.AppKey("mcp_models", dict[str, NangoConfig])  # bundle key -> its parsed models
MODELS_CACHED = 64


class JsonRpcMessage(BaseModel):
    """What a client posts to /mcp (for the OpenAPI document; the SDK validates the messages themselves)."""

    model_config = ConfigDict(extra="allow")
    jsonrpc: str = "2.0"
    id: int | str | None = None
    method: str
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class Caller:
    """Who asks: the aiohttp request (authenticated by the middleware) and the connection its headers name."""

    request: web.Request
    integration: str
    connection_id: str
    connection: Connection
    max_retries: int


def _caller(ctx: ServerRequestContext[Any, Any]) -> Caller:
    scope = getattr(ctx.request, "scope", None) or {}
    caller = scope.get(CALLER)
    if not isinstance(caller, Caller):  # only /mcp reaches the SDK, always with a caller: fail closed
        raise MCPError(types.INVALID_REQUEST, "no connection resolved for this request")
    return caller


async def _models(app: web.Application, scripts: list[DeployedScript]) -> NangoConfig:
    """The integration's deployed models, read once per bundle: bundle keys are content-addressed, and every
    tools/list and tools/call needs them."""
    if not scripts:
        return NangoConfig()
    newest = max(scripts, key=lambda s: s.deployed_at)
    cache = app[MODELS]
    if newest.bundle_key not in cache:
        found = (await deployed_models(app, [newest])).get(newest.integration_key)
        if found is None:  # unreadable bundle (logged): tools without their models, and no caching of that
            return NangoConfig()
        while len(cache) >= MODELS_CACHED:
            cache.pop(next(iter(cache)))
        cache[newest.bundle_key] = found
    return cache[newest.bundle_key]


async def _tools(caller: Caller) -> dict[str, Tool]:
    """The connection's integration's enabled actions as tools, by name."""
    app = caller.request.app
    async with app[PLATFORM].pool.acquire() as conn:
        scripts = [s for s in await scripts_repo.list_for_integration(conn, caller.connection.integration_id)
                   if s.kind == "action" and s.enabled]
    models = await _models(app, scripts)
    return {s.name: action_tool(s, models) for s in sorted(scripts, key=lambda s: s.name)}


async def _list_tools(ctx: ServerRequestContext[Any, Any],
                      params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    tools = await _tools(_caller(ctx))
    return types.ListToolsResult(tools=[types.Tool(name=name, description=t.description, input_schema=t.parameters)
                                        for name, t in tools.items()])


def _text(value: Any) -> types.TextContent:
    return types.TextContent(text=orjson.dumps(value).decode())


async def _call_tool(ctx: ServerRequestContext[Any, Any],
                     params: types.CallToolRequestParams) -> types.CallToolResult:
    caller = _caller(ctx)
    tool = (await _tools(caller)).get(params.name)
    if tool is None:
        raise MCPError(types.INVALID_PARAMS, f"no tool '{params.name}': no enabled action of that name is deployed "
                       f"for integration '{caller.integration}'")
    try:
        run = await execute_action(caller.request, caller.integration, caller.connection_id, params.name,
                                   tool.action_input(params.arguments), max_retries=caller.max_retries)
    except web.HTTPException as exc:  # the action went away between the listing and the call
        return types.CallToolResult(content=[types.TextContent(text=exc.text or exc.reason)], is_error=True)
    if run.failed is not None:
        failure = answer(run.failed)
        body = failure.body if isinstance(failure.body, bytes) else b"{}"
        return types.CallToolResult(content=[types.TextContent(text=body.decode())],
                                    structured_content=orjson.loads(body), is_error=True)
    structured = run.output if isinstance(run.output, dict) else None
    return types.CallToolResult(content=[_text(run.output)], structured_content=structured)


def _server() -> Server[Any]:
    server: Server[Any] = Server("nango", version="1", on_list_tools=_list_tools, on_call_tool=_call_tool,
                                 instructions="Tools are the actions deployed for the connection named by the "
                                              "connection-id and provider-config-key headers.")
    server.middleware.clear()  # the SDK's own OpenTelemetry spans would carry tool arguments; ours do not
    return server


async def running(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the SDK's session manager, run in a task of its own (its anyio task group must be
    entered and left in one task; aiohttp's start-up and clean-up may run in different ones)."""
    manager = StreamableHTTPSessionManager(_server(), json_response=True, stateless=True)
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with manager.run():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run(), name="mcp-session-manager")
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # raises why it could not start
    app[MANAGER] = manager
    app[MODELS] = {}
    try:
        yield
    finally:
        stop.set()
        await task


@routes.post(PATH)
async def mcp(request: web.Request) -> web.StreamResponse:
    try:
        integration, connection_id = connection_headers(request)
        connection = await load_connection(request, integration, connection_id)
        max_retries = int_header(request, "X-Max-Retries", 5)
    except web.HTTPException as exc:
        return jsonrpc_refusal(exc)
    caller = Caller(request, integration, connection_id, connection, max_retries)
    return await serve_asgi(request.app[MANAGER].handle_request, request, {CALLER: caller})


def setup(app: web.Application) -> None:
    """Serve `/mcp` from `app`: its route and the session manager's cleanup context."""
    app.cleanup_ctx.append(running)
    app.add_routes(routes)
