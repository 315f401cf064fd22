"""The `nango` command."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import authoring, templates_cmd, testing_cmd
from orchestrator.cli.admin import admin_app
from orchestrator.cli.common import fail, read_dotenv
from orchestrator.cli.env import env_app
from orchestrator.cli.objects import connections_app, integrations_app
from orchestrator.cli.providers import providers_app
from orchestrator.errors import OrchestratorError

app = typer.Typer(help="Python-native integration scripts on Temporal (Nango-compatible).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _settings():  # type: ignore[no-untyped-def]
    from orchestrator.cli.settings_discovery import load_settings

    return load_settings()


def package_version() -> str:
    """The installed package's version (pyproject.toml's, through the package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nango-orchestrator")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"nango {package_version()}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Python-native integration scripts on Temporal (Nango-compatible)."""


@app.command(name="version")
def version_() -> None:
    """Print the version."""
    _print_version(True)


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
    from orchestrator.cli.settings_discovery import dotenv_path, run
    from orchestrator.devstack.dev import DevOptions, run_dev

    # the stack's own settings: the environment, then the folder's .env (never a running stack's dev.json)
    given = {**read_dotenv(dotenv_path()), **os.environ}
    _logging(given.get("LOG_LEVEL") or "INFO")
    opts = DevOptions(home=home, integrations=integrations, api_port=api_port, temporal_port=temporal_port,
                      temporal_ui_port=temporal_ui_port, postgres_port=postgres_port, provider_port=provider_port,
                      database_url=given.get("DATABASE_URL") or None,
                      temporal_address=given.get("TEMPORAL_ADDRESS") or None, env_file=dotenv_path())
    run(lambda: run_dev(opts), command="nango dev")


@app.command()
def server() -> None:
    """Run the API server (and dashboard)."""
    from aiohttp import web

    from orchestrator.api.app import create_app

    settings = _settings()
    _logging(settings.log_level)
    try:
        web.run_app(create_app(settings), host=settings.api_host, port=settings.api_port, access_log=None,
                    print=None)
    except OrchestratorError as exc:  # gave up waiting, or ENCRYPTION_KEY does not match the database
        fail(f"nango server: {exc.message}")


@app.command()
def worker() -> None:
    """Run a Temporal worker for syncs, actions, webhooks and events."""
    from orchestrator.cli.settings_discovery import run
    from orchestrator.worker import run_worker

    settings = _settings()
    _logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)  # waits for PostgreSQL and Temporal first; SIGTERM ends the wait

    # gave up waiting (STARTUP_WAIT_MAX_S), a refused login, no sandbox: the reason in one line, no traceback
    run(main, command="nango worker")


@app.command()
def migrate() -> None:
    """Apply database migrations and register Temporal search attributes (idempotent)."""
    import asyncpg

    from orchestrator import startup
    from orchestrator.cli.settings_discovery import run
    from orchestrator.platform import check_key_fingerprint, database_connect_failed, sealer_for
    from orchestrator.store.migrate import migrate as apply
    from orchestrator.temporal.client import connect, register_search_attributes, search_attributes_to_register

    settings = _settings()
    _logging(settings.log_level)
    url = settings.database_url.get_secret_value()

    async def main() -> None:
        conn = await startup.reach(
            "PostgreSQL", startup.address(url, 5432), "DATABASE_URL", lambda: asyncpg.connect(
                url, password=settings.database_password.get_secret_value() or None),
            failed=database_connect_failed)
        try:
            applied = await apply(conn)
            if settings.encryption_key.get_secret_value():  # the chart's hook has no key: the API/worker write it
                await check_key_fingerprint(conn, sealer_for(settings))
        finally:
            await conn.close()
        typer.echo(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        if not settings.temporal_register_search_attributes:  # the operator registers them (Temporal Cloud)
            typer.echo(f"search attributes: not registered (TEMPORAL_REGISTER_SEARCH_ATTRIBUTES=false); namespace "
                       f"{settings.temporal_namespace} needs {', '.join(search_attributes_to_register())}")
            return
        client = await startup.reach("Temporal", startup.address(settings.temporal_address, 7233),
                                     "TEMPORAL_ADDRESS", lambda: connect(settings), failed=startup.temporal_retryable)
        added = await register_search_attributes(client, settings.temporal_namespace)
        typer.echo(f"search attributes added: {', '.join(added) or 'none (already registered)'}")

    run(main, command="nango migrate")  # also: ENCRYPTION_KEY does not match the database's fingerprint


# The authoring commands live in orchestrator/cli/authoring.py.
app.command()(authoring.init)
app.command()(authoring.validate)
app.command()(authoring.generate)
app.command(name="compile")(authoring.compile_)
app.command()(authoring.dryrun)
app.command()(authoring.deploy)
app.command(name="migrate-to-code")(authoring.migrate_to_code)
app.command(name="export-yaml")(authoring.export_yaml)
app.command(name="test")(testing_cmd.test)
app.command()(templates_cmd.templates)
app.command()(templates_cmd.add)
app.add_typer(admin_app, name="admin")
app.add_typer(env_app, name="env")
app.add_typer(providers_app, name="providers")
app.add_typer(integrations_app, name="integrations")
app.add_typer(connections_app, name="connections")


def main() -> None:
    app()
