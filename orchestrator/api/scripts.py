"""Switching deployed syncs and actions on and off (orchestrator.control.scripts does the work).

`GET /scripts` lists them with their switch; `PATCH /scripts/{integration}/{name}` with
`{"enabled": false}` disables one (its schedules are paused then removed, its endpoint answers
404), `{"enabled": true}` enables it again. `kind` (sync|action) is needed only when a sync and an
action share a name.

`GET /scripts/config` describes them as Nango does (`getScriptsConfig()`): per integration its syncs,
actions and event scripts with their models as JSON Schema; `?format=openai` lists the enabled actions as
OpenAI-style tool definitions, the same tools the MCP server (api/mcp.py) offers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from orchestrator.api.common import environment, iso, json_body, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.api.unified import deployed_models
from orchestrator.config.jsonschema import all_model_schemas, type_schema
from orchestrator.config.nango_yaml import NangoConfig
from orchestrator.control import scripts as scripts_control
from orchestrator.control.events import listed_events
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import DeployedScript

routes = web.RouteTableDef()


class SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    kind: Literal["sync", "action"] | None = None


@routes.get("/scripts")
async def list_scripts(request: web.Request) -> web.Response:
    integration = request.query.get("provider_config_key") or None
    rows = await scripts_control.list_scripts(request.app[PLATFORM].pool, environment(request), integration)
    return json_response({"scripts": rows})


@routes.patch("/scripts/{integration}/{name}")
async def switch_script(request: web.Request) -> web.Response:
    body = SwitchBody.model_validate(await json_body(request))
    app = request.app
    result = await scripts_control.switch(
        app[PLATFORM], environment(request), request.match_info["integration"],
        request.match_info["name"], body.enabled, body.kind)
    return json_response(result.as_dict())


# --------------------------------------------------------------------------- GET /scripts/config

FORMATS = ("nango", "openai")
KIND_KEYS = {"sync": "syncs", "action": "actions", "event": "on-events"}


def _refs(schema: Any) -> set[str]:
    """Model names a schema points at (`#/definitions/<name>` or `#/$defs/<name>`)."""
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[-1]} if isinstance(schema.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


def _closure(schemas: dict[str, dict[str, Any]], roots: set[str]) -> dict[str, dict[str, Any]]:
    """The named schemas and every schema they reach, by name."""
    out: dict[str, dict[str, Any]] = {}
    todo = [r for r in roots if r in schemas]
    while todo:
        name = todo.pop()
        if name not in out:
            out[name] = schemas[name]
            todo.extend(r for r in _refs(out[name]) if r in schemas and r not in out)
    return dict(sorted(out.items()))


def _expressions(script: DeployedScript) -> list[str]:
    """The type expressions a script's input and output are written in."""
    config = script.config
    outputs = config.get("output") or []
    exprs = [config.get("input"), *(outputs if isinstance(outputs, list) else [outputs])]
    return [e for e in exprs if isinstance(e, str) and e]


def script_json_schema(script: DeployedScript, cfg: NangoConfig) -> dict[str, Any] | None:
    """The models a script reads and writes, as Nango's `json_schema`: `{"definitions": {name: schema}}`."""
    models = set(cfg.models)
    roots = set().union(*(_refs(type_schema(e, models)) for e in _expressions(script)))
    found = _closure(all_model_schemas(cfg, lambda n: f"#/definitions/{n}"), roots)
    return {"definitions": found} if found else None


def _nango_script(script: DeployedScript, cfg: NangoConfig) -> dict[str, Any]:
    """One script in Nango's NangoSyncConfig shape."""
    config = script.config
    output = config.get("output")
    returns = output if isinstance(output, list) else [output] if output else []
    entry: dict[str, Any] = {
        "id": script.id, "name": script.name, "type": script.kind, "runs": config.get("runs"),
        "returns": returns, "description": config.get("description") or "",
        "track_deletes": bool(config.get("track_deletes", False)),
        "auto_start": bool(config.get("auto_start", script.kind == "sync")), "attributes": {},
        "scopes": config.get("scopes") or [], "version": config.get("version") or str(script.version),
        "is_public": False, "pre_built": False,
        "endpoints": [{"method": e.get("method") or "GET", "path": e.get("path"), "group": e.get("group")}
                      for e in config.get("endpoints") or [] if isinstance(e, dict)],
        "input": config.get("input") or None, "enabled": script.enabled,
        "last_deployed": iso(script.deployed_at),
        "webhookSubscriptions": config.get("webhook_subscriptions") or [],
        "json_schema": script_json_schema(script, cfg), "sdk_version": None, "features": [],
    }
    if script.kind == "sync":
        entry["sync_type"] = config.get("sync_type") or "full"
    if script.kind == "event":
        entry["event"] = config.get("event")
    return entry


def _nango_scripts(script: DeployedScript, cfg: NangoConfig) -> list[dict[str, Any]]:
    """A script's entries: one per event for an event script (Nango keeps one on-event row per event)."""
    entry = _nango_script(script, cfg)
    if script.kind != "event":
        return [entry]
    return [{**entry, "event": event} for event in listed_events(script.config)] or [entry]


_PARAM_LINE = re.compile(r"^\s*[-*]\s*`?([A-Za-z_][\w.-]*)`?\s*:\s*(.+?)\s*$")


@dataclass(frozen=True)
class Tool:
    """An enabled action offered as a tool: what `?format=openai` and the MCP server list. `wrapped` says its
    input is not an object, so callers pass it as the tool's one argument `input`."""

    script: DeployedScript
    description: str
    parameters: dict[str, Any]
    wrapped: bool

    def action_input(self, arguments: dict[str, Any] | None) -> Any:
        """The action's input from a tool call's arguments (None for an action that takes none)."""
        if not self.script.config.get("input"):
            return None
        return (arguments or {}).get("input") if self.wrapped else (arguments or {})

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.script.name, "description": self.description,
                                                 "parameters": self.parameters}}


def action_tool(script: DeployedScript, cfg: NangoConfig) -> Tool:
    """An action as a tool: its input's JSON Schema as the parameters (an object; a model's fields described
    by the description's `- field: text` lines, as Nango reads them), self-contained through `$defs`."""
    description = script.config.get("description") or f"Run the action {script.name} of {script.integration_key}"
    expr = script.config.get("input")
    if not expr:
        return Tool(script, description, {"type": "object", "properties": {}}, False)
    models = set(cfg.models)
    schemas = all_model_schemas(cfg, lambda n: f"#/$defs/{n}")
    root = type_schema(expr, models, lambda n: f"#/$defs/{n}")
    name = root.get("$ref", "").rsplit("/", 1)[-1] if set(root) == {"$ref"} else None
    wrapped = name not in schemas and root.get("type") != "object"
    if name in schemas:
        root = {k: v for k, v in schemas[name].items() if k not in ("title", "x-nango-extends")}
    params = {"type": "object", "properties": {"input": root}, "required": ["input"]} if wrapped else dict(root)
    lines = (_PARAM_LINE.match(line) for line in description.splitlines())
    hints = {m.group(1): m.group(2) for m in lines if m}
    props = params.get("properties") or {}
    params["properties"] = {k: {**v, "description": hints[k]} if k in hints and isinstance(v, dict) else v
                            for k, v in props.items()}
    defs = _closure(schemas, _refs(params))
    if defs:
        params["$defs"] = defs
    return Tool(script, description, params, wrapped)


async def environment_scripts(app: web.Application, env_id: int, env_name: str, integration: str | None
                              ) -> tuple[list[DeployedScript], dict[str, str], dict[str, NangoConfig]]:
    """The environment's deployed scripts (one integration's with `integration`), its integrations' providers,
    and each integration's deployed models (from its newest bundle)."""
    async with app[PLATFORM].pool.acquire() as conn:
        integrations = {i.unique_key: i.provider for i in await integrations_repo.list_all(conn, env_id)}
        if integration is not None and integration not in integrations:
            raise_error(404, "unknown_provider_config", f"no integration '{integration}' in environment "
                        f"'{env_name}'; integrations: {', '.join(sorted(integrations)) or 'none'}")
        scripts = [s for s in await scripts_repo.list_for_environment(conn, env_id)
                   if s.kind in KIND_KEYS and (integration is None or s.integration_key == integration)]
    return scripts, integrations, await deployed_models(app, scripts)


def _nango_format(scripts: list[DeployedScript], providers: dict[str, str],
                  models: dict[str, NangoConfig]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for script in sorted(scripts, key=lambda s: (s.integration_key, s.name)):
        key = script.integration_key
        entry = out.setdefault(key, {"providerConfigKey": key, "provider": providers.get(key, key),
                                     "syncs": [], "actions": [], "on-events": []})
        entry[KIND_KEYS[script.kind]].extend(_nango_scripts(script, models.get(key) or NangoConfig()))
    return list(out.values())


@routes.get("/scripts/config")
async def scripts_config(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "nango")
    if fmt not in FORMATS:
        raise_error(400, "invalid_query_params", f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    env = environment(request)
    scripts, providers, models = await environment_scripts(
        request.app, env.id, env.name, request.query.get("provider_config_key") or None)
    if fmt == "openai":
        tools = [action_tool(s, models.get(s.integration_key) or NangoConfig())
                 for s in sorted(scripts, key=lambda s: (s.integration_key, s.name))
                 if s.kind == "action" and s.enabled]
        return json_response({"data": [t.openai() for t in tools]})
    return json_response(_nango_format(scripts, providers, models))
