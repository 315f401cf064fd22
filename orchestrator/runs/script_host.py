"""What a script's RPC calls do on the trusted side: HTTP with credentials, records, logs, state.

One `ScriptHost` per run, real or dry: it holds the connection (with its credentials) and a
`RecordSink` (runs/sinks.py) that keeps records, logs and the checkpoint: the database for a
worker's run, memory for `nango dryrun`. The child sees only the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
import structlog

from orchestrator import metrics
from orchestrator.errors import InvalidInputError, OrchestratorError
from orchestrator.providers import credentials, jwt_auth, proxy
from orchestrator.providers.catalog import Provider
from orchestrator.providers.egress import Egress, EgressPolicy, EgressRefused, strict_egress
from orchestrator.runner.host import RpcFailure
from orchestrator.runs.limits import LogBudget, RunQuotas
from orchestrator.runs.sinks import RecordSink
from orchestrator.runs.validation import Checked, RecordCheck
from orchestrator.sdk import contract
from orchestrator.sdk import nango as sdk
from orchestrator.store import faults
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records as records_repo
from orchestrator.store.types import Connection, credentials_to_json

log = structlog.get_logger(__name__)

# credential fields masked in the run's logs and errors, whatever the auth mode
SECRET_FIELDS = frozenset({"access_token", "refresh_token", "apiKey", "password", "token", "client_secret",
                           "oauth_token_secret", "token_secret", "privateKey", "private_key", "jwtToken",
                           "apiSecretKey", "secret"})

MAX_BUFFERED_LOGS = 200
MAX_LOG_CHARS = 10_000
LEVELS = ("debug", "info", "warn", "error")

# What the platform's own sync controls do for `nango.start_sync` / `nango.trigger_sync` (runs/trigger.py):
# (operation "start" or "trigger", integration, sync names, connection id or None for all, sync mode) -> how many
# schedules it reached.
SyncControl = Callable[[str, str, list[str], str | None, str], Awaitable[int]]


@dataclass
class Progress:
    """Running totals, reported as heartbeat details and by the `progress` query."""

    added: int = 0
    updated: int = 0
    deleted: int = 0
    calls: int = 0
    models: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, model: str, result: records_repo.WriteResult) -> None:
        self.added += result.added
        self.updated += result.updated
        self.deleted += result.deleted
        per = self.models.setdefault(model, {"added": 0, "updated": 0, "deleted": 0})
        per["added"] += result.added
        per["updated"] += result.updated
        per["deleted"] += result.deleted

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated, "deleted": self.deleted, "calls": self.calls,
                "models": self.models}


@contextlib.contextmanager
def _arguments() -> Iterator[None]:
    """The SDK's argument checks (sdk/nango.py), answered as the script's invalid arguments."""
    try:
        yield
    except ValueError as exc:
        raise RpcFailure("invalid_arguments", str(exc)) from None


class ScriptHost:
    """Answers one run's RPC calls; where records, logs and the checkpoint go is the `sink`'s business."""

    def __init__(
        self, *, sink: RecordSink, session: aiohttp.ClientSession, connection: Connection, provider: Provider,
        environment_name: str, job_id: int | None = None, track_deletes: bool = False,
        refresh_credentials: Callable[[bool], Awaitable[Connection]] | None = None,
        environment_variables: list[dict[str, str]] | None = None,
        metadata_writer: Callable[[dict[str, Any], bool], Awaitable[dict[str, Any]]] | None = None,
        action_trigger: Callable[[str, str, str, Any], Awaitable[Any]] | None = None,
        http_hook: Callable[[proxy.ProxyRequest, Callable[[], Awaitable[proxy.ProxyResult]]],
                            Awaitable[proxy.ProxyResult]] | None = None,
        egress: Egress | None = None,
        egress_allow: Callable[[], Awaitable[Sequence[str]]] | Sequence[str] = (),
        quotas: RunQuotas | None = None,
        record_check: RecordCheck | None = None,
        log_level: str = "debug",
        sync_control: SyncControl | None = None,
        integration_reader: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        public_url: str = "",
    ) -> None:
        self.sink = sink
        self.session = session
        self.connection = connection
        self.provider = provider
        self.environment_name = environment_name
        self.job_id = job_id  # the job the run reports to (None for a dry run); the sink writes its logs
        self.track_deletes = track_deletes
        self.tracked_models: set[str] = set()
        self.progress = Progress()
        self.logs: list[tuple[str, str, dict[str, Any] | None]] = []  # not yet handed to the sink
        self._refresh_credentials = refresh_credentials
        self._environment_variables = environment_variables or []
        self._metadata_writer = metadata_writer
        self._action_trigger = action_trigger
        # `http_hook(request, send)` wraps each script request: `nango dryrun --save-responses` records
        # the exchanges through it (it must call `send()` or answer itself).
        self._http_hook = http_hook
        # Where the script's requests may go (providers/egress.py): the process's Egress (the operator's
        # EGRESS_ALLOW and the pinned session) plus the integration's own list, loaded on first use.
        self._egress = egress
        self._egress_allow = egress_allow
        self._policy: EgressPolicy | None = None
        self._flush_lock = asyncio.Lock()
        self._write_locks: dict[str, asyncio.Lock] = {}
        self._failed_batches: set[str] = set()
        self.quotas = quotas or RunQuotas()
        # the environment's record validation (runs/validation.py); None when it is off
        self.record_check = record_check
        self._log_budget = LogBudget(self.quotas.log_lines, self.quotas.log_bytes)
        self._truncation_noted = False
        # the environment's script_log_level: the script's lines below it are not kept (`script_log`)
        self.log_level = log_level if log_level in LEVELS else "debug"
        self._sync_control = sync_control
        self._integration_reader = integration_reader
        self._public_url = public_url.rstrip("/")
        self._merging: dict[str, bool] = {}  # model -> keep what another job changed since the run started
        # who holds this run's locks: its job (a retried attempt is the same holder), else this host alone
        self.lock_holder = f"job:{job_id}" if job_id is not None else f"run:{uuid.uuid4()}"

    # ---- logs ---------------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        creds = credentials_to_json(self.connection.credentials)
        values = [str(v) for k, v in creds.items() if k in SECRET_FIELDS and v]
        values += [str(v) for v in (creds.get("config_override") or {}).values() if v]   # a TBA consumer's own
        if self.connection.consumer is not None:   # OAUTH1/TBA: the consumer secret signs each request
            values.append(self.connection.consumer.secret.get_secret_value())
        values += [v["value"] for v in self._environment_variables if v.get("value")]
        # a multi-line secret (a PEM) printed inside a dict or JSON shows with its newlines escaped
        values += [form for v in values if "\n" in v for form in (orjson.dumps(v).decode()[1:-1], repr(v)[1:-1])]
        return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        """Buffer one line with the time it reached the host: that is when the script wrote it (a notification
        leaves the child at once and runner/host.py hands it over as it is read), stored as the line's time
        when the buffer is flushed. Not a time the child sends: the script could forge it, and even clamped to
        its run it could reorder its own lines."""
        at = datetime.now(UTC)
        fields = fields or None  # the SDK sends an empty object for a line without fields
        if self._log_budget.exhausted:  # past the run's log cap a line costs only its count
            self._log_budget.admit(len(message))
            return
        level = level if level in LEVELS else "info"
        if len(message) > MAX_LOG_CHARS + 64:  # the SDK's own truncation marker fits in the slack
            message = message[:MAX_LOG_CHARS] + f"... [truncated {len(message) - MAX_LOG_CHARS} characters]"
        if fields:
            encoded = orjson.dumps(fields, default=str).decode()
            redacted = self.redact(encoded)
            if len(redacted) > MAX_LOG_CHARS:
                fields = {"truncated_fields": redacted[:MAX_LOG_CHARS]}
            elif redacted != encoded:
                fields = orjson.loads(redacted)
        message = self.redact(message)
        size = len(message.encode(errors="replace")) + (len(orjson.dumps(fields, default=str)) if fields else 0)
        if not self._log_budget.admit(size):
            log.warning("run_log_cap_reached", job_id=self.job_id, cap=self._log_budget.hit)
            return
        self.logs.append(jobs_repo.LogLine(level, message, fields, at))

    def script_log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        """A line from the runner: the script's own (`nango.log`, whose fields always come as an object, and its
        stdout/stderr) is dropped below the environment's `script_log_level`; the runner's own lines (no fields
        object) are the platform's and always kept."""
        if fields is not None:
            rank = LEVELS.index(level) if level in LEVELS else 1
            if rank < LEVELS.index(self.log_level):
                return
        self.log(level, message, fields)

    def warn(self, message: str) -> None:
        """A warning of the platform's own in the run's log (a cap was reached, a run waits)."""
        self.log("warn", message, None)

    async def flush_logs(self, *, final: bool = False) -> None:
        """Hand the buffered log lines to the sink, in order; `final` (the run has ended) adds the one
        entry that says how many lines the log cap dropped, if any."""
        async with self._flush_lock:
            entries, self.logs = self.logs, []
            note = self._log_budget.note() if final and not self._truncation_noted else None
            if note:
                self._truncation_noted = True
                entries.append(("warn", note, None))
            if entries:
                await self._hand_over(entries)

    async def _hand_over(self, entries: list[tuple[str, str, dict[str, Any] | None]]) -> None:
        """Lines the database refuses for good (the store already replaces NUL and invalid characters) are
        replaced by one line that says so: a refused batch must not stop the run's heartbeats or retry it."""
        try:
            await self.sink.add_logs(entries)
        except Exception as exc:
            if not faults.is_deterministic(exc):
                raise
            log.warning("run_logs_refused", job_id=self.job_id, lines=len(entries), error=faults.describe(exc))
            await self.sink.add_logs([("error", f"{len(entries)} log line(s) could not be stored: "
                                                f"{faults.describe(exc)}", {"sanitized": True})])

    # ---- dispatch -----------------------------------------------------------------------------
    async def call(self, method: str, params: dict[str, Any]) -> Any:
        handler = getattr(self, f"rpc_{method}", None)
        if handler is None:
            metrics.RPC_CALLS.labels(self.environment_name, "unknown", "error").inc()  # never the child's name
            raise RpcFailure("unknown_method", f"unknown platform call '{method}'")
        self.progress.calls += 1
        outcome = "error"
        try:
            result = await handler(**params)
            outcome = "ok"
        except RpcFailure:
            raise
        except TypeError as exc:
            raise RpcFailure("invalid_arguments", f"{method}: {exc}") from None
        except OrchestratorError as exc:
            raise RpcFailure(exc.code, exc.message) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if not faults.is_deterministic(exc):
                raise  # an availability fault: InfraWatch sees it and the run is retried
            # a value the database refuses for good (NUL in a record or metadata): the script's to fix
            raise RpcFailure("database_refused", f"{method}: the database refused a value: {faults.describe(exc)}"
                             ) from None
        finally:
            metrics.RPC_CALLS.labels(self.environment_name, handler.__name__.removeprefix("rpc_"), outcome).inc()
        if len(self.logs) >= MAX_BUFFERED_LOGS:
            await self.flush_logs()
        return result

    # ---- HTTP ---------------------------------------------------------------------------------
    async def rpc_http(self, method: str, endpoint: str, params: Any = None, data: Any = None,
                       headers: dict[str, str] | None = None, retries: int = 0, retry_on: list[int] | None = None,
                       base_url_override: str | None = None, absolute_url: str | None = None,
                       response_type: str = "json") -> dict[str, Any]:
        req = proxy.ProxyRequest(method=method, endpoint=endpoint, params=params, data=data, headers=headers,
                                 retries=max(0, min(int(retries or 0), 10)), retry_on=retry_on or [],
                                 base_url_override=base_url_override, absolute_url=absolute_url,
                                 response_type=response_type)
        policy = await self._egress_policy()

        async def send() -> proxy.ProxyResult:
            return await proxy.send(policy, self.connection, self.provider, req, refresh=self._refresh,
                                    environment=self.environment_name)

        try:
            result = await (send() if self._http_hook is None else self._http_hook(req, send))
        except EgressRefused as exc:
            message = self.redact(exc.message)
            self.log("error", message, None)   # in the job's log too, even when the script catches it
            raise RpcFailure("egress_refused", message) from None
        except proxy.UpstreamError as exc:
            raise RpcFailure("network_error", self.redact(str(exc))) from None
        if result.status >= 400:
            raise RpcFailure("http_error", f"{method} {endpoint} answered {result.status}", status=result.status,
                             data=result.data, headers=result.headers)
        return {"status": result.status, "headers": result.headers, "data": result.data}

    async def _egress_policy(self) -> EgressPolicy:
        if self._policy is None:
            allow = self._egress_allow
            hosts = await allow() if callable(allow) else allow
            self._policy = proxy.policy_for(self._egress or strict_egress(), self.connection, self.provider,
                                            hosts, self.connection.integration_key)
        return self._policy

    async def _refresh(self) -> Connection:
        if self._refresh_credentials is None:
            return self.connection
        self.connection = await self._refresh_credentials(True)
        return self.connection

    # ---- records ------------------------------------------------------------------------------
    @staticmethod
    def _check_model(model: str) -> None:
        if not isinstance(model, str) or not model:
            raise RpcFailure("invalid_arguments", "a model name is required")

    def _validated(self, model: str, records: list[Any]) -> Checked:
        """The environment's record validation: each problem in the run's log (a warning, or an error for a
        record not saved)."""
        assert self.record_check is not None
        checked = self.record_check.check(model, records)
        level = "warn" if self.record_check.mode == "warn" else "error"
        for problem in checked.problems:
            self.log(level, problem.message, {"model": model, "id": problem.record_id, "field": problem.field})
        return checked

    def _model_lock(self, model: str) -> asyncio.Lock:
        return self._write_locks.setdefault(model, asyncio.Lock())

    def _check_quota(self, method: str, model: str, records: Any, *,
                     sizes: bool = True) -> list[bytes | None] | None:
        """Refuse a call over the run's quotas (records per call, bytes per record) before anything is written.

        Returns the records as encoded to measure them, which the store reuses (each record is encoded once)."""
        if not isinstance(records, list | tuple):
            return None  # not a batch at all: the sink refuses it with the contract's message
        try:
            with records_repo.record_errors():
                return contract.quota_bodies(records, model, method, max_records=self.quotas.records_per_batch,
                                             max_bytes=self.quotas.record_bytes if sizes else None)
        except OrchestratorError as exc:
            self.warn(f"refused: {exc.message}")
            raise

    def _check_batch(self, batch: str | None) -> None:
        if batch is not None and batch in self._failed_batches:
            raise RpcFailure("batch_aborted", "an earlier chunk of this call failed; this chunk was not written")

    async def _ordered(self, model: str, batch: str | None, write: Callable[[], Awaitable[Any]]) -> Any:
        """Writes of one model run one at a time in arrival order (asyncio.Lock is FIFO)."""
        async with self._model_lock(model):
            self._check_batch(batch)
            try:
                return await write()
            except BaseException:
                if batch is not None:
                    self._failed_batches.add(batch)
                raise

    def _counted(self, model: str, result: records_repo.WriteResult) -> None:
        """The run's progress and the process's record counters move together."""
        self.progress.add(model, result)
        metrics.records_changed(self.environment_name, self.connection.integration_key, result.added,
                                result.updated, result.deleted)

    async def rpc_batch_save(self, model: str, records: list[Any], batch: str | None = None,
                             part: int | None = None) -> bool:
        self._check_model(model)
        track = self.track_deletes or model in self.tracked_models
        refused: list[str] = []
        if self.record_check is not None:
            checked = self._validated(model, records)
            records, refused = checked.kept, checked.refused if track else []
        keep = self._merging.get(model, False)

        async def write() -> records_repo.WriteResult:
            encoded = self._check_quota("batch_save", model, records)  # a refused chunk aborts the rest of its call
            if refused:  # refused by record validation: what is stored stays, deletion tracking included
                await self.sink.mark_seen(model, refused)
            return await self.sink.save(model, records, track_seen=track, encoded=encoded, keep_modified=keep)
        result = await self._ordered(model, batch, write)
        if result.duplicate_ids:
            self.log("warn", contract.duplicate_ids_warning(model, result.duplicate_ids), None)
        if result.kept_ids:
            self.log("info", f"{model}: {len(result.kept_ids)} record(s) kept as stored, changed after this run "
                             f"started (merging strategy ignore_if_modified_after): "
                             f"{', '.join(result.kept_ids[:20])}{' ...' if len(result.kept_ids) > 20 else ''}", None)
        self._counted(model, result)
        return True

    async def rpc_batch_delete(self, model: str, records: list[Any], batch: str | None = None,
                               part: int | None = None) -> bool:
        self._check_model(model)

        async def write() -> records_repo.WriteResult:
            self._check_quota("batch_delete", model, records, sizes=False)
            return await self.sink.delete(model, records)
        self._counted(model, await self._ordered(model, batch, write))
        return True

    async def rpc_batch_update(self, model: str, records: list[Any], batch: str | None = None,
                               part: int | None = None) -> bool:
        self._check_model(model)

        async def write() -> records_repo.WriteResult:
            self._check_quota("batch_update", model, records)
            return await self.sink.update(model, records)
        result = await self._ordered(model, batch, write)
        if result.missing_ids:
            self.log("warn", contract.missing_ids_warning(model, result.missing_ids), None)
        self._counted(model, result)
        return True

    async def rpc_get_records_by_id(self, model: str, ids: list[str]) -> dict[str, Any]:
        self._check_model(model)
        return await self.sink.get_by_ids(model, ids)

    async def rpc_list_records(self, model: str, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
        """A page of this run's own connection's records (its variant), as GET /records pages them."""
        self._check_model(model)
        with _arguments():
            sdk.checked_page(limit, cursor)
        return await self.sink.list_records(model, cursor or None, limit)

    async def rpc_set_merging_strategy(self, strategy: Any, model: str) -> None:
        """Nango's setMergingStrategy, for this run's later saves of `model`."""
        self._check_model(model)
        with _arguments():
            self._merging[model] = sdk.MERGING_STRATEGIES[sdk.checked_strategy(strategy)]

    async def rpc_track_deletes_start(self, model: str) -> None:
        self._check_model(model)
        self.tracked_models.add(model)

    async def rpc_track_deletes_end(self, model: str) -> None:
        if model not in self.tracked_models:
            raise RpcFailure("invalid_arguments", f"track_deletes_end('{model}') without track_deletes_start")
        self.tracked_models.discard(model)
        deleted = await self.sink.delete_unseen(model)
        self._counted(model, records_repo.WriteResult(deleted=deleted))

    # ---- connection, metadata, state -----------------------------------------------------------
    async def rpc_get_connection(self, force_refresh: bool = False, include_refresh_token: bool = False
                                 ) -> dict[str, Any]:
        if force_refresh or self._expires_soon():
            await self._refresh_maybe(force_refresh)
        try:
            shown = jwt_auth.with_current_token(self.connection, self.provider)
        except InvalidInputError as exc:
            raise RpcFailure("invalid_credentials", exc.message) from None
        creds = credentials_to_json(shown.credentials)
        if not include_refresh_token:
            creds.pop("refresh_token", None)
            if isinstance(creds.get("raw"), dict):
                creds["raw"] = {k: v for k, v in creds["raw"].items() if k != "refresh_token"}
        return {"connection_id": self.connection.connection_id,
                "provider_config_key": self.connection.integration_key, "provider": self.connection.provider,
                "connection_config": self.connection.connection_config, "metadata": self.connection.metadata,
                "credentials": creds}

    async def rpc_get_token(self, force_refresh: bool = False) -> Any:
        conn = await self.rpc_get_connection(force_refresh=force_refresh)
        creds = conn["credentials"]
        if creds["type"] == "OAUTH2":
            return creds["access_token"]
        if creds["type"] == "OAUTH2_CC":
            return creds["token"]
        if creds["type"] == "API_KEY":
            return creds["apiKey"]
        if creds["type"] == "OAUTH1":   # Nango's OAuth1Token
            return {"oAuthToken": creds["oauth_token"], "oAuthTokenSecret": creds["oauth_token_secret"]}
        if creds["type"] == "BASIC":
            return {"username": creds.get("username"), "password": creds.get("password")}
        return creds   # APP, JWT, TBA: the credentials, as Nango's getToken answers them

    def _expires_soon(self) -> bool:
        return credentials.expires_soon(self.connection)

    async def _refresh_maybe(self, force: bool) -> None:
        if self._refresh_credentials is not None:
            self.connection = await self._refresh_credentials(force)

    async def rpc_get_metadata(self) -> dict[str, Any]:
        return self.connection.metadata

    async def _write_metadata(self, metadata: Any, merge: bool) -> None:
        if not isinstance(metadata, dict):
            raise RpcFailure("invalid_arguments", "metadata must be an object")
        if self._metadata_writer is None:  # a dry run: the connection's copy in this process only
            self.connection.metadata = {**self.connection.metadata, **metadata} if merge else metadata
            return
        self.connection.metadata = await self._metadata_writer(metadata, merge)

    async def rpc_set_metadata(self, metadata: Any) -> None:
        await self._write_metadata(metadata, merge=False)

    async def rpc_update_metadata(self, metadata: Any) -> None:
        await self._write_metadata(metadata, merge=True)

    async def rpc_get_environment_variables(self) -> list[dict[str, str]]:
        return list(self._environment_variables)

    async def rpc_get_checkpoint(self) -> Any:
        return await self.sink.get_checkpoint()

    async def rpc_save_checkpoint(self, checkpoint: Any) -> None:
        if not isinstance(checkpoint, dict):
            raise RpcFailure("invalid_arguments", "a checkpoint must be an object")
        await self.sink.set_checkpoint(checkpoint)

    async def rpc_clear_checkpoint(self) -> None:
        await self.sink.set_checkpoint(None)

    # ---- syncs, integration, locks ------------------------------------------------------------------
    def _controls(self, call: str) -> SyncControl:
        if self._sync_control is None:
            raise RpcFailure("not_implemented", f"{call} is not available in this run: only a worker controls "
                                                "syncs (dry runs and test benches do not)")
        return self._sync_control

    @staticmethod
    def _names(call: str, syncs: Any) -> list[str]:
        names = [syncs] if isinstance(syncs, str) else syncs
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise RpcFailure("invalid_arguments", f"{call}: syncs must be a sync name or a list of them, "
                                                  f"got {syncs!r}")
        return names

    def _integration(self, call: str, integration: Any) -> str:
        if integration is None:
            return self.connection.integration_key
        if not isinstance(integration, str) or not integration:
            raise RpcFailure("invalid_arguments", f"{call}: the integration must be its unique key, got "
                                                  f"{integration!r}")
        return integration

    @staticmethod
    def _connection_id(call: str, connection_id: Any) -> str | None:
        """One connection's id, or None for every connection of the integration."""
        if connection_id is not None and not isinstance(connection_id, str):
            raise RpcFailure("invalid_arguments", f"{call}: connection_id must be a string, got {connection_id!r}")
        return connection_id

    async def rpc_start_sync(self, syncs: Any, provider_config_key: Any = None, connection_id: Any = None) -> int:
        """Nango's startSync: resume (unpause) these syncs, as POST /sync/start does; this environment only."""
        control = self._controls("start_sync")
        return await control("start", self._integration("start_sync", provider_config_key),
                             self._names("start_sync", syncs), self._connection_id("start_sync", connection_id),
                             "incremental")

    async def rpc_trigger_sync(self, provider_config_key: Any, connection_id: Any, sync_name: Any,
                               sync_mode: Any = "incremental") -> int:
        """Nango's triggerSync: run it now, as POST /sync/trigger does; this environment only."""
        control = self._controls("trigger_sync")
        with _arguments():
            sync_mode = sdk.checked_sync_mode(sync_mode)
        return await control("trigger", self._integration("trigger_sync", provider_config_key),
                             self._names("trigger_sync", sync_name), self._connection_id("trigger_sync", connection_id),
                             sync_mode)

    async def rpc_get_webhook_url(self) -> str | None:
        """Where the provider sends this integration's webhooks (POST /webhook/{environment}/{integration}); None
        when the installation sets no PUBLIC_URL (the worker does not know the API's address then)."""
        if not self._public_url:
            return None
        return f"{self._public_url}/webhook/{self.environment_name}/{self.connection.integration_key}"

    async def rpc_get_integration(self) -> dict[str, Any]:
        """The run's integration without any secret (the reader picks the fields it shows, secrets never)."""
        if self._integration_reader is None:
            return {"unique_key": self.connection.integration_key, "provider": self.connection.provider,
                    "display_name": self.provider.display_name or self.connection.provider}
        return await self._integration_reader()

    async def rpc_try_acquire_lock(self, key: Any, ttl_ms: Any) -> bool:
        """A lock of this connection (its environment's), for `ttl_ms`; True when this run holds it now."""
        with _arguments():
            key = sdk.checked_lock("try_acquire_lock", key, ttl_ms)
        return await self.sink.try_lock(key, self.lock_holder, ttl_ms)

    async def rpc_release_lock(self, key: Any) -> bool:
        """Release a lock this run holds; False when it does not (never had it, or it expired)."""
        with _arguments():
            key = sdk.checked_lock("release_lock", key)
        return await self.sink.release_lock(key, self.lock_holder)

    async def rpc_trigger_action(self, provider_config_key: str, connection_id: str, action_name: str,
                                 input: Any = None) -> Any:
        if self._action_trigger is None:
            raise RpcFailure("not_implemented", "trigger_action is not available in this run: only a worker starts "
                                                "actions (dry runs and test benches do not)")
        return await self._action_trigger(provider_config_key, connection_id, action_name, input)
