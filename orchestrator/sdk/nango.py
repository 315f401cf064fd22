"""What scripts see as `nango`: Nango's helper with snake_case names.

Every call is an RPC to the trusted host side: the child holds no credentials, opens no socket
and writes no record itself.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.sdk.channel import Channel
from orchestrator.sdk.pagination import PaginationConfig, Paginator, Request

MAX_LOG_LENGTH = 10_000
RECORDS_PER_CALL = 5_000
RECORDS_IN_FLIGHT = 3
_batch_ids = itertools.count(1)
_LEVELS = {"debug", "info", "warn", "warning", "error"}
MAX_LIST_LIMIT = 1_000  # records per list_records page: a page crosses to the child whole
# Nango's merging strategies (setMergingStrategy) and whether each keeps what changed since the run started;
# "ignore_if_modified_after" is our shorter name for Nango's "ignore_if_modified_after_cursor"
MERGING_STRATEGIES = {"override": False, "ignore_if_modified_after": True, "ignore_if_modified_after_cursor": True}
SYNC_MODES = ("incremental", "full_refresh", "full_refresh_and_clear_cache")  # Nango's triggerSync modes
MAX_LOCK_KEY = 255
MAX_LOCK_TTL_MS = 24 * 3600 * 1000  # a sync's default wall time: no run outlives it


# What the platform checks of these calls' arguments, for the host (runs/script_host.py) and `nango_mock` alike:
# each raises ValueError with the message the script sees.
def checked_strategy(strategy: Any) -> str:
    name = strategy.get("strategy") if isinstance(strategy, dict) else strategy
    if name not in MERGING_STRATEGIES:
        raise ValueError(f"set_merging_strategy: unknown strategy {name!r}; use one of {', '.join(MERGING_STRATEGIES)}")
    return name


def checked_page(limit: Any, cursor: Any) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"list_records: limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r}")
    if cursor is not None and not isinstance(cursor, str):
        raise ValueError(f"list_records: cursor must be a next_cursor value, got {cursor!r}")


def checked_sync_mode(mode: Any) -> str:
    if mode is True or mode is False:  # Nango's older fullResync flag
        mode = "full_refresh" if mode else "incremental"
    if mode not in SYNC_MODES:
        raise ValueError(f"trigger_sync: sync_mode must be one of {', '.join(SYNC_MODES)}, got {mode!r}")
    return mode


def checked_lock(call: str, key: Any, ttl_ms: Any = 1) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_LOCK_KEY:
        raise ValueError(f"{call}: the key must be a non-empty string of at most {MAX_LOCK_KEY} characters, "
                         f"got {key!r:.80}")
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or not 1 <= ttl_ms <= MAX_LOCK_TTL_MS:
        raise ValueError(f"{call}: ttl_ms must be an integer from 1 to {MAX_LOCK_TTL_MS}, got {ttl_ms!r}")
    return key


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


def _encodable(value: Any) -> Any:
    """A log line with lone surrogates (text decoded with errors="surrogateescape", say) replaced by U+FFFD:
    they cannot be encoded as UTF-8, and a log call must not raise for the text it is given."""
    if isinstance(value, str):
        return "".join("\ufffd" if _SURROGATE <= ch <= "\udfff" else ch for ch in value) if _has_surrogate(value) \
            else value
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


_SURROGATE = "\ud800"


def _has_surrogate(text: str) -> bool:
    return any(_SURROGATE <= ch <= "\udfff" for ch in text)


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
    action_name: str | None = None


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
        self, method: str | dict[str, Any] = "GET", endpoint: str | None = None, *,
        params: dict[str, Any] | str | None = None, data: Any = None, headers: dict[str, str] | None = None,
        retries: int = 0, retry_on: Sequence[int] | None = None, base_url_override: str | None = None,
        absolute_url: str | None = None, response_type: str = "json",
    ) -> ProxyResponse:
        """One request to the connection's API; the platform adds the credentials.

        Either keyword arguments or one config dict (`nango.proxy({"method": "GET", "endpoint": ...})`).
        `retries` retries network errors, 5xx and 429 (plus `retry_on` statuses) with backoff.
        """
        if isinstance(method, dict):
            config = _normalise_config(method)
            return await self.proxy(config.pop("method", "GET"), config.pop("endpoint", "/"), **config)
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        result = await self._channel.call("http", {
            "method": str(method).upper(), "endpoint": endpoint or "/", "params": params, "data": _jsonable(data),
            "headers": headers or {}, "retries": retries, "retry_on": [int(c) for c in retry_on or []],
            "base_url_override": base_url_override, "absolute_url": absolute_url,
            "response_type": response_type,
        })
        return ProxyResponse(result["status"], result["headers"], result["data"])

    async def _verb(self, verb: str, endpoint: str | dict[str, Any] | None, kwargs: dict[str, Any]
                    ) -> ProxyResponse:
        if isinstance(endpoint, dict):
            config = {**_normalise_config(endpoint), **kwargs}
            config.pop("method", None)
            return await self.proxy(verb, config.pop("endpoint", "/"), **config)
        return await self.proxy(verb, endpoint if endpoint is not None else kwargs.pop("endpoint", "/"), **kwargs)

    async def get(self, endpoint: str | dict[str, Any] | None = None, **kwargs: Any) -> ProxyResponse:
        return await self._verb("GET", endpoint, kwargs)

    async def post(self, endpoint: str | dict[str, Any] | None = None, **kwargs: Any) -> ProxyResponse:
        return await self._verb("POST", endpoint, kwargs)

    async def put(self, endpoint: str | dict[str, Any] | None = None, **kwargs: Any) -> ProxyResponse:
        return await self._verb("PUT", endpoint, kwargs)

    async def patch(self, endpoint: str | dict[str, Any] | None = None, **kwargs: Any) -> ProxyResponse:
        return await self._verb("PATCH", endpoint, kwargs)

    async def delete(self, endpoint: str | dict[str, Any] | None = None, **kwargs: Any) -> ProxyResponse:
        return await self._verb("DELETE", endpoint, kwargs)

    async def paginate(
        self, endpoint: str | dict[str, Any], *, method: str = "GET", params: dict[str, Any] | None = None,
        data: Any = None, headers: dict[str, str] | None = None, retries: int = 0,
        retry_on: Sequence[int] | None = None, base_url_override: str | None = None,
        paginate: dict[str, Any] | PaginationConfig | None = None,
        on_page: Callable[[Any, ProxyResponse], Any] | None = None, **overrides: Any,
    ) -> AsyncIterator[list[Any]]:
        """Async generator of pages (`async for page in nango.paginate(...)`), fetched lazily.

        The provider's defaults (catalog) apply; `paginate={...}` and keyword arguments override
        them per call (`type`, `limit`, `limit_name_in_request`, `response_path`, `cursor_*`,
        `link_*`, `offset_*`, `page_*`, `in_body`). `on_page(next_page_param, response)` runs after
        each fetched page (sync or async). Stops on an empty page, a missing or repeated cursor or
        link, and, with `limit`, on a page shorter than it.
        """
        if isinstance(endpoint, dict):
            config = _normalise_config(endpoint)
            endpoint = config.pop("endpoint", "/")
            method = config.pop("method", method)
            params = config.pop("params", params)
            data = config.pop("data", data)
            headers = config.pop("headers", headers)
            retries = config.pop("retries", retries)
            retry_on = config.pop("retry_on", retry_on)
            base_url_override = config.pop("base_url_override", base_url_override)
            paginate = config.pop("paginate", paginate)
            overrides = {**config, **overrides}
        explicit: dict[str, Any] = {}
        if isinstance(paginate, PaginationConfig):
            explicit.update({k: v for k, v in paginate.__dict__.items() if v is not None})
        elif paginate:
            explicit.update(_normalise_config(paginate))
        explicit.update(_normalise_config(overrides))
        unknown = set(explicit) - PaginationConfig.field_names()
        if unknown:
            raise TypeError(f"paginate() got unknown option(s): {', '.join(sorted(unknown))}")
        defaults = dict(self._ctx.pagination)
        if "type" in explicit and explicit["type"] != defaults.get("type"):
            # another strategy than the provider's: only its strategy-neutral defaults still apply
            defaults = {k: v for k, v in defaults.items() if k in _COMMON}
        raw = {**defaults, **explicit}
        config = PaginationConfig.from_dict(raw)
        walker = Paginator(config, str(endpoint), params, _jsonable(data), method)
        request: Request | None = walker.first_request()
        while request is not None:
            resp = await self.proxy(
                method, request.endpoint, params=request.params or None, data=request.data, headers=headers,
                retries=retries, retry_on=retry_on, base_url_override=base_url_override,
                absolute_url=request.absolute_url)
            items = walker.page_items(resp.data)
            next_request = walker.next_request(request, resp.data, resp.headers, items)
            if on_page is not None:
                maybe = on_page(walker.last_param if next_request is not None else None, resp)
                if asyncio.iscoroutine(maybe):
                    await maybe
            if items:
                yield items
            request = next_request

    # ---- logs, connection, metadata -----------------------------------------------------------
    def log(self, *args: Any, level: str = "info", **fields: Any) -> Awaitable[None]:
        lvl = level.lower() if isinstance(level, str) and level.lower() in _LEVELS else "info"
        message = " ".join(a if isinstance(a, str) else repr(a) for a in args)
        if len(message) > MAX_LOG_LENGTH:
            message = message[:MAX_LOG_LENGTH] + f"... [truncated {len(message) - MAX_LOG_LENGTH} characters]"
        # fields always go as an object, empty or not: that marks the line as the script's own, which the host
        # keeps only at or above the environment's script_log_level (the runner's own lines come without)
        params = {"level": "warn" if lvl == "warning" else lvl, "message": message,
                  "fields": {k: _jsonable(v) for k, v in fields.items()}}
        safe = _encodable(params)
        if safe != params:  # said on the entry, as the host does for what it replaces
            safe["fields"] = {**safe["fields"], "sanitized": True}
        self._channel.notify("log", safe)
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
        """Run another action of this environment and return its output (platform permitting)."""
        return await self._channel.call("trigger_action", {
            "provider_config_key": provider_config_key, "connection_id": connection_id,
            "action_name": action_name, "input": _jsonable(input)})

    # ---- checkpoints: every kind of script, per (connection, script) ------------------------------
    async def get_checkpoint(self) -> dict[str, Any] | None:
        """What this script saved last for this connection (a retried run resumes from it), or None."""
        return await self._channel.call("get_checkpoint", {})

    async def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        await self._channel.call("save_checkpoint", {"checkpoint": checkpoint})

    async def clear_checkpoint(self) -> None:
        await self._channel.call("clear_checkpoint", {})

    # ---- records of this connection ----------------------------------------------------------
    async def list_records(self, model: str | dict[str, Any], cursor: str | None = None, limit: int = 100
                           ) -> dict[str, Any]:
        """A page of this connection's records of `model` (Nango's listRecords): `{"records": [...],
        "next_cursor": ...}`, each record with its `_nango_metadata`, as GET /records pages them; pass
        `next_cursor` back for the next page (None: the last page). Also `list_records({"model": ..., ...})`."""
        if isinstance(model, dict):
            config = _normalise_config(model)
            return await self.list_records(config.get("model", ""), config.get("cursor"), config.get("limit", 100))
        return await self._channel.call("list_records", {"model": model, "cursor": cursor, "limit": limit})

    # ---- syncs of this environment -----------------------------------------------------------
    async def start_sync(self, syncs: str | Sequence[str], provider_config_key: str | Sequence[str] | None = None,
                         connection_id: str | None = None) -> None:
        """Resume (unpause) syncs, as POST /sync/start does: `start_sync(["issues"])` for this connection, or
        Nango's `start_sync("github", ["issues"], connection_id=None)` (no connection id: every connection)."""
        if isinstance(syncs, str) and provider_config_key is not None and not isinstance(provider_config_key, str):
            syncs, provider_config_key = provider_config_key, syncs  # Nango's order: (integration, syncs, conn)
        elif provider_config_key is None and connection_id is None:
            connection_id = self.connection_id
        await self._channel.call("start_sync", {"syncs": list(syncs) if not isinstance(syncs, str) else syncs,
                                                "provider_config_key": provider_config_key,
                                                "connection_id": connection_id})

    async def trigger_sync(self, provider_config_key: str, connection_id: str, sync_name: str | Sequence[str],
                           sync_mode: str | bool = "incremental") -> None:
        """Run a sync now, as POST /sync/trigger does (Nango's triggerSync); `sync_mode` "full_refresh" resyncs
        from scratch, "full_refresh_and_clear_cache" also empties its records first. This environment only."""
        await self._channel.call("trigger_sync", {
            "provider_config_key": provider_config_key, "connection_id": connection_id,
            "sync_name": sync_name if isinstance(sync_name, str) else list(sync_name), "sync_mode": sync_mode})

    # ---- the integration ---------------------------------------------------------------------
    async def get_webhook_url(self) -> str | None:
        """The URL a provider sends this integration's webhooks to (Nango's getWebhookURL); None when the
        installation sets no PUBLIC_URL."""
        return await self._channel.call("get_webhook_url", {})

    async def get_integration(self) -> dict[str, Any]:
        """This integration: key, provider, display name and its OAuth app's public settings; never a secret."""
        return await self._channel.call("get_integration", {})

    # ---- locks shared with the connection's other scripts ------------------------------------
    async def try_acquire_lock(self, key: str | dict[str, Any], ttl_ms: int | None = None) -> bool:
        """Take the lock `key` of this connection for `ttl_ms` ms; False when another run holds it. Also
        Nango's `try_acquire_lock({"key": ..., "ttlMs": ...})`. It frees itself after `ttl_ms`."""
        if isinstance(key, dict):
            config = _normalise_config(key)
            key, ttl_ms = config.get("key", ""), config.get("ttl_ms", ttl_ms)
        return await self._channel.call("try_acquire_lock", {"key": key, "ttl_ms": ttl_ms})

    async def release_lock(self, key: str | dict[str, Any]) -> bool:
        """Release a lock this run holds; False when it does not hold it (any more)."""
        if isinstance(key, dict):
            key = _normalise_config(key).get("key", "")
        return await self._channel.call("release_lock", {"key": key})


class NangoSync(NangoAction):
    def __init__(self, channel: Channel, ctx: RunContext) -> None:
        super().__init__(channel, ctx)
        self.last_sync_date = ctx.last_sync_date
        self.full_resync = ctx.full_resync
        self.sync_name = ctx.sync_name

    async def _records(self, method: str, records: Sequence[Any], model: str) -> bool:
        """Send records in chunks, a few in flight (the host writes them in order, per model).

        Pipelining lets the host decode and hash chunk k+1 while PostgreSQL writes chunk k. When a
        chunk fails, the host refuses the later chunks of the same call, and the first error is raised.
        """
        if not isinstance(model, str) or not model:
            raise TypeError(f"{method}: model must be a model name, got {model!r}")
        if isinstance(records, dict) or not isinstance(records, Sequence):
            raise TypeError(f"{method}: records must be a list, got {type(records).__name__}")
        batch = f"{method}-{next(_batch_ids)}"
        in_flight: list[asyncio.Task[Any]] = []
        try:
            for part, i in enumerate(range(0, len(records), RECORDS_PER_CALL)):
                items = [_jsonable(r) for r in records[i:i + RECORDS_PER_CALL]]
                in_flight.append(asyncio.ensure_future(self._channel.call(
                    method, {"model": model, "records": items, "batch": batch, "part": part})))
                await asyncio.sleep(0)  # let the task write its frame now, in order
                if len(in_flight) >= RECORDS_IN_FLIGHT:
                    await in_flight.pop(0)
            while in_flight:
                await in_flight.pop(0)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
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

    async def set_merging_strategy(self, strategy: str | dict[str, Any], model: str) -> None:
        """How this run's later `batch_save` of `model` treats records changed since the run started (a webhook
        script's write, say): "override" (the default) writes them; "ignore_if_modified_after" leaves them as
        they are. Nango's shape too: `set_merging_strategy({"strategy": "ignore_if_modified_after_cursor"}, m)`."""
        await self._channel.call("set_merging_strategy", {"strategy": strategy, "model": model})


_COMMON = {"type", "limit", "limit_name_in_request", "response_path", "in_body"}


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def _normalise_config(config: dict[str, Any]) -> dict[str, Any]:
    """Accept Nango's camelCase keys too (`baseUrlOverride`, `retryOn`, `cursorPathInResponse`...)."""
    return {_snake(k): v for k, v in config.items()}
