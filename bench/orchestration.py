"""Orchestration benchmark: Temporal's floor beside what an action and a sync pay above it. One JSON object.

Measured in one run, on this machine (embedded PostgreSQL, the Temporal dev server binary with the same
dynamic config `nango dev` gives it, the API and one worker in this process sharing one Temporal client,
as `nango dev` runs them):

- bare: a workflow with one no-op activity, started and awaited by the client (the floor), calls spaced
  100 ms apart and back to back;
- action: a trivial action through the API (POST /action/trigger -> ActionWorkflow -> the sandboxed runner
  -> the job row), spaced 100 ms and back to back;
- trigger_to_start: a schedule trigger until the sync's job is opened (prepare_sync), p50/p95;
- the ratios the issue states its goals in: action/bare spaced (<= 1.3), back-to-back/spaced (<= 1.5).

`python -m bench.orchestration [--samples 40] [--no-fork-server]`: about a minute. By default the worker forks
each run from a warm template (RUNNER_FORK_SERVER=true, the product's default); `--no-fork-server` gives each
run its own bwrap sandbox. Everything it starts is stopped and its folder under .nango/ removed.
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
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from temporalio import activity, workflow  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

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
from orchestrator.providers.egress import entry_for  # noqa: E402
from orchestrator.runs import scripts as script_runs  # noqa: E402
from orchestrator.store import environments as environments_repo  # noqa: E402
from orchestrator.store.migrate import migrate  # noqa: E402
from orchestrator.store.pool import create_pool  # noqa: E402
from orchestrator.temporal import names, schedules  # noqa: E402
from orchestrator.temporal.client import connect  # noqa: E402
from orchestrator.worker import run_worker  # noqa: E402

RUNS: list[float] = []  # how long each run_script of the in-process worker took, for attribution


def timed_run_script() -> None:
    """Time the worker's own run_script calls (the real function, wrapped): the runner's share of an action."""
    real = script_runs.run_script

    async def run_script(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await real(*args, **kwargs)
        finally:
            RUNS.append(time.perf_counter() - started)
    script_runs.run_script = run_script  # type: ignore[assignment]

SPANS: dict[str, dict[str, list[float]]] = {}  # --spans: each timed step of an action, every call, by series
SERIES = ["other"]  # the series the calls being timed belong to (spaced, back_to_back; other: setup, syncs)


def timed_steps() -> None:
    """--spans: time the real functions on an action's path where its callers look them up (wrapped, not
    replaced): the API handler's steps, run_job's reads before the script, the runner, closing the job."""
    from orchestrator.api import actions
    from orchestrator.runs import attempts
    from orchestrator.store import connections, environment_variables, environments, integrations, jobs
    from orchestrator.store import scripts as scripts_repo

    def wrap(owner: Any, name: str, label: str) -> None:
        real = getattr(owner, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await real(*args, **kwargs)
            finally:
                SPANS.setdefault(SERIES[0], {}).setdefault(label, []).append(time.perf_counter() - started)
        setattr(owner, name, timed)
    for owner, name, label in (
            (actions, "run_action", "api: handler, all of it"), (actions, "load_connection", "api: connection"),
            (actions, "start_action", "api: start_action (eager start)"), (jobs, "open_job", "job opened"),
            (script_runs, "run_job", "worker: run_job, all of it"), (jobs, "get", "run_job: job row"),
            (attempts, "record", "run_job: attempt counted"), (environments, "by_id", "run_job: environment"),
            (environment_variables, "list_all", "run_job: environment variables"),
            (integrations, "get", "run_job: integration"), (connections, "get", "connection (API and run_job)"),
            (scripts_repo, "get", "script row (API and run_job)"),
            (script_runs, "resolve_provider", "run_job: provider"),
            (script_runs, "run_script", "run_job: run_script"), (jobs, "close_job", "run_job: job closed")):
        wrap(owner, name, label)


TRIVIAL_ACTION = "async def run_action(nango, input):\n    return {'echo': input}\n"
BARE_QUEUE = "bench-bare"
SPACING_S = 0.1


@activity.defn(name="bench_noop")
async def noop(value: int) -> int:
    return value


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        return await workflow.execute_activity("bench_noop", value, result_type=int,
                                               start_to_close_timeout=timedelta(seconds=30))


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def series(call: Callable[[int], Awaitable[None]], samples: int, spacing: float) -> list[float]:
    """Latency of `samples` calls, one at a time, `spacing` seconds apart (0: back to back); two warm-up calls."""
    for i in range(2):
        await call(-1 - i)
    out: list[float] = []
    for i in range(samples):
        t = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - t)
        if spacing:
            await asyncio.sleep(spacing)
    return out


def figures(prefix: str, values: list[float]) -> dict[str, float]:
    return {f"{prefix}_p50_ms": ms(values, 0.5), f"{prefix}_p95_ms": ms(values, 0.95)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--spans", action="store_true",
                        help="also time each step of an action (API, run_job's reads, runner, close): spans_p50_ms")
    parser.add_argument("--fork-server", action=argparse.BooleanOptionalAction, default=True,
                        help="RUNNER_FORK_SERVER, on by default as in the product: runs forked from a warm template "
                        "(runner/forkserver.py); --no-fork-server: a bwrap sandbox per run")
    args = parser.parse_args()
    configure_logging("WARNING", "console")  # logs to stderr; stdout carries only the JSON
    timed_run_script()
    if args.spans:
        timed_steps()
    home = ROOT / ".nango" / f"bench-orch-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    home.mkdir(parents=True)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, home, True)
        pg = EmbeddedPostgres(home / "pg", free_port(), durable=False)
        dsn = await pg.start()
        stack.push_async_callback(pg.stop)
        temporal = TemporalDevServer(port=free_port(), ui_port=None, db_file=None, log_file=home / "temporal.log")
        await temporal.start()
        stack.push_async_callback(temporal.stop)
        provider_port = free_port()
        settings = Settings(database_url=SecretStr(dsn), temporal_address=temporal.address,
                            bundle_dir=home / "bundles", bundle_cache_dir=home / "cache",
                            encryption_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
                            api_port=free_port(), worker_health_port=0, reconcile_interval_s=0,
                            runner_fork_server=args.fork_server, egress_allow=entry_for(f"http://127.0.0.1:{provider_port}"))
        pool = await create_pool(settings)
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await migrate(conn)
            key = new_secret_key()
            await environments_repo.create(conn, "bench", key)
        client = await connect(settings)

        demo_runner = await serve_demo("127.0.0.1", provider_port, DemoState())
        stack.push_async_callback(demo_runner.cleanup)
        api_runner = web.AppRunner(create_app(settings, temporal=client), access_log=None)
        await api_runner.setup()
        await web.TCPSite(api_runner, "127.0.0.1", settings.api_port).start()
        stack.push_async_callback(api_runner.cleanup)
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop, client=client))

        async def stop_worker() -> None:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker, 30)
        stack.push_async_callback(stop_worker)
        bare = Worker(client, task_queue=BARE_QUEUE, workflows=[BareWorkflow], activities=[noop],
                      workflow_runner=UnsandboxedWorkflowRunner())
        bare_task = asyncio.create_task(bare.run())

        async def stop_bare() -> None:
            await bare.shutdown()
            with contextlib.suppress(Exception):
                await bare_task
        stack.push_async_callback(stop_bare)

        folder = home / "ints"
        shutil.copytree(ROOT / "examples" / "nango-integrations", folder)
        (folder / "github/actions/create_issue.py").write_text(TRIVIAL_ACTION)
        text = (folder / "nango.yaml").read_text()
        text = text.replace("        input: CreateIssue\n        output: GithubIssue\n", "")
        (folder / "nango.yaml").write_text(text.replace("        sync_type: incremental\n",
                                                        "        sync_type: incremental\n        auto_start: false\n"))
        out: dict[str, object] = {}
        async with NangoClient(f"http://127.0.0.1:{settings.api_port}", key) as api:
            await api.deploy(compile_project(folder))
            await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": "demo-token"},
                                        connection_config={"base_url": f"http://127.0.0.1:{provider_port}"},
                                        metadata={"repo": "demo/hello-world"})

            async def bare_call(i: int) -> None:
                got = await client.execute_workflow(BareWorkflow.run, i, id=f"bench-bare-{uuid.uuid4()}",
                                                    task_queue=BARE_QUEUE)
                assert got == i, got

            headers = {"Connection-Id": "conn-1", "Provider-Config-Key": "github"}
            answered: dict[str, float] = {}  # when the caller had each answer (wall clock)

            def action_call(series_name: str, runner_times: list[float]) -> Callable[[int], Awaitable[None]]:
                async def call(i: int) -> None:
                    value = {"series": series_name, "i": i, "k": uuid.uuid4().hex}
                    RUNS.clear()
                    SERIES[0] = series_name if i >= 0 else "other"
                    res = await api.request("POST", "/action/trigger",
                                            json={"action_name": "create-issue", "input": value}, headers=headers)
                    assert res == {"echo": value}, res
                    if i >= 0:  # not a warm-up call
                        runner_times.append(sum(RUNS))
                        answered[value["k"]] = time.time()
                return call

            # interleaved, so a slow phase of a shared machine does not land on one series only
            bare_spaced, action_spaced, bare_b2b, action_b2b = [], [], [], []
            runner_spaced: list[float] = []
            runner_b2b: list[float] = []
            rounds = 4
            for _ in range(rounds):
                bare_spaced += await series(bare_call, args.samples // rounds, SPACING_S)
                action_spaced += await series(action_call("spaced", runner_spaced), args.samples // rounds, SPACING_S)
                bare_b2b += await series(bare_call, args.samples // rounds, 0)
                action_b2b += await series(action_call("back_to_back", runner_b2b), args.samples // rounds, 0)

            SERIES[0] = "other"
            sid = names.sync_schedule_id("bench", "github", "conn-1", "issues")
            starts: list[float] = []
            for _ in range(max(10, args.samples // 2)):
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
                starts.append((row["started_at"] - t0).total_seconds())
                await asyncio.sleep(SPACING_S)

            # where an action's time goes: the job row's life (opened by the API, closed by run_script_job)
            async with pool.acquire() as conn:
                rows = await conn.fetch("SELECT input->>'series' AS series, input->>'k' AS k,"
                                        " extract(epoch FROM ended_at - started_at) AS open_s,"
                                        " extract(epoch FROM ended_at) AS ended FROM jobs"
                                        " WHERE kind = 'action' AND (input->>'i')::int >= 0")
        med = statistics.median
        out.update(figures("action_spaced_runner", runner_spaced))
        out.update(figures("action_back_to_back_runner", runner_b2b))
        above_spaced = [t - r for t, r in zip(action_spaced, runner_spaced, strict=True)]
        above_b2b = [t - r for t, r in zip(action_b2b, runner_b2b, strict=True)]
        out.update(figures("action_spaced_above_runner", above_spaced))
        out.update(figures("action_back_to_back_above_runner", above_b2b))
        for name in ("spaced", "back_to_back"):
            out[f"action_{name}_job_open_p50_ms"] = ms([float(r["open_s"]) for r in rows if r["series"] == name], 0.5)
            # the job row closed (PostgreSQL's clock, same machine) until the caller had the answer
            out[f"action_{name}_closed_to_answer_p50_ms"] = ms(
                [answered[r["k"]] - float(r["ended"]) for r in rows if r["series"] == name], 0.5)
        out.update(figures("bare_spaced", bare_spaced))
        out.update(figures("bare_back_to_back", bare_b2b))
        out.update(figures("action_spaced", action_spaced))
        out.update(figures("action_back_to_back", action_b2b))
        out.update(figures("trigger_to_start", starts))
        if SPANS:  # p50 per step and series (other: setup, warm-up calls, the sync triggers)
            out["spans_p50_ms"] = {series: {label: ms(values, 0.5) for label, values in steps.items()}
                                   for series, steps in SPANS.items()}
        out.update({
            "action_vs_bare_spaced": round(med(action_spaced) / med(bare_spaced), 2),
            "action_back_to_back_vs_spaced": round(med(action_b2b) / med(action_spaced), 2),
            "bare_back_to_back_vs_spaced": round(med(bare_b2b) / med(bare_spaced), 2),
            "trigger_to_start_vs_bare_spaced": round(med(starts) / med(bare_spaced), 2),
            # what an action pays above its script's run in the runner, against the floor
            "action_above_runner_vs_bare_spaced": round(
                med(above_spaced) / med(bare_spaced), 2),
            "targets": {"action_vs_bare_spaced": 1.3, "action_back_to_back_vs_spaced": 1.5},
            "samples": len(bare_spaced), "trigger_samples": len(starts), "fork_server": args.fork_server,
        })
        print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
