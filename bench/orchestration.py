"""Orchestration benchmark: prints one JSON object.

- schedules: create N connection-sync schedules (paused) the way deploy/reconcile does;
- trigger_to_start: schedule trigger -> the script's job opened, p50/p95;
- action round trip through the API (POST /action/trigger, ActionWorkflow, runner) p50/p95, and the same
  trivial action run directly in a runner without Temporal or HTTP (the raw baseline), with the ratio.

Everything runs on this machine: embedded PostgreSQL, the Temporal dev server binary, the API and one
worker in this process. `python bench/orchestration.py [--schedules 10000] [--samples 30]`
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from orchestrator.api.app import create_app  # noqa: E402
from orchestrator.authoring.compile import compile_project  # noqa: E402
from orchestrator.client import NangoClient  # noqa: E402
from orchestrator.config.settings import Settings  # noqa: E402
from orchestrator.crypto import new_secret_key  # noqa: E402
from orchestrator.demo_provider import DemoState  # noqa: E402
from orchestrator.demo_provider import serve as serve_demo  # noqa: E402
from orchestrator.devstack.postgres import EmbeddedPostgres  # noqa: E402
from orchestrator.devstack.processes import free_port  # noqa: E402
from orchestrator.devstack.temporal import TemporalDevServer  # noqa: E402
from orchestrator.logging import configure_logging  # noqa: E402
from orchestrator.runner.host import Limits, Runner, RunSpec, run_script  # noqa: E402
from orchestrator.store import environments as environments_repo  # noqa: E402
from orchestrator.store.migrate import migrate  # noqa: E402
from orchestrator.store.pool import create_pool  # noqa: E402
from orchestrator.temporal import names, schedules  # noqa: E402
from orchestrator.temporal.client import connect  # noqa: E402
from orchestrator.temporal.types import SyncInput  # noqa: E402
from orchestrator.worker import run_worker  # noqa: E402

TRIVIAL_ACTION = "async def run_action(nango, input):\n    return {'echo': input}\n"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def bench_schedules(client, count: int) -> dict:  # type: ignore[no-untyped-def]
    env = "bench" + uuid.uuid4().hex[:6]
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await schedules.ensure(client, SyncInput(1, env, "github", f"conn-{i}", "issues"),
                                   interval=timedelta(hours=1), task_queue="bench-none", paused=True)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    return {"schedules_created": count, "schedules_seconds": round(elapsed, 2),
            "schedules_per_s": round(count / elapsed, 1), "ms_per_schedule": round(elapsed / count * 1000, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    configure_logging("WARNING", "console")  # logs to stderr; stdout carries only the JSON
    home = ROOT / ".nango" / f"bench-orch-{uuid.uuid4().hex[:6]}"
    home.mkdir(parents=True)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, home, True)
        pg = EmbeddedPostgres(home / "pg", free_port(), durable=False)
        dsn = await pg.start()
        stack.push_async_callback(pg.stop)
        temporal = TemporalDevServer(port=free_port(), ui_port=None, db_file=None, log_file=home / "temporal.log")
        await temporal.start()
        stack.push_async_callback(temporal.stop)
        settings = Settings(database_url=SecretStr(dsn), temporal_address=temporal.address,
                            bundle_dir=home / "bundles", bundle_cache_dir=home / "cache",
                            encryption_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
                            api_port=free_port(), worker_health_port=0, reconcile_interval_s=0)
        pool = await create_pool(settings)
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await migrate(conn)
            key = new_secret_key()
            await environments_repo.create(conn, "bench", key)
        client = await connect(settings)
        out: dict = {}
        out.update(await bench_schedules(client, args.schedules))

        demo = DemoState()
        provider_port = free_port()
        demo_runner = await serve_demo("127.0.0.1", provider_port, demo)
        stack.push_async_callback(demo_runner.cleanup)
        runner = web.AppRunner(create_app(settings, temporal=client), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.api_port).start()
        stack.push_async_callback(runner.cleanup)
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop, client=client))

        async def stop_worker() -> None:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker, 30)
        stack.push_async_callback(stop_worker)

        folder = home / "ints"
        shutil.copytree(ROOT / "examples" / "nango-integrations", folder)
        (folder / "github/actions/create_issue.py").write_text(TRIVIAL_ACTION)
        text = (folder / "nango.yaml").read_text()
        text = text.replace("        input: CreateIssue\n        output: GithubIssue\n", "")
        (folder / "nango.yaml").write_text(text.replace("        sync_type: incremental\n",
                                                        "        sync_type: incremental\n        auto_start: false\n"))
        api_url = f"http://127.0.0.1:{settings.api_port}"
        async with NangoClient(api_url, key) as api:
            await api.deploy(compile_project(folder))
            await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": "demo-token"},
                                        connection_config={"base_url": f"http://127.0.0.1:{provider_port}"},
                                        metadata={"repo": "demo/hello-world"})
            # trigger -> script start
            sid = names.sync_schedule_id("bench", "github", "conn-1", "issues")
            latencies: list[float] = []
            for _ in range(args.samples):
                async with pool.acquire() as conn:
                    before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM jobs")
                    t0 = await conn.fetchval("SELECT clock_timestamp()")
                await schedules.trigger(client, sid)
                while True:
                    async with pool.acquire() as conn:
                        row = await conn.fetchrow("SELECT started_at, status FROM jobs WHERE id > $1"
                                                  " AND kind = 'sync' ORDER BY id LIMIT 1", before)
                    if row and row["status"] != "running":
                        break
                    await asyncio.sleep(0.02)
                latencies.append((row["started_at"] - t0).total_seconds())
            out["trigger_to_start_p50_ms"] = pct(latencies, 0.5)
            out["trigger_to_start_p95_ms"] = pct(latencies, 0.95)
            # action round trip through the API
            headers = {"Connection-Id": "conn-1", "Provider-Config-Key": "github"}
            trips: list[float] = []
            for i in range(args.samples):
                t = time.perf_counter()
                res = await api.request("POST", "/action/trigger", json={"action_name": "create-issue", "input": i},
                                        headers=headers)
                trips.append(time.perf_counter() - t)
                assert res == {"echo": i}, res
        # the same action run directly in a runner: no HTTP, no Temporal, no database
        bundle = folder

        class Host:
            async def call(self, method: str, params: dict) -> None:
                return None

            def log(self, *a: object) -> None:
                pass

        # warm children, as the worker keeps them: the baseline is the runner itself, not a cold start
        runner_pool = await Runner.create(warm=2)
        runner_pool.prewarm(Limits())
        stack.push_async_callback(runner_pool.close)
        await asyncio.sleep(1)
        direct: list[float] = []
        for i in range(args.samples):
            t = time.perf_counter()
            outcome = await run_script(RunSpec(kind="action", bundle_dir=bundle,
                                               module_path="github/actions/create_issue.py", timeout_s=60,
                                               context={"connection_id": "c", "provider_config_key": "github",
                                                        "input": i}), Host(), runner=runner_pool)
            direct.append(time.perf_counter() - t)
            assert outcome.ok and outcome.output == {"echo": i}, outcome
        out.update({
            "action_api_p50_ms": pct(trips, 0.5), "action_api_p95_ms": pct(trips, 0.95),
            "action_direct_runner_p50_ms": pct(direct, 0.5), "action_direct_runner_p95_ms": pct(direct, 0.95),
            "action_overhead_ratio_p50": round(statistics.median(trips) / statistics.median(direct), 2),
            "samples": args.samples,
        })
        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
