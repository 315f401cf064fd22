"""The authoring commands: init, validate, generate, compile, dryrun, deploy, migrate-to-code, export-yaml.

Each is a plain function that `main.py` registers on the typer app. User errors end with the
message on stderr and exit code 1 (`common.fail`), never with a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli import settings_discovery
from orchestrator.cli.common import (
    EnvOpt,
    Folder,
    KeyOpt,
    PathOpt,
    ServerOpt,
    api_unreachable,
    fail,
    fail_on_problems,
    folder_arg,
    load,
    note,
    print_json,
    progress,
    shown,
    writing,
)

if TYPE_CHECKING:
    from orchestrator.bundles.build import Bundle
    from orchestrator.config.nango_yaml import NangoConfig

PathArg = Annotated[Path | None, typer.Argument(
    help="The integrations folder or its nango.yaml (same as --path; default: found from the current folder "
    "upwards).", show_default=False, metavar="FOLDER")]
def init(
    path: Annotated[Path, typer.Argument(help="Folder to create.")] = Path("nango-integrations"),
    template: Annotated[str | None, typer.Option(
        "--template", help="Start from a template (see `nango templates`).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the folder and the files created as JSON.")] = False,
    code_first: Annotated[bool, typer.Option(
        "--code-first", help="Declare the integrations in Python (models.py and @sync/@action), no nango.yaml.")]
    = False,
) -> None:
    """Create an integrations folder with an example sync and action, ready for `nango compile`.

    Also writes .gitignore (.env, dist/) and .env.example (NANGO_HOSTPORT and one secret key per
    environment, picked with --environment); copy it to .env."""
    from orchestrator.cli.scaffold import FilesExist, init_folder, write_models
    from orchestrator.config.nango_yaml import load_config

    if path.exists() and not path.is_dir():
        fail(f"{shown(path)} exists and is not a folder")
    if template is not None:
        from orchestrator.cli.templates_cmd import init_from_template

        with writing(path):
            written = init_from_template(path, template)
            write_models(path, load_config(path / "nango.yaml"))
        _created(path, template, [*written, "models.py"], as_json,
                 "nango test   (offline, against the saved responses)")
        return
    try:
        with writing(path):
            written = init_folder(path)
            write_models(path, load_config(path / "nango.yaml"))
            if code_first:
                written = _to_code_first(path, written)
    except FilesExist as exc:
        fail(f"{shown(path)} already has {exc}; nothing written (choose an empty or new folder)")
    _created(path, None, [*written, "models.py"], as_json,
             "nango compile   (then `nango dryrun issues <connection-id>`)")


def _to_code_first(path: Path, written: list[str]) -> list[str]:
    """The fresh example converted to code-first; its nango.yaml (just copied from the template) goes."""
    from orchestrator.authoring.migrate import to_code

    to_code(path)
    (path / "nango.yaml.bak").unlink()
    return [rel for rel in written if rel != "nango.yaml"]


def _created(path: Path, template: str | None, files: list[str], as_json: bool, next_step: str) -> None:
    if as_json:
        print_json({"folder": shown(path), "template": template, "created": sorted(files)})
        return
    for rel in files:
        typer.echo(f"created {shown(path / rel)}")
    typer.echo(f"\nnext: cd {shown(path)} && cp .env.example .env   (the server and its secret keys)")
    typer.echo(f"      {next_step}")


def validate(
    file: PathArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the parsed configuration as JSON.")] = False,
    path: PathOpt = None,
) -> None:
    """Parse and check the definitions (nango.yaml and code-first); all problems at once as FILE:LINE:COL: message.

    Names what it found: each integration's syncs, actions, event scripts and the models they use."""
    from orchestrator.authoring.compile import models_used

    folder = folder_arg(file, path)
    config = load(folder, warnings=not as_json)
    if as_json:
        typer.echo(config.model_dump_json(indent=2))
        return
    for key, integration in config.integrations.items():
        events = list(dict.fromkeys(n for names in integration.on_events.values() for n in names))
        models = sorted(models_used(config, integration))
        parts = [_count(len(integration.syncs), "sync"), _count(len(integration.actions), "action")]
        if events:
            parts.append(_count(len(events), "event script"))
        parts.append(_count(len(models), "model"))
        typer.echo(f"{key}: {', '.join(parts)}")
        for label, names in (("syncs", list(integration.syncs)), ("actions", list(integration.actions)),
                             ("event scripts", events), ("models", models)):
            if names:
                typer.echo(f"  {label}: {', '.join(names)}")
    typer.echo(f"{folder.shown} is valid: {_count(len(config.integrations), 'integration')}, "
               f"{_count(len(config.models), 'model')}")


def generate(
    folder_: PathArg = None,
    path: PathOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write models.py from nango.yaml and a stub for each script that has none (never overwrites one)."""
    from orchestrator.cli.scaffold import generate_stubs, write_models
    from orchestrator.config.code_first import has_code_models

    folder = folder_arg(folder_, path)
    config = load(folder, warnings=not as_json)
    with writing(folder.path):
        changed = write_models(folder.path, config)
        if not as_json:
            kept = "kept (code-first, yours)" if has_code_models(folder.path) else "kept (up to date)"
            typer.echo(f"{'wrote' if changed else kept} {shown(folder.path / 'models.py')}: "
                       f"{_count(len(config.models), 'model')}")
        created = generate_stubs(folder.path, config)
    if as_json:
        print_json({"folder": shown(folder.path), "models": {"path": shown(folder.path / "models.py"),
                                                              "written": changed, "count": len(config.models)},
                    "created": [shown(folder.path / rel) for rel in created]})
        return
    for rel in created:
        typer.echo(f"created {shown(folder.path / rel)}")


def compile_(
    folder_: PathArg = None,
    path: PathOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bundles built as JSON.")] = False,
) -> None:
    """Validate, check every script (entry points, imports, syntax) and build dist/<integration>.zip."""
    folder = folder_arg(folder_, path)
    bundles = _compile(folder, load(folder, warnings=not as_json))
    out = folder.path / "dist"
    built = []
    for bundle in bundles:
        target = out / f"{bundle.integration}.zip"
        with writing(target):
            out.mkdir(exist_ok=True)
            target.write_bytes(bundle.data)
        built.append({"integration": bundle.integration, "scripts": len(bundle.manifest["scripts"]),
                      "files": len(bundle.manifest["files"]), "path": shown(target), "sha256": bundle.sha256})
        if not as_json:
            typer.echo(f"{bundle.integration}: {_count(len(bundle.manifest['scripts']), 'script')}, "
                       f"{_count(len(bundle.manifest['files']), 'file')} -> {shown(target)} "
                       f"(sha256 {bundle.sha256[:12]})")
    if as_json:
        print_json({"folder": shown(folder.path), "bundles": built})


def _compile(folder: Folder, config: NangoConfig, integrations: list[str] | None = None) -> list[Bundle]:
    """models.py brought up to date (it is generated), scripts checked, bundles built."""
    from orchestrator.authoring.checks import ScriptCheckError
    from orchestrator.authoring.compile import compile_project
    from orchestrator.cli.scaffold import write_models
    from orchestrator.errors import BundleError

    with writing(folder.path / "models.py"):
        changed = write_models(folder.path, config)
    if changed:
        note(f"{shown(folder.path / 'models.py')} regenerated from nango.yaml")
    try:
        return compile_project(folder.path, config, integrations=integrations)
    except ScriptCheckError as exc:
        fail_on_problems(folder, exc)
    except BundleError as exc:
        fail(exc.message)


OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Write the converted folder here (new or empty) instead of converting in place.",
    show_default=False)]


def migrate_to_code(
    folder_: PathArg = None,
    path: PathOpt = None,
    out: OutOpt = None,
) -> None:
    """Convert a nango.yaml folder to code-first: models.py's pydantic classes and a @sync / @action / @on_event
    definition on each script.

    The result is checked to deploy exactly what nango.yaml declares before anything is written; in place,
    nango.yaml is kept as nango.yaml.bak. Comments of nango.yaml are not carried over."""
    from orchestrator.authoring.migrate import to_code

    _convert(to_code, folder_arg(folder_, path), out)


def export_yaml(
    folder_: PathArg = None,
    path: PathOpt = None,
    out: OutOpt = None,
) -> None:
    """Convert a code-first folder back to nango.yaml: the definitions written to nango.yaml, the decorators taken
    off the scripts, models.py generated again (the hand-written one kept as models.py.bak in place).

    The result is checked to deploy exactly what the code-first folder declares before anything is written."""
    from orchestrator.authoring.migrate import to_yaml

    _convert(to_yaml, folder_arg(folder_, path), out)


def _convert(run: Callable[[Path, Path | None], list[str]], folder: Folder, out: Path | None) -> None:
    """Run a conversion of a folder that validates; its errors end the command, nothing written."""
    from orchestrator.config.convert import ConvertError
    from orchestrator.config.nango_yaml import ConfigError

    load(folder)
    target = out if out is not None else folder.path
    try:
        with writing(target):
            written = run(folder.path, out)
    except ConvertError as exc:
        fail(str(exc))
    except ConfigError as exc:
        fail(f"the converted folder does not validate (nothing written):\n{exc}")
    for rel in written:
        typer.echo(f"wrote {shown(target / rel)}")


def dryrun(
    name: Annotated[str, typer.Argument(help="The sync, action or event script to run.")],
    connection_id: Annotated[str, typer.Argument(help="The connection whose API and credentials to use.")],
    input: Annotated[str | None, typer.Option(
        "--input", help="Action input: JSON, or @file.json.", show_default=False)] = None,
    metadata: Annotated[str | None, typer.Option(
        "--metadata", help="Metadata to use instead of the connection's: JSON, or @file.json.",
        show_default=False)] = None,
    last_sync_date: Annotated[str | None, typer.Option(
        "--last-sync-date", help="ISO date-time the sync sees as nango.last_sync_date.", show_default=False)] = None,
    checkpoint: Annotated[str | None, typer.Option(
        "--checkpoint", help="Start the sync from this checkpoint: JSON object, or @file.json.",
        show_default=False)] = None,
    variant: Annotated[str | None, typer.Option(
        "--variant", help="Run as this variant of the sync (one the server has for the connection).",
        show_default=False)] = None,
    validate_records: Annotated[bool, typer.Option(
        "--validate", help="Check each record against its nango.yaml model as record_validation=reject does; "
        "any that does not match fails the dry run.")] = False,
    integration: Annotated[str | None, typer.Option(
        "--integration", help="The integration, when several have a script of that name.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document (records, output, logs).")] = False,
    server: ServerOpt = None,
    secret_key: KeyOpt = None,
    environment: EnvOpt = None,
    path: Annotated[Path | None, typer.Option(
        "--path", help="The integrations folder (default: found from the current folder upwards).",
        show_default=False)] = None,
    save_responses: Annotated[bool, typer.Option(
        "--save-responses", help="Save every HTTP exchange and the records/output under "
        "<integration>/mocks/<script>/ for `nango test` (credentials redacted).")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress line per HTTP request on stderr.")] = False,
) -> None:
    """Run a sync or action locally in the worker's runner against the connection's real API; save nothing.

    Each HTTP request of the script is reported on stderr as it completes (method, path, status, records so
    far), so a sync over many pages shows its progress; stdout has the logs and the result (or --json)."""
    from orchestrator.cli import dryrun as dr
    from orchestrator.cli.common import discover_folder
    from orchestrator.errors import OrchestratorError

    folder = discover_folder(path)
    config = load(folder, warnings=not as_json)
    try:
        run = dr.prepare(config, name, connection_id, integration=integration, environment=environment,
                         input=input, metadata=metadata, last_sync_date=last_sync_date, checkpoint=checkpoint,
                         variant=variant, validate=validate_records)
    except OrchestratorError as exc:
        fail(exc.message)
    script = run.script
    target = settings_discovery.target(folder.path, server, secret_key, environment)
    run.server, run.secret_key = target.server, target.secret_key
    (bundle,) = _compile(folder, config, [script.integration])

    def echo_log(entry: dict[str, Any]) -> None:
        typer.echo(dr.format_log(entry))

    recorder = None
    if save_responses:
        from orchestrator.testing.mocks import HttpRecorder

        recorder = HttpRecorder()
    try:
        result = asyncio.run(dr.execute(run, bundle.data, None if as_json else echo_log, recorder,
                                        None if quiet else progress))
    except OrchestratorError as exc:
        fail(exc.message)
    if recorder is not None and result.ok:
        _save_responses(folder, run, result, recorder, quiet=as_json)
    elif recorder is not None:
        note("the run failed: no responses saved")
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str, ensure_ascii=False))
        if not result.ok:
            raise typer.Exit(1)
        return
    for line in dr.format_result(result):
        typer.echo(line)
    if not result.ok:
        fail(dr.format_error(result))


def _save_responses(folder: Folder, run: Any, result: Any, recorder: Any, *, quiet: bool) -> None:
    from orchestrator.testing.mocks import mocks_dir, save_run

    script = run.script
    target = mocks_dir(folder.path, script.integration, script.name)
    context = recorder.context
    info = {"kind": script.kind, "integration": script.integration, "script": script.name,
            "provider": context.get("provider"), "connection_id": run.connection_id,
            "metadata": run.metadata if run.metadata is not None else context.get("metadata"),
            "connection_config": context.get("connection_config") or {},
            "last_sync_date": run.last_sync_date.isoformat() if run.last_sync_date else None,
            "input": run.input}
    with writing(target):
        save_run(target, exchanges=recorder.exchanges, run=recorder.redact(info),
                 records=recorder.redact(result.records), output=recorder.redact(result.output), kind=script.kind)
    if not quiet:
        note(f"saved {len(recorder.exchanges)} response(s) and the {'output' if script.kind == 'action' else 'records'}"
             f" to {shown(target)} (replay with `nango test {script.name}`)")


def deploy(
    folder_: PathArg = None,
    environment: EnvOpt = None,
    server: ServerOpt = None,
    secret_key: KeyOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove syncs and actions without asking.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's answer as JSON.")] = False,
    sync: Annotated[list[str] | None, typer.Option("--sync", help="Deploy only this sync (repeatable).")] = None,
    action: Annotated[list[str] | None, typer.Option("--action", help="Deploy only this action (repeatable).")]
    = None,
    show_history: Annotated[bool, typer.Option("--history", help="List earlier deploys and exit.")] = False,
    rollback: Annotated[int | None, typer.Option("--rollback", help="Re-apply this deploy VERSION and exit.")]
    = None,
    integration: Annotated[str | None, typer.Option("--integration", help="With --history/--rollback.")] = None,
    path: PathOpt = None,
) -> None:
    """Compile and upload every integration to the server; asks before removing a sync or action.

    Progress (compiling, uploading) goes to stderr; the result to stdout (one JSON document with --json)."""
    from orchestrator.client import ApiError, NangoClient

    folder = folder_arg(folder_, path)
    target = settings_discovery.target(folder.path, server, secret_key, environment)
    if show_history or rollback is not None:
        _history_or_rollback(target, show_history, rollback, integration, as_json)
        return
    config = load(folder)
    only = [f"sync:{n}" for n in sync or []] + [f"action:{n}" for n in action or []]
    if not config.integrations:
        fail(f"{shown(folder.yaml)} declares no integration: nothing to deploy")
    progress(f"compiling {_count(len(config.integrations), 'integration')}: {', '.join(config.integrations)}")
    bundles = _compile(folder, config)
    for bundle in bundles:
        progress(f"  {bundle.integration}: {_count(len(bundle.manifest['scripts']), 'script')}, "
                 f"{_count(len(bundle.manifest['files']), 'file')} (sha256 {bundle.sha256[:12]})")
    where = f" ({target.environment})" if target.environment else ""
    from orchestrator.cli.providers import read_folder_providers

    providers = read_folder_providers(folder.path)  # the folder's providers.yaml (custom providers), if any

    async def send(allow_removal: bool) -> dict[str, Any]:
        async with NangoClient(target.server, target.secret_key) as api:
            return await api.deploy(bundles, allow_removal=allow_removal, providers=providers, only=only or None,
                                    deployed_by=_deployer())

    def upload(allow_removal: bool) -> dict[str, Any]:
        import aiohttp

        what = f"{' '.join(only)} of " if only else ""
        progress(f"uploading {what}{_count(len(bundles), 'bundle')} to {target.server}{where}")
        try:
            return asyncio.run(send(allow_removal))
        except ApiError as exc:
            if exc.status == 401:
                fail(f"deploy failed: {target.server} refused the secret key ({exc.message})")
            fail(f"deploy failed: {exc.status} {exc.message}")
        except aiohttp.ClientConnectionError as exc:
            fail(f"deploy failed: {api_unreachable(target.server, exc)}")

    result = upload(yes)
    if result.get("needs_confirmation"):
        typer.echo("this deploy removes:")
        for plan in result["integrations"]:
            for label in plan["removed"]:
                typer.echo(f"  {plan['integration']}: {_label(label)}")
        try:
            confirmed = typer.confirm("Remove them?", default=False)
        except typer.Abort:  # no answer (stdin closed)
            confirmed = False
        if not confirmed:
            fail("nothing deployed (pass --yes to remove them)")
        result = upload(True)
    if as_json:
        for plan in result.get("integrations") or []:  # the per-integration result, for a human watching
            counts = [f"{len(plan.get(kind) or [])} {kind}" for kind in ("added", "updated", "removed")]
            progress(f"{plan['integration']}: {', '.join(counts)}")
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"deployed to {target.server}{where}")
    for plan in result["integrations"]:
        changes = [(kind, plan.get(kind) or []) for kind in ("added", "updated", "removed")]
        if not any(labels for _, labels in changes):
            typer.echo(f"{plan['integration']}: no changes")
            continue
        typer.echo(f"{plan['integration']}:")
        for kind, labels in changes:
            for label in labels:
                typer.echo(f"  {kind:<8} {_label(label)}")


def _label(label: str) -> str:
    kind, _, name = label.partition(":")
    return f"{kind} {name}" if name else label


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _deployer() -> str:
    import getpass
    import socket

    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # no user database in some containers
        return f"uid{os.getuid()}@{socket.gethostname()}"


def _history_or_rollback(target: Any, show_history: bool, version: int | None, integration: str | None,
                         as_json: bool) -> None:
    from orchestrator.client import ApiError, NangoClient

    async def run() -> Any:
        async with NangoClient(target.server, target.secret_key) as api:
            if show_history:
                return await api.deploy_history(integration)
            if not integration:
                fail("--rollback needs --integration NAME")
            assert version is not None
            return await api.rollback(integration, version, deployed_by=_deployer())

    import aiohttp

    what = "history" if show_history else "rollback"
    try:
        result = asyncio.run(run())
    except ApiError as exc:
        fail(f"{what} failed: {exc.status} {exc.message}")
    except aiohttp.ClientConnectionError as exc:
        fail(f"{what} failed: {api_unreachable(target.server, exc)}")
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    if show_history:
        for row in result:
            changed = {k: v for k, v in row["changes"].items() if v and k != "unchanged"}
            note = f" (rollback to v{row['rollback_of']})" if row.get("rollback_of") else ""
            typer.echo(f"{row['integration']} v{row['version']}  {row['deployed_at']}  {row['deployed_by']}  "
                       f"{row['bundle_sha256'][:12]}{note}  {json.dumps(changed) if changed else 'no changes'}")
        return
    typer.echo(f"rolled back {integration} to version {version}")
