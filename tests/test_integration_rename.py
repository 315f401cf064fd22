"""Renaming and deleting an integration, whose key every schedule id carries, through the real stack."""

from __future__ import annotations

import asyncio

from temporalio.client import ScheduleSpec

from orchestrator.control.reconcile import reconcile_integration
from orchestrator.store import integrations as integrations_repo
from orchestrator.temporal import names, schedules
from tests.conftest import Stack, setup_github, wait_for_job
from tests.test_variants_intervals import ui_set_spec


async def _sync_jobs(stack: Stack, env: str) -> int:
    async with stack.pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM jobs j JOIN connections c ON c.id = j.connection_pk"
            " JOIN environments e ON e.id = c.environment_id WHERE e.name = $1 AND j.kind = 'sync'", env)


async def test_a_rename_moves_each_schedule_as_it_stands_and_starts_no_run(stack: Stack) -> None:
    """A paused sync stays paused with its own note and runs nothing; an interval's phase, a per-connection
    frequency and a Temporal UI edit stay; a running one is not run again by the move."""
    gh = await setup_github(stack, issues=1)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        await api.create_connection("github", "conn-2", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": gh.repo})
        await api.create_connection("github", "conn-3", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": gh.repo})
        await wait_for_job(stack, gh, count=3)
        old = {c: names.sync_schedule_id(gh.env, "github", c, "issues") for c in ("conn-1", "conn-2", "conn-3")}
        new = {c: names.sync_schedule_id(gh.env, "gh-renamed", c, "issues") for c in old}
        await api.request("POST", "/sync/pause", json={"syncs": ["issues"], "provider_config_key": "github",
                                                       "connection_id": "conn-1"})
        await api.request("PUT", "/sync/update-connection-frequency", json={
            "sync_name": "issues", "provider_config_key": "github", "connection_id": "conn-1", "frequency": "every 2h"})
        await ui_set_spec(stack, old["conn-2"], ScheduleSpec(cron_expressions=["15 3 * * *"]))
        before = {c: await schedules.describe(stack.client, sid) for c, sid in old.items()}
        jobs = await _sync_jobs(stack, gh.env)

        await api.request("PATCH", "/integrations/github", json={"unique_key": "gh-renamed"})
        after = {c: await schedules.describe(stack.client, sid) for c, sid in new.items()}
        assert [await schedules.describe(stack.client, sid) for sid in old.values()] == [None, None, None]

        one, two, three = after["conn-1"], after["conn-2"], after["conn-3"]
        assert one and one.paused and one.note == "paused through the API" and one.interval_s == 7200
        assert two and not two.paused and two.frequency == "cron 15 3 * * *" and two.edited_elsewhere
        b3 = before["conn-3"]
        assert three and b3 and not three.paused and three.interval_s == 300 and three.next_run == b3.next_run
        status = await api.request("GET", "/sync/status", params={"syncs": "issues",
                                                                 "provider_config_key": "gh-renamed"})
        by_connection = {s["connection_id"]: s for s in status["syncs"]}
        assert by_connection["conn-1"]["status"] == "PAUSED"
        assert (by_connection["conn-2"]["frequency"], by_connection["conn-2"]["frequency_source"]) == (
            "cron 15 3 * * *", "ui")
        await asyncio.sleep(2)  # an initial run of a re-created schedule would have started by now
        assert await _sync_jobs(stack, gh.env) == jobs
        for sid in new.values():
            view = await schedules.describe(stack.client, sid)
            assert view is not None and view.recent_runs == [] and view.running_workflow_ids == [], view


async def test_a_reconcile_that_waited_for_a_rename_uses_the_new_key(stack: Stack) -> None:
    """A reconcile that read the integration before the rename (the maintenance loop, a deploy) and waited for
    its lock creates nothing under the old key, where nothing would ever delete it."""
    gh = await setup_github(stack, issues=1)
    await wait_for_job(stack, gh)
    async with stack.pool.acquire() as conn:
        env_id = await conn.fetchval("SELECT id FROM environments WHERE name = $1", gh.env)
        stale = await integrations_repo.get(conn, env_id, "github")
    assert stale is not None
    async with stack.api(gh.key) as api:
        await api.request("PATCH", "/integrations/github", json={"unique_key": "gh-renamed"})
    async with stack.platform() as platform:
        await reconcile_integration(platform, stale)
    assert await schedules.describe(stack.client, gh.schedule_id()) is None
    assert await schedules.describe(stack.client, names.sync_schedule_id(gh.env, "gh-renamed", "conn-1", "issues"))
    async with stack.pool.acquire() as conn:
        await integrations_repo.delete(conn, stale.id)
    async with stack.platform() as platform:  # deleted meanwhile: nothing to do
        report = await reconcile_integration(platform, stale)
    assert not (report.created or report.retimed or report.deleted or report.failed)


async def test_deleting_an_integration_deletes_the_schedule_of_a_connection_made_a_moment_before(
        stack: Stack) -> None:
    """Temporal's listing shows a new schedule a moment later; the ids the database calls for are deleted too."""
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        for i in range(5):
            await api.create_connection("github", f"late-{i}", {"type": "OAUTH2", "access_token": "demo-token"},
                                        connection_config={"base_url": stack.provider_url},
                                        metadata={"repo": gh.repo})
        await api.request("DELETE", "/integrations/github")
    for c in ["conn-1", *(f"late-{i}" for i in range(5))]:
        assert await schedules.describe(stack.client, names.sync_schedule_id(gh.env, "github", c, "issues")) is None


async def test_two_requests_for_one_key_at_once_get_one_success_and_one_409(stack: Stack) -> None:
    """Two creates of one key: the second used to take over the first's integration and overwrite its OAuth
    client, answering 201; two renames to one key: the second was a 500."""
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        async def create(client_id: str) -> bool:
            answer = await api.request("POST", "/integrations", ok=(201, 409), json={
                "unique_key": "crm", "provider": "github", "credentials": {
                    "type": "OAUTH2", "client_id": client_id, "client_secret": f"{client_id}-secret"}})
            return "error" not in answer
        made = await asyncio.gather(create("first"), create("second"))
        assert sorted(made) == [False, True], made
        stored = await api.request("GET", "/integrations/crm", params={"include": "credentials"})
        assert stored["data"]["credentials"]["client_id"] == ("first" if made[0] else "second"), stored

        for name in ("a", "b"):
            await api.request("POST", "/integrations", json={"unique_key": name, "provider": "github"})
        renames = await asyncio.gather(*(api.request("PATCH", f"/integrations/{name}", ok=(200, 409),
                                                     json={"unique_key": "renamed"}) for name in ("a", "b")))
        assert sorted("error" in r for r in renames) == [False, True], renames
        keys = {i["unique_key"] for i in (await api.request("GET", "/integrations"))["data"]}
        assert "renamed" in keys and len(keys & {"a", "b"}) == 1, keys
