"""The `nango` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.errors import OrchestratorError

app = typer.Typer(help="Python-native integration scripts on Temporal (Nango-compatible).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def fail(message: str) -> None:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def _settings():  # type: ignore[no-untyped-def]
    from orchestrator.config.settings import Settings

    try:
        return Settings()
    except Exception as exc:
        fail(f"invalid settings: {exc}")


def _logging(level: str = "INFO") -> None:
    from orchestrator.logging import configure_logging

    configure_logging(level)


@app.command()
def dev(
    integrations: Annotated[Path, typer.Option(help="Integrations folder to deploy.")] = Path(
        "examples/nango-integrations"),
    home: Annotated[Path, typer.Option(help="Folder for the stack's data and dev.json.")] = Path(".nango"),
    api_port: Annotated[int, typer.Option(envvar="NANGO_DEV_API_PORT")] = 3003,
    temporal_port: Annotated[int, typer.Option(envvar="NANGO_DEV_TEMPORAL_PORT")] = 7233,
    temporal_ui_port: Annotated[int, typer.Option(envvar="NANGO_DEV_TEMPORAL_UI_PORT")] = 8233,
    postgres_port: Annotated[int, typer.Option(envvar="NANGO_DEV_POSTGRES_PORT")] = 5433,
    provider_port: Annotated[int, typer.Option(envvar="NANGO_DEV_PROVIDER_PORT")] = 3100,
) -> None:
    """Run the whole platform locally (PostgreSQL, Temporal + UI, API, worker, demo provider)."""
    from orchestrator.devstack.dev import DevOptions, run_dev

    _logging(os.environ.get("LOG_LEVEL", "INFO"))
    opts = DevOptions(home=home, integrations=integrations, api_port=api_port, temporal_port=temporal_port,
                      temporal_ui_port=temporal_ui_port, postgres_port=postgres_port, provider_port=provider_port,
                      database_url=os.environ.get("DATABASE_URL") or None,
                      temporal_address=os.environ.get("TEMPORAL_ADDRESS") or None)
    try:
        asyncio.run(run_dev(opts))
    except OrchestratorError as exc:
        fail(f"nango dev: {exc.message}")


@app.command()
def server() -> None:
    """Run the API server (and dashboard)."""
    from aiohttp import web

    from orchestrator.api.app import create_app

    settings = _settings()
    _logging(settings.log_level)
    web.run_app(create_app(settings), host=settings.api_host, port=settings.api_port, access_log=None,
                print=None)


@app.command()
def worker() -> None:
    """Run a Temporal worker for syncs, actions, webhooks and events."""
    from orchestrator.worker import run_worker

    settings = _settings()
    _logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())


@app.command()
def migrate() -> None:
    """Apply database migrations and register Temporal search attributes (idempotent)."""
    import asyncpg

    from orchestrator.store.migrate import migrate as apply
    from orchestrator.temporal.client import connect, register_search_attributes

    settings = _settings()
    _logging(settings.log_level)

    async def main() -> None:
        conn = await asyncpg.connect(settings.database_url.get_secret_value(),
                                     password=settings.database_password.get_secret_value() or None)
        try:
            applied = await apply(conn)
        finally:
            await conn.close()
        typer.echo(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        client = await connect(settings)
        added = await register_search_attributes(client, settings.temporal_namespace)
        typer.echo(f"search attributes added: {', '.join(added) or 'none (already registered)'}")

    asyncio.run(main())


def _load(path: Path):  # type: ignore[no-untyped-def]
    from orchestrator.config.nango_yaml import ConfigError, load_config

    file = path / "nango.yaml" if path.is_dir() else path
    if not file.exists():
        fail(f"no nango.yaml at {file}")
    try:
        return load_config(file)
    except ConfigError as exc:
        fail(str(exc))


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="nango.yaml or its folder")] = Path("."),
             as_json: Annotated[bool, typer.Option("--json", help="Print the parsed configuration.")] = False) -> None:
    """Parse and check nango.yaml."""
    config = _load(path)
    if as_json:
        typer.echo(config.model_dump_json(indent=2))
        return
    for key, integration in config.integrations.items():
        typer.echo(f"{key}: {len(integration.syncs)} sync(s), {len(integration.actions)} action(s)")
    typer.echo(f"{len(config.models)} model(s)")


@app.command()
def compile(path: Annotated[Path, typer.Argument(help="the integrations folder")] = Path(".")) -> None:
    """Validate, check scripts and build one bundle per integration into dist/."""
    from orchestrator.compile import compile_project

    config = _load(path)
    try:
        bundles = compile_project(path, config)
    except OrchestratorError as exc:
        fail(exc.message)
    out = path / "dist"
    out.mkdir(exist_ok=True)
    for bundle in bundles:
        (out / f"{bundle.integration}.zip").write_bytes(bundle.data)
        typer.echo(f"{bundle.integration}: {len(bundle.manifest['files'])} file(s), sha256 {bundle.sha256[:12]}")


@app.command()
def deploy(
    path: Annotated[Path, typer.Argument(help="the integrations folder")] = Path("."),
    server: Annotated[str, typer.Option(envvar="NANGO_HOSTPORT", help="API base URL.")] = "http://127.0.0.1:3003",
    secret_key: Annotated[str, typer.Option(envvar="NANGO_SECRET_KEY", help="The environment's secret key.")] = "",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove scripts without asking.")] = False,
) -> None:
    """Compile and upload the integrations to a server."""
    from orchestrator.client import ApiError, NangoClient
    from orchestrator.compile import compile_project

    if not secret_key:
        fail("no secret key: set NANGO_SECRET_KEY or pass --secret-key")
    config = _load(path)
    bundles = compile_project(path, config)

    async def send(allow_removal: bool) -> dict:  # type: ignore[type-arg]
        async with NangoClient(server, secret_key) as api:
            return await api.deploy(bundles, allow_removal=allow_removal)

    try:
        result = asyncio.run(send(yes))
        if result.get("needs_confirmation"):
            removed = [f"{p['integration']}/{r}" for p in result["integrations"] for r in p["removed"]]
            typer.echo("this deploy removes: " + ", ".join(removed))
            if not sys.stdin.isatty() or not typer.confirm("remove them?"):
                fail("nothing deployed (pass --yes to remove them)")
            result = asyncio.run(send(True))
    except ApiError as exc:
        fail(f"deploy failed: {exc.message}")
    for plan in result["integrations"]:
        changes = {k: plan[k] for k in ("added", "updated", "removed") if plan[k]}
        typer.echo(f"{plan['integration']}: " + (json.dumps(changes) if changes else "unchanged"))


def main() -> None:
    app()
