"""The OpenAPI 3.1 document of the public API, served at `GET /openapi.json`.

Schemas come from the pydantic models: request bodies from the route modules (the same models
that validate input), responses from `orchestrator.api.models`. `OPERATIONS` is the registry of
every route: a route without an entry fails `tests/test_api_openapi.py`, so a new route is
documented when it is added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orchestrator.api import models as m
from orchestrator.api.actions import TriggerBody
from orchestrator.api.common import json_response
from orchestrator.api.connections import CreateConnectionBody, MetadataBody, PatchConnectionBody
from orchestrator.api.deploy import DeployHistory, RollbackBody
from orchestrator.api.environment import EnvironmentBody, RotateOwnKeyBody
from orchestrator.api.environments import CreateEnvironmentBody, RotateKeyBody
from orchestrator.api.envvars import EnvironmentVariablesBody
from orchestrator.api.frontend import ApiKeyBody, BasicBody, ClientCredentialsBody, JwtBody, TbaBody
from orchestrator.api.functions import FunctionCode, FunctionEnvelope, FunctionList, TemplateList
from orchestrator.api.integrations import IntegrationBody
from orchestrator.api.jobs import JobListWithCounts, LogSearch
from orchestrator.api.mcp import JsonRpcMessage
from orchestrator.api.oauth import ConnectSessionBody, ConnectSessionResponse, ReconnectSessionBody
from orchestrator.api.providers import ProviderEnvelope, ProviderList
from orchestrator.api.records import PruneBody, PruneResult
from orchestrator.api.scripts import SwitchBody
from orchestrator.api.syncs import FrequencyBody, SyncsBody, VariantBody
from orchestrator.providers.catalog import Provider

routes = web.RouteTableDef()

STR: dict[str, Any] = {"type": "string"}
BOOL_STR: dict[str, Any] = {"type": "string", "enum": ["true", "false"]}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # query | header | path
    schema: dict[str, Any] = field(default_factory=lambda: dict(STR))
    required: bool = False
    description: str = ""
    explode: bool | None = None

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where, "required": self.required or self.where == "path",
                               "schema": self.schema}
        if self.description:
            out["description"] = self.description
        if self.explode is not None:
            out["explode"] = self.explode
            out["style"] = "form"
        return out


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None  # None: documented as "OK" without a schema
    status: int = 200
    params: tuple[Param, ...] = ()
    public: bool = False
    errors: tuple[int, ...] = (400, 404)
    body_media: str = "application/json"
    response_media: str = "application/json"
    description: str = ""


CONNECTION_HEADERS = (
    Param("Connection-Id", "header", required=True, description="the connection's id"),
    Param("Provider-Config-Key", "header", required=True, description="the integration's unique key"),
)
PCK = Param("provider_config_key", "query", required=True, description="the integration's unique key")
FN_TYPE = Param("type", "query", {"type": "string", "enum": ["sync", "action", "on-event"]})

RECORDS_PARAMS = (
    Param("model", "query", required=True),
    Param("variant", "query"),
    Param("modified_after", "query", {"type": "string", "format": "date-time"}),
    Param("delta", "query", {"type": "string", "format": "date-time"}, description="deprecated: modified_after"),
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000}),
    Param("filter", "query", description="added, updated, deleted; comma-separated"),
    Param("cursor", "query"),
    Param("ids", "query", {"type": "array", "items": STR, "maxItems": 100}, explode=True),
    *CONNECTION_HEADERS,
)

PROXY_PARAMS = (
    Param("path", "path", description="the endpoint on the provider's API"),
    *CONNECTION_HEADERS,
    Param("Base-Url-Override", "header", description="http(s) URL replacing the provider's base URL"),
    Param("Retries", "header", {"type": "integer", "minimum": 0, "maximum": 10}),
    Param("Retry-On", "header", description="extra statuses to retry, comma-separated"),
    Param("Decompress", "header", BOOL_STR),
    Param("Nango-Activity-Log-Id", "header"),
)
PROXY_DESCRIPTION = ("The request goes to the provider with the connection's credentials. `Nango-Proxy-<Name>` "
                     "headers are forwarded as `<Name>`. The upstream status, headers and body come back as is.")

OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/health", "Status: PostgreSQL and Temporal", "health", response=m.Health, public=True, errors=()),
    Op("GET", "/health/live", "Liveness", "health", response=m.Health, public=True, errors=()),
    Op("GET", "/metrics", "Prometheus metrics of this API process (METRICS_ENABLED; 404 when off)", "health",
       public=True, response_media="text/plain", errors=(404,)),
    Op("GET", "/health/ready", "Readiness probe: PostgreSQL only", "health", response=m.Health, public=True,
       errors=()),
    Op("GET", "/openapi.json", "This document", "health", public=True, errors=()),
    # records
    *(Op("GET", p, "Records of a connection's model, paged by cursor", "records", response=m.RecordsPage,
         params=RECORDS_PARAMS) for p in ("/records", "/records/")),
    Op("PATCH", "/records/prune", "Drop the payload of records up to and including a cursor (each stays as a "
       "tombstone with `_nango_metadata.pruned_at`; a later save restores it)", "records", body=PruneBody,
       response=PruneResult, params=CONNECTION_HEADERS),
    # connections
    Op("GET", "/connections", "List connections", "connections", response=m.ConnectionList, params=(
        Param("connectionId", "query"), Param("search", "query"), Param("integrationId", "query"),
        Param("endUserId", "query"), Param("endUserOrganizationId", "query"),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000}),
        Param("page", "query", {"type": "integer", "minimum": 0}))),
    *(Op("POST", p, "Create a connection with credentials (API key, basic, OAuth2 tokens)", "connections",
         body=CreateConnectionBody, response=m.ConnectionFull, status=201) for p in ("/connections", "/connection")),
    Op("GET", "/connections/{connection_id}", "Get a connection with its credentials", "connections",
       response=m.ConnectionFull, params=(
           Param("connection_id", "path"), PCK, Param("force_refresh", "query", BOOL_STR),
           Param("refresh_token", "query", BOOL_STR, description="include the refresh token"),
           Param("refresh_github_app_jwt_token", "query", BOOL_STR))),
    Op("DELETE", "/connections/{connection_id}", "Delete a connection", "connections", response=m.Success,
       params=(Param("connection_id", "path"), PCK)),
    Op("PATCH", "/connections/{connection_id}", "Set a connection's end user and/or tags", "connections",
       body=PatchConnectionBody, response=m.Success, params=(Param("connection_id", "path"), PCK)),
    Op("POST", "/connections/metadata", "Set (replace) the metadata of one or many connections", "connections",
       body=MetadataBody, response=m.MetadataEcho),
    Op("PATCH", "/connections/metadata", "Update (shallow merge) the metadata of one or many connections",
       "connections", body=MetadataBody, response=m.MetadataEcho),
    # integrations
    Op("GET", "/integrations", "List integrations", "integrations", response=m.IntegrationList),
    Op("POST", "/integrations", "Create an integration", "integrations", body=IntegrationBody,
       response=m.IntegrationEnvelope, status=201, errors=(400, 409)),
    Op("GET", "/integrations/{unique_key}", "Get an integration", "integrations", response=m.IntegrationEnvelope,
       params=(Param("unique_key", "path"), Param("include", "query", description="webhook, credentials"))),
    Op("PATCH", "/integrations/{unique_key}", "Update an integration", "integrations", body=IntegrationBody,
       response=m.IntegrationEnvelope, params=(Param("unique_key", "path"),), errors=(400, 404, 409)),
    Op("DELETE", "/integrations/{unique_key}", "Delete an integration, its connections and schedules",
       "integrations", response=m.Success, params=(Param("unique_key", "path"),)),
    # deploy
    Op("POST", "/deploy", "Deploy bundles (what `nango deploy` sends)", "deploy", body=m.DeployForm,
       body_media="multipart/form-data", response=m.DeployResult, errors=(400, 409, 413)),
    Op("GET", "/deploy/history", "Every applied deploy: who, when, what changed, bundle sha256", "deploy",
       response=DeployHistory, params=(Param("integration", "query"),)),
    Op("POST", "/deploy/rollback", "Re-apply an earlier deploy's bundle and config", "deploy",
       body=RollbackBody, response=m.DeployResult),
    # syncs
    Op("POST", "/sync/trigger", "Run syncs now (opts.reset / sync_mode / full_resync for a full resync)", "syncs",
       body=SyncsBody, response=m.TriggerResult,
       description="`triggered` says per connection and sync whether the request started a run, was queued after "
                   "the running run or coalesced into the run already queued (the schedule's BUFFER_ONE policy)."),
    *(Op("POST", f"/sync/{verb}", summary, "syncs", body=SyncsBody, response=m.Success) for verb, summary in (
        ("start", "Resume syncs"), ("pause", "Pause syncs"))),
    Op("GET", "/sync/status", "Status of syncs", "syncs", response=m.SyncStatusList, params=(
        Param("syncs", "query", required=True, description="names (name or name::variant), comma-separated, or *"),
        PCK, Param("connection_id", "query"))),
    Op("PUT", "/sync/update-connection-frequency", "Override a sync's interval for one connection (null resets)",
       "syncs", body=FrequencyBody, response=m.FrequencyOut),
    *(Op(method, "/sync/{name}/variant/{variant}", summary, "syncs", body=VariantBody, response=resp,
         params=(Param("name", "path"), Param("variant", "path"))) for method, summary, resp in (
        ("POST", "Create a variant of a sync for one connection (its own schedule and records)", None),
        ("DELETE", "Delete a sync variant", m.Success))),
    Op("GET", "/scripts", "Deployed syncs and actions with their on/off switch", "scripts",
       params=(Param("provider_config_key", "query"),)),
    Op("PATCH", "/scripts/{integration}/{name}", "Enable or disable a deployed sync or action", "scripts",
       body=SwitchBody, params=(Param("integration", "path"), Param("name", "path"))),
    Op("GET", "/scripts/config", "Deployed syncs, actions and event scripts with their models as JSON Schema "
       "(Nango's getScriptsConfig)", "scripts", params=(
           Param("format", "query", {"type": "string", "enum": ["nango", "openai"]},
                 description="nango (default): per integration; openai: the enabled actions as tool definitions"),
           Param("provider_config_key", "query"))),
    Op("POST", "/mcp", "MCP server (Streamable HTTP, stateless): the connection's enabled actions as tools",
       "actions", body=JsonRpcMessage, errors=(), params=(
           *CONNECTION_HEADERS, Param("X-Max-Retries", "header", {"type": "integer", "minimum": 0, "maximum": 5})),
       description="JSON-RPC 2.0 as the MCP specification's Streamable HTTP transport carries it; send "
                   "`Accept: application/json, text/event-stream`. A refusal (unknown connection, missing "
                   "header) is a JSON-RPC error whose `error.data.code` is our error code."),
    # actions
    Op("POST", "/action/trigger", "Run an action (X-Async: true answers 202 with a status URL)", "actions",
       body=TriggerBody, response=m.ActionOutput, errors=(400, 404, 500), params=(
           *CONNECTION_HEADERS, Param("X-Async", "header", BOOL_STR),
           Param("X-Max-Retries", "header", {"type": "integer", "minimum": 0, "maximum": 5}))),
    Op("GET", "/action/{id}", "Result of an async action", "actions", response=m.ActionOutput,
       params=(Param("id", "path", {"type": "string", "format": "uuid"}),), errors=(400, 404, 500)),
    # provider webhooks
    Op("POST", "/webhook/{environment}/{integration}", "Receive a provider webhook (signature checked)",
       "webhooks", response=m.WebhookAck, public=True, errors=(401, 404, 413),
       params=(Param("environment", "path"), Param("integration", "path"))),
    # environment
    Op("GET", "/environment", "The environment's settings", "environment", response=m.EnvironmentOut),
    Op("PATCH", "/environment", "Set where sync results are sent, their signing secret, and retention", "environment",
       body=EnvironmentBody, response=m.EnvironmentOut),
    Op("POST", "/environment/rotate-key", "Rotate the environment's secret key (the old one keeps working for "
       "a grace period)", "environment", body=RotateOwnKeyBody),
    Op("GET", "/environment-variables", "Environment variables", "environment",
       response=m.EnvironmentVariableListOut),
    Op("POST", "/environment-variables", "Replace the environment variables", "environment",
       body=EnvironmentVariablesBody, response=m.EnvironmentVariableListOut),
    # proxy
    *(Op(method, "/proxy/{path}", f"Proxy a {method} request to the provider", "proxy", params=PROXY_PARAMS,
         response_media="*/*", errors=(400, 404, 502), description=PROXY_DESCRIPTION,
         body=None) for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")),
    # OAuth
    *(Op("POST", f"/api-auth/{mode}/{{integration}}", f"Nango's frontend SDK: connect with {what} under a connect "
         "session token (CORS)", "oauth", body=model, public=True, errors=(400, 401, 403, 404), params=(
             Param("integration", "path"), Param("connect_session_token", "query", required=True)))
      for mode, what, model in (("api-key", "an API key", ApiKeyBody), ("basic", "basic credentials", BasicBody))),
    *(Op("POST", path, f"Nango's frontend SDK: connect with {what} under a connect session token (CORS); "
         "`params[key]` in the query fills the connection config keys the provider declares", "oauth", body=model,
         public=True, errors=(400, 401, 403, 404, 502), params=(
             Param("integration", "path"), Param("connect_session_token", "query", required=True)))
      for path, what, model in (
          ("/auth/tba/{integration}", "TBA credentials (a token id and secret)", TbaBody),
          ("/auth/jwt/{integration}", "the provider's JWT credential fields (signed at once)", JwtBody),
          ("/oauth2/auth/{integration}", "OAuth2 client credentials (a token is minted at once)",
           ClientCredentialsBody))),
    Op("GET", "/connect/ui/", "The connect page (openConnectUI's baseURL, or a session's connect_link)", "oauth",
       public=True, response_media="text/html", errors=()),
    Op("GET", "/connect/ui", "Redirects to /connect/ui/", "oauth", public=True, status=302, errors=()),
    Op("GET", "/connect/session", "The connect session as the connect page shows it (Bearer: the session token)",
       "oauth", public=True, errors=(401,)),
    Op("GET", "/connect/ws", "Nango's frontend SDK: the WebSocket that tells an OAuth popup's outcome (also at / "
       "with an Upgrade header)", "oauth", public=True, status=101, errors=()),
    Op("POST", "/connect/sessions/reconnect", "Create a reconnect session: re-authorize one existing connection",
       "oauth", body=ReconnectSessionBody, response=ConnectSessionResponse, status=201),
    Op("POST", "/connect/sessions", "Create a connect session (a short-lived token to start an OAuth flow)",
       "oauth", body=ConnectSessionBody, response=ConnectSessionResponse, status=201),
    Op("GET", "/oauth/connect/{integration}", "Start the OAuth2 flow: redirects to the provider", "oauth",
       public=True, status=302, errors=(400, 401, 403, 404), params=(
           Param("integration", "path"),
           Param("connection_id", "query", description="with the secret key only; under a session token the id "
                                                       "is the session's or a generated uuid"),
           Param("connect_session_token", "query", description="from POST /connect/sessions (or send the secret "
                                                               "key as a Bearer token)"))),
    Op("GET", "/oauth/callback", "The provider's redirect: exchanges the code and creates the connection", "oauth",
       response=m.OAuthResult, public=True, errors=(400, 404, 502), params=(
           Param("state", "query"), Param("code", "query"), Param("error", "query"),
           Param("error_description", "query"))),
    # unified endpoints: `/v1/<path>` of each deployed script's `endpoint` (any method), described per environment
    Op("GET", "/v1/openapi.json", "The environment's endpoint reference (its deployed scripts' endpoints under /v1)",
       "unified"),
    # admin API: authorized by ADMIN_SECRET_KEY, 404 when it is not set
    Op("GET", "/admin/environments", "List environments (admin key)", "admin", errors=(401, 404)),
    Op("POST", "/admin/environments", "Create an environment and its secret key (admin key)", "admin",
       body=CreateEnvironmentBody, status=201, errors=(400, 401, 404, 409)),
    Op("DELETE", "/admin/environments/{name}", "Delete an environment (admin key; force=true if not empty)",
       "admin", params=(Param("name", "path"), Param("force", "query", BOOL_STR)), errors=(400, 401, 404, 409)),
    Op("POST", "/admin/environments/{name}/rotate-key", "Rotate an environment's secret key (admin key)", "admin",
       body=RotateKeyBody, params=(Param("name", "path"),), errors=(400, 401, 404)),
    # providers: the built-in catalog and the environment's custom providers
    Op("GET", "/providers", "Providers: the built-in catalog and this environment's custom providers", "providers",
       response=ProviderList, params=(Param("source", "query", {"type": "string", "enum": ["builtin", "custom"]}),)),
    Op("GET", "/providers/{name}", "A provider (a custom one shadows the built-in of that name)", "providers",
       response=ProviderEnvelope, params=(Param("name", "path"),)),
    Op("POST", "/providers", "Create or replace a custom provider (201 when created)", "providers",
       body=Provider, response=ProviderEnvelope, status=201),
    Op("DELETE", "/providers/{name}", "Delete a custom provider no integration uses", "providers",
       response=m.Success, params=(Param("name", "path"),), errors=(400, 404, 409)),
    # functions: Nango's view of the deployed scripts; 501 where Nango's feature has no equivalent here
    Op("GET", "/integrations/{unique_key}/functions", "Deployed functions of an integration", "integrations",
       response=FunctionList, params=(
        Param("unique_key", "path"), FN_TYPE, Param("search", "query", description="part of the name"),
        Param("page", "query", {"type": "integer", "minimum": 0}),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}))),
    Op("GET", "/integrations/{unique_key}/functions/{name}", "A deployed function", "integrations",
       response=FunctionEnvelope, params=(Param("unique_key", "path"), Param("name", "path"), FN_TYPE),
       errors=(400, 404, 409)),
    Op("GET", "/integrations/{unique_key}/functions/{name}/code", "A deployed function's source", "integrations",
       response=FunctionCode, params=(Param("unique_key", "path"), Param("name", "path"), FN_TYPE),
       errors=(400, 404, 409)),
    Op("GET", "/providers/{name}/templates", "Functions of the bundled templates for a provider", "providers",
       response=TemplateList, params=(Param("name", "path"),)),
    # jobs
    Op("GET", "/jobs", "Jobs of the environment, newest first, with their counts", "jobs",
       response=JobListWithCounts, params=(
        Param("provider_config_key", "query"), Param("connection_id", "query"), Param("sync", "query"),
        Param("kind", "query", {"type": "string", "enum": ["sync", "action", "webhook", "event"]}),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}))),
    Op("GET", "/jobs/{id}", "A job, with counts and result-webhook delivery attempts", "jobs", response=m.JobDetail,
       params=(Param("id", "path", description="numeric job id or an action's UUID"),)),
    Op("GET", "/jobs/{id}/logs", "A job's script logs", "jobs", response=m.JobLogs,
       params=(Param("id", "path", description="numeric job id or an action's UUID"),)),
    Op("GET", "/logs", "Search the environment's log lines across jobs, newest first", "jobs", response=LogSearch,
       params=(Param("provider_config_key", "query"), Param("connection_id", "query"), Param("script", "query"),
               Param("level", "query", {"type": "array", "items": {"type": "string",
                                                                  "enum": ["debug", "info", "warn", "error"]}},
                     description="one or several (repeated or comma-separated)", explode=True),
               Param("from", "query", {"type": "string", "format": "date-time"},
                     description="lines written at or after (ISO 8601; UTC without an offset)"),
               Param("to", "query", {"type": "string", "format": "date-time"}, description="lines written before"),
               Param("text", "query", description="a case-insensitive substring of the message"),
               Param("cursor", "query", description="next_cursor of the previous page"),
               Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}))),
)


def canonical_path(path: str) -> str:
    """aiohttp's `{name:regex}` -> OpenAPI's `{name}`."""
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]*\}", r"{\1}", path)


def build(operations: tuple[Op, ...] = OPERATIONS, *, server_url: str | None = None) -> dict[str, Any]:
    bodies = {op.body for op in operations if op.body is not None}
    responses = {op.response for op in operations if op.response is not None} | {m.ApiError, m.AsyncActionStarted}
    pairs = [(b, "validation") for b in bodies] + [(r, "serialization") for r in responses]
    keys, top = models_json_schema(pairs, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    schemas = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item: dict[str, Any] = {"summary": op.summary, "tags": [op.tag],
                                "operationId": op.method.lower() + "_"
                                + re.sub(r"[^a-z0-9]+", "_", op.path.lower()).strip("_")}
        if op.description:
            item["description"] = op.description
        if op.params:
            item["parameters"] = [p.render() for p in op.params]
        if op.body is not None:
            item["requestBody"] = {"required": True,
                                   "content": {op.body_media: {"schema": keys[(op.body, "validation")]}}}
        ok: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            ok["content"] = {op.response_media: {"schema": keys[(op.response, "serialization")]}}
        elif op.response_media != "application/json":
            ok["content"] = {op.response_media: {}}
        out: dict[str, Any] = {str(op.status): ok}
        if op.method == "POST" and op.path == "/action/trigger":
            out["202"] = {"description": "Started (X-Async: true)", "content": {
                "application/json": {"schema": keys[(m.AsyncActionStarted, "serialization")]}}}
        error_ref = keys[(m.ApiError, "serialization")]
        for status in sorted({*op.errors, *(() if op.public else (401,))}):
            out[str(status)] = {"description": "Error", "content": {"application/json": {"schema": error_ref}}}
        item["responses"] = out
        if op.public:
            item["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = item
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Nango-compatible integrations API", "version": "1",
                 "description": "Wire-compatible with Nango's public API (`@nangohq/node`). Authenticate with "
                                "`Authorization: Bearer <environment secret key>`."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"secretKey": {"type": "http", "scheme": "bearer",
                                                         "description": "the environment's secret key"}}},
        "security": [{"secretKey": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


@cache
def _document() -> dict[str, Any]:
    return build()


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(_document())
