"""Unified endpoints (as Nango serves them): every `endpoint` of a deployed nango.yaml at `/v1/<path>`.

The integration and connection come from the `Provider-Config-Key` and `Connection-Id` headers. A
sync's endpoint answers that sync's records with the records API's parameters and response (a sync
with several outputs pairs its endpoints with them by position); an action's endpoint runs the
action with the JSON body as input (the query for GET and DELETE) and answers its output. An
unknown path, or the endpoint of a disabled script, answers 404 naming the endpoints that exist.

`GET /v1/openapi.json` is the environment's endpoint reference, generated from the same table
and the deployed models (read from the bundles' manifests).
"""

from __future__ import annotations

import asyncio
import copy
import re
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from orchestrator.api.actions import run_action
from orchestrator.api.common import connection_headers, environment, json_body, json_response, load_connection
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.api.records import MAX_IDS, _filter, _limit, _modified_after, stream_records
from orchestrator.bundles.build import read_manifest
from orchestrator.config.jsonschema import all_model_schemas, parse_models, type_schema
from orchestrator.config.nango_yaml import NangoConfig
from orchestrator.errors import NotFoundError, OrchestratorError
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import records as records_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import DeployedScript, Environment

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

PREFIX = "/v1"
BODY_METHODS = ("POST", "PUT", "PATCH")


@dataclass(frozen=True)
class Endpoint:
    """One served endpoint: a script's `endpoints[index]`, and for a sync the model it returns."""

    method: str
    path: str
    script: DeployedScript
    index: int
    model: str | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {PREFIX}{self.path} ({self.script.kind} {self.script.name})"


def endpoints_of(script: DeployedScript) -> list[Endpoint]:
    """The endpoints a sync or action declares; a sync's i-th endpoint serves its i-th output (the
    last output when there are more endpoints than outputs, as one output may have several paths)."""
    if script.kind not in ("sync", "action"):
        return []
    outputs = [o for o in script.config.get("output") or [] if isinstance(o, str)] if script.kind == "sync" else []
    out: list[Endpoint] = []
    for i, spec in enumerate(script.config.get("endpoints") or []):
        if not isinstance(spec, dict) or not spec.get("path"):
            continue
        model = (outputs[i] if i < len(outputs) else outputs[-1]) if outputs else None
        out.append(Endpoint(str(spec.get("method") or "GET").upper(), _normalize(str(spec["path"])), script, i,
                            model))
    return out


def _normalize(path: str) -> str:
    path = "/" + path.strip().lstrip("/")
    return path.rstrip("/") or "/"


def _error_list(endpoints: list[Endpoint]) -> str:
    return ", ".join(e.label for e in endpoints) or "none"


# --------------------------------------------------------------------------- the endpoints


async def _integration_endpoints(request: web.Request, integration_key: str) -> list[Endpoint]:
    env = environment(request)
    async with request.app[PLATFORM].pool.acquire() as conn:
        integration = await integrations_repo.get(conn, env.id, integration_key)
        if integration is None:
            raise_error(404, "unknown_provider_config",
                        f"no integration '{integration_key}' in environment '{env.name}' (Provider-Config-Key)")
        scripts = await scripts_repo.list_for_integration(conn, integration.id)
    return [e for s in scripts for e in endpoints_of(s)]


def _query_input(request: web.Request) -> dict[str, Any] | None:
    """Query parameters as an action's input: one value as a string, a repeated key as a list."""
    q = request.query
    if not q:
        return None
    out: dict[str, Any] = {}
    for key in q:
        if key in out:
            continue
        values = q.getall(key)
        out[key] = values[0] if len(values) == 1 else values
    return out


async def _records(request: web.Request, endpoint: Endpoint, integration: str,
                   connection_id: str) -> web.StreamResponse:
    q = request.query
    outputs = endpoint.script.config.get("output") or []
    model = q.get("model", "").strip() or endpoint.model
    if model not in outputs:
        raise_error(400, "invalid_query_params", f"model must be one of the outputs of sync '{endpoint.script.name}' "
                    f"({', '.join(outputs) or 'none'}), got {model!r}")
    ids = q.getall("ids", [])
    if len(ids) > MAX_IDS:
        raise_error(400, "invalid_query_params", f"ids accepts at most {MAX_IDS} values, got {len(ids)}")
    limit = _limit(q.get("limit"))
    modified_after = _modified_after(q.get("modified_after") or q.get("delta"))
    actions = _filter(q.get("filter"))
    connection = await load_connection(request, integration, connection_id)
    scope = records_repo.Scope(environment(request).id, connection.id, model, q.get("variant") or "base")
    return await stream_records(request, scope, cursor=q.get("cursor") or None, limit=limit,
                                modified_after=modified_after, actions=actions, ids=ids or None)


async def environment_reference(app: web.Application, env: Environment, integration: str | None = None, *,
                                server_url: str | None = None) -> dict[str, Any]:
    """The environment's endpoint reference (OpenAPI 3.1), optionally one integration's only: what
    `GET /v1/openapi.json` serves and the dashboard's Endpoints page shows."""
    async with app[PLATFORM].pool.acquire() as conn:
        if integration is not None and await integrations_repo.get(conn, env.id, integration) is None:
            raise NotFoundError(f"no integration '{integration}' in environment '{env.name}'")
        scripts = [s for s in await scripts_repo.list_for_environment(conn, env.id)
                   if s.enabled and (integration is None or s.integration_key == integration)]
    models = await deployed_models(app, scripts)
    return build_document(env.name, scripts, models, server_url=server_url)


@routes.get(PREFIX + "/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    server = request.app[PLATFORM].settings.public_url.rstrip("/") or f"{request.scheme}://{request.host}"
    return json_response(await environment_reference(
        request.app, environment(request), request.query.get("provider_config_key") or None, server_url=server))


@routes.route("*", PREFIX + "/{tail:.*}")
async def unified(request: web.Request) -> web.StreamResponse:
    integration, connection_id = connection_headers(request)
    method = request.method.upper()
    path = _normalize(request.match_info["tail"])
    endpoints = await _integration_endpoints(request, integration)
    enabled = [e for e in endpoints if e.script.enabled]
    match = next((e for e in endpoints if e.method == method and e.path == path), None)
    if match is None or not match.script.enabled:
        why = (f"{match.script.kind} '{match.script.name}' is disabled" if match is not None
               else f"no endpoint {method} {PREFIX}{path}")
        raise_error(404, "unknown_endpoint", f"{why} for integration '{integration}'; its endpoints: "
                    f"{_error_list(enabled)}", endpoints=[e.label for e in enabled])
    if match.script.kind == "sync":
        return await _records(request, match, integration, connection_id)
    if method in BODY_METHODS:
        raw = await request.read()
        action_input = await json_body(request) if raw.strip() else None
    else:
        action_input = _query_input(request)
    return await run_action(request, integration, connection_id, match.script.name, action_input)


# --------------------------------------------------------------------------- the reference (OpenAPI)


async def deployed_models(app: web.Application, scripts: list[DeployedScript]) -> dict[str, NangoConfig]:
    """Integration -> its deployed models, from the manifest of its newest bundle."""
    newest: dict[str, DeployedScript] = {}
    for s in scripts:
        if s.integration_key not in newest or s.deployed_at > newest[s.integration_key].deployed_at:
            newest[s.integration_key] = s
    out: dict[str, NangoConfig] = {}
    for key, script in newest.items():
        try:
            data = await app[PLATFORM].bundles.get(script.bundle_key)
            manifest = await asyncio.to_thread(read_manifest, data)
        except OrchestratorError as exc:  # the reference still lists the endpoints, without their models
            log.warning("bundle_unreadable", integration=key, bundle=script.bundle_key, error=exc.message)
            continue
        raw = (manifest.get("config") or {}).get("models") or {}
        out[key] = await asyncio.to_thread(parse_models, raw)
    return out


def _component_name(integration: str, model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{integration}.{model}")


def _components(models: dict[str, NangoConfig]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """Schemas by component name, and per integration model name -> component name. A model is
    shared when every integration that declares it means the same thing; otherwise each gets
    `<integration>.<Model>`."""
    plain = {key: all_model_schemas(cfg) for key, cfg in models.items()}
    variants: dict[str, list[Any]] = {}
    for schemas in plain.values():
        for name, schema in schemas.items():
            if schema not in variants.setdefault(name, []):
                variants[name].append(schema)
    names = {key: {name: name if len(variants[name]) == 1 else _component_name(key, name) for name in schemas}
             for key, schemas in plain.items()}
    components: dict[str, dict[str, Any]] = {}
    for key, cfg in models.items():
        mapping = names[key]
        schemas = all_model_schemas(cfg, lambda n, m=mapping: f"#/components/schemas/{m.get(n, n)}")
        for name, schema in schemas.items():
            components[mapping[name]] = schema
    return components, names


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": description}


def _query(name: str, schema: dict[str, Any], description: str = "", required: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        out["description"] = description
    return out


RECORD_PARAMS = [
    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}),
    _query("modified_after", {"type": "string", "format": "date-time"}),
    _query("filter", {"type": "string"}, "added, updated, deleted; comma-separated"),
    {**_query("ids", {"type": "array", "items": {"type": "string"}, "maxItems": MAX_IDS}), "explode": True,
     "style": "form"},
    _query("variant", {"type": "string"}),
]

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "payload": {}}}}}

METADATA_SCHEMA = {"type": "object", "required": ["first_seen_at", "last_modified_at", "last_action", "cursor"],
                   "properties": {
                       "first_seen_at": {"type": "string", "format": "date-time"},
                       "last_modified_at": {"type": "string", "format": "date-time"},
                       "last_action": {"enum": ["ADDED", "UPDATED", "DELETED"]},
                       "deleted_at": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
                       "pruned_at": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
                       "cursor": {"type": "string"}}}


def _operation(endpoint: Endpoint, cfg: NangoConfig, mapping: dict[str, str]) -> dict[str, Any]:
    script = endpoint.script
    models = set(cfg.models)

    def ref(name: str) -> str:
        return f"#/components/schemas/{mapping.get(name, name)}"

    def schema_of(expr: str | None) -> dict[str, Any]:
        return type_schema(expr, models, ref) if expr else {}

    group = (script.config.get("endpoints") or [{}])[endpoint.index].get("group")
    op: dict[str, Any] = {
        "summary": script.config.get("description") or f"{script.kind} {script.name}",
        "operationId": re.sub(r"[^A-Za-z0-9_]", "_", f"{script.integration_key}_{script.kind}_{script.name}")
        + (f"_{endpoint.index}" if endpoint.index else ""),
        "tags": [script.integration_key, *([group] if group else [])],
        "parameters": [_header("Provider-Config-Key", f"the integration: {script.integration_key}"),
                       _header("Connection-Id", "the connection's id")],
        "x-nango": {"integration": script.integration_key, "kind": script.kind, "script": script.name},
    }
    errors = {str(s): {"description": d, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/NangoError"}}}} for s, d in (
        (400, "Invalid request"), (401, "Bad secret key"), (404, "Unknown connection or endpoint"))}
    if script.kind == "sync":
        model = endpoint.model or ""
        op["x-nango"]["model"] = model
        op["parameters"] += copy.deepcopy(RECORD_PARAMS)
        record = {"allOf": [{"$ref": ref(model)} if model in models else {"type": "object"},
                            {"type": "object", "required": ["_nango_metadata"], "properties": {
                                "_nango_metadata": {"$ref": "#/components/schemas/NangoRecordMetadata"}}}]}
        response = {"type": "object", "required": ["records", "next_cursor"], "properties": {
            "records": {"type": "array", "items": record},
            "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
        op["responses"] = {"200": {"description": f"Records of {model}, oldest change first",
                                   "content": {"application/json": {"schema": response}}}, **errors}
        return op
    input_expr = script.config.get("input")
    if input_expr:
        if endpoint.method in BODY_METHODS:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema_of(input_expr)}}}
        elif input_expr in cfg.models:
            schema = all_model_schemas(cfg, ref)[input_expr]
            required = set(schema.get("required") or [])
            op["parameters"] += [_query(name, prop, required=name in required)
                                 for name, prop in (schema.get("properties") or {}).items()]
        else:
            op["parameters"].append(_query("input", schema_of(input_expr), "the action's input"))
    ok: dict[str, Any] = {"description": "The action's output"}
    if script.config.get("output"):
        ok["content"] = {"application/json": {"schema": schema_of(script.config["output"])}}
    op["responses"] = {"200": ok, **errors, "500": {"description": "The action failed", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/NangoError"}}}}}
    return op


def _merge(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Several integrations serve one method and path: one operation, told apart by Provider-Config-Key."""
    if len(ops) == 1:
        return ops[0]
    merged = copy.deepcopy(ops[0])
    keys = [o["x-nango"]["integration"] for o in ops]
    merged["summary"] = " / ".join(f"{o['x-nango']['integration']}: {o['summary']}" for o in ops)
    merged["operationId"] = "__".join(o["operationId"] for o in ops)
    merged["tags"] = list(dict.fromkeys(t for o in ops for t in o["tags"]))
    merged.pop("x-nango")
    merged["x-nango-scripts"] = [o["x-nango"] for o in ops]
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for o in ops:
        for p in o["parameters"]:
            params.setdefault((p["name"], p["in"]), {**p, "required": p["required"] and all(
                any(q["name"] == p["name"] and q["required"] for q in other["parameters"]) for other in ops)})
    params[("Provider-Config-Key", "header")] = {**_header("Provider-Config-Key", "the integration"),
                                                 "schema": {"enum": keys}}
    merged["parameters"] = list(params.values())
    bodies = [o["requestBody"]["content"]["application/json"]["schema"] for o in ops if "requestBody" in o]
    if bodies:
        merged["requestBody"] = {"required": len(bodies) == len(ops),
                                 "content": {"application/json": {"schema": {"oneOf": bodies}}}}
    oks = [o["responses"]["200"].get("content", {}).get("application/json", {}).get("schema", {}) for o in ops]
    merged["responses"]["200"] = {"description": "Depends on Provider-Config-Key",
                                  "content": {"application/json": {"schema": {"oneOf": oks}}}}
    return merged


def build_document(environment_name: str, scripts: list[DeployedScript], models: dict[str, NangoConfig], *,
                   server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an environment's unified endpoints (enabled scripts only)."""
    components, names = _components(models)
    by_route: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for script in sorted(scripts, key=lambda s: (s.integration_key, s.kind, s.name)):
        if not script.enabled:
            continue
        cfg = models.get(script.integration_key) or NangoConfig()
        for endpoint in endpoints_of(script):
            op = _operation(endpoint, cfg, names.get(script.integration_key, {}))
            by_route.setdefault((PREFIX + endpoint.path, endpoint.method.lower()), []).append(op)
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), ops in sorted(by_route.items()):
        paths.setdefault(path, {})[method] = _merge(ops)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": f"Endpoints of environment '{environment_name}'", "version": "1",
                 "description": "The endpoints declared by the deployed syncs and actions (nango.yaml `endpoint`). "
                                "Select the connection with the Provider-Config-Key and Connection-Id headers; "
                                "authenticate with `Authorization: Bearer <environment secret key>`."},
        "paths": paths,
        "components": {
            "schemas": {**components, "NangoRecordMetadata": METADATA_SCHEMA, "NangoError": ERROR_SCHEMA},
            "securitySchemes": {"secretKey": {"type": "http", "scheme": "bearer",
                                              "description": "the environment's secret key"}}},
        "security": [{"secretKey": []}],
        "tags": [{"name": key} for key in sorted({s.integration_key for s in scripts if s.enabled})],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
