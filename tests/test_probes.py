"""Kubernetes probes (issue 17, "Operating it"): the worker's liveness is process-local (a stopped database
does not fail it), its readiness/startup endpoint says whether it has connected, and the API's readiness
depends on PostgreSQL only (a Temporal outage does not take it out of service) while /health reports both."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from temporalio.client import Client

from orchestrator.api.app import create_app
from orchestrator.api.keys import PLATFORM
from orchestrator.config.settings import Settings
from orchestrator.worker import WorkerHealth, health_server
from tests.conftest import Stack, eventually
from tests.test_faults import WorkerProcess
from tests.test_outages import _worker, closed_port


async def _get(port: int, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}",
                                                               timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return resp.status, await resp.json()


class TcpProxy:
    """A TCP forwarder to PostgreSQL that the test can cut, as a failover would (listener and connections)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()


# ---- the worker -------------------------------------------------------------------------------------

async def test_worker_liveness_never_touches_the_database_and_readiness_follows_the_phase() -> None:
    port = closed_port()
    health = WorkerHealth()
    async with health_server(Settings(api_host="127.0.0.1", worker_health_port=port), health):
        assert await _get(port, "/health/live") == (200, {"status": "ok", "phase": "starting"})
        assert await _get(port, "/health/ready") == (503, {"status": "starting", "phase": "starting"})
        health.phase = "serving"
        assert (await _get(port, "/health/ready"))[0] == 200
        health.phase = "stopping"
        assert await _get(port, "/health/ready") == (503, {"status": "stopping", "phase": "stopping"})
        assert (await _get(port, "/health/live"))[0] == 200


async def test_a_worker_waiting_for_its_database_is_live_but_not_started(stack: Stack, tmp_path: Path) -> None:
    health = closed_port()
    async with _worker(stack, tmp_path, WORKER_HEALTH_PORT=str(health), API_HOST="127.0.0.1",
                       DATABASE_URL=f"postgresql://nango@127.0.0.1:{closed_port()}/nango") as (proc, log):
        async def waiting() -> None:
            assert "waiting for PostgreSQL" in log.read_text()
        await eventually(waiting, timeout=40)
        assert (await _get(health, "/health/live"))[0] == 200
        assert await _get(health, "/health/ready") == (503, {"status": "starting", "phase": "starting"})
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0

async def test_a_stopped_database_does_not_fail_worker_liveness(stack: Stack, tmp_path: Path) -> None:
    dsn = urlsplit(stack.settings.database_url.get_secret_value())
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    async with proxy as proxy_port:
        netloc = dsn.netloc.rsplit("@", 1)
        via_proxy = urlunsplit(dsn._replace(netloc=(netloc[0] + "@" if len(netloc) == 2 else "")
                                            + f"127.0.0.1:{proxy_port}"))
        health = closed_port()
        worker = WorkerProcess(stack, "p-", tmp_path, WORKER_HEALTH_PORT=str(health), API_HOST="127.0.0.1",
                               DATABASE_URL=via_proxy)
        await worker.start()
        try:
            async def started() -> None:
                assert (await _get(health, "/health/ready"))[0] == 200
            await eventually(started, timeout=20)
            await proxy.cut()  # the database is gone for this worker
            for _ in range(3):
                assert await _get(health, "/health/live") == (200, {"status": "ok", "phase": "serving"})
                await asyncio.sleep(1)
            assert worker.proc is not None and worker.proc.returncode is None
            worker.proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(worker.proc.wait(), 20)
            assert code == 0, worker.log.read_text()[-3000:]
        finally:
            await worker.stop()


# ---- the API ---------------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _api(stack: Stack) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(stack.settings, temporal=stack.client))) as client:
        yield client


async def test_api_readiness_fails_without_the_database_but_not_without_temporal(stack: Stack) -> None:
    async with _api(stack) as client:
        platform = client.app[PLATFORM]
        assert (await client.get("/health/ready")).status == 200
        # Temporal is gone (a real client to a closed port): readiness holds, /health reports it
        dead_temporal = await Client.connect(f"127.0.0.1:{closed_port()}", lazy=True)
        live_temporal = platform.temporal_client
        object.__setattr__(platform, "temporal_client", dead_temporal)  # Platform is a frozen dataclass
        try:
            resp = await client.get("/health/ready")
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["checks"] == {"postgres": "ok"}
            resp = await client.get("/health")
            assert resp.status == 503
            checks = (await resp.json())["checks"]
            assert checks["postgres"] == "ok" and checks["temporal"].startswith("error")
        finally:
            object.__setattr__(platform, "temporal_client", live_temporal)
        # the database is gone: readiness fails, liveness holds
        dead = await asyncpg.create_pool(f"postgresql://nango@127.0.0.1:{closed_port()}/nango", min_size=0,
                                         timeout=5)
        live_pool = platform.pool
        object.__setattr__(platform, "pool", dead)
        try:
            resp = await client.get("/health/ready")
            assert resp.status == 503
            assert (await resp.json())["checks"]["postgres"].startswith("error")
            assert (await client.get("/health/live")).status == 200
        finally:
            object.__setattr__(platform, "pool", live_pool)
            await dead.close()
        assert (await client.get("/health/ready")).status == 200


@pytest.mark.parametrize("path", ["/health/ready", "/health/live", "/health"])
async def test_health_routes_are_public(stack: Stack, path: str) -> None:
    async with _api(stack) as client:
        assert (await client.get(path)).status in (200, 503)
