"""One aiohttp request served by an ASGI app: the MCP SDK's Streamable HTTP transport is ASGI, our server is not.

The request body is read whole (aiohttp's `client_max_size` bounds it) and handed over as one message; the
app's response is streamed back as it comes, so a server-sent event stream works too. `extra` goes into the
ASGI scope: how the app's handlers reach the aiohttp request and what our middlewares already resolved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def _scope(request: web.Request, extra: dict[str, Any]) -> dict[str, Any]:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}", "method": request.method,
        "scheme": request.scheme, "path": request.path, "raw_path": request.rel_url.raw_path.encode(),
        "query_string": request.query_string.encode(), "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None, "server": None, "state": {}, **extra,
    }


async def serve_asgi(app: ASGIApp, request: web.Request, extra: dict[str, Any]) -> web.StreamResponse:
    """Run `app` for `request` and return what it answered (a 500 if it answered nothing)."""
    body = await request.read()
    done = asyncio.Event()
    sent_body = False
    response: web.StreamResponse | None = None

    async def receive() -> Message:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # an app that listens for the client going away hears it once the answer is over
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            response = web.StreamResponse(status=message["status"])
            for name, value in message.get("headers") or []:
                response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
        elif message["type"] == "http.response.body" and response is not None and not done.is_set():
            if not response.prepared:
                await response.prepare(request)
            if message.get("body"):
                await response.write(message["body"])
            if not message.get("more_body", False):
                await response.write_eof()
                done.set()

    try:
        await app(_scope(request, extra), receive, send)
    finally:
        done.set()
    if response is None:
        return web.json_response({"error": {"code": "server_error", "message": "the MCP server gave no answer"}},
                                 status=500)
    if not response.prepared:  # started but no body message: an empty answer
        await response.prepare(request)
        await response.write_eof()
    return response
