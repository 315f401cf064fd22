"""What scripts see as `nango`: Nango's helper with snake_case names.

Every call is an RPC to the trusted host side: the child holds no credentials, opens no socket
and writes no record itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.sdk.channel import Channel
from orchestrator.sdk.pagination import PaginationConfig, Paginator, Request

MAX_LOG_LENGTH = 10_000
RECORDS_PER_CALL = 5_000
_LEVELS = {"debug", "info", "warn", "warning", "error"}


@dataclass
class ProxyResponse:
    status: int
    headers: dict[str, str]
    data: Any

    @property
    def status_code(self) -> int:
        return self.status


@dataclass
class _Sent:
    """Awaitable that is already done: `nango.log(...)` works with or without `await`."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


def _jsonable(record: Any) -> Any:
    dump = getattr(record, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=True, exclude_unset=False)
    return record


@dataclass
class RunContext:
    connection_id: str
    provider_config_key: str
    provider: str
    environment: str
    variant: str = "base"
    job_id: int | None = None
    last_sync_date: datetime | None = None
    pagination: dict[str, Any] = field(default_factory=dict)
    sync_name: str | None = None
    full_resync: bool = False


class NangoAction:
    def __init__(self, channel: Channel, ctx: RunContext) -> None:
        self._channel = channel
        self._ctx = ctx
        self.connection_id = ctx.connection_id
        self.provider_config_key = ctx.provider_config_key
        self.provider = ctx.provider
        self.environment = ctx.environment
        self.variant = ctx.variant

    # ---- HTTP --------------------------------------------------------------------------------
    async def proxy(
        self, method: str = "GET", endpoint: str = "/", *, params: dict[str, Any] | str | None = None,
        data: Any = None, headers: dict[str, str] | None = None, retries: int = 0,
        retry_on: Sequence[int] | None = None, base_url_override: str | None = None,
        absolute_url: str | None = None, response_type: str = "json",
    ) -> ProxyResponse:
        result = await self._channel.call("http", {
            "method": method.upper(), "endpoint": endpoint, "params": params, "data": _jsonable(data),
            "headers": headers or {}, "retries": retries, "retry_on": list(retry_on or []),
            "base_url_override": base_url_override, "absolute_url": absolute_url,
            "response_type": response_type,
        })
        return ProxyResponse(result["status"], result["headers"], result["data"])

    async def get(self, endpoint: str = "/", **kwargs: Any) -> ProxyResponse:
        return await self.proxy("GET", endpoint, **kwargs)

    async def post(self, endpoint: str = "/", **kwargs: Any) -> ProxyResponse:
        return await self.proxy("POST", endpoint, **kwargs)

    async def put(self, endpoint: str = "/", **kwargs: Any) -> ProxyResponse:
        return await self.proxy("PUT", endpoint, **kwargs)

    async def patch(self, endpoint: str = "/", **kwargs: Any) -> ProxyResponse:
        return await self.proxy("PATCH", endpoint, **kwargs)

    async def delete(self, endpoint: str = "/", **kwargs: Any) -> ProxyResponse:
        return await self.proxy("DELETE", endpoint, **kwargs)

    async def paginate(
        self, endpoint: str, *, method: str = "GET", params: dict[str, Any] | None = None, data: Any = None,
        headers: dict[str, str] | None = None, retries: int = 0, retry_on: Sequence[int] | None = None,
        base_url_override: str | None = None, paginate: dict[str, Any] | PaginationConfig | None = None,
        **overrides: Any,
    ) -> AsyncIterator[list[Any]]:
        """Async generator of pages; fetches one page at a time, only when the caller asks."""
        raw = dict(self._ctx.pagination)
        if isinstance(paginate, PaginationConfig):
            raw.update({k: v for k, v in paginate.__dict__.items() if v is not None})
        elif paginate:
            raw.update(paginate)
        raw.update(overrides)
        config = PaginationConfig.from_dict(raw)
        walker = Paginator(config, endpoint, params, data, method)
        request: Request | None = walker.first_request()
        while request is not None:
            resp = await self.proxy(
                method, request.endpoint, params=request.params or None, data=request.data, headers=headers,
                retries=retries, retry_on=retry_on, base_url_override=base_url_override,
                absolute_url=request.absolute_url)
            items = walker.page_items(resp.data)
            if items:
                yield items
            request = walker.next_request(request, resp.data, resp.headers, items)

    # ---- logs, connection, metadata -----------------------------------------------------------
    def log(self, *args: Any, level: str = "info", **fields: Any) -> Awaitable[None]:
        lvl = level.lower() if isinstance(level, str) and level.lower() in _LEVELS else "info"
        message = " ".join(a if isinstance(a, str) else repr(a) for a in args)
        if len(message) > MAX_LOG_LENGTH:
            message = message[:MAX_LOG_LENGTH] + f"... [truncated {len(message) - MAX_LOG_LENGTH} characters]"
        self._channel.notify("log", {"level": "warn" if lvl == "warning" else lvl, "message": message,
                                     "fields": {k: _jsonable(v) for k, v in fields.items()} or None})
        return _Sent()

    async def get_connection(self, *, force_refresh: bool = False, include_refresh_token: bool = False
                             ) -> dict[str, Any]:
        return await self._channel.call("get_connection", {
            "force_refresh": force_refresh, "include_refresh_token": include_refresh_token})

    async def get_token(self, *, force_refresh: bool = False) -> str | dict[str, Any]:
        return await self._channel.call("get_token", {"force_refresh": force_refresh})

    async def get_metadata(self) -> dict[str, Any]:
        return await self._channel.call("get_metadata", {})

    async def set_metadata(self, metadata: dict[str, Any]) -> None:
        await self._channel.call("set_metadata", {"metadata": metadata})

    async def update_metadata(self, metadata: dict[str, Any]) -> None:
        await self._channel.call("update_metadata", {"metadata": metadata})

    async def get_environment_variables(self) -> list[dict[str, str]]:
        return await self._channel.call("get_environment_variables", {})

    async def trigger_action(self, provider_config_key: str, connection_id: str, action_name: str,
                             input: Any = None) -> Any:
        return await self._channel.call("trigger_action", {
            "provider_config_key": provider_config_key, "connection_id": connection_id,
            "action_name": action_name, "input": _jsonable(input)})


class NangoSync(NangoAction):
    def __init__(self, channel: Channel, ctx: RunContext) -> None:
        super().__init__(channel, ctx)
        self.last_sync_date = ctx.last_sync_date
        self.full_resync = ctx.full_resync
        self.sync_name = ctx.sync_name

    async def _records(self, method: str, records: Sequence[Any], model: str) -> bool:
        if not isinstance(model, str) or not model:
            raise TypeError(f"{method}: model must be a model name, got {model!r}")
        items = [_jsonable(r) for r in records]
        sends = [
            self._channel.call(method, {"model": model, "records": items[i:i + RECORDS_PER_CALL]})
            for i in range(0, len(items), RECORDS_PER_CALL)
        ]
        # Chunks go in order: the host serialises writes per model anyway.
        for send in sends:
            await send
        return True

    async def batch_save(self, records: Sequence[Any], model: str) -> bool:
        return await self._records("batch_save", records, model)

    async def batch_delete(self, records: Sequence[Any], model: str) -> bool:
        return await self._records("batch_delete", records, model)

    async def batch_update(self, records: Sequence[Any], model: str) -> bool:
        return await self._records("batch_update", records, model)

    async def get_records_by_id(self, ids: Sequence[str | int], model: str) -> dict[str, Any]:
        return await self._channel.call("get_records_by_id", {"model": model, "ids": [str(i) for i in ids]})

    async def track_deletes_start(self, model: str) -> None:
        await self._channel.call("track_deletes_start", {"model": model})

    async def track_deletes_end(self, model: str) -> None:
        await self._channel.call("track_deletes_end", {"model": model})

    async def get_checkpoint(self) -> dict[str, Any] | None:
        return await self._channel.call("get_checkpoint", {})

    async def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        await self._channel.call("save_checkpoint", {"checkpoint": checkpoint})

    async def clear_checkpoint(self) -> None:
        await self._channel.call("clear_checkpoint", {})


async def _gather(*aws: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.gather(*aws))
