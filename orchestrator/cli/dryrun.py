"""`nango dryrun`: run one script locally, in the worker's runner, against the real API; save nothing.

The script runs from the bundle `nango compile` would build (so a module missing from the bundle
fails here too), in the same sandboxed child the worker uses (`orchestrator.runner.host.run_script`),
answered by the worker's own `ScriptHost` with a `MemorySink` instead of the database one.
Credentials come from the server. Records are checked by the same contract as in production (ids,
dedupe, merge) and kept in memory with the logs and checkpoint; nothing reaches a database: the
run needs none.

The flags Nango users reach for: `--input` (an action's), `--metadata` (replaces the connection's for the run,
never stored), `--last-sync-date`, `--checkpoint` (the sync starts from it), `--variant` (one the server knows
for the connection) and `--validate` (records checked against the local nango.yaml as an environment in
`record_validation: reject` checks them; any that does not match fails the dry run). `prepare` reads them all,
so a bad value is one line naming its flag before anything runs.
"""

from __future__ import annotations

import copy
import difflib
import io
import json
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aiohttp

from orchestrator.authoring.checks import Script, declared_scripts
from orchestrator.config.nango_yaml import NangoConfig
from orchestrator.config.record_schema import RecordSchema
from orchestrator.errors import InvalidInputError, NotFoundError
from orchestrator.runner.host import Limits, RunSpec, ScriptKind, run_script
from orchestrator.runs.script_host import ScriptHost
from orchestrator.runs.sinks import MemorySink
from orchestrator.runs.validation import Checked, Problem, RecordCheck
from orchestrator.store.types import Connection, Consumer

if TYPE_CHECKING:
    from orchestrator.client import NangoClient

LogSink = Callable[[dict[str, Any]], None]
ProgressSink = Callable[[str], None]


class DryRunError(InvalidInputError):
    code = "dryrun_error"


@dataclass
class Reported(RecordCheck):
    """`--validate`: the check of an environment in reject mode, keeping what it found for the closing error."""

    problems: list[Problem] = field(default_factory=list)
    rejected: int = 0

    def check(self, model: str, records: Any) -> Checked:
        checked = super().check(model, records)
        self.problems += checked.problems
        self.rejected += len(records) - len(checked.kept)
        return checked


@dataclass
class DryRun:
    """What to run and how; `metadata` replaces the connection's metadata when given."""

    script: Script
    connection_id: str
    server: str
    secret_key: str
    environment: str | None = None
    input: Any = None
    metadata: dict[str, Any] | None = None
    last_sync_date: datetime | None = None
    input_model: str | None = None
    output_model: str | None = None
    variant: str = "base"
    checkpoint: dict[str, Any] | None = None
    record_check: Reported | None = None   # --validate


@dataclass
class DryRunResult:
    script: Script
    connection_id: str
    ok: bool
    records: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    output: Any = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    duration_s: float = 0.0
    checkpoint: dict[str, Any] | None = None   # where a sync would resume: what it saved last

    def as_dict(self) -> dict[str, Any]:
        return {"integration": self.script.integration, "kind": self.script.kind, "name": self.script.name,
                "connection_id": self.connection_id, "ok": self.ok, "records": self.records,
                "output": self.output, "checkpoint": self.checkpoint, "logs": self.logs, "error": self.error,
                "duration_s": round(self.duration_s, 3)}


def find_script(config: NangoConfig, name: str, integration: str | None) -> Script:
    """The sync, action or event script called `name` (in `integration` when given)."""
    if integration is not None and integration not in config.integrations:
        hint = difflib.get_close_matches(integration, list(config.integrations), n=1)
        raise DryRunError(f"no integration {integration!r} in nango.yaml"
                          + (f"; did you mean {hint[0]!r}?" if hint else ""))
    scripts = declared_scripts(config, [integration] if integration else None)
    found = [s for s in scripts if s.name == name]
    if not found:
        where = f" of integration {integration!r}" if integration else " in nango.yaml"
        hint = difflib.get_close_matches(name, sorted({s.name for s in scripts}), n=1)
        raise DryRunError(f"no sync, action or event script named {name!r}{where}"
                          + (f"; did you mean {hint[0]!r}?" if hint else ""))
    owners = sorted({s.integration for s in found})
    if len(owners) > 1:
        raise DryRunError(f"{name!r} exists in integrations {', '.join(owners)}: choose one with --integration")
    order = {"sync": 0, "action": 1, "event": 2}
    return sorted(found, key=lambda s: order[s.kind])[0]


def prepare(config: NangoConfig, name: str, connection_id: str, *, integration: str | None = None,
            environment: str | None = None, input: str | None = None, metadata: str | None = None,
            last_sync_date: str | None = None, checkpoint: str | None = None, variant: str | None = None,
            validate: bool = False) -> DryRun:
    """The run the command line asks for, every flag's value read and checked: a bad one is a DryRunError naming
    its flag. The server is not asked anything yet (an unknown `--variant` is found by `execute`)."""
    script = find_script(config, name, integration)
    run = DryRun(script=script, connection_id=connection_id, server="", secret_key="", environment=environment)
    if input is not None:
        if script.kind != "action":
            raise DryRunError(f"--input is for actions; {script.kind} {name!r} takes none "
                              "(a sync reads its connection's metadata: --metadata)")
        run.input = parse_json_arg(input, "--input")
    if metadata is not None:
        run.metadata = _json_object(metadata, "--metadata")
    for flag, given in (("--last-sync-date", last_sync_date), ("--checkpoint", checkpoint), ("--variant", variant)):
        if given is not None and script.kind != "sync":
            raise DryRunError(f"{flag} is for syncs; {name!r} is an {script.kind}")
    if last_sync_date is not None:
        run.last_sync_date = parse_date(last_sync_date)
    if checkpoint is not None:
        run.checkpoint = _json_object(checkpoint, "--checkpoint")
    if variant is not None:
        if not variant.strip() or len(variant) > 255:
            raise DryRunError(f"--variant: a variant name is 1-255 characters, got {variant[:40]!r}")
        run.variant = variant
    if script.kind == "action":
        action = config.integrations[script.integration].actions[script.name]
        if action.input and input is None:
            raise DryRunError(f"action {name!r} takes input ({action.input}): pass --input JSON or @file")
        run.input_model = action.input if action.input in config.models else None
        run.output_model = action.output if action.output in config.models else None
    if validate:
        run.record_check = Reported("reject", schema=RecordSchema(config))
    return run


def _json_object(value: str, flag: str) -> dict[str, Any]:
    parsed = parse_json_arg(value, flag)
    if not isinstance(parsed, dict):
        raise DryRunError(f"{flag} must be a JSON object")
    return parsed


async def _check_variant(api: NangoClient, run: DryRun) -> None:
    """`--variant` names one the server knows for this connection: created by `POST /sync/{name}/variant/{v}`,
    it has a schedule or has run. (No endpoint lists variants: this reads the sync's status.)"""
    from orchestrator.client import ApiError

    script = run.script
    where = f"sync {script.name!r} of connection {run.connection_id!r} on {run.server}"
    try:
        body = await api.request("GET", "/sync/status", params={
            "provider_config_key": script.integration, "syncs": f"{script.name}::{run.variant}",
            "connection_id": run.connection_id})
    except ApiError as exc:
        if exc.status == 404:   # the sync is not deployed, so it has no variant
            raise DryRunError(f"--variant: no variant {run.variant!r} of {where} ({exc.message})") from None
        raise DryRunError(f"--variant: cannot read the variants of {where}: {exc.message}") from None
    known = [s for s in body.get("syncs") or [] if s.get("variant") == run.variant
             and (s.get("frequency") is not None or s.get("finishedAt") is not None)]
    if not known:
        raise DryRunError(f"--variant: no variant {run.variant!r} of {where} "
                          f"(create it with POST /sync/{script.name}/variant/{run.variant})")


def invalid_records(check: Reported) -> dict[str, Any]:
    """The dry run's error when `--validate` found records that do not match their model."""
    n = check.rejected
    head = ("1 record does not match its model" if n == 1 else f"{n} records do not match their model") + \
        f" (an environment with record_validation reject would not save {'it' if n == 1 else 'them'}):"
    return {"type": "invalid_records", "message": "\n  ".join([head, *(p.message for p in check.problems)]),
            "problems": [{"id": p.record_id, "field": p.field, "message": p.message} for p in check.problems]}


def unpack(bundle: bytes, target: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        zf.extractall(target)


def to_connection(data: dict[str, Any], metadata: dict[str, Any] | None) -> Connection:
    """A store `Connection` from `GET /connections/{id}` (ids the server keeps to itself are 0)."""
    now = datetime.now(UTC).isoformat()
    return Connection.model_validate({
        "id": 0, "environment_id": 0, "integration_id": 0,
        "integration_key": data["provider_config_key"], "provider": data["provider"],
        "connection_id": data["connection_id"], "credentials": data["credentials"],
        "connection_config": data.get("connection_config") or {},
        "metadata": metadata if metadata is not None else (data.get("metadata") or {}),
        "created_at": data.get("created_at") or now, "updated_at": data.get("updated_at") or now,
    })


async def _consumer(api: NangoClient, integration: str, connection: Connection) -> Consumer | None:
    """The OAuth 1.0 consumer an OAUTH1 or TBA connection signs with: a TBA connection's own override, else the
    integration's OAuth app (the author's secret key may read it)."""
    own = Consumer.of(connection.credentials, None, str)
    if own is not None:
        return own
    found = (await api.request("GET", f"/integrations/{integration}", params={"include": "credentials"}))["data"]
    app = found.get("credentials") or {}
    return Consumer.of(connection.credentials, app.get("client_id"), lambda: app.get("client_secret") or "")


def _timeout(kind: str) -> float:
    from orchestrator.config.settings import Settings

    name = {"sync": "runner_sync_timeout_s", "action": "runner_action_timeout_s",
            "event": "runner_event_timeout_s"}[kind]
    return float(Settings.model_fields[name].default)


class _DryHost(ScriptHost):
    """The worker's ScriptHost on a `MemorySink`, handing each log line to the CLI as it happens."""

    def __init__(self, *, memory: MemorySink, on_log: LogSink | None, **kwargs: Any) -> None:
        super().__init__(sink=memory, **kwargs)
        self.memory = memory
        self._on_log = on_log

    def record_count(self) -> int:
        return self.memory.record_count()

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        super().log(level, message, fields)
        if self._on_log is not None:
            line = self.logs[-1]  # as buffered: level checked, secrets redacted
            self._on_log(_log_entry(line))


class HttpProgress:
    """An HTTP hook that reports each request of the script as it completes (a line per page of a long sync):
    `GET /repos/o/r/issues?page=2 -> 200 (request 2, 100 records so far)`, credentials redacted. Wraps
    `inner` (the `--save-responses` recorder) when given."""

    def __init__(self, report: ProgressSink, inner: Any = None) -> None:
        self.report = report
        self.inner = inner
        self.requests = 0
        self.host: _DryHost | None = None

    async def __call__(self, req: Any, send: Callable[[], Any]) -> Any:
        try:
            result = await (send() if self.inner is None else self.inner(req, send))
        except Exception as exc:
            self.requests += 1
            self._line(req, f"failed: {type(exc).__name__}")
            raise
        self.requests += 1
        self._line(req, str(result.status))
        return result

    def _line(self, req: Any, outcome: str) -> None:
        from urllib.parse import urlencode

        target = req.absolute_url or req.endpoint
        if isinstance(req.params, dict) and req.params:
            target += ("&" if "?" in target else "?") + urlencode(req.params, doseq=True)
        records = self.host.record_count() if self.host is not None else 0
        line = (f"{req.method.upper()} {target} -> {outcome} (request {self.requests}, "
                f"{records} record{'' if records == 1 else 's'} so far)")
        self.report(self.host.redact(line) if self.host is not None else line)


async def execute(run: DryRun, bundle: bytes, sink: LogSink | None = None, recorder: Any = None,
                  progress: ProgressSink | None = None) -> DryRunResult:
    """Fetch the connection from the server and run the script from `bundle`; nothing is saved.
    `sink` gets each log line, `progress` a line per HTTP request of the script, as they happen."""
    from orchestrator.client import ApiError, NangoClient
    from orchestrator.providers.catalog import get_provider
    from orchestrator.providers.egress import Egress
    from orchestrator.providers.proxy import provider_entry

    script = run.script
    try:
        async with NangoClient(run.server, run.secret_key) as api:
            try:
                data = await api.get_connection(script.integration, run.connection_id)
            except ApiError as exc:
                if exc.status == 404:
                    raise DryRunError(f"no connection {run.connection_id!r} for integration "
                                      f"{script.integration!r} on {run.server}: {exc.message}") from None
                if exc.status == 401:
                    raise DryRunError(f"{run.server} refused the secret key: {exc.message}") from None
                raise DryRunError(f"cannot read connection {run.connection_id!r}: {exc.message}") from None
            connection = to_connection(data, run.metadata)
            if run.variant != "base":
                await _check_variant(api, run)
            if connection.credentials.type in ("OAUTH1", "TBA"):   # signed with the integration's consumer
                connection.consumer = await _consumer(api, script.integration, connection)
            try:
                provider = get_provider(connection.provider)
            except NotFoundError as exc:
                raise DryRunError(exc.message) from None

            async def refresh(force: bool) -> Connection:
                fresh = await api.request("GET", f"/connections/{run.connection_id}", params={
                    "provider_config_key": script.integration, "force_refresh": "true" if force else "false"})
                return to_connection(fresh, host.connection.metadata)

            hook = recorder if progress is None else HttpProgress(progress, recorder)
            # The author's own script on the author's machine: its provider's host may be local (a dev
            # stack's demo provider), so it is listed; every other host follows the worker's rules.
            async with aiohttp.ClientSession() as session, Egress(provider_entry(connection, provider)) as egress:
                host = _DryHost(memory=MemorySink(checkpoint=run.checkpoint), on_log=sink, session=session,
                                connection=connection, provider=provider, environment_name=run.environment or "",
                                job_id=None, refresh_credentials=refresh, http_hook=hook, egress=egress,
                                record_check=run.record_check)
                if isinstance(hook, HttpProgress):
                    hook.host = host
                if recorder is not None:  # `--save-responses`: redact with this host's credentials
                    recorder.redactor = host.redact
                    recorder.context = {"provider": connection.provider,
                                        "metadata": copy.deepcopy(connection.metadata),
                                        "connection_config": copy.deepcopy(connection.connection_config)}
                context: dict[str, Any] = {
                    "connection_id": connection.connection_id, "provider_config_key": script.integration,
                    "provider": connection.provider, "environment": run.environment or "", "variant": run.variant,
                    "job_id": None, "pagination": provider.pagination, "script_name": script.name,
                    "last_sync_date": run.last_sync_date.isoformat() if run.last_sync_date else None,
                    "full_resync": False,
                }
                if script.kind == "action":
                    context.update(input=run.input, input_model=run.input_model, output_model=run.output_model)
                with tempfile.TemporaryDirectory(prefix="nango-dryrun-") as tmp:
                    unpack(bundle, Path(tmp))
                    spec = RunSpec(kind=cast(ScriptKind, script.kind), bundle_dir=Path(tmp),
                                   module_path=script.module_path, timeout_s=_timeout(script.kind),
                                   limits=Limits(), context=context)
                    try:
                        outcome = await run_script(spec, host)
                    finally:
                        await host.flush_logs(final=True)
    except aiohttp.ClientConnectionError as exc:
        from orchestrator.cli.common import api_unreachable

        raise DryRunError(api_unreachable(run.server, exc)) from None
    memory = host.memory
    logs = [_log_entry(line) for line in memory.logs]
    ok, error = outcome.ok, outcome.error
    if ok and run.record_check is not None and run.record_check.rejected:
        ok, error = False, invalid_records(run.record_check)
    return DryRunResult(script=script, connection_id=run.connection_id, ok=ok, records=memory.records,
                        output=outcome.output, logs=logs, error=error, duration_s=outcome.duration_s,
                        checkpoint=memory.checkpoint if script.kind == "sync" else None)


# --------------------------------------------------------------------------- output


def parse_json_arg(value: str, flag: str) -> Any:
    """`--input '{"a": 1}'` or `--input @file.json`."""
    source = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DryRunError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise DryRunError(f"{flag}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def parse_date(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise DryRunError(f"--last-sync-date: {value!r} is not an ISO 8601 date or date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _log_entry(line: Any) -> dict[str, Any]:
    """A buffered log line as the dry run shows it, with the time the script wrote it (LogLine.at) when known."""
    level, message, fields = line
    at = getattr(line, "at", None)
    return {"level": level, "message": message, "fields": fields, **({"time": at.isoformat()} if at else {})}


def format_log(entry: dict[str, Any]) -> str:
    extra = f" {json.dumps(entry['fields'], default=str)}" if entry.get("fields") else ""
    when = f"{entry['time'][11:23]} " if entry.get("time") else ""
    return f"{when}[{entry['level']}] {entry['message']}{extra}"


_VERBS = {"save": "to save", "update": "to update", "delete": "to delete"}


def format_result(result: DryRunResult) -> list[str]:
    """The human form: records per model (or the action's output), then a closing line."""
    lines: list[str] = []
    for model, kinds in result.records.items():
        for kind, records in kinds.items():
            lines.append(f"{model}: {len(records)} {_VERBS.get(kind, kind)}")
            lines.extend("  " + json.dumps(record, default=str, ensure_ascii=False) for record in records)
    script = result.script
    if script.kind == "action" and result.ok:
        lines.append("output:")
        lines.append(json.dumps(result.output, indent=2, default=str, ensure_ascii=False))
    if script.kind == "sync" and result.ok and not result.records:
        lines.append("no records")
    if result.checkpoint is not None:
        lines.append("checkpoint: " + json.dumps(result.checkpoint, default=str, ensure_ascii=False))
    status = "finished" if result.ok else "failed"
    lines.append(f"dry run of {script.kind} {script.name!r} ({script.integration}) on connection "
                 f"{result.connection_id!r} {status} in {result.duration_s:.1f} s; nothing was saved")
    return lines


def format_error(result: DryRunResult) -> str:
    err = result.error or {}
    script = result.script
    if err.get("type") == "invalid_records":
        return f"{script.kind} {script.name!r} (--validate): {err.get('message', '')}"
    if err.get("type") == "action_error":
        payload = json.dumps(err.get("payload"), default=str, ensure_ascii=False)
        return f"{script.kind} {script.name!r} raised ActionError: {payload}"
    text = f"{script.kind} {script.name!r} failed: {err.get('type', 'Error')}: {err.get('message', '')}"
    trace = (err.get("traceback") or "").rstrip()
    return f"{text}\n{trace}" if trace else text
