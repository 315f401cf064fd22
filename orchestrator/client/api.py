"""NangoClient: the API over aiohttp, returning parsed JSON and raising ApiError with the server's message."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from orchestrator.bundles.build import Bundle


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

    # ---- endpoints -----------------------------------------------------------------------------
    async def deploy(self, bundles: list[Bundle], *, allow_removal: bool = False) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("options", orjson.dumps({"allow_removal": allow_removal}).decode(),
                       content_type="application/json")
        for bundle in bundles:
            form.add_field("bundle", bundle.data, filename=f"{bundle.integration}.zip", content_type="application/zip")
        return await self.request("POST", "/deploy", data=form, ok=(409,))

    async def create_connection(self, integration: str, connection_id: str, credentials: dict[str, Any], *,
                                connection_config: dict[str, Any] | None = None,
                                metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("POST", "/connections", json={
            "provider_config_key": integration, "connection_id": connection_id, "credentials": credentials,
            "connection_config": connection_config or {}, "metadata": metadata or {}})

    async def list_connections(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/connections"))["connections"]

    async def get_connection(self, integration: str, connection_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/connections/{connection_id}",
                                  params={"provider_config_key": integration})

    async def list_records(self, integration: str, connection_id: str, model: str, *, cursor: str | None = None,
                           limit: int | None = None, filter: str | None = None, modified_after: str | None = None,
                           variant: str | None = None, ids: list[str] | None = None) -> dict[str, Any]:
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
