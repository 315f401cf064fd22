"""Sync-result webhooks to the customer's app: Nango's payloads, signed, retried on 5xx and timeouts,
and every delivery attempt visible through `GET /jobs/{id}`."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from orchestrator.runs import notify
from orchestrator.temporal import schedules
from orchestrator.timestamps import iso
from tests.conftest import Stack, allow_egress, eventually, serve_post, setup_github, wait_for_job


class Receiver:
    def __init__(self) -> None:
        self.plan: list[str] = []  # per incoming request: "500", "slow" or "ok" (default)
        self.received: list[tuple[dict[str, Any], str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        step = self.plan.pop(0) if self.plan else "ok"
        if step == "500":
            return web.Response(status=500, text="boom")
        if step == "slow":
            await asyncio.sleep(3)
        self.received.append((orjson.loads(body), request.headers.get("X-Nango-Hmac-Sha256", "")))
        return web.Response(text="ok")


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Receiver]:
    monkeypatch.setattr(notify, "TIMEOUT_S", 1.0)
    monkeypatch.setattr(notify, "BACKOFF_S", 0.2)
    rec = Receiver()
    async with serve_post("/hook", rec.handle) as rec.url:
        yield rec


async def idle(stack: Stack, schedule_id: str) -> None:
    """Wait until no run of the schedule is in flight: a job closes before its run notifies."""
    async def no_run() -> None:
        view = await schedules.describe(stack.client, schedule_id)
        assert view is not None and not view.running_workflow_ids, view
    await eventually(no_run, timeout=30)


async def test_result_webhooks_are_nangos_payloads_retried_and_recorded(stack: Stack, receiver: Receiver) -> None:
    with allow_egress(stack, receiver.url):  # the customer's app, on loopback here
        await _retried_and_recorded(stack, receiver)


async def _retried_and_recorded(stack: Stack, receiver: Receiver) -> None:
    gh = await setup_github(stack, issues=3)
    await wait_for_job(stack, gh)
    await idle(stack, gh.schedule_id())  # the first run has sent (or skipped) its own notification by now
    async with stack.api(gh.key) as api:
        await api.update_environment(webhook_url=receiver.url, webhook_secret="whsec-1")
        receiver.plan = ["500", "slow"]  # a 5xx, then a timeout, then delivered
        stack.demo.update_issue(gh.repo, 2, title="changed")
        await api.trigger_sync("github", ["issues"], "conn-1")
        jobs = await wait_for_job(stack, gh, count=2)

        async def delivered() -> dict[str, Any]:
            job = await api.get_job(jobs[0]["id"])
            assert [a["status"] for a in job["notifications"]] == [500, None, 200], job["notifications"]
            return job
        job = await eventually(delivered, timeout=30)
        assert "Timeout" in job["notifications"][1]["error"]
        assert job["notifications"][0]["url"] == receiver.url
        payload, signature = receiver.received[-1]
        assert signature == hmac.new(b"whsec-1", orjson.dumps(payload), hashlib.sha256).hexdigest()
        assert {k: payload[k] for k in ("from", "type", "connectionId", "providerConfigKey", "syncName", "model",
                                        "success", "responseResults", "syncType")} == {
            "from": "nango", "type": "sync", "connectionId": "conn-1", "providerConfigKey": "github",
            "syncName": "issues", "model": "GithubIssue", "success": True, "syncType": "INCREMENTAL",
            "responseResults": {"added": 0, "updated": 1, "deleted": 0}}
        assert payload["modifiedAfter"] and payload["queryTimeStamp"]
        # the job's start in the database's clock, which stamps records: modified_after finds the run's change
        async with stack.pool.acquire() as conn:
            started = await conn.fetchval("SELECT started_at FROM jobs WHERE id = $1", jobs[0]["id"])
        assert payload["modifiedAfter"] == iso(started)
        changed = await api.list_records("github", "conn-1", "GithubIssue", modified_after=payload["modifiedAfter"])
        assert [r["title"] for r in changed["records"]] == ["changed"]

        # a failed run: success false with the error, when it started and when it failed
        await api.update_metadata("github", "conn-1", {"repo": "nobody/nothing"})
        await api.trigger_sync("github", ["issues"], "conn-1")
        await wait_for_job(stack, gh, count=3, status="failed")

        async def failure_sent() -> dict[str, Any]:
            assert receiver.received[-1][0]["success"] is False
            return receiver.received[-1][0]
        failed = await eventually(failure_sent, timeout=30)
        assert failed["type"] == "sync" and failed["syncName"] == "issues" and failed["model"] == "GithubIssue"
        assert failed["error"]["type"] and failed["error"]["description"]
        assert failed["startedAt"] and failed["failedAt"] and "responseResults" not in failed
