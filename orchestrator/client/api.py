"""NangoClient: the API over aiohttp, returning parsed JSON and raising ApiError with the server's message.

Covers the public API (Nango's wire format): integrations, connections (credentials, metadata,
OAuth connect sessions), records, syncs, actions, proxy, environment and its variables, jobs
with their result-webhook deliveries, deploy. `request()` reaches anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import aiohttp
import orjson

from orchestrator.bundles.build import Bundle
from orchestrator.client.types import (
    AsyncAction,
    Connection,
    ConnectionSummary,
    ConnectSession,
    EnvironmentVariable,
    Integration,
    Job,
    ProxyResponse,
    RecordsPage,
    SyncStatus,
    TriggerOutcome,
)

SyncName = str | tuple[str, str]  # a name, or (name, variant)


def _syncs(syncs: Iterable[SyncName]) -> list[Any]:
    return [s if isinstance(s, str) else {"name": s[0], "variant": s[1]} for s in syncs]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class NangoClient:
    def __init__(self, base_url: str, secret_key: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret_key = secret_key
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> NangoClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                      headers: dict[str, str] | None = None, data: Any = None, ok: tuple[int, ...] = ()) -> Any:
        hdrs = {"Authorization": f"Bearer {self.secret_key}", **(headers or {})}
        body = None
        if json is not None:
            body = orjson.dumps(json)
            hdrs["Content-Type"] = "application/json"
        async with self.session.request(method, self.base_url + path, data=body if body is not None else data,
                                        params=params, headers=hdrs) as resp:
            raw = await resp.read()
            try:
                parsed = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                parsed = raw.decode(errors="replace")
            if resp.status >= 400 and resp.status not in ok:
                err = parsed.get("error", {}) if isinstance(parsed, dict) else {}
                if not isinstance(err, dict):
                    err = {"message": str(err)}
                raise ApiError(resp.status, err.get("code", "error"), err.get("message", str(parsed)[:500]), parsed)
            return parsed

    # ---- deploy --------------------------------------------------------------------------------
    async def deploy(self, bundles: list[Bundle], *, allow_removal: bool = False,
                     providers: str | None = None, only: list[str] | None = None,
                     deployed_by: str | None = None) -> dict[str, Any]:
        """`providers`: the text of the integrations folder's providers.yaml (custom providers), if any;
        `only`: deploy just these scripts ('sync:issues', 'action:create-issue'), leave the rest as deployed."""
        form = aiohttp.FormData()
        form.add_field("options", orjson.dumps({"allow_removal": allow_removal, "only": only or []}).decode(),
                       content_type="application/json")
        if providers:
            form.add_field("providers", providers, filename="providers.yaml", content_type="application/yaml")
        for bundle in bundles:
            form.add_field("bundle", bundle.data, filename=f"{bundle.integration}.zip", content_type="application/zip")
        headers = {"X-Nango-Deployed-By": deployed_by} if deployed_by else None
        return await self.request("POST", "/deploy", data=form, ok=(409,), headers=headers)

    async def deploy_history(self, integration: str | None = None) -> list[dict[str, Any]]:
        params = {"integration": integration} if integration else None
        return (await self.request("GET", "/deploy/history", params=params))["data"]

    async def rollback(self, integration: str, version: int, *, deployed_by: str | None = None) -> dict[str, Any]:
        headers = {"X-Nango-Deployed-By": deployed_by} if deployed_by else None
        return await self.request("POST", "/deploy/rollback", json={"integration": integration, "version": version},
                                  headers=headers)

    # ---- integrations --------------------------------------------------------------------------
    async def list_integrations(self) -> list[Integration]:
        return (await self.request("GET", "/integrations"))["data"]

    async def get_integration(self, unique_key: str, *, include: Iterable[str] = ()) -> Integration:
        params = {"include": ",".join(include)} if include else None
        return (await self.request("GET", f"/integrations/{unique_key}", params=params))["data"]

    @staticmethod
    def _integration_body(*, display_name: str | None, client_id: str | None, client_secret: str | None,
                          scopes: str | list[str] | None, webhook_secret: str | None,
                          authorization_url: str | None, token_url: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        creds = {k: v for k, v in (("client_id", client_id), ("client_secret", client_secret),
                                   ("scopes", scopes)) if v is not None}
        if creds:
            body["credentials"] = {"type": "OAUTH2", **creds}
        for key, value in (("display_name", display_name), ("webhook_secret", webhook_secret),
                           ("oauth_authorization_url", authorization_url), ("oauth_token_url", token_url)):
            if value is not None:
                body[key] = value
        return body

    async def create_integration(self, unique_key: str, provider: str, *, display_name: str | None = None,
                                 client_id: str | None = None, client_secret: str | None = None,
                                 scopes: str | list[str] | None = None, webhook_secret: str | None = None,
                                 authorization_url: str | None = None, token_url: str | None = None) -> Integration:
        body = self._integration_body(display_name=display_name, client_id=client_id, client_secret=client_secret,
                                      scopes=scopes, webhook_secret=webhook_secret,
                                      authorization_url=authorization_url, token_url=token_url)
        return (await self.request("POST", "/integrations", json={"unique_key": unique_key, "provider": provider,
                                                                  **body}))["data"]

    async def update_integration(self, unique_key: str, *, new_unique_key: str | None = None,
                                 display_name: str | None = None, client_id: str | None = None,
                                 client_secret: str | None = None, scopes: str | list[str] | None = None,
                                 webhook_secret: str | None = None, authorization_url: str | None = None,
                                 token_url: str | None = None) -> Integration:
        body = self._integration_body(display_name=display_name, client_id=client_id, client_secret=client_secret,
                                      scopes=scopes, webhook_secret=webhook_secret,
                                      authorization_url=authorization_url, token_url=token_url)
        if new_unique_key:
            body["unique_key"] = new_unique_key
        return (await self.request("PATCH", f"/integrations/{unique_key}", json=body))["data"]

    async def delete_integration(self, unique_key: str) -> None:
        await self.request("DELETE", f"/integrations/{unique_key}")

    # ---- connections ---------------------------------------------------------------------------
    async def create_connection(self, integration: str, connection_id: str, credentials: dict[str, Any], *,
                                connection_config: dict[str, Any] | None = None,
                                metadata: dict[str, Any] | None = None) -> Connection:
        """`credentials`: `{type: OAUTH2, access_token, refresh_token?, expires_at?|expires_in?}`,
        `{type: API_KEY, apiKey}` or `{type: BASIC, username, password}`."""
        return await self.request("POST", "/connections", json={
            "provider_config_key": integration, "connection_id": connection_id, "credentials": credentials,
            "connection_config": connection_config or {}, "metadata": metadata or {}})

    async def list_connections(self, *, connection_id: str | None = None, search: str | None = None,
                               integration_id: str | Iterable[str] | None = None, limit: int | None = None,
                               page: int | None = None) -> list[ConnectionSummary]:
        params: dict[str, str] = {}
        if integration_id is not None:
            params["integrationId"] = integration_id if isinstance(integration_id, str) else ",".join(integration_id)
        for key, value in (("connectionId", connection_id), ("search", search), ("limit", limit), ("page", page)):
            if value is not None:
                params[key] = str(value)
        return (await self.request("GET", "/connections", params=params or None))["connections"]

    async def get_connection(self, integration: str, connection_id: str, *, force_refresh: bool = False,
                             refresh_token: bool = False) -> Connection:
        """The connection with its credentials (refreshed first when they expire soon, or always with
        `force_refresh`); the refresh token only with `refresh_token=True`."""
        return await self.request("GET", f"/connections/{connection_id}", params={
            "provider_config_key": integration, "force_refresh": str(force_refresh).lower(),
            "refresh_token": str(refresh_token).lower()})

    async def get_token(self, integration: str, connection_id: str, *, force_refresh: bool = False) -> Any:
        """As Nango's Node client: OAUTH2's access token, OAUTH1's {oAuthToken, oAuthTokenSecret}; here also the
        API key; the whole credentials for the other modes."""
        creds = (await self.get_connection(integration, connection_id, force_refresh=force_refresh))["credentials"]
        if creds.get("type") == "OAUTH1":
            return {"oAuthToken": creds["oauth_token"], "oAuthTokenSecret": creds["oauth_token_secret"]}
        if creds.get("type") in ("OAUTH2", "API_KEY"):
            return creds.get("access_token") or creds.get("apiKey")
        return creds

    async def delete_connection(self, integration: str, connection_id: str) -> None:
        await self.request("DELETE", f"/connections/{connection_id}", params={"provider_config_key": integration})

    async def set_metadata(self, integration: str, connection_id: str | list[str],
                           metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the metadata of one or many connections."""
        return await self.request("POST", "/connections/metadata", json={
            "metadata": dict(metadata), "connection_id": connection_id, "provider_config_key": integration})

    async def update_metadata(self, integration: str, connection_id: str | list[str],
                              metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Merge into the metadata of one or many connections (top-level keys)."""
        return await self.request("PATCH", "/connections/metadata", json={
            "metadata": dict(metadata), "connection_id": connection_id, "provider_config_key": integration})

    async def get_metadata(self, integration: str, connection_id: str) -> dict[str, Any]:
        return (await self.get_connection(integration, connection_id))["metadata"] or {}

    # ---- OAuth ---------------------------------------------------------------------------------
    async def create_connect_session(self, *, allowed_integrations: list[str] | None = None,
                                     connection_id: str | None = None,
                                     connection_config: dict[str, Any] | None = None,
                                     metadata: dict[str, Any] | None = None, return_url: str | None = None,
                                     ttl_seconds: int | None = None) -> ConnectSession:
        """A short-lived token a browser uses to start the OAuth flow (`connect_url` when one integration)."""
        body: dict[str, Any] = {"connection_config": connection_config or {}, "metadata": metadata or {}}
        for key, value in (("allowed_integrations", allowed_integrations), ("connection_id", connection_id),
                           ("return_url", return_url), ("ttl_seconds", ttl_seconds)):
            if value is not None:
                body[key] = value
        return (await self.request("POST", "/connect/sessions", json=body))["data"]

    # ---- records -------------------------------------------------------------------------------
    async def list_records(self, integration: str, connection_id: str, model: str, *, cursor: str | None = None,
                           limit: int | None = None, filter: str | None = None, modified_after: str | None = None,
                           variant: str | None = None, ids: list[str] | None = None) -> RecordsPage:
        params: list[tuple[str, str]] = [("model", model)]
        for key, value in (("variant", variant), ("modified_after", modified_after), ("limit", limit),
                           ("filter", filter), ("cursor", cursor)):
            if value:
                params.append((key, str(value)))
        params += [("ids", i) for i in ids or []]
        return await self.request("GET", "/records", params=params, headers={
            "Connection-Id": connection_id, "Provider-Config-Key": integration})

    async def all_records(self, integration: str, connection_id: str, model: str, **kw: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.list_records(integration, connection_id, model, cursor=cursor, **kw)
            out.extend(page["records"])
            cursor = page["next_cursor"]
            if not cursor:
                return out

    async def prune_records(self, integration: str, connection_id: str, model: str, until_cursor: str, *,
                            limit: int | None = None, variant: str | None = None) -> dict[str, Any]:
        """Drop the payload of records up to and including `until_cursor`: {count, has_more}."""
        body: dict[str, Any] = {"model": model, "until_cursor": until_cursor}
        body |= {k: v for k, v in (("limit", limit), ("variant", variant)) if v is not None}
        return await self.request("PATCH", "/records/prune", json=body, headers={
            "Connection-Id": connection_id, "Provider-Config-Key": integration})

    # ---- syncs ---------------------------------------------------------------------------------
    async def trigger_sync(self, integration: str, syncs: Iterable[SyncName] = (), connection_id: str | None = None,
                           *, full_resync: bool = False) -> list[TriggerOutcome]:
        """Run now; says per connection and sync whether it started, was queued or coalesced."""
        body: dict[str, Any] = {"syncs": _syncs(syncs), "provider_config_key": integration}
        if connection_id is not None:
            body["connection_id"] = connection_id
        if full_resync:
            body["opts"] = {"reset": True}
        return list((await self.request("POST", "/sync/trigger", json=body)).get("triggered") or [])

    async def start_sync(self, integration: str, syncs: Iterable[SyncName], connection_id: str | None = None) -> None:
        body: dict[str, Any] = {"syncs": _syncs(syncs), "provider_config_key": integration}
        if connection_id is not None:
            body["connection_id"] = connection_id
        await self.request("POST", "/sync/start", json=body)

    async def pause_sync(self, integration: str, syncs: Iterable[SyncName], connection_id: str | None = None) -> None:
        body: dict[str, Any] = {"syncs": _syncs(syncs), "provider_config_key": integration}
        if connection_id is not None:
            body["connection_id"] = connection_id
        await self.request("POST", "/sync/pause", json=body)

    async def sync_status(self, integration: str, syncs: Iterable[SyncName] | Literal["*"],
                          connection_id: str | None = None) -> list[SyncStatus]:
        names = "*" if syncs == "*" else ",".join(s if isinstance(s, str) else f"{s[0]}::{s[1]}" for s in syncs)
        params = {"syncs": names, "provider_config_key": integration}
        if connection_id is not None:
            params["connection_id"] = connection_id
        return (await self.request("GET", "/sync/status", params=params))["syncs"]

    async def update_sync_connection_frequency(self, integration: str, sync: SyncName, connection_id: str,
                                               frequency: str | None) -> str | None:
        """Override the interval for one connection; `None` goes back to the deployed default."""
        body: dict[str, Any] = {"sync_name": sync if isinstance(sync, str) else sync[0],
                                "provider_config_key": integration, "connection_id": connection_id,
                                "frequency": frequency}
        if not isinstance(sync, str):
            body["sync_variant"] = sync[1]
        return (await self.request("PUT", "/sync/update-connection-frequency", json=body))["frequency"]

    # ---- actions -------------------------------------------------------------------------------
    async def trigger_action(self, integration: str, connection_id: str, action: str, input: Any = None) -> Any:
        body: dict[str, Any] = {"action_name": action}
        if input is not None:
            body["input"] = input
        return await self.request("POST", "/action/trigger", json=body, headers={
            "Connection-Id": connection_id, "Provider-Config-Key": integration})

    async def trigger_action_async(self, integration: str, connection_id: str, action: str,
                                   input: Any = None) -> AsyncAction:
        body: dict[str, Any] = {"action_name": action}
        if input is not None:
            body["input"] = input
        return await self.request("POST", "/action/trigger", json=body, headers={
            "Connection-Id": connection_id, "Provider-Config-Key": integration, "X-Async": "true"})

    async def get_action_result(self, action_id: str) -> Any:
        """The output of an async action; ApiError 404 while it runs."""
        return await self.request("GET", f"/action/{action_id}")

    # ---- proxy ---------------------------------------------------------------------------------
    async def proxy(self, method: str, endpoint: str, *, integration: str, connection_id: str,
                    params: Mapping[str, Any] | str | None = None, data: Any = None,
                    headers: Mapping[str, str] | None = None, retries: int = 0, retry_on: Iterable[int] = (),
                    base_url_override: str | None = None) -> ProxyResponse:
        """A request to the provider's API with the connection's credentials; any upstream status comes back
        as a ProxyResponse (not an ApiError). ApiError is raised only for the proxy's own errors."""
        hdrs = {"Authorization": f"Bearer {self.secret_key}", "Connection-Id": connection_id,
                "Provider-Config-Key": integration}
        hdrs.update({f"Nango-Proxy-{k}": v for k, v in (headers or {}).items()})
        if base_url_override:
            hdrs["Base-Url-Override"] = base_url_override
        if retries:
            hdrs["Retries"] = str(retries)
        codes = ",".join(str(c) for c in retry_on)
        if codes:
            hdrs["Retry-On"] = codes
        body: bytes | None = None
        if data is not None:
            if isinstance(data, bytes | str):
                body = data.encode() if isinstance(data, str) else data
            else:
                body = orjson.dumps(data)
                hdrs.setdefault("Content-Type", "application/json")
        url = self.base_url + "/proxy" + (endpoint if endpoint.startswith("/") else "/" + endpoint)
        if isinstance(params, str):
            url += "?" + params.lstrip("?")
            params = None
        async with self.session.request(method.upper(), url, data=body, params=dict(params) if params else None,
                                        headers=hdrs) as resp:
            raw = await resp.read()
            if resp.status in (400, 401, 403, 404, 502) and resp.content_type == "application/json":
                try:
                    parsed = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    parsed = None
                err = parsed.get("error") if isinstance(parsed, dict) else None
                if isinstance(err, dict) and err.get("code") in _PROXY_ERRORS:
                    raise ApiError(resp.status, err["code"], err.get("message", ""), parsed)
            return ProxyResponse(resp.status, dict(resp.headers), raw)

    # ---- environment ---------------------------------------------------------------------------
    async def get_environment(self) -> dict[str, Any]:
        return await self.request("GET", "/environment")

    async def update_environment(self, *, webhook_url: str | None = None, webhook_secret: str | None = None,
                                 notify_on_empty: bool | None = None, on_auth_creation: bool | None = None,
                                 on_auth_refresh_error: bool | None = None) -> dict[str, Any]:
        body = {k: v for k, v in (("webhook_url", webhook_url), ("webhook_secret", webhook_secret),
                                  ("notify_on_empty", notify_on_empty), ("on_auth_creation", on_auth_creation),
                                  ("on_auth_refresh_error", on_auth_refresh_error)) if v is not None}
        return await self.request("PATCH", "/environment", json=body)

    async def set_retention(self, **days: int | None) -> dict[str, Any]:
        """Retention settings in days, by name (records_retention_days, jobs_retention_days,
        webhooks_retention_days); None keeps forever, a name not given stays as it is."""
        return await self.request("PATCH", "/environment", json=days)

    async def set_script_settings(self, *, script_log_level: str | None = None,
                                  record_validation: str | None = None) -> dict[str, Any]:
        """The lowest script log level kept (debug, info, warn, error) and record validation (off, warn,
        reject); a setting not given stays as it is."""
        body = {k: v for k, v in (("script_log_level", script_log_level), ("record_validation", record_validation))
                if v is not None}
        return await self.request("PATCH", "/environment", json=body)

    async def get_environment_variables(self) -> list[EnvironmentVariable]:
        return await self.request("GET", "/environment-variables") or []

    async def set_environment_variables(self, variables: Mapping[str, str] | Iterable[EnvironmentVariable]
                                        ) -> list[EnvironmentVariable]:
        """Replace the whole set."""
        items = ([{"name": k, "value": v} for k, v in variables.items()] if isinstance(variables, Mapping)
                 else [dict(v) for v in variables])
        return await self.request("POST", "/environment-variables", json={"variables": items})

    # ---- jobs ----------------------------------------------------------------------------------
    async def list_jobs(self, *, integration: str | None = None, connection_id: str | None = None,
                        sync: str | None = None, kind: str | None = None, limit: int = 50) -> list[Job]:
        params = {k: v for k, v in (("provider_config_key", integration), ("connection_id", connection_id),
                                    ("sync", sync), ("kind", kind)) if v is not None}
        params["limit"] = str(limit)
        return (await self.request("GET", "/jobs", params=params))["jobs"]

    async def get_job(self, job_id: int | str) -> Job:
        """A job with its counts and `notifications` (every delivery attempt of its result webhooks)."""
        return await self.request("GET", f"/jobs/{job_id}")

    async def job_logs(self, job_id: int | str) -> list[dict[str, Any]]:
        return (await self.request("GET", f"/jobs/{job_id}/logs"))["logs"]

    async def search_logs(self, *, integration: str | None = None, connection_id: str | None = None,
                          script: str | None = None, levels: Iterable[str] = (), since: str | None = None,
                          until: str | None = None, text: str | None = None, cursor: str | None = None,
                          limit: int = 100) -> dict[str, Any]:
        """One page of the environment's log lines across jobs, newest first: `{"logs": [...], "next_cursor"}`;
        pass `next_cursor` back as `cursor` for the next page (None after the last). `since`/`until` are ISO
        8601 (`from`/`to` on the wire)."""
        params = [(k, v) for k, v in (("provider_config_key", integration), ("connection_id", connection_id),
                                      ("script", script), ("from", since), ("to", until), ("text", text),
                                      ("cursor", cursor)) if v is not None]
        params += [("level", level) for level in levels] + [("limit", str(limit))]
        return await self.request("GET", "/logs", params=params)

    async def openapi(self) -> dict[str, Any]:
        return await self.request("GET", "/openapi.json")


_PROXY_ERRORS = {"missing_headers", "unknown_connection", "invalid_headers", "upstream_unreachable",
                 "refresh_token_external_error", "unknown_account", "missing_auth_header", "egress_refused"}
