"""Nango's functions API (`listFunctions`, `getFunction`, `getFunctionCode`, `getProviderTemplates`) over what
`nango deploy` stored, and a clear 501 for the Nango calls that have no equivalent here.

- `GET /integrations/{key}/functions?type=&search=&page=&limit=` -> `{data: [function], pagination}` (page from 0)
- `GET /integrations/{key}/functions/{name}?type=` -> `{data: function}`; a sync and an action of one name need
  `type` (409 `ambiguous_function` with the matches)
- `GET /integrations/{key}/functions/{name}/code?type=` -> `{type, code}`: the script's module from its bundle
- `GET /providers/{provider}/templates` -> `{data: [function]}`: the functions of the `nango init --template`
  templates for that provider (none is an empty list)

Everything is read within the caller's environment: another environment's integration is unknown (404).
`UNSUPPORTED` lists the Nango calls answered 501 (`error.feature` names the feature, the message says why).
"""

from __future__ import annotations

import asyncio
import io
import re
import zipfile
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from orchestrator.api.common import environment, is_number, iso, json_response
from orchestrator.api.errors import error_body, raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.config.nango_yaml import load_config
from orchestrator.control.events import listed_events
from orchestrator.providers.custom import find_provider
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import DeployedScript

routes = web.RouteTableDef()  # served with integrations.routes

TYPES = {"sync": "sync", "action": "action", "on-event": "event"}  # Nango's function type -> our script kind
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class FunctionList(BaseModel):
    data: list[dict[str, Any]]
    pagination: dict[str, int]


class TemplateList(BaseModel):
    data: list[dict[str, Any]]


class FunctionEnvelope(BaseModel):
    data: dict[str, Any]


class FunctionCode(BaseModel):
    type: str
    code: str


def declared(kind: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A sync, action or event script in Nango's NangoFunction shape, from its nango.yaml entry."""
    if kind == "event":
        # Nango's one `event`; `events` every event the script is listed under (ours may have several)
        return {"name": name, "type": "on-event", "event": config.get("event"), "events": listed_events(config)}
    out: dict[str, Any] = {"name": name, "type": kind, "description": config.get("description"),
                           "scopes": config.get("scopes") or [], "input": config.get("input"), "json_schema": None}
    if kind == "sync":
        return {**out, "returns": list(config.get("output") or []), "runs": config.get("runs"),
                "auto_start": bool(config.get("auto_start", True)),
                "track_deletes": bool(config.get("track_deletes", False))}
    output = config.get("output")
    return {**out, "returns": [output] if output else []}


def listed(script: DeployedScript) -> dict[str, Any]:
    """A deployed script as Nango lists a function: its declaration plus id, on/off, when deployed, source."""
    return {**declared(script.kind, script.name, script.config), "id": script.id, "enabled": script.enabled,
            "last_deployed": iso(script.deployed_at), "source": "repo"}


def _type(request: web.Request) -> str | None:
    raw = request.query.get("type")
    if raw is None or raw == "":
        return None
    if raw not in TYPES:
        raise_error(400, "invalid_query_params", f"type must be one of {', '.join(TYPES)}, got {raw[:40]!r}")
    return TYPES[raw]


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name, "").strip()
    if not raw:
        return default
    if not is_number(raw) or not low <= int(raw) <= high:
        raise_error(400, "invalid_query_params", f"{name} must be an integer from {low} to {high}, got {raw[:20]!r}")
    return int(raw)


async def _scripts(request: web.Request) -> list[DeployedScript]:
    env = environment(request)
    key = request.match_info["unique_key"]
    async with request.app[PLATFORM].pool.acquire() as conn:
        integration = await integrations_repo.get(conn, env.id, key)
        if integration is None:
            raise_error(404, "not_found", f"no integration '{key}' in environment '{env.name}'")
        return await scripts_repo.list_for_integration(conn, integration.id)


async def _one(request: web.Request) -> DeployedScript:
    name, kind = request.match_info["name"], _type(request)
    found = [s for s in await _scripts(request) if s.name == name and (kind is None or s.kind == kind)]
    if not found:
        raise_error(404, "not_found", f"no deployed function '{name}'"
                    + (f" of type {request.query['type']}" if kind else "")
                    + f" in integration '{request.match_info['unique_key']}'")
    if len(found) > 1:
        raise_error(409, "ambiguous_function", f"several functions are named '{name}': pass type",
                    matches=[{"type": declared(s.kind, s.name, s.config)["type"], "name": s.name} for s in found])
    return found[0]


@routes.get("/integrations/{unique_key}/functions")
async def list_functions(request: web.Request) -> web.Response:
    kind = _type(request)
    search = request.query.get("search", "").strip().lower()
    page, limit = _int(request, "page", 0, 0, 1_000_000), _int(request, "limit", 20, 1, 100)
    found = [s for s in await _scripts(request)
             if (kind is None or s.kind == kind) and (not search or search in s.name.lower())]
    return json_response({"data": [listed(s) for s in found[page * limit:(page + 1) * limit]],
                          "pagination": {"total": len(found), "page": page, "limit": limit}})


@routes.get("/integrations/{unique_key}/functions/{name}")
async def get_function(request: web.Request) -> web.Response:
    return json_response({"data": listed(await _one(request))})


@routes.get("/integrations/{unique_key}/functions/{name}/code")
async def get_function_code(request: web.Request) -> web.Response:
    script = await _one(request)
    data = await request.app[PLATFORM].bundles.get(script.bundle_key)

    def read() -> str:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return zf.read(script.module_path).decode("utf-8", errors="replace")
    try:
        code = await asyncio.to_thread(read)
    except KeyError:
        raise_error(404, "not_found", f"the bundle of '{script.name}' has no {script.module_path}")
    return json_response({"type": declared(script.kind, script.name, script.config)["type"], "code": code})


@routes.get("/providers/{name}/templates")
async def provider_templates(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    async with request.app[PLATFORM].pool.acquire() as conn:
        if await find_provider(conn, environment(request).id, name) is None:
            raise_error(404, "unknown_provider", f"no provider '{name}'")
    return json_response({"data": await asyncio.to_thread(_templates_of, name)})


def _templates_of(provider: str) -> list[dict[str, Any]]:
    """The syncs and actions of the bundled templates whose integration is named after `provider`."""
    out: list[dict[str, Any]] = []
    # `init` is the starter project of `nango init`, not a template
    for folder in sorted(p for p in TEMPLATES.iterdir() if p.name != "init" and (p / "nango.yaml").is_file()):
        integration = load_config(folder / "nango.yaml").integrations.get(provider)
        if integration is None:
            continue
        out += [declared("sync", n, s.model_dump(mode="json")) for n, s in integration.syncs.items()]
        out += [declared("action", n, a.model_dump(mode="json")) for n, a in integration.actions.items()]
    return out


# Nango calls with no equivalent here: (method, path pattern) -> (feature, why). Answered 501 by
# the error middleware (`unsupported_answer`), not routes: the OpenAPI document (and its fuzzing) lists only what
# works.
UNSUPPORTED: dict[tuple[str, re.Pattern[str]], tuple[str, str]] = {
    ("DELETE", re.compile(r"/integrations/[^/]+/functions/[^/]+")): (
        "deleting a function", "every function here is managed by `nango deploy` (Nango refuses these too, "
        "function_managed_by_deploy): deploy without it, or switch it off with PATCH /scripts/{integration}/{name}"),
    ("POST", re.compile(r"/integrations/quickstart")): (
        "quickstart integrations", "they borrow Nango Cloud's own OAuth apps, which a self-hosted server does not "
        "have: create the integration with your app's credentials (POST /integrations)"),
}


def unsupported(feature: str, why: str) -> web.HTTPException:
    """501 with Nango's error envelope, naming the feature and why it has no equivalent here."""
    return web.HTTPNotImplemented(text=error_body("not_implemented", f"{feature} is not supported here: {why}",
                                                  feature=feature), content_type="application/json")


def unsupported_answer(request: web.Request) -> web.HTTPException | None:
    """The 501 for a request no route took that names a Nango feature we lack (else None: a plain 404/405)."""
    if request.match_info.http_exception is None:
        return None
    for (method, pattern), (feature, why) in UNSUPPORTED.items():
        if request.method == method and pattern.fullmatch(request.path):
            return unsupported(feature, why)
    return None
