"""Scale-out on one stack: two workers and two API processes (DESIGN.md section 6: they scale horizontally)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

from orchestrator.control import reconcile
from orchestrator.devstack.processes import free_port, wait_for_port
from orchestrator.store import integrations as integrations_repo
from orchestrator.temporal import names, schedules
from tests.conftest import Stack, eventually, setup_github
from tests.test_faults import PAGES, PER_PAGE, WorkerProcess, _start_run, set_pause, slow_folder


async def _api_process(stack: Stack, tmp: Path, prefix: str) -> tuple[asyncio.subprocess.Process, str]:
    s = stack.settings
    port = free_port()
    env = {**os.environ, "DATABASE_URL": s.database_url.get_secret_value(), "TEMPORAL_ADDRESS": s.temporal_address,
           "MINIO_ENDPOINT": s.minio_endpoint, "MINIO_ACCESS_KEY": "testing", "MINIO_SECRET_KEY": "testing",
           "MINIO_BUCKET": s.minio_bucket, "ENCRYPTION_KEY": s.encryption_key.get_secret_value(),
           "TASK_QUEUE_PREFIX": prefix, "API_PORT": str(port), "RECONCILE_INTERVAL_S": "0", "LOG_FORMAT": "json",
           "EGRESS_ALLOW": s.egress_allow}
    log = await asyncio.to_thread(open, tmp / f"api-{port}.log", "wb")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "orchestrator", "server", env=env,
                                                stdout=log, stderr=log, start_new_session=True)
    log.close()
    await wait_for_port("127.0.0.1", port, 30, proc, "nango server")
    return proc, f"http://127.0.0.1:{port}"


async def test_two_workers_two_apis_every_run_once_and_a_killed_worker_is_replaced(
        stack: Stack, tmp_path: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    workers = [WorkerProcess(stack, prefix, tmp_path), WorkerProcess(stack, prefix, tmp_path)]
    apis = list(await asyncio.gather(_api_process(stack, tmp_path, prefix), _api_process(stack, tmp_path, prefix)))
    try:
        await asyncio.gather(*(w.start() for w in workers))
        # connections created through both API processes, runs triggered through both
        gh = await setup_github(stack, folder=slow_folder(tmp_path, auto_start=False))
        env, key = gh.env, gh.key
        from orchestrator.client import NangoClient
        for i, (_, url) in enumerate(apis):
            async with NangoClient(url, key) as api:
                await api.create_connection("github", f"scale-{i}", {"type": "OAUTH2", "access_token": "demo-token"},
                                            connection_config={"base_url": stack.provider_url},
                                            metadata={"repo": gh.repo, "pause": 0})  # nothing killed: no wait
        sids = [names.sync_schedule_id(env, "github", f"scale-{i}", "issues") for i in range(2)]
        for sid in sids:
            assert await schedules.describe(stack.client, sid) is not None
        for (_, url), sid in zip(apis, sids, strict=True):
            async with NangoClient(url, key) as api:
                await api.request("POST", "/sync/trigger", json={"syncs": ["issues"], "provider_config_key": "github",
                                                                 "connection_id": sid.split(":")[3]})

        async def both_done() -> None:
            async with stack.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT c.connection_id, j.status FROM jobs j JOIN connections c ON c.id = j.connection_pk"
                    " JOIN environments e ON e.id = j.environment_id WHERE e.name = $1 AND j.kind = 'sync'"
                    " AND c.connection_id LIKE 'scale-%'", env)
            assert sorted((r["connection_id"], r["status"]) for r in rows) == [
                ("scale-0", "success"), ("scale-1", "success")], rows
        await eventually(both_done, timeout=90)  # exactly one job per triggered run, none duplicated

        # a run on conn-1 while both workers poll: kill whichever runs it, the other finishes it
        handle = await _start_run(stack, gh, prefix)
        await _at_least_conn(stack, gh.env, "conn-1", 3 * PER_PAGE)
        desc = await handle.describe()
        identity = desc.raw_description.pending_activities[0].last_worker_identity
        victim = next(w for w in workers if w.proc and identity.startswith(f"{w.proc.pid}@"))
        await victim.kill()
        await set_pause(stack, gh, 0)  # the retry need not be slow
        summary = await asyncio.wait_for(handle.result(), 90)
        assert summary["status"] == "success"
        async with stack.pool.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT count(*) FROM records r JOIN connections c ON c.id = r.connection_pk JOIN environments e"
                " ON e.id = r.environment_id WHERE e.name = $1 AND c.connection_id = 'conn-1'", env)
        assert stored == PAGES * PER_PAGE
    finally:
        for w in workers:
            await w.stop()
        for proc, _ in apis:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


async def _at_least_conn(stack: Stack, env: str, connection_id: str, n: int) -> None:
    async def check() -> None:
        async with stack.pool.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT count(*) FROM records r JOIN connections c ON c.id = r.connection_pk JOIN environments e"
                " ON e.id = r.environment_id WHERE e.name = $1 AND c.connection_id = $2", env, connection_id)
        assert stored >= n, stored
    await eventually(check, timeout=60, interval=0.1)


async def test_two_reconcilers_at_once_neither_duplicate_nor_delete(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        for i in range(5):
            await api.create_connection("github", f"r-{i}", {"type": "OAUTH2", "access_token": "demo-token"},
                                        connection_config={"base_url": stack.provider_url}, metadata={"repo": gh.repo})
    prefix = names.schedule_prefix(gh.env, "github")
    before = sorted(await schedules.list_ids(stack.client, prefix))
    assert len(before) == 6
    for sid in before[:3]:
        await schedules.delete(stack.client, sid)
    async with stack.pool.acquire() as conn:
        integration = await integrations_repo.get(conn, (await conn.fetchval(
            "SELECT id FROM environments WHERE name = $1", gh.env)), "github")
    assert integration is not None
    async with stack.platform() as platform:
        reports = await asyncio.gather(*(reconcile.reconcile_integration(platform, integration) for _ in range(2)))
    assert sorted(sid for r in reports for sid in r.created) == before[:3]  # each recreated once, by one of them
    assert not any(r.deleted for r in reports)
    for sid in before:
        assert await schedules.describe(stack.client, sid) is not None
