"""Red team, issue 16 point 6: per-run quotas and the per-environment share, through the real path.

A deployed sync runs a hostile script (deploy -> schedule -> worker -> sandboxed child); each test
checks the safe outcome (capped, refused with the limit named, or a fair share of the worker),
that no secret reaches the job, and that a normal sync of the same connection succeeds right after.
The log cap's accounting, the shares and the RPC backpressure are also checked without the stack.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from orchestrator.client import ApiError
from orchestrator.config.settings import Settings
from orchestrator.providers.catalog import get_provider
from orchestrator.runner.host import Limits, Runner, RunSpec, run_script
from orchestrator.runs.limits import EnvironmentBusyError, EnvironmentLimiter, LogBudget, RunQuotas, environment_shares
from orchestrator.runs.script_host import ScriptHost
from orchestrator.runs.sinks import MemorySink
from orchestrator.store import jobs as jobs_repo
from orchestrator.store.types import Connection, OAuth2Credentials
from tests import redteam
from tests.conftest import EXAMPLES, GithubSetup, Stack, eventually, setup_github, wait_for_job

ON_WEBHOOK = "\n\nasync def on_webhook(nango, payload):\n    pass\n"
# A slow script holds its slot until the test releases it by adding the repository `<repo>-go` to the demo
# provider (which the script polls; 30 s at most, so a failed test leaves no run holding the shared worker):
# the hold proves what a fixed sleep did, and ends once the point is made.
HELD = ("    repo = (await nango.get_metadata())['repo']\n"
        "    for _ in range(120):\n"
        "        try:\n"
        "            if (await nango.get(f'/repos/{repo}-go')).status == 200:\n"
        "                break\n"
        "        except HttpError:\n"
        "            pass\n"
        "        await asyncio.sleep(0.25)\n")
ISSUE = ("{'id': str(i), 'number': i, 'title': 't', 'body': None, 'state': 'open', 'url': 'u', 'author': None,"
         " 'labels': [], 'created_at': 'c', 'updated_at': 'u', 'closed_at': None}")


# ---- without the stack ------------------------------------------------------------------------------

def test_log_budget_counts_lines_then_drops_everything_after_the_cap() -> None:
    budget = LogBudget(max_lines=3, max_bytes=1000)
    assert [budget.admit(10) for _ in range(5)] == [True, True, True, False, False]
    assert (budget.lines, budget.bytes, budget.dropped, budget.dropped_bytes, budget.hit) == (3, 30, 2, 20, "lines")
    assert budget.note() == ("truncated: 2 more log lines not stored (this run reached its log cap, "
                             "RUNNER_MAX_LOG_LINES=3)")


def test_log_budget_bytes_cap_and_no_note_when_nothing_was_dropped() -> None:
    budget = LogBudget(max_lines=100, max_bytes=25)
    assert budget.note() is None
    assert [budget.admit(10), budget.admit(10), budget.admit(10), budget.admit(1)] == [True, True, False, False]
    assert budget.hit == "bytes" and budget.exhausted  # a small line after the cap is dropped too: one cut
    assert budget.note() is not None and "2 more log lines" in budget.note() and "RUNNER_MAX_LOG_BYTES=25" in (
        budget.note() or "")


def _host(sink: MemorySink, quotas: RunQuotas) -> ScriptHost:
    now = datetime.now(UTC)
    connection = Connection(id=1, environment_id=1, integration_id=1, integration_key="github",
                            connection_id="c", provider="github", created_at=now, updated_at=now,
                            credentials=OAuth2Credentials(access_token=SecretStr("tok-secret-123")))
    return ScriptHost(sink=sink, session=None, connection=connection,  # type: ignore[arg-type]
                      provider=get_provider("github"), environment_name="dev", quotas=quotas)


async def test_script_host_stores_the_cap_plus_one_note_and_redacts_what_it_keeps() -> None:
    sink = MemorySink()
    host = _host(sink, RunQuotas(log_lines=5, log_bytes=10_000))
    for i in range(50):
        host.log("info", f"line {i} tok-secret-123", None)
        if i == 20:
            await host.flush_logs()  # a heartbeat's flush in the middle adds no note
    await host.flush_logs(final=True)
    await host.flush_logs(final=True)  # the note is written once
    messages = [m for _, m, _ in sink.logs]
    assert messages[:5] == [f"line {i} ***" for i in range(5)]
    assert messages[5:] == ["truncated: 45 more log lines not stored (this run reached its log cap, "
                            "RUNNER_MAX_LOG_LINES=5)"]


def test_environment_shares_default_to_half_of_each_kind() -> None:
    settings = Settings(worker_max_concurrent_syncs=10, worker_max_concurrent_actions=3,
                        worker_max_concurrent_webhooks=1, worker_max_concurrent_events=4,
                        encryption_key=SecretStr(""))
    assert environment_shares(settings) == {"sync": 5, "action": 1, "webhook": 1, "event": 2}
    assert environment_shares(settings.model_copy(update={"worker_max_concurrent_per_environment": 3})) == {
        "sync": 3, "action": 3, "webhook": 3, "event": 3}
    assert environment_shares(settings.model_copy(update={"worker_max_concurrent_per_environment": -1})) == {}
    assert Settings.model_fields["worker_max_concurrent_per_environment"].default == 0


async def test_a_sync_over_its_share_gives_its_slot_back_and_other_environments_go_on() -> None:
    limiter = EnvironmentLimiter(shares={"sync": 1, "action": 1}, give_back_after_s=0.2)
    told: list[str] = []
    async with limiter.slot(1, "sync"):
        with pytest.raises(EnvironmentBusyError) as exc:
            async with limiter.slot(1, "sync", on_full=told.append, key=7):
                pass
        assert "WORKER_MAX_CONCURRENT_PER_ENVIRONMENT" in str(exc.value.message)
        with pytest.raises(EnvironmentBusyError):  # the same job retried: told once
            async with limiter.slot(1, "sync", on_full=told.append, key=7):
                pass
        async with limiter.slot(2, "sync"), limiter.slot(1, "action"):  # another environment, another kind
            started = time.monotonic()
            with pytest.raises(EnvironmentBusyError):  # an action over its share gives its slot back at once
                async with limiter.slot(1, "action"):
                    pass
            assert time.monotonic() - started < 0.1
    assert len(told) == 1
    async with limiter.slot(1, "sync"):  # freed
        pass


FLOOD = """
import asyncio

async def run_action(nango, inp):
    results = await asyncio.gather(*(nango.get_metadata() for _ in range(inp["n"])))
    return len(results)
"""


class CountingHandler:
    """Counts platform calls in flight on the host side; each takes a little while."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.logs: list[tuple[str, str]] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.002)
            return {}
        finally:
            self.now -= 1

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        self.logs.append((level, message))


async def test_the_host_never_serves_more_calls_at_once_than_the_cap(tmp_path: Path) -> None:
    (tmp_path / "github" / "actions").mkdir(parents=True)
    (tmp_path / "github" / "actions" / "flood.py").write_text(FLOOD)
    runner = await Runner.create()
    handler = CountingHandler()
    try:
        spec = RunSpec("action", tmp_path, "github/actions/flood.py", 60, limits=Limits(rpc_in_flight=16),
                       context={"connection_id": "c", "provider_config_key": "github", "input": {"n": 3000}})
        outcome = await run_script(spec, handler, runner=runner)
    finally:
        await runner.close()
    assert outcome.ok and outcome.output == 3000, outcome.error
    assert handler.peak == 16, handler.peak
    assert [m for _, m in handler.logs if "RUNNER_MAX_RPC_IN_FLIGHT=16" in m], handler.logs


# ---- through the real path ----------------------------------------------------------------------------

async def _deploy(stack: Stack, tmp_path: Path, source: str, *, connection_id: str = "conn-1") -> GithubSetup:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(source)
    return await setup_github(stack, issues=2, folder=folder, connection_id=connection_id)


async def _logs(stack: Stack, job_id: int) -> list[dict[str, Any]]:
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch("SELECT level, message, fields FROM script_logs WHERE job_id = $1 ORDER BY id",
                                job_id)
    return [dict(r) for r in rows]


async def normal_sync_after(stack: Stack, gh: GithubSetup, done: int) -> None:
    """The shared check, plus: the run really saved (the example logs 'saved N')."""
    jobs = await redteam.normal_sync_after(stack, gh, done)
    assert any(e["message"].startswith("saved ") for e in await _logs(stack, jobs[0]["id"]))


async def test_a_log_flood_is_capped_and_the_worker_goes_on(stack: Stack, tmp_path: Path) -> None:
    gh = await _deploy(stack, tmp_path, (
        "async def fetch_data(nango):\n"
        "    for i in range(200_000):\n"
        "        nango.log(f'flood line {i} ' + 'x' * 40)\n"
        "    await nango.log('after the flood')\n"
        "    await nango.batch_save([" + ISSUE.replace("str(i)", "'1'").replace("i,", "1,") + "], 'GithubIssue')\n"
        + ON_WEBHOOK))
    started = time.monotonic()
    jobs = await wait_for_job(stack, gh, status="success", timeout=120)
    logs = await _logs(stack, jobs[0]["id"])
    cap = stack.settings.runner_max_log_lines
    assert len(logs) == cap + 1, len(logs)
    assert logs[cap - 1]["message"].startswith(f"flood line {cap - 1} ")
    note = logs[-1]
    assert note["level"] == "warn" and note["message"].startswith(
        f"truncated: {200_001 - cap} more log lines not stored"), note
    assert f"RUNNER_MAX_LOG_LINES={cap}" in note["message"]
    async with stack.pool.acquire() as conn:
        counts = await jobs_repo.counts(conn, jobs[0]["id"])
    assert counts and counts.get("GithubIssue", {}).get("added") == 1, counts  # the run went on after the cap
    assert time.monotonic() - started < 90
    await redteam.assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=1)


async def test_an_rpc_flood_is_held_to_the_cap_and_another_environment_is_not_starved(
        stack: Stack, tmp_path: Path) -> None:
    gh = await _deploy(stack, tmp_path, (
        "import asyncio\n\n"
        "async def fetch_data(nango):\n"
        "    for _ in range(4):\n"
        "        await asyncio.gather(*(nango.get_metadata() for _ in range(5000)))\n"
        "    await nango.log('flood done')\n" + ON_WEBHOOK))
    other = await setup_github(stack, issues=2)  # a normal sync in another environment, at the same time
    started = time.monotonic()
    other_jobs = await wait_for_job(stack, other, status="success", timeout=60)
    assert time.monotonic() - started < 45
    jobs = await wait_for_job(stack, gh, status="success", timeout=120)
    logs = [e["message"] for e in await _logs(stack, jobs[0]["id"])]
    cap = stack.settings.runner_max_rpc_in_flight
    assert any(f"RUNNER_MAX_RPC_IN_FLIGHT={cap}" in m for m in logs), logs
    assert logs[-1] == "flood done"
    assert other_jobs[0]["status"] == "success"
    await redteam.assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=1)


async def test_an_oversized_record_and_an_oversized_batch_are_refused_naming_the_limit(
        stack: Stack, tmp_path: Path) -> None:
    limit = stack.settings.runner_max_record_bytes
    per_call = stack.settings.runner_max_records_per_batch
    gh = await _deploy(stack, tmp_path, (
        "from orchestrator.sdk import NangoError\n\n"
        "async def fetch_data(nango):\n"
        "    i = 1\n"
        f"    big = {ISSUE}\n"
        f"    big['body'] = 'x' * {limit + 10}\n"
        "    try:\n"
        "        await nango.batch_save([big], 'GithubIssue')\n"
        "    except NangoError as exc:\n"
        "        await nango.log('record refused: ' + exc.type + ': ' + exc.message)\n"
        # the SDK chunks batches below the cap: a hostile script talks to the channel itself
        f"    records = [{ISSUE} for i in range({per_call + 1})]\n"
        "    await nango._channel.call('batch_save', {'model': 'GithubIssue', 'records': records})\n"
        + ON_WEBHOOK))
    jobs = await wait_for_job(stack, gh, status="failed", timeout=90)
    error = jobs[0]["error"]
    assert f"{per_call + 1} records in one call; the limit is {per_call} records per call " \
           "(RUNNER_MAX_RECORDS_PER_BATCH)" in error, error
    messages = [e["message"] for e in await _logs(stack, jobs[0]["id"])]
    refused = [m for m in messages if m.startswith("record refused: invalid_record: ")]
    assert refused and f"the limit is {limit} bytes per record (RUNNER_MAX_RECORD_BYTES)" in refused[0], messages
    assert "record #0 (id '1')" in refused[0]
    warnings = [m for m in messages if m.startswith("refused: ")]  # the host's own entries, one per refusal
    assert len(warnings) == 2 and "RUNNER_MAX_RECORD_BYTES" in warnings[0] and \
        "RUNNER_MAX_RECORDS_PER_BATCH" in warnings[1], messages
    async with stack.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM records r JOIN record_scopes s ON s.id = r.scope_id JOIN connections c"
            " ON c.id = s.connection_pk JOIN environments e ON e.id = c.environment_id WHERE e.name = $1", gh.env)
    assert stored == 0
    await redteam.assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=1)


async def test_one_environment_cannot_hold_every_sync_slot(stack: Stack, tmp_path: Path) -> None:
    share = environment_shares(stack.settings)["sync"]
    assert 1 <= share < stack.settings.worker_max_concurrent_syncs
    busy = await _deploy(stack, tmp_path, (
        "import asyncio\n\nfrom orchestrator.sdk import HttpError\n\nasync def fetch_data(nango):\n"
        "    await nango.log('long sync started')\n"
        + HELD + ON_WEBHOOK))
    async with stack.api(busy.key) as api:  # more long syncs than its share, one per connection
        for n in range(share + 1):
            await api.create_connection("github", f"more-{n}", {"type": "OAUTH2", "access_token": "demo-token"},
                                        connection_config={"base_url": stack.provider_url},
                                        metadata={"repo": busy.repo})

    async def running() -> list[int]:
        async with stack.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT j.id FROM jobs j JOIN environments e ON e.id = j.environment_id WHERE e.name = $1"
                " AND j.status = 'running' AND EXISTS (SELECT 1 FROM script_logs l WHERE l.job_id = j.id"
                " AND l.message = 'long sync started')", busy.env)
        return [r["id"] for r in rows]

    async def share_full() -> None:
        assert len(await running()) == share
        async with stack.pool.acquire() as conn:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM script_logs l JOIN jobs j ON j.id = l.job_id JOIN environments e"
                " ON e.id = j.environment_id WHERE e.name = $1 AND l.level = 'warn'"
                " AND l.message LIKE '%WORKER_MAX_CONCURRENT_PER_ENVIRONMENT%'", busy.env)
        assert waiting >= 1
    await eventually(share_full, timeout=60)

    other = await setup_github(stack, issues=2)  # another environment starts while the share is full
    started = time.monotonic()
    await wait_for_job(stack, other, status="success", timeout=30)
    assert time.monotonic() - started < 30
    assert len(await running()) <= share  # never more than its share at once
    stack.demo.add_repo(busy.repo + "-go", 0)  # release the held syncs

    async def all_done() -> None:
        async with stack.pool.acquire() as conn:
            statuses = await conn.fetch(
                "SELECT j.status FROM jobs j JOIN environments e ON e.id = j.environment_id WHERE e.name = $1",
                busy.env)
        assert len(statuses) == share + 2 and all(r["status"] == "success" for r in statuses), statuses
    await eventually(all_done, timeout=120)  # the ones over the share ran later, none failed
    await redteam.assert_no_secret(stack, busy.env)
    await normal_sync_after(stack, busy, done=share + 2)



SLOW_ACTION = """
import asyncio

from orchestrator.sdk import HttpError, NangoAction

from ..syncs.issues import to_issue


async def run_action(nango: NangoAction, input):
    await nango.log("slow action started")
""" + HELD + """    return to_issue((await nango.post(f"/repos/{repo}/issues", data={"title": input.title})).data)
"""


async def test_actions_over_an_environments_share_hold_no_worker_slot(stack: Stack, tmp_path: Path) -> None:
    """More slow actions than the worker has action slots, from one environment: the ones over its share
    wait on their workflow's timer, so another environment's action still finds a free slot at once."""
    slots = stack.settings.worker_max_concurrent_actions
    share = environment_shares(stack.settings)["action"]
    assert share < slots
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/actions/create_issue.py").write_text(SLOW_ACTION)
    busy = await setup_github(stack, issues=1, folder=folder)
    other = await setup_github(stack, issues=1)
    async with stack.api(busy.key) as api:
        flood = [await api.trigger_action_async("github", "conn-1", "create-issue", {"title": f"t{n}"})
                 for n in range(slots + 1)]  # its share runs, the rest would fill the worker

    async def share_running() -> None:
        async with stack.pool.acquire() as conn:
            started = await conn.fetchval(
                "SELECT count(DISTINCT j.id) FROM jobs j JOIN environments e ON e.id = j.environment_id"
                " JOIN script_logs l ON l.job_id = j.id WHERE e.name = $1 AND l.message = 'slow action started'"
                " AND j.status = 'running'", busy.env)
        assert started == share, started
    await eventually(share_running, timeout=30)

    started = time.monotonic()
    async with stack.api(other.key) as api:
        created = await api.trigger_action("github", "conn-1", "create-issue", {"title": "not starved"})
    assert created["title"] == "not starved"
    assert time.monotonic() - started < 5  # while every slow action still held its slot

    stack.demo.add_repo(busy.repo + "-go", 0)  # release the held actions
    async with stack.api(busy.key) as api:
        async def all_done() -> None:
            for action in flood:
                try:
                    result = await api.get_action_result(action["id"])
                except ApiError as exc:  # 404 while it runs or waits
                    raise AssertionError(f"action {action['id']} not done: {exc}") from None
                assert result["title"].startswith("t")
        await eventually(all_done, timeout=120, interval=1.0)  # the waiting ones ran later, none failed
    async with stack.pool.acquire() as conn:  # waiting for the share is not an attempt: none looks retried
        attempts = await conn.fetch(
            "SELECT j.attempts FROM jobs j JOIN environments e ON e.id = j.environment_id"
            " WHERE e.name = $1 AND j.script_name = 'create-issue'", busy.env)
    assert sorted(r["attempts"] for r in attempts) == [1] * len(flood)
    await redteam.assert_no_secret(stack, busy.env)
