"""Issue 20, retention and pruning, on the real stack: PATCH /records/prune through Nango's own Node client, a full
resync with emptyCache, per-environment retention (only what is older goes), and deleting a connection while its
sync runs (the run cancelled, its job still listed by GET /jobs)."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestrator.client.api import ApiError
from orchestrator.control import retention
from orchestrator.platform import open_platform
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import notifications as notifications_repo
from orchestrator.store import records as records_repo
from orchestrator.store import script_state
from orchestrator.store import webhooks as webhooks_repo
from tests.conftest import EXAMPLES, GithubSetup, Stack, eventually, setup_github, wait_for_job
from tests.test_node_client import _install, _run

HAS_NODE = shutil.which("node") is not None and shutil.which("npm") is not None

# Runs the steps named in config.steps through @nangohq/node; prints {step: {ok, value} | {ok, status, data}}.
NODE_JS = """
import { Nango } from '@nangohq/node';
const c = JSON.parse(process.env.NANGO_COMPAT);
const nango = new Nango({ host: c.host, secretKey: c.key });
const args = { providerConfigKey: c.integration, connectionId: c.connectionId, model: c.model };
const steps = {
  first: () => nango.pruneRecords({ ...args, untilCursor: c.untilCursor, limit: 2 }),
  second: () => nango.pruneRecords({ ...args, untilCursor: c.untilCursor, limit: 2 }),
  again: () => nango.pruneRecords({ ...args, untilCursor: c.untilCursor }),
  noModel: () => nango.pruneRecords({ ...args, model: undefined, untilCursor: c.untilCursor }),
  badCursor: () => nango.pruneRecords({ ...args, untilCursor: 'not-a-cursor' }),
  badLimit: () => nango.pruneRecords({ ...args, untilCursor: c.untilCursor, limit: 20000 }),
  unknownConnection: () => nango.pruneRecords({ ...args, connectionId: 'nobody', untilCursor: c.untilCursor }),
  emptyCache: () => nango.triggerSync(c.integration, ['issues'], c.connectionId, { reset: true, emptyCache: true })
    .then((r) => r.status),
};
const out = {};
for (const name of c.steps) {
  try { out[name] = { ok: true, value: await steps[name]() }; }
  catch (e) { out[name] = { ok: false, status: e.response?.status ?? e.status, data: e.response?.data ?? String(e) }; }
}
console.log(JSON.stringify(out));
"""


async def _node(config: dict[str, Any]) -> dict[str, Any]:
    code, out, err = await _run("node", "--input-type=module", "-e", NODE_JS, timeout=120,
                                env={"NANGO_COMPAT": json.dumps(config)})
    assert code == 0, f"node failed:\n{err}\n{out[-4000:]}"
    return orjson.loads(out)


async def _since(stack: Stack, key: str, cursor: str, model: str = "GithubIssue") -> list[dict[str, Any]]:
    """What a consumer that had read up to `cursor` gets when it pages on."""
    out: list[dict[str, Any]] = []
    async with stack.api(key) as api:
        next_cursor: str | None = cursor
        while next_cursor:
            page = await api.list_records("github", "conn-1", model, cursor=next_cursor)
            out += page["records"]
            next_cursor = page["next_cursor"]
    return out


async def _connection(stack: Stack, env: str, key: str) -> tuple[int, int, int]:
    """A github integration and an API-key connection 'c1' in environment `env`: (env id, integration id, pk)."""
    async with stack.api(key) as api:
        await api.create_integration("github", "github")
        await api.create_connection("github", "c1", {"type": "API_KEY", "apiKey": "k"})
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT c.environment_id, c.integration_id, c.id FROM connections c"
                                  " JOIN environments e ON e.id = c.environment_id WHERE e.name = $1", env)
    return row[0], row[1], row[2]


async def _synced(stack: Stack, issues: int) -> tuple[GithubSetup, list[dict[str, Any]], dict[str, Any]]:
    """The example sync run once on `issues` issues: its setup, its records and the Node steps' config."""
    await _install()
    gh = await setup_github(stack, issues=issues)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        before = await api.all_records("github", "conn-1", "GithubIssue")
    config = {"host": stack.api_url, "key": gh.key, "integration": "github", "connectionId": "conn-1",
              "model": "GithubIssue"}
    return gh, before, config


def _payload(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "_nango_metadata"}


@pytest.mark.skipif(not HAS_NODE, reason="Node.js (node and npm) is needed for @nangohq/node")
async def test_prune_through_nangos_node_client_keeps_tombstones_and_a_resync_restores_them(stack: Stack) -> None:
    gh, before, config = await _synced(stack, 5)
    assert len(before) == 5
    steps = ["first", "second", "again", "noModel", "badCursor", "badLimit", "unknownConnection"]
    r = await _node({**config, "untilCursor": before[2]["_nango_metadata"]["cursor"], "steps": steps})
    # bounded by limit, up to and including the cursor, has_more until done; nothing left to prune after
    assert r["first"] == {"ok": True, "value": {"count": 2, "has_more": True}}
    assert r["second"] == {"ok": True, "value": {"count": 1, "has_more": False}}
    assert r["again"] == {"ok": True, "value": {"count": 0, "has_more": False}}
    # bad input is a clear 400; an unknown connection a 404
    for name, word in (("noModel", "model"), ("badCursor", "cursor"), ("badLimit", "limit")):
        assert r[name]["status"] == 400 and word in orjson.dumps(r[name]["data"]).decode(), r[name]
    assert r["unknownConnection"]["status"] == 404

    async with stack.api(gh.key) as api:
        after = await api.all_records("github", "conn-1", "GithubIssue")
    # a consumer paging from its cursor sees no change: pruning moves no cursor
    assert await _since(stack, gh.key, before[-1]["_nango_metadata"]["cursor"]) == []
    assert [a["id"] for a in after] == [b["id"] for b in before]
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        meta_b, meta_a = b["_nango_metadata"], a["_nango_metadata"]
        assert meta_a["cursor"] == meta_b["cursor"] and meta_a["last_action"] == meta_b["last_action"]
        if i <= 2:  # the tombstone: the id and the metadata, pruned_at set
            assert _payload(a) == {"id": b["id"]} and meta_a["pruned_at"] is not None
        else:
            assert a == b and meta_a["pruned_at"] is None

    # a full resync saves the records again: the payloads are back, pruned_at cleared, as updates
    async with stack.api(gh.key) as api:
        await api.trigger_sync("github", ["issues"], "conn-1", full_resync=True)
        await wait_for_job(stack, gh, count=2)
        restored = await api.all_records("github", "conn-1", "GithubIssue")
    changes = await _since(stack, gh.key, before[-1]["_nango_metadata"]["cursor"])
    assert [_payload(x) for x in restored] != [] and all(x["_nango_metadata"]["pruned_at"] is None for x in restored)
    by_id = {x["id"]: _payload(x) for x in restored}
    assert all(by_id[b["id"]] == _payload(b) for b in before)
    assert sorted(c["id"] for c in changes) == sorted(b["id"] for b in before[:3])
    assert {c["_nango_metadata"]["last_action"] for c in changes} == {"UPDATED"}


async def test_prune_of_a_deleted_record_keeps_it_deleted_and_a_delete_keeps_pruned_at(stack: Stack) -> None:
    env, key = await stack.new_environment()
    env_id, _, pk = await _connection(stack, env, key)
    async with stack.pool.acquire() as conn:
        scope = records_repo.Scope(env_id, pk, "M")
        await records_repo.batch_save(conn, scope, [{"id": str(i), "n": i, "big": "x" * 100} for i in range(2)])
        await records_repo.batch_delete(conn, scope, [{"id": "0"}])
        await records_repo.batch_save(conn, scope, [{"id": str(i), "n": i, "big": "x" * 100} for i in (2, 3)])
    async with stack.api(key) as api:
        recs = await api.all_records("github", "c1", "M")
        assert [r["id"] for r in recs] == ["1", "0", "2", "3"]  # in cursor order: the delete moved "0"
        assert (await api.prune_records("github", "c1", "M", recs[1]["_nango_metadata"]["cursor"])
                ) == {"count": 2, "has_more": False}
    async with stack.pool.acquire() as conn:
        await records_repo.batch_delete(conn, scope, [{"id": "1"}])  # a pruned record deleted later
    async with stack.api(key) as api:
        now = {r["id"]: r for r in await api.all_records("github", "c1", "M")}
    assert set(now) == {"0", "1", "2", "3"}
    for i in ("0", "1"):
        meta = now[i]["_nango_metadata"]
        assert _payload(now[i]) == {"id": i} and meta["pruned_at"] and meta["deleted_at"]
        assert meta["last_action"] == "DELETED"
    assert _payload(now["2"]) == {"id": "2", "n": 2, "big": "x" * 100}


@pytest.mark.skipif(not HAS_NODE, reason="Node.js (node and npm) is needed for @nangohq/node")
async def test_a_full_resync_with_empty_cache_clears_the_records_first(stack: Stack) -> None:
    gh, before, config = await _synced(stack, 4)
    stack.demo.delete_issue(gh.repo, 1)  # gone upstream: a cleared cache does not keep it
    r = await _node({**config, "steps": ["emptyCache"]})
    assert r["emptyCache"] == {"ok": True, "value": 200}
    await wait_for_job(stack, gh, count=2)
    async with stack.api(gh.key) as api:
        after = await api.all_records("github", "conn-1", "GithubIssue")
    since = await _since(stack, gh.key, before[-1]["_nango_metadata"]["cursor"])
    assert len(after) == 3 and all(a["_nango_metadata"]["last_action"] == "ADDED" for a in after)
    # a consumer paging on from its cursor sees every record of the new cache once, as added
    assert sorted(a["id"] for a in since) == sorted(a["id"] for a in after)


async def test_retention_settings_are_validated_shown_and_cleared(stack: Stack) -> None:
    _, key = await stack.new_environment()
    async with stack.api(key) as api:
        shown = await api.get_environment()
        assert (shown["records_retention_days"], shown["jobs_retention_days"], shown["webhooks_retention_days"]) == (
            None, None, None)  # off by default: kept forever
        for bad in (-1, 0, "ten", 1.5, 100_000):
            with pytest.raises(ApiError) as err:
                await api.set_retention(jobs_retention_days=bad)
            assert err.value.status == 400 and "jobs_retention_days" in str(err.value), bad
        shown = await api.set_retention(records_retention_days=7, jobs_retention_days=30)
        assert (shown["records_retention_days"], shown["jobs_retention_days"]) == (7, 30)
        shown = await api.set_retention(webhooks_retention_days=2)  # the others stay
        assert (shown["records_retention_days"], shown["jobs_retention_days"], shown["webhooks_retention_days"]) == (
            7, 30, 2)
        shown = await api.set_retention(records_retention_days=None)  # null: keep forever again
        assert shown["records_retention_days"] is None and shown["jobs_retention_days"] == 30


async def test_retention_deletes_exactly_what_is_older_in_batches(stack: Stack) -> None:
    env, key = await stack.new_environment()
    other, other_key = await stack.new_environment()  # no retention: nothing of it goes
    ids: dict[str, Any] = {}
    for name, k in ((env, key), (other, other_key)):
        env_id, integ, pk = await _connection(stack, name, k)
        async with stack.pool.acquire() as conn:
            scope = records_repo.Scope(env_id, pk, "M")
            await records_repo.batch_save(conn, scope, [{"id": str(i), "n": i} for i in range(12)])
            # 0-6 deleted 10 days ago, 7-8 deleted yesterday, 9-11 live
            await records_repo.batch_delete(conn, scope, [{"id": str(i)} for i in range(9)])
            await conn.execute("UPDATE records SET deleted_at = now() - interval '10 days'"
                               " WHERE scope_id = (SELECT id FROM record_scopes WHERE connection_pk = $1)"
                               " AND external_id = any($2::text[])", pk, [str(i) for i in range(7)])
            await conn.execute("UPDATE records SET deleted_at = now() - interval '1 day'"
                               " WHERE scope_id = (SELECT id FROM record_scopes WHERE connection_pk = $1)"
                               " AND external_id = any($2::text[])", pk, ["7", "8"])
            jobs = []
            for age in (40, 40, 40, 31, 29, 1):
                job = await jobs_repo.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="a",
                                               kind="action")
                await jobs_repo.add_logs(conn, job, [("info", f"line {n}", None) for n in range(5)])
                await jobs_repo.close_job(conn, job, "success")
                await conn.execute("UPDATE jobs SET started_at = now() - make_interval(days => $2) WHERE id = $1",
                                   job, age)
                jobs.append(job)
            old_running = await jobs_repo.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="b",
                                                   kind="action")
            await conn.execute("UPDATE jobs SET started_at = now() - interval '90 days' WHERE id = $1", old_running)
            payloads = []
            for age in (5, 3, 1, 0):
                p = await webhooks_repo.add(conn, public_id=str(uuid.uuid4()), environment_id=env_id,
                                            integration_id=integ, event_type="e", headers={}, body=b"{}")
                await conn.execute("UPDATE webhook_payloads SET received_at = now() - make_interval(days => $2)"
                                   " WHERE id = $1", p, age)
                payloads.append(p)
            for age in (31, 29):  # auth webhooks' attempts follow the jobs' setting
                await notifications_repo.add_auth_attempt(conn, env_id, integration="github", connection_id="c1",
                                                          operation=f"age-{age}", success=True, url="https://x",
                                                          status=200, error=None)
                await conn.execute("UPDATE auth_webhook_attempts SET attempted_at = now() - make_interval(days => $2)"
                                   " WHERE environment_id = $1 AND operation = $3", env_id, age, f"age-{age}")
            ids[name] = (env_id, scope, jobs, old_running, payloads)
    async with stack.api(key) as api:
        await api.set_retention(records_retention_days=2, jobs_retention_days=30, webhooks_retention_days=2)

    async with stack.platform() as platform:
        done = await retention.run_once(platform, batch=2, pause_s=0)  # batches of 2: several per kind
    assert done is not None
    assert (done["records"], done["jobs"], done["webhooks"]) >= (7, 4, 2)

    env_id, scope, jobs, old_running, payloads = ids[env]
    async with stack.pool.acquire() as conn:
        kept = await conn.fetch("SELECT external_id, deleted_at IS NOT NULL AS deleted FROM records"
                                " WHERE scope_id = (SELECT id FROM record_scopes WHERE connection_pk = $1)"
                                " ORDER BY external_id::int", scope.connection_pk)
        assert [(r["external_id"], r["deleted"]) for r in kept] == [
            ("7", True), ("8", True), ("9", False), ("10", False), ("11", False)]
        left = await conn.fetch("SELECT id FROM jobs WHERE environment_id = $1 ORDER BY id", env_id)
        assert [r["id"] for r in left] == [jobs[4], jobs[5], old_running]  # a running job is never removed
        lines = await conn.fetch("SELECT DISTINCT job_id FROM script_logs WHERE job_id = any($1::bigint[])", jobs)
        assert sorted(r["job_id"] for r in lines) == [jobs[4], jobs[5]]
        hooks = await conn.fetch("SELECT id FROM webhook_payloads WHERE environment_id = $1 ORDER BY id", env_id)
        assert [r["id"] for r in hooks] == payloads[2:]
        auth = await conn.fetch("SELECT operation FROM auth_webhook_attempts WHERE environment_id = $1", env_id)
        assert [r["operation"] for r in auth] == ["age-29"]
        # the other environment keeps everything
        o_env = ids[other][0]
        assert await conn.fetchval("SELECT count(*) FROM records WHERE environment_id = $1", o_env) == 12
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE environment_id = $1", o_env) == 7
        assert await conn.fetchval("SELECT count(*) FROM webhook_payloads WHERE environment_id = $1", o_env) == 4
        assert await conn.fetchval("SELECT count(*) FROM auth_webhook_attempts WHERE environment_id = $1", o_env) == 2
    async with stack.api(key) as api:  # the API reads what is left as before
        recs = await api.all_records("github", "c1", "M")
        assert sorted((r["id"] for r in recs), key=int) == ["7", "8", "9", "10", "11"]
        assert sorted(j["id"] for j in await api.list_jobs()) == sorted([jobs[4], jobs[5], old_running])


async def test_every_pass_deletes_expired_script_locks_and_keeps_held_ones(stack: Stack) -> None:
    """Without any retention setting: an expired lock is free already; its row goes, a held one stays held."""
    env, key = await stack.new_environment()
    _env_id, _integ, pk = await _connection(stack, env, key)
    async with stack.pool.acquire() as conn:
        for n in range(5):
            assert await script_state.try_lock(conn, pk, f"gone-{n}", "run-1", ttl_ms=1)
        assert await script_state.try_lock(conn, pk, "held", "run-1", ttl_ms=600_000)
        await asyncio.sleep(0.01)
    async with stack.platform() as platform:
        done = await retention.run_once(platform, batch=2, pause_s=0)  # batches of 2: three statements
    assert done is not None and done["locks"] >= 5
    async with stack.pool.acquire() as conn:
        keys = await conn.fetch("SELECT key FROM script_locks WHERE connection_pk = $1", pk)
        assert [r["key"] for r in keys] == ["held"]
        assert not await script_state.try_lock(conn, pk, "held", "run-2", ttl_ms=1000)  # still run-1's
        assert await script_state.try_lock(conn, pk, "gone-0", "run-2", ttl_ms=1000)  # free, as before


async def test_retention_passes_do_not_overlap(stack: Stack) -> None:
    async with stack.platform() as platform, platform.pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", retention.LOCK_KEY)  # another process's pass
        try:
            assert await retention.run_once(platform) is None
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", retention.LOCK_KEY)
        assert await retention.run_once(platform) is not None


async def test_deleting_a_connection_mid_run_cancels_the_run_and_keeps_its_jobs(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(  # a run that saves one issue every 0.1 s for a minute
        "import asyncio\n\n"
        "def issue(n):\n"
        "    return {'id': str(n), 'number': n, 'title': f'slow {n}', 'body': None, 'state': 'open', 'url': 'u',\n"
        "            'author': None, 'labels': [], 'created_at': 'c', 'updated_at': 'u', 'closed_at': None}\n\n"
        "async def fetch_data(nango):\n"
        "    await nango.log('slow run started')\n"
        "    for n in range(600):\n"
        "        await nango.batch_save([issue(n)], 'GithubIssue')\n"
        "        await asyncio.sleep(0.1)\n\n"
        "async def on_webhook(nango, payload):\n    pass\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    async with stack.api(gh.key) as api:
        async def saving() -> None:
            page = await api.list_records("github", "conn-1", "GithubIssue", limit=1)
            assert page["records"]
        await eventually(saving, timeout=60)
        await api.delete_connection("github", "conn-1")
        listed = await api.list_jobs()
        by_connection = await api.list_jobs(connection_id="conn-1", integration="github")
    assert len(listed) == 1 and by_connection == listed
    job = listed[0]
    assert job["status"] == "cancelled" and job["connection_id"] == "conn-1"
    assert "deleted" in (job.get("error") or "")
    async with stack.api(gh.key) as api:
        assert (await api.get_job(job["id"]))["status"] == "cancelled"
        # its log lines stay searchable by the deleted connection's id and integration
        found = (await api.search_logs(connection_id="conn-1", integration="github", text="slow run"))["logs"]
        assert [(line["connection_id"], line["provider_config_key"], line["job_id"]) for line in found] == [
            ("conn-1", "github", job["id"])]

    async with stack.pool.acquire() as conn:
        workflow_id = await conn.fetchval("SELECT workflow_id FROM jobs WHERE id = $1", job["id"])

    async def stopped() -> None:  # the run's workflow has ended (cancelled, not failed on the missing connection)
        desc = await stack.client.get_workflow_handle(workflow_id).describe()
        assert desc.status is not None and desc.status.name in ("COMPLETED", "CANCELED", "TERMINATED"), desc.status
    await eventually(stopped, timeout=30)
    async with stack.pool.acquire() as conn:  # the job kept its outcome: nothing closed it again as failed
        assert await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job["id"]) == "cancelled"


async def test_the_installations_retention_applies_where_an_environment_sets_none(stack: Stack) -> None:
    """JOBS_RETENTION_DAYS (helm config.retention.jobsDays) for every environment without its own setting; an
    environment's own setting wins, longer or shorter."""
    aged: dict[str, int] = {}
    for label, own in (("default", None), ("longer", 100), ("shorter", 10)):
        env, key = await stack.new_environment()
        env_id, _integ, pk = await _connection(stack, env, key)
        if own is not None:
            async with stack.api(key) as api:
                await api.set_retention(jobs_retention_days=own)
        async with stack.pool.acquire() as conn:
            job = await jobs_repo.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="a",
                                           kind="action")
            await jobs_repo.close_job(conn, job, "success")
            await conn.execute("UPDATE jobs SET started_at = now() - interval '40 days' WHERE id = $1", job)
        aged[label] = job
    settings = stack.settings.model_copy(update={"jobs_retention_days": 30})
    async with open_platform(settings, temporal=stack.client) as platform:
        assert await retention.run_once(platform, pause_s=0) is not None
    async with stack.pool.acquire() as conn:
        left = {r["id"] for r in await conn.fetch("SELECT id FROM jobs WHERE id = any($1::bigint[])",
                                                  list(aged.values()))}
    assert left == {aged["longer"]}   # 40 days: past the installation's 30 and the shorter 10, within 100
