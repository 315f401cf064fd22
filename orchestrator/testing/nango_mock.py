"""`NangoMock`: a real `NangoSync`/`NangoAction` (the SDK scripts use) backed by in-memory answers.

The SDK object is the one the sandboxed child builds; only its channel is replaced: each platform
call is answered here, in-process. HTTP comes from saved exchanges or responses given inline (a request
with neither fails, naming it); logs, metadata and checkpoints are kept in memory for assertions, and
records in the `MemorySink` `nango dryrun` uses, which applies the production store's contract (id
rules, dedupe with its warning, deep merge): a batch production refuses fails here with the same error.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.runs.sinks import MemorySink
from orchestrator.sdk import contract, wire
from orchestrator.sdk import nango as sdk
from orchestrator.sdk.channel import _to_exception
from orchestrator.sdk.nango import NangoAction, NangoSync, RunContext
from orchestrator.store.records import WriteResult
from orchestrator.testing.mocks import ResponseBook, UnexpectedRequest


class _Failure(Exception):
    def __init__(self, type: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.payload = {"type": type, "message": message, **details}


def _pagination_defaults(provider: str) -> dict[str, Any]:
    try:
        from orchestrator.providers.catalog import get_provider

        return dict(get_provider(provider).pagination or {})
    except Exception:  # an unknown provider has no defaults: scripts pass their own
        return {}


@contextlib.contextmanager
def _arguments() -> Iterator[None]:
    """The SDK's argument checks, failing as the production host answers them."""
    try:
        yield
    except ValueError as exc:
        raise _Failure("invalid_arguments", str(exc)) from None


class _LocalChannel:
    """The child's `Channel` API, answered in-process by a `NangoMock`."""

    def __init__(self, mock: NangoMock) -> None:
        self._mock = mock

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        handler = getattr(self._mock, f"_rpc_{method}", None)
        if handler is None:
            raise _to_exception({"type": "unknown_method", "message": f"unknown platform call '{method}'"})
        # Through the same JSON encoding as the real channel: what cannot cross it (a set, an int past 64 bits)
        # fails here as it fails in the sandbox, and the script keeps no reference to what it sent.
        params = wire.loads(wire.dumps(params))
        self._mock.calls.append((method, params))
        try:
            return wire.loads(wire.dumps(await handler(**copy.deepcopy(params))))
        except _Failure as exc:
            raise _to_exception(exc.payload) from None

    def notify(self, method: str, params: dict[str, Any]) -> None:
        if method == "log":
            self._mock.log_line(params.get("level", "info"), params.get("message", ""), params.get("fields") or None)

    async def drain(self) -> None:
        return None


class NangoMock:
    """The platform side of a script run, in memory. `mock.nango` is what the script receives.

    >>> mock = NangoMock(metadata={"repo": "o/r"})
    >>> mock.respond("GET", "/repos/o/r/issues", [{"id": 1}])
    >>> await fetch_data(mock.nango); mock.assert_saved("Issue", count=1)
    """

    def __init__(
        self, responses: ResponseBook | Path | str | None = None, *, kind: str = "sync", provider: str = "",
        provider_config_key: str = "", connection_id: str = "test-connection", metadata: dict[str, Any] | None = None,
        last_sync_date: datetime | None = None, connection_config: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None, environment_variables: dict[str, str] | None = None,
        records: dict[str, list[dict[str, Any]]] | None = None, checkpoint: dict[str, Any] | None = None,
        pagination: dict[str, Any] | None = None, script_name: str | None = None,
        actions: dict[str, Callable[[Any], Any]] | None = None, log_level: str = "debug",
        integration: dict[str, Any] | None = None, webhook_url: str | None = None,
    ) -> None:
        if isinstance(responses, (str, Path)):
            responses = ResponseBook.load(Path(responses))
        self.book = responses or ResponseBook()
        self.kind = kind
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.connection_config = dict(connection_config or {})
        self.credentials = credentials or {"type": "OAUTH2", "access_token": "test-token"}
        self.environment_variables = dict(environment_variables or {})
        self.sink = MemorySink(records)
        self.stored: dict[str, dict[str, Any]] = self.sink.stored  # model -> id -> record, as the store keeps it
        self.checkpoint = checkpoint
        self.records: dict[str, dict[str, list[Any]]] = self.sink.records  # model -> kind -> records as sent
        self.logs: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.actions = dict(actions or {})
        self.log_level = log_level  # the environment's script_log_level: lines below it are not kept
        self.syncs: list[dict[str, Any]] = []  # start_sync / trigger_sync calls, for assertions
        self.merging: dict[str, str] = {}  # model -> merging strategy set by the script
        self.webhook_url = webhook_url
        self.integration = integration
        self.lock_holder = "this-run"
        self.context = RunContext(
            connection_id=connection_id, provider_config_key=provider_config_key or provider, provider=provider,
            environment="test", last_sync_date=last_sync_date,
            pagination=pagination if pagination is not None else _pagination_defaults(provider),
            sync_name=script_name if kind in contract.SYNC_KINDS else None,
            action_name=script_name if kind == "action" else None)
        channel = _LocalChannel(self)
        self.nango: NangoSync | NangoAction = (
            NangoSync(channel, self.context) if kind in contract.SYNC_KINDS else NangoAction(channel, self.context))

    # ---- arranging --------------------------------------------------------------------------
    def respond(self, method: str, path: str, json: Any = None, *, status: int = 200,
                headers: dict[str, str] | None = None, query: dict[str, Any] | None = None,
                body: Any = None) -> NangoMock:
        """Answer `method path` with `json`; without `query`/`body` any query and body match."""
        self.book.add(method, path, response=json, status=status, headers=headers, query=query, body=body)
        return self

    def modify(self, model: str, *records: dict[str, Any]) -> NangoMock:
        """Records changed by another script while this one runs (a webhook script's write): a merging strategy
        of ignore_if_modified_after keeps them."""
        self.sink.modify(model, list(records))
        return self

    def hold_lock(self, key: str, ttl_ms: int = 60_000) -> NangoMock:
        """Another run holds the lock `key`: the script's try_acquire_lock gets False until it expires."""
        self.sink.locks[key] = ("another-run", time.monotonic() + ttl_ms / 1000)
        return self

    def log_line(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        """A script's line, kept at or above `log_level` as the platform keeps them."""
        order = ("debug", "info", "warn", "error")
        if (order.index(level) if level in order else 1) >= order.index(self.log_level):
            self.logs.append({"level": level, "message": message, "fields": fields})

    # ---- platform calls ---------------------------------------------------------------------
    async def _rpc_http(self, method: str, endpoint: str, params: Any = None, data: Any = None,
                        headers: dict[str, str] | None = None, retries: int = 0, retry_on: Any = None,
                        base_url_override: str | None = None, absolute_url: str | None = None,
                        response_type: str = "json") -> dict[str, Any]:
        try:
            exchange = self.book.answer(method, endpoint, params, data, absolute_url, headers=dict(headers or {}))
        except UnexpectedRequest as exc:
            raise _Failure("unexpected_request", str(exc)) from None
        if exchange.status >= 400:
            raise _Failure("http_error", f"{method} {endpoint} answered {exchange.status}", status=exchange.status,
                           data=exchange.response, headers=exchange.headers)
        return {"status": exchange.status, "headers": dict(exchange.headers), "data": exchange.response}

    @staticmethod
    def _check_model(model: Any) -> None:
        if not isinstance(model, str) or not model:
            raise _Failure("invalid_arguments", "a model name is required")

    async def _write(self, model: str, write: Callable[[], Awaitable[WriteResult]]) -> WriteResult:
        """A write through the sink; a refused batch fails as the production host answers it."""
        self._check_model(model)
        try:
            return await write()
        except OrchestratorError as exc:  # RecordError: code invalid_record, the message names the record
            raise _Failure(exc.code, exc.message) from None

    def _warn(self, message: str) -> None:
        self.logs.append({"level": "warn", "message": message, "fields": None})

    def _check_quota(self, method: str, model: str, records: Any, *, sizes: bool = True) -> None:
        """The production host's per-call quotas, at their default values (contract.check_quota)."""
        if not isinstance(records, list | tuple):
            return
        try:
            contract.check_quota(records, model, method, max_bytes=contract.MAX_RECORD_BYTES if sizes else None)
        except contract.InvalidRecord as exc:
            self._warn(f"refused: {exc.message}")
            raise _Failure(exc.code, exc.message) from None

    async def _rpc_batch_save(self, model: str, records: list[Any], **_: Any) -> bool:
        self._check_model(model)
        self._check_quota("batch_save", model, records)
        keep = self.merging.get(model, "override") != "override"
        result = await self._write(model, lambda: self.sink.save(model, records, keep_modified=keep))
        if result.duplicate_ids:
            self._warn(contract.duplicate_ids_warning(model, result.duplicate_ids))
        if result.kept_ids:
            self.logs.append({"level": "info", "message": f"{model}: {len(result.kept_ids)} record(s) kept as stored,"
                              f" changed after this run started: {', '.join(result.kept_ids)}", "fields": None})
        return True

    async def _rpc_set_merging_strategy(self, strategy: Any, model: str) -> None:
        self._check_model(model)
        with _arguments():
            self.merging[model] = sdk.checked_strategy(strategy)

    async def _rpc_list_records(self, model: str, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        self._check_model(model)
        with _arguments():
            sdk.checked_page(limit, cursor)
        try:
            return await self.sink.list_records(model, cursor or None, limit)
        except OrchestratorError as exc:
            raise _Failure(exc.code, exc.message) from None

    async def _rpc_batch_update(self, model: str, records: list[Any], **_: Any) -> bool:
        self._check_model(model)
        self._check_quota("batch_update", model, records)
        result = await self._write(model, lambda: self.sink.update(model, records))
        if result.missing_ids:
            self._warn(contract.missing_ids_warning(model, result.missing_ids))
        return True

    async def _rpc_batch_delete(self, model: str, records: list[Any], **_: Any) -> bool:
        self._check_model(model)
        self._check_quota("batch_delete", model, records, sizes=False)
        await self._write(model, lambda: self.sink.delete(model, records))
        return True

    async def _rpc_get_records_by_id(self, model: str, ids: list[str]) -> dict[str, Any]:
        self._check_model(model)
        return await self.sink.get_by_ids(model, ids)

    async def _rpc_track_deletes_start(self, model: str) -> None:
        return None

    async def _rpc_track_deletes_end(self, model: str) -> None:
        return None

    async def _rpc_get_connection(self, force_refresh: bool = False, include_refresh_token: bool = False
                                  ) -> dict[str, Any]:
        creds = dict(self.credentials)
        if not include_refresh_token:
            creds.pop("refresh_token", None)
        return {"connection_id": self.context.connection_id, "provider_config_key": self.context.provider_config_key,
                "provider": self.context.provider, "connection_config": self.connection_config,
                "metadata": self.metadata, "credentials": creds}

    async def _rpc_get_token(self, force_refresh: bool = False) -> Any:
        creds = self.credentials
        if creds.get("type") == "API_KEY":
            return creds.get("apiKey")
        if creds.get("type") == "BASIC":
            return {"username": creds.get("username"), "password": creds.get("password")}
        return creds.get("access_token")

    async def _rpc_get_metadata(self) -> dict[str, Any]:
        return self.metadata

    async def _rpc_set_metadata(self, metadata: Any) -> None:
        if not isinstance(metadata, dict):
            raise _Failure("invalid_arguments", "metadata must be an object")
        self.metadata = dict(metadata)

    async def _rpc_update_metadata(self, metadata: Any) -> None:
        if not isinstance(metadata, dict):
            raise _Failure("invalid_arguments", "metadata must be an object")
        self.metadata = {**self.metadata, **metadata}

    async def _rpc_get_environment_variables(self) -> list[dict[str, str]]:
        return [{"name": k, "value": v} for k, v in self.environment_variables.items()]

    async def _rpc_get_checkpoint(self) -> Any:
        return self.checkpoint

    async def _rpc_save_checkpoint(self, checkpoint: Any) -> None:
        if not isinstance(checkpoint, dict):
            raise _Failure("invalid_arguments", "a checkpoint must be an object")
        self.checkpoint = checkpoint

    async def _rpc_clear_checkpoint(self) -> None:
        self.checkpoint = None

    async def _rpc_start_sync(self, syncs: Any, provider_config_key: Any = None, connection_id: Any = None) -> int:
        self.syncs.append({"op": "start", "syncs": [syncs] if isinstance(syncs, str) else syncs,
                           "provider_config_key": provider_config_key or self.context.provider_config_key,
                           "connection_id": connection_id})
        return 1

    async def _rpc_trigger_sync(self, provider_config_key: Any, connection_id: Any, sync_name: Any,
                                sync_mode: Any = "incremental") -> int:
        with _arguments():
            sync_mode = sdk.checked_sync_mode(sync_mode)
        self.syncs.append({"op": "trigger", "syncs": [sync_name] if isinstance(sync_name, str) else sync_name,
                           "provider_config_key": provider_config_key, "connection_id": connection_id,
                           "sync_mode": sync_mode})
        return 1

    async def _rpc_get_webhook_url(self) -> str | None:
        return self.webhook_url

    async def _rpc_get_integration(self) -> dict[str, Any]:
        return self.integration or {"unique_key": self.context.provider_config_key, "provider": self.context.provider,
                                    "display_name": self.context.provider}

    async def _rpc_try_acquire_lock(self, key: Any, ttl_ms: Any) -> bool:
        with _arguments():
            key = sdk.checked_lock("try_acquire_lock", key, ttl_ms)
        return await self.sink.try_lock(key, self.lock_holder, ttl_ms)

    async def _rpc_release_lock(self, key: Any) -> bool:
        with _arguments():
            key = sdk.checked_lock("release_lock", key)
        return await self.sink.release_lock(key, self.lock_holder)

    async def _rpc_trigger_action(self, provider_config_key: str, connection_id: str, action_name: str,
                                  input: Any = None) -> Any:
        handler = self.actions.get(action_name)
        if handler is None:
            raise _Failure("not_implemented", f"trigger_action({action_name!r}): give a stand-in with "
                                              f"NangoMock(actions={{{action_name!r}: fn}})")
        result = handler(input)
        return await result if asyncio.iscoroutine(result) else result

    # ---- reading back -----------------------------------------------------------------------
    def saved(self, model: str) -> list[Any]:
        return self.records.get(model, {}).get("save", [])

    def updated(self, model: str) -> list[Any]:
        return self.records.get(model, {}).get("update", [])

    def deleted(self, model: str) -> list[Any]:
        return self.records.get(model, {}).get("delete", [])

    @property
    def requests(self) -> list[Any]:
        return self.book.requests

    # ---- assertions -------------------------------------------------------------------------
    def _assert_records(self, kind: str, model: str, records: list[Any], expected: tuple[dict[str, Any], ...],
                        count: int | None) -> None:
        if count is not None and len(records) != count:
            raise AssertionError(f"expected {count} record(s) {kind}d for {model}, got {len(records)}"
                                 + _listing(records))
        for want in expected:
            if not any(_contains(have, want) for have in records):
                raise AssertionError(f"no record {kind}d for {model} matches {json.dumps(want, default=str)}"
                                     + _listing(records))

    def assert_saved(self, model: str, *records: dict[str, Any], count: int | None = None) -> None:
        """Each given record (a subset of fields) was saved; `count` checks how many were."""
        self._assert_records("save", model, self.saved(model), records, count)

    def assert_updated(self, model: str, *records: dict[str, Any], count: int | None = None) -> None:
        self._assert_records("update", model, self.updated(model), records, count)

    def assert_deleted(self, model: str, *records: dict[str, Any], count: int | None = None) -> None:
        self._assert_records("delete", model, self.deleted(model), records, count)

    def assert_logged(self, text: str, *, level: str | None = None) -> None:
        """A log line containing `text` (at `level` when given) was written."""
        for entry in self.logs:
            if text in entry["message"] and (level is None or entry["level"] == level):
                return
        shown = "\n".join(f"  [{e['level']}] {e['message']}" for e in self.logs) or "  (no logs)"
        raise AssertionError(f"no log{' at ' + level if level else ''} containing {text!r}; logs:\n{shown}")

    def assert_requested(self, method: str, path: str) -> None:
        for req in self.book.requests:
            if req.method == method.upper() and req.path.rstrip("/") == path.rstrip("/"):
                return
        shown = "\n".join(f"  {r.describe()}" for r in self.book.requests) or "  (no requests)"
        raise AssertionError(f"no request {method.upper()} {path}; requests:\n{shown}")

    def assert_all_responses_used(self) -> None:
        unused = self.book.unused()
        if unused:
            raise AssertionError("responses never requested:\n" + "\n".join(f"  {e.describe()}" for e in unused))

    def assert_no_unexpected_requests(self) -> None:
        if self.book.unexpected:
            raise self.book.unexpected[0]


def _contains(have: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _contains(have[k], v) for k, v in want.items())
    return have == want


def _listing(records: list[Any]) -> str:
    if not records:
        return " (none)"
    lines = [json.dumps(r, default=str, ensure_ascii=False)[:300] for r in records[:10]]
    more = f"\n  ... and {len(records) - 10} more" if len(records) > 10 else ""
    return ":\n  " + "\n  ".join(lines) + more
