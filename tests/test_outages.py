"""Outages at the edges (issue 23, point 5): the API answers 503 with Retry-After while PostgreSQL is
unavailable, a worker started while PostgreSQL or Temporal is down waits for it (saying what it waits
for) and still stops cleanly on SIGTERM, and the worker's health server binds where the operator says."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.api.app import create_app
from orchestrator.api.keys import PLATFORM
from orchestrator.config.settings import Settings
from orchestrator.startup import DependencyUnavailableError, StartupAborted, address, wait_for
from orchestrator.worker import health_server
from tests.conftest import Stack, eventually
from tests.test_faults import WorkerProcess


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the API: 503 + Retry-After -------------------------------------------------------------------

async def test_the_api_answers_503_with_retry_after_while_the_database_is_unavailable(
        stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with TestClient(TestServer(create_app(stack.settings, temporal=stack.client))) as client:
        platform = client.app[PLATFORM]
        headers = {"Authorization": f"Bearer {key}"}
        assert (await client.get("/jobs", headers=headers)).status == 200
        # the database goes away: the app's pool now reaches a closed port (a real asyncpg pool, connecting lazily)
        dead = await asyncpg.create_pool(f"postgresql://nango@127.0.0.1:{closed_port()}/nango", min_size=0,
                                         timeout=5)
        live = platform.pool
        object.__setattr__(platform, "pool", dead)  # Platform is a frozen dataclass
        for path in ("/jobs", "/connections"):
            resp = await client.get(path, headers=headers)
            assert resp.status == 503, await resp.text()
            assert resp.headers["Retry-After"] == str(stack.settings.api_retry_after_s)
            body = await resp.json()
            assert body["error"]["code"] == "database_unavailable"
            assert "database" in body["error"]["message"]
        object.__setattr__(platform, "pool", live)
        await dead.close()
        assert (await client.get("/jobs", headers=headers)).status == 200


# ---- start-up: waiting for PostgreSQL and Temporal ------------------------------------------------

async def test_wait_for_backs_off_gives_up_at_its_limit_and_stops_on_request() -> None:
    calls: list[float] = []

    async def refused() -> None:
        calls.append(asyncio.get_running_loop().time())
        raise ConnectionRefusedError("refused")
    with pytest.raises(DependencyUnavailableError, match="STARTUP_WAIT_MAX_S=2"):
        await wait_for("PostgreSQL", "127.0.0.1:1", refused, max_wait_s=2, retryable=lambda e: True)
    assert len(calls) == 2  # at once, then after 1 s; the next (2 s later) would pass the limit
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    with pytest.raises(StartupAborted):
        await wait_for("Temporal", "127.0.0.1:1", refused, max_wait_s=0, retryable=lambda e: True, stop=stop)
    async def refused_for_good() -> None:
        raise ValueError("password authentication failed")
    with pytest.raises(ValueError):  # what no wait can fix is raised at once
        await wait_for("PostgreSQL", "x", refused_for_good, max_wait_s=0,
                       retryable=lambda e: not isinstance(e, ValueError))
    assert address("postgresql://user:secret@db.internal:6432/nango", 5432) == "db.internal:6432"
    assert address("localhost:7233", 7233) == "localhost:7233"


async def _spawn(proc_env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = await asyncio.to_thread(open, log, "wb")
    try:
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "orchestrator", "worker", env=proc_env,
                                                    stdout=out, stderr=out, start_new_session=True)
    finally:
        out.close()


@contextlib.asynccontextmanager
async def _worker(stack: Stack, tmp_path: Path, **env: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    template = WorkerProcess(stack, "o-", tmp_path, LOG_FORMAT="console", **env)
    proc = await _spawn(template.env, template.log)
    try:
        yield proc, template.log
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@pytest.mark.parametrize("what", ["PostgreSQL", "Temporal"])
async def test_a_worker_started_while_a_dependency_is_down_waits_and_stops_cleanly_on_sigterm(
        stack: Stack, tmp_path: Path, what: str) -> None:
    port = closed_port()
    env = ({"DATABASE_URL": f"postgresql://nango:hunter2-secret@127.0.0.1:{port}/nango"} if what == "PostgreSQL"
           else {"TEMPORAL_ADDRESS": f"127.0.0.1:{port}"})
    async with _worker(stack, tmp_path, **env) as (proc, log):
        async def waiting() -> None:
            text = log.read_text()
            assert f"waiting for {what} at 127.0.0.1:{port} (attempt 2, next in 2 s)" in text, text[-3000:]
        await eventually(waiting, timeout=40)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 15)
        text = log.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "hunter2-secret" not in text
    assert "worker_stopped" in text


async def test_a_worker_gives_up_after_startup_wait_max_s_with_the_reason_and_no_traceback(
        stack: Stack, tmp_path: Path) -> None:
    port = closed_port()
    async with _worker(stack, tmp_path, DATABASE_URL=f"postgresql://nango@127.0.0.1:{port}/nango",
                       STARTUP_WAIT_MAX_S="2") as (proc, log):
        code = await asyncio.wait_for(proc.wait(), 40)
        text = log.read_text()
    assert code == 1, text[-3000:]
    assert f"PostgreSQL at 127.0.0.1:{port} did not answer within STARTUP_WAIT_MAX_S=2 s" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


# ---- the worker's health server binds where it is told --------------------------------------------

def _listening_on(port: int) -> set[str]:
    """The IPv4 addresses listening on `port`, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(host)[::-1]))
    return found


@pytest.mark.parametrize(("api_host", "health_host", "expected"), [
    ("127.0.0.1", "", "127.0.0.1"),  # `nango dev` and the default: loopback, as the API
    ("0.0.0.0", "", "0.0.0.0"),  # the image and the chart: where the kubelet's probes reach it
    ("127.0.0.1", "0.0.0.0", "0.0.0.0"),  # the operator says
])
async def test_the_worker_health_server_binds_where_the_operator_says(api_host: str, health_host: str,
                                                                      expected: str) -> None:
    port = closed_port()
    settings = Settings(api_host=api_host, worker_health_host=health_host, worker_health_port=port)
    async with health_server(settings, None):  # type: ignore[arg-type]  # the pool is used per request only
        assert _listening_on(port) == {expected}
