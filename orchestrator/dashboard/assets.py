"""The dashboard's static files (stylesheet, script, icon), read once at setup and served from memory."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from orchestrator.dashboard.frame import ASSETS, Router

routes = web.RouteTableDef()
route = Router(routes)

CONTENT_TYPES = {".css": "text/css", ".js": "application/javascript", ".svg": "image/svg+xml"}


def load() -> dict[str, bytes]:
    """Every file of `static/`, by name: the package ships them, so they never change while it runs."""
    folder = resources.files("orchestrator.dashboard") / "static"
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}


@route.public("GET", "/static/dashboard/{name}")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = request.app[ASSETS].get(name)
    if body is None:
        raise web.HTTPNotFound()
    ext = name[name.rfind("."):]
    return web.Response(body=body, content_type=CONTENT_TYPES.get(ext, "application/octet-stream"),
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})
