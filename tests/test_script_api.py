"""The rest of Nango's script API on `nango` (issue 21): list_records, set_merging_strategy, checkpoints in every
kind of script, start_sync / trigger_sync, get_webhook_url / get_integration, locks, and the environment's
script_log_level. Each through the real runner (a sandboxed child, RPC, ScriptHost): the whole stack where the
platform's control path matters, ScriptBench where the store is what answers; and each in `nango_mock`."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from orchestrator.client.api import NangoClient
from orchestrator.providers.egress import entry_for
from orchestrator.runs import sinks
from orchestrator.runs.testing import ScriptBench
from orchestrator.sdk.errors import NangoError
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records as records_repo
from orchestrator.store import script_state
from orchestrator.store.types import Connection
from orchestrator.temporal import schedules
from orchestrator.testing.nango_mock import NangoMock
from tests.conftest import EXAMPLES, GithubSetup, Stack, eventually, serve, setup_github, wait_for_job
from tests.test_sdk_helper import echo, echo_provider, logs_of, ok, sb  # noqa: F401  (the bench fixtures)

# ---- the whole stack: an integrations folder with one script per call under test --------------------------

# The run's channel breaks (the script writes a frame that is no call): to the host an infrastructure fault,
# retried as a lost worker's run is. The retried attempt finds the checkpoint the first one saved.
BREAK_CHANNEL = """
import asyncio
from orchestrator.sdk import wire


async def break_channel(nango):
    nango._channel._writer.write(wire.encode({"not": "a call"}))
    await asyncio.sleep(60)
"""

SCRIPTS = {
    "github/fault.py": BREAK_CHANNEL,
    "github/actions/resume_after_fault.py": """
from ..fault import break_channel


async def run_action(nango, inp):
    checkpoint = await nango.get_checkpoint()
    if checkpoint is None:
        await nango.save_checkpoint({"step": 1})
        await break_channel(nango)
    await nango.clear_checkpoint()
    return {"resumed_from": checkpoint}
""",
    "github/on-events/welcome.py": """
from ..fault import break_channel


async def on_event(nango):
    checkpoint = await nango.get_checkpoint()
    if checkpoint is None:
        await nango.save_checkpoint({"step": 1})
        await break_channel(nango)
    await nango.update_metadata({"resumed_from": checkpoint})
""",
    "github/actions/log_levels.py": """
async def run_action(nango, inp):
    for level in ("debug", "info", "warn", "error"):
        nango.log(f"script line at {level}", level=level, n=1)
    nango.log("no fields at debug", level="debug")
    print("printed to stdout")
    return {"ok": True}
""",
    "github/actions/control_syncs.py": """
async def run_action(nango, inp):
    if inp["op"] == "start":
        await nango.start_sync([inp["sync"]])
    else:
        await nango.trigger_sync(inp["integration"], inp["connection_id"], inp["sync"], inp.get("mode", "incremental"))
    return {"done": True}
""",
    "github/actions/show_integration.py": """
async def run_action(nango, inp):
    return {"integration": await nango.get_integration(), "webhook_url": await nango.get_webhook_url()}
""",
    "github/actions/spoof_platform_error.py": """
class platform_error(Exception):  # the type name the host gives a call it failed inside the platform
    pass


async def run_action(nango, inp):
    await nango.save_checkpoint({"tries": ((await nango.get_checkpoint()) or {}).get("tries", 0) + 1})
    raise platform_error("not the platform's fault")
""",
    "github/actions/list_mine.py": """
async def run_action(nango, inp):
    out, cursor, pages = [], None, 0
    while True:
        page = await nango.list_records("GithubIssue", cursor=cursor, limit=inp["limit"])
        out += page["records"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return {"records": out, "pages": pages}
""",
}
ACTIONS = ("resume-after-fault", "log-levels", "control-syncs", "show-integration", "list-mine",
           "spoof-platform-error")


def api_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    declared = "".join(f"      {name}:\n        description: {name}\n" for name in ACTIONS)
    text = (folder / "nango.yaml").read_text().replace(
        "    actions:\n", "    on-events:\n      post-connection-creation: [welcome]\n    actions:\n" + declared, 1)
    (folder / "nango.yaml").write_text(text)
    for rel, source in SCRIPTS.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(source)
    return folder


async def action(api: NangoClient, name: str, input: Any = None, *, fails: bool = False, retries: int = 0) -> Any:
    body: dict[str, Any] = {"action_name": name, "input": input or {}}
    return await api.request("POST", "/action/trigger", json=body, ok=(400, 500) if fails else (), headers={
        "Connection-Id": "conn-1", "Provider-Config-Key": "github", "X-Max-Retries": str(retries)})


async def test_an_action_and_an_event_script_resume_from_their_checkpoint_after_an_infrastructure_fault(
        stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=2, folder=api_folder(tmp_path))
    async with stack.api(gh.key) as api:
        assert await action(api, "resume-after-fault", retries=1) == {"resumed_from": {"step": 1}}

        async def welcomed() -> None:  # the connection's post-connection-creation script, retried the same way
            meta = (await api.get_connection("github", "conn-1"))["metadata"]
            assert meta.get("resumed_from") == {"step": 1}, meta
        await eventually(welcomed, timeout=60)

    async def closed() -> None:  # the event script's job closes just after its metadata is written
        async with stack.pool.acquire() as conn:
            assert not await conn.fetchval("SELECT count(*) FROM jobs j JOIN environments e ON e.id = j.environment_id"
                                           " WHERE e.name = $1 AND j.status = 'running'", gh.env)
    await eventually(closed, timeout=30)
    async with stack.pool.acquire() as conn:
        jobs = await conn.fetch("SELECT j.id, j.kind, j.attempts, j.status FROM jobs j JOIN environments e"
                                " ON e.id = j.environment_id WHERE e.name = $1 AND j.kind IN ('action', 'event')",
                                gh.env)
        kept = await conn.fetch("SELECT kind, script_name, checkpoint FROM script_checkpoints c JOIN connections k"
                                " ON k.id = c.connection_pk JOIN environments e ON e.id = k.environment_id"
                                " WHERE e.name = $1", gh.env)
    assert sorted((j["kind"], j["attempts"], j["status"]) for j in jobs) == [
        ("action", 2, "success"), ("event", 2, "success")], jobs
    # the action cleared its own; the event script's stays, under its own (connection, kind, script)
    assert [(k["kind"], k["script_name"], k["checkpoint"]) for k in kept] == [("event", "welcome", {"step": 1})]
    async with stack.api(gh.key) as api:
        event_job = next(j["id"] for j in jobs if j["kind"] == "event")
        lines = [e["message"] for e in await api.job_logs(event_job)]
    assert any(m.startswith("platform: attempt 2") and m.endswith("it resumes from the script's last checkpoint")
               for m in lines), lines


async def test_a_script_naming_its_error_as_the_platform_does_is_not_retried(stack: Stack, tmp_path: Path) -> None:
    """Only what the host itself saw makes a run a platform fault: an exception the script calls platform_error
    fails its run once, like any script error, instead of buying itself retries."""
    gh = await setup_github(stack, issues=1, folder=api_folder(tmp_path))
    async with stack.api(gh.key) as api:
        failed = await action(api, "spoof-platform-error", fails=True, retries=3)
    assert "not the platform's fault" in str(failed), failed
    async with stack.pool.acquire() as conn:
        job = await conn.fetchrow("SELECT j.attempts, j.status, j.error_type FROM jobs j JOIN environments e"
                                  " ON e.id = j.environment_id WHERE e.name = $1 AND j.script_name = $2",
                                  gh.env, "spoof-platform-error")
        kept = await conn.fetchval("SELECT checkpoint FROM script_checkpoints c JOIN connections k"
                                   " ON k.id = c.connection_pk JOIN environments e ON e.id = k.environment_id"
                                   " WHERE e.name = $1 AND c.script_name = $2", gh.env, "spoof-platform-error")
    assert (job["attempts"], job["status"], job["error_type"]) == (1, "failed", "platform_error"), job
    assert kept == {"tries": 1}


async def test_the_environments_script_log_level_keeps_only_lines_at_or_above_it(
        stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=1, folder=api_folder(tmp_path))
    async with stack.api(gh.key) as api:
        await api.set_script_settings(script_log_level="warn")
        await action(api, "log-levels")
        found = await api.search_logs(script="log-levels")
        assert sorted((e["level"], e["message"]) for e in found["logs"] if e["fields"]) == [
            ("error", "script line at error"), ("warn", "script line at warn")], found
        assert not [e for e in found["logs"] if e["level"] in ("debug", "info")], found
        # the platform's own lines are never filtered: at "error", a retry's warning line stays
        await api.set_script_settings(script_log_level="error")
        await action(api, "resume-after-fault", retries=1)
        retried = await api.search_logs(script="resume-after-fault")
        assert any(e["level"] == "warn" and e["message"].startswith("platform: attempt 2")
                   for e in retried["logs"]), retried
        await api.set_script_settings(script_log_level="debug")  # back to everything, no-fields lines too
        await action(api, "log-levels")
        found = await api.search_logs(script="log-levels")
        assert {e["message"] for e in found["logs"]} >= {"no fields at debug", "printed to stdout",
                                                         "script line at debug"}, found


async def _sync_jobs(stack: Stack, gh: GithubSetup) -> list[Any]:
    async with stack.pool.acquire() as conn:
        return await conn.fetch("SELECT j.id, j.status, j.full_resync FROM jobs j JOIN environments e"
                                " ON e.id = j.environment_id WHERE e.name = $1 AND j.kind = 'sync' ORDER BY j.id",
                                gh.env)


async def test_a_script_starts_and_triggers_syncs_of_its_own_environment_only(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=2, folder=api_folder(tmp_path))
    other = await setup_github(stack, issues=2, connection_id="conn-other")
    await wait_for_job(stack, gh)
    await wait_for_job(stack, other)
    async with stack.api(gh.key) as api:
        await api.pause_sync("github", ["issues"], "conn-1")
        assert (await schedules.describe(stack.client, gh.schedule_id())).paused
        assert await action(api, "control-syncs", {"op": "start", "sync": "issues"}) == {"done": True}
        assert not (await schedules.describe(stack.client, gh.schedule_id())).paused

        await action(api, "control-syncs", {"op": "trigger", "integration": "github", "connection_id": "conn-1",
                                            "sync": "issues", "mode": "full_refresh"})
        await wait_for_job(stack, gh, count=2)
        assert [j["full_resync"] for j in await _sync_jobs(stack, gh)] == [False, True]

        # another environment's connection is no name here: refused, naming it, and nothing runs there
        err = await action(api, "control-syncs", {"op": "trigger", "integration": "github",
                                                  "connection_id": "conn-other", "sync": "issues"}, fails=True)
        assert "no connection 'conn-other'" in orjson.dumps(err).decode(), err
        err = await action(api, "control-syncs", {"op": "trigger", "integration": "github", "connection_id": "conn-1",
                                                  "sync": "nope"}, fails=True)
        assert "no sync 'nope'" in orjson.dumps(err).decode(), err
        err = await action(api, "control-syncs", {"op": "trigger", "integration": "github", "connection_id": "conn-1",
                                                  "sync": "issues", "mode": "sideways"}, fails=True)
        assert "sync_mode must be one of" in orjson.dumps(err).decode(), err
    assert len(await _sync_jobs(stack, other)) == 1
    assert not (await schedules.describe(stack.client, other.schedule_id())).paused


async def test_get_integration_shows_no_secret_and_get_webhook_url_is_the_providers_target(
        stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=1, folder=api_folder(tmp_path))
    secrets = ("client-secret-" + uuid.uuid4().hex, "webhook-secret-" + uuid.uuid4().hex)
    async with stack.api(gh.key) as api:
        await api.request("PATCH", "/integrations/github", json={
            "display_name": "GitHub (test)", "webhook_secret": secrets[1],
            "credentials": {"client_id": "the-client-id", "client_secret": secrets[0], "scopes": "repo"}})
        before = stack.settings.public_url
        stack.settings.public_url = "https://nango.example.com/"
        try:
            out = await action(api, "show-integration")
        finally:
            stack.settings.public_url = before
        unset = await action(api, "show-integration")
    text = orjson.dumps(out).decode()
    assert not any(s in text for s in secrets), text
    assert "client_secret" not in text and "private_key" not in text and "webhook_secret" not in text
    integration = out["integration"]
    assert (integration["unique_key"], integration["provider"], integration["display_name"]) == (
        "github", "github", "GitHub (test)")
    assert integration["credentials"]["client_id"] == "the-client-id"
    assert out["webhook_url"] == f"https://nango.example.com/webhook/{gh.env}/github"
    assert unset["webhook_url"] is None  # no PUBLIC_URL: the worker cannot know the API's address


async def test_list_records_pages_its_own_connection_as_get_records_shows_them(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=7, folder=api_folder(tmp_path))
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        # a second connection of the same environment with records of the same model: never listed
        repo = stack.demo.add_repo(f"{gh.env}/other", 3)
        await api.create_connection("github", "conn-2", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
        await api.trigger_sync("github", ["issues"], "conn-2")

        async def synced() -> None:
            assert len((await api.list_records("github", "conn-2", "GithubIssue"))["records"]) == 3
        await eventually(synced, timeout=60)
        listed = await action(api, "list-mine", {"limit": 3})
        expected = await api.all_records("github", "conn-1", "GithubIssue")
        assert listed == {"records": expected, "pages": 3}
        assert all("_nango_metadata" in r for r in listed["records"])
        err = await action(api, "list-mine", {"limit": 0}, fails=True)
        assert "limit must be an integer from 1 to 1000, got 0" in orjson.dumps(err).decode(), err


# ---- ScriptBench: a real child and ScriptHost on the suite's database -----------------------------------

async def test_list_records_sees_its_own_connection_and_variant_only(sb: ScriptBench) -> None:  # noqa: F811
    mine, theirs = await sb.connection(), await sb.connection()
    async with sb.pool.acquire() as db:
        for conn, variant, n in ((mine, "base", 5), (theirs, "base", 4), (mine, "v2", 2)):
            await records_repo.batch_save(db, records_repo.Scope(sb.environment_id, conn.id, "Thing", variant),
                                          [{"id": f"{variant}-{i}", "owner": conn.connection_id} for i in range(n)])
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            seen, cursor = [], None
            while True:
                page = await nango.list_records("Thing", cursor=cursor, limit=2)
                seen += [(r["id"], r["owner"], r["_nango_metadata"]["last_action"]) for r in page["records"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            try:
                await nango.list_records("Thing", cursor="not-a-cursor")
            except Exception as exc:
                bad = str(exc)
            return None if not seen else (seen, bad)
    """, mine, kind="action")
    assert outcome.ok, outcome.error
    seen, bad = outcome.output
    assert seen == [[f"base-{i}", mine.connection_id, "ADDED"] for i in range(5)]
    assert "invalid cursor 'not-a-cursor'" in bad


async def test_list_records_ends_a_page_of_large_records_early_and_misses_none(
        sb: ScriptBench, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    conn = await sb.connection()
    async with sb.pool.acquire() as db:
        await records_repo.batch_save(db, records_repo.Scope(sb.environment_id, conn.id, "Big"),
                                      [{"id": i, "blob": "x" * 300} for i in range(7)])
    monkeypatch.setattr(sinks, "LIST_PAGE_BYTES", 1200)  # two of these records, not three
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            pages, cursor = [], None
            while True:
                page = await nango.list_records("Big", cursor=cursor, limit=100)
                pages.append([r["id"] for r in page["records"]])
                cursor = page["next_cursor"]
                if cursor is None:
                    return pages
    """, conn, kind="action")
    assert ok(outcome) == [[0, 1], [2, 3], [4, 5], [6]]


@contextlib.asynccontextmanager
async def touch_server(bench: ScriptBench, conn: Connection) -> AsyncIterator[str]:
    """A provider whose /touch writes record "2" as another job (a webhook script's run) while the sync runs."""
    async def touch(request: web.Request) -> web.Response:
        webhook_job = await bench.open_job(conn, "hook", kind="webhook")
        async with bench.pool.acquire() as db:
            await records_repo.batch_save(db, records_repo.Scope(bench.environment_id, conn.id, "Thing"),
                                          [{"id": "2", "v": "from the webhook"}], job_id=webhook_job)
        return web.json_response({})
    app = web.Application()
    app.router.add_post("/touch", touch)
    async with serve(app) as url:
        bench.egress_allow.append(entry_for(url))
        try:
            yield url
        finally:
            bench.egress_allow.remove(entry_for(url))


MERGING = """
    async def fetch_data(nango):
        {strategy}
        await nango.batch_save([{{"id": "1", "v": "early"}}], "Thing")
        await nango.post("/touch")
        await nango.batch_save([{{"id": str(i), "v": "from the sync"}} for i in (1, 2, 3)], "Thing")
"""


@pytest.mark.parametrize("strategy, webhook_kept", [
    ('await nango.set_merging_strategy({"strategy": "ignore_if_modified_after_cursor"}, "Thing")', True),
    ('await nango.set_merging_strategy("ignore_if_modified_after", "Thing")', True),
    ('await nango.set_merging_strategy("override", "Thing")', False),
    ("pass", False),
])
async def test_merging_strategy_keeps_what_another_job_changed_during_the_run(
        sb: ScriptBench, strategy: str, webhook_kept: bool) -> None:  # noqa: F811
    conn = await sb.connection()
    async with sb.pool.acquire() as db:  # stored before the run starts: the run overwrites these either way
        await records_repo.batch_save(db, records_repo.Scope(sb.environment_id, conn.id, "Thing"),
                                      [{"id": i, "v": "before"} for i in ("1", "2")])
    await asyncio.sleep(0.01)  # the run's start is later than what was stored before it
    async with touch_server(sb, conn) as url:
        outcome, host = await sb.run(MERGING.format(strategy=strategy), conn, provider=echo_provider(url),
                                     track_deletes=True)
    ok(outcome)
    async with sb.pool.acquire() as db:
        got = await records_repo.get_by_ids(db, records_repo.Scope(sb.environment_id, conn.id, "Thing"),
                                            ["1", "2", "3"])
        # a kept record still counts as seen by the run: deletion tracking leaves it
        deleted = await records_repo.delete_unseen(db, records_repo.Scope(sb.environment_id, conn.id, "Thing"),
                                                   host.job_id)
    assert got["1"]["v"] == "from the sync" and got["3"]["v"] == "from the sync"  # its own writes: not "another"
    assert got["2"]["v"] == ("from the webhook" if webhook_kept else "from the sync")
    assert deleted == 0
    notes = [e["message"] for e in await logs_of(sb, host.job_id)]
    assert any("kept as stored" in m and m.endswith(": 2") for m in notes) is webhook_kept, notes


async def test_set_merging_strategy_names_a_bad_strategy(sb: ScriptBench) -> None:  # noqa: F811
    outcome, _ = await sb.run("""
        async def fetch_data(nango):
            await nango.set_merging_strategy({"strategy": "newest_wins"}, "Thing")
    """, await sb.connection())
    assert not outcome.ok and "unknown strategy 'newest_wins'" in outcome.error["message"]


async def test_checkpoints_are_kept_per_connection_and_script_in_every_kind(sb: ScriptBench) -> None:  # noqa: F811
    one, two = await sb.connection(), await sb.connection()
    save = """
        async def {entry}:
            nango.log(f"before={{await nango.get_checkpoint()}}")
            await nango.save_checkpoint({{"by": "{who}"}})
    """
    runs = [("run_action(nango, inp)", "action", "same-name", one), ("on_event(nango)", "event", "same-name", one),
            ("on_webhook(nango, payload)", "webhook", "same-name", one), ("run_action(nango, inp)", "action",
                                                                           "same-name", two),
            ("run_action(nango, inp)", "action", "other-name", one)]
    for entry, kind, name, conn in runs:
        outcome, host = await sb.run(save.format(entry=entry, who=f"{kind}/{name}/{conn.connection_id}"), conn,
                                     kind=kind, sync_name=name)  # type: ignore[arg-type]
        ok(outcome)
        assert [e["message"] for e in await logs_of(sb, host.job_id)] == ["before=None"], (kind, name)
    again, host = await sb.run(save.format(entry="on_event(nango)", who="again"), one, kind="event",
                               sync_name="same-name")
    ok(again)
    assert [e["message"] for e in await logs_of(sb, host.job_id)] == [
        f"before={{'by': 'event/same-name/{one.connection_id}'}}"]
    async with sb.pool.acquire() as db:
        # a webhook script keeps its own: the sync of the same name has none
        assert (await jobs_repo.get_state(db, one.id, "same-name"))["checkpoint"] is None
        assert await script_state.get_checkpoint(db, one.id, "webhook", "same-name") == {
            "by": f"webhook/same-name/{one.connection_id}"}
    cleared, _ = await sb.run("""
        async def run_action(nango, inp):
            await nango.clear_checkpoint()
            return await nango.get_checkpoint()
    """, one, kind="action", sync_name="same-name")
    assert cleared.ok and cleared.output is None


LOCKS = """
    async def run_action(nango, inp):
        out = []
        for step in inp:
            if step[0] == "take":
                out.append(await nango.try_acquire_lock(step[1], step[2]))
            else:
                out.append(await nango.release_lock(step[1]))
        return out
"""


async def test_locks_have_one_holder_per_connection_and_free_themselves(sb: ScriptBench) -> None:  # noqa: F811
    conn, neighbour = await sb.connection(), await sb.connection()
    first, _ = await sb.run(LOCKS, conn, kind="action", input=[["take", "k", 60_000], ["take", "k", 60_000],
                                                               ["take", "brief", 1]])
    assert first.output == [True, True, True]  # taking it again renews it
    second, _ = await sb.run(LOCKS, conn, kind="action", input=[["take", "k", 60_000], ["release", "k"],
                                                                ["take", "brief", 60_000]])
    assert second.output == [False, False, True]  # held by the first run; "brief" expired after 1 ms
    other, _ = await sb.run(LOCKS, neighbour, kind="action", input=[["take", "k", 60_000]])
    assert other.output == [True]  # another connection's lock of the same name
    bad, _ = await sb.run(LOCKS, conn, kind="action", input=[["take", "k", 0]])
    assert not bad.ok and "ttl_ms must be an integer from 1 to 86400000, got 0" in bad.error["message"]
    bad, _ = await sb.run(LOCKS, conn, kind="action", input=[["take", "", 10]])
    assert not bad.ok and "the key must be a non-empty string" in bad.error["message"]


async def test_a_webhook_script_and_a_sync_of_one_connection_coordinate_through_a_lock(
        sb: ScriptBench) -> None:  # noqa: F811
    conn = await sb.connection()
    webhook, webhook_host = await sb.run("""
        async def on_webhook(nango, payload):
            nango.log(f"webhook took it: {await nango.try_acquire_lock({'key': 'contacts', 'ttlMs': 60_000})}")
    """, conn, kind="webhook", sync_name="contacts")
    ok(webhook)
    assert [e["message"] for e in await logs_of(sb, webhook_host.job_id)] == ["webhook took it: True"]
    sync = """
        async def fetch_data(nango):
            nango.log(f"sync took it: {await nango.try_acquire_lock('contacts', 60_000)}")
    """
    outcome, host = await sb.run(sync, conn, sync_name="contacts")
    ok(outcome)
    assert [e["message"] for e in await logs_of(sb, host.job_id)] == ["sync took it: False"]
    async with sb.pool.acquire() as db:  # the webhook's run releases it (here, by its holder's name)
        assert await script_state.release_lock(db, conn.id, "contacts", webhook_host.lock_holder) is True
    outcome, host = await sb.run(sync, conn, sync_name="contacts")
    assert [e["message"] for e in await logs_of(sb, host.job_id)] == ["sync took it: True"]


async def test_racing_holders_get_one_lock_between_them(sb: ScriptBench) -> None:  # noqa: F811
    conn = await sb.connection()

    async def take(i: int) -> bool:
        async with sb.pool.acquire() as db:
            return await script_state.try_lock(db, conn.id, "race", f"holder-{i}", 60_000)
    assert sum(await asyncio.gather(*(take(i) for i in range(5)))) == 1


# ---- nango_mock --------------------------------------------------------------------------------------------

async def test_nango_mock_answers_the_whole_script_api() -> None:
    mock = NangoMock(kind="sync", records={"Thing": [{"id": i, "v": 0} for i in range(5)]}, log_level="warn",
                     webhook_url="https://example.com/webhook/dev/github", provider="github")
    nango = mock.nango
    first = await nango.list_records("Thing", limit=3)
    rest = await nango.list_records({"model": "Thing", "cursor": first["next_cursor"], "limit": 3})
    assert [r["id"] for r in first["records"] + rest["records"]] == [0, 1, 2, 3, 4] and rest["next_cursor"] is None
    assert first["records"][0]["_nango_metadata"]["last_action"] == "ADDED"
    with pytest.raises(NangoError, match="limit must be an integer from 1 to 1000"):
        await nango.list_records("Thing", limit=5000)

    mock.modify("Thing", {"id": 1, "v": "webhook"})
    await nango.set_merging_strategy({"strategy": "ignore_if_modified_after_cursor"}, "Thing")
    await nango.batch_save([{"id": 1, "v": "sync"}, {"id": 2, "v": "sync"}], "Thing")
    assert mock.stored["Thing"]["1"]["v"] == "webhook" and mock.stored["Thing"]["2"]["v"] == "sync"
    with pytest.raises(NangoError, match="unknown strategy"):
        await nango.set_merging_strategy("newest", "Thing")

    for level in ("debug", "info", "warn", "error"):
        nango.log(f"at {level}", level=level)
    assert [e["message"] for e in mock.logs if e["message"].startswith("at ")] == ["at warn", "at error"]

    assert await nango.try_acquire_lock("k", 1000) is True and await nango.release_lock("k") is True
    mock.hold_lock("busy")
    assert await nango.try_acquire_lock({"key": "busy", "ttlMs": 1000}) is False

    await nango.start_sync(["issues"])
    await nango.trigger_sync("github", "c1", "issues", "full_refresh")
    assert [(s["op"], s["syncs"], s["connection_id"]) for s in mock.syncs] == [
        ("start", ["issues"], "test-connection"), ("trigger", ["issues"], "c1")]
    assert await nango.get_webhook_url() == "https://example.com/webhook/dev/github"
    assert (await nango.get_integration())["provider"] == "github"

    action = NangoMock(kind="action", checkpoint={"step": 2})
    assert await action.nango.get_checkpoint() == {"step": 2}
    await action.nango.save_checkpoint({"step": 3})
    assert action.checkpoint == {"step": 3}
