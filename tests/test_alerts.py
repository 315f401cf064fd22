"""Failing-sync alerts (issue 20): a sync that fails the environment's `alert_after_failures` runs in a row sends
one signed "failing" webhook and, when it next succeeds, one "recovered" webhook; 0 turns them off; the dashboard's
front page lists the failing sync and charts the day's runs. Real stack: the demo provider's `fail_next` fails runs."""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

from tests.conftest import GithubSetup, Stack, eventually, setup_github, wait_for_job
from tests.test_api_notifications import idle
from tests.test_auth_webhooks import VERIFY, Receiver, receiver  # noqa: F401  (the receiver fixture)
from tests.test_node_client import _install
from tests.test_node_client import _run as run_node


def bodies(rec: Receiver) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw, _ in rec.received]


def alerts(rec: Receiver) -> list[dict[str, Any]]:
    """The alert webhooks received (sync results have no `operation`)."""
    return [b for b in bodies(rec) if "operation" in b]


async def run_once(stack: Stack, gh: GithubSetup, count: int, *, fail: bool) -> list[dict[str, Any]]:
    """Trigger one run of the sync (failed by the provider when `fail`) and wait until it has notified."""
    if fail:  # a 422 is not retried: the script's request raises and the run fails
        stack.demo.fail_next(1, 422, retry_after=None, path_prefix=f"/repos/{gh.repo}")
    async with stack.api(gh.key) as api:
        await api.trigger_sync("github", ["issues"], gh.connection_id)
    jobs = await wait_for_job(stack, gh, count=count, status="failed" if fail else "success")
    await idle(stack, gh.schedule_id())
    return jobs


async def ready(stack: Stack, rec: Receiver, **settings: Any) -> GithubSetup:
    """An environment whose first run succeeded, sending its webhooks to the receiver with these settings."""
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    await idle(stack, gh.schedule_id())
    async with stack.api(gh.key) as api:
        assert (await api.request("GET", "/environment"))["alert_after_failures"] == 3  # the default
        got = await api.request("PATCH", "/environment", json={"webhook_url": rec.url, **settings})
    assert all(got[k] == v for k, v in settings.items() if k != "webhook_secret"), got
    return gh


async def test_a_failing_streak_sends_one_failing_then_one_recovered_webhook(
        stack: Stack, receiver: Receiver) -> None:  # noqa: F811
    gh = await ready(stack, receiver, webhook_secret="whsec-alerts", alert_after_failures=2)
    await run_once(stack, gh, 2, fail=True)
    jobs = await run_once(stack, gh, 3, fail=True)

    async def failing_sent() -> dict[str, Any]:
        got = alerts(receiver)
        assert len(got) == 1, got
        return got[0]
    failing = await eventually(failing_sent, timeout=30)
    assert {k: failing[k] for k in ("from", "type", "operation", "success", "connectionId", "providerConfigKey",
                                    "syncName", "syncVariant", "failures", "alertAfterFailures", "jobId")} == {
        "from": "nango", "type": "sync", "operation": "failing", "success": False, "connectionId": gh.connection_id,
        "providerConfigKey": "github", "syncName": "issues", "syncVariant": "base", "failures": 2,
        "alertAfterFailures": 2, "jobId": jobs[0]["id"]}
    assert failing["environment"] == gh.env and failing["failingSince"]
    assert failing["error"]["type"] and "422" in failing["error"]["description"]

    # a third failure in a row: still the one failing webhook; then a success recovers it, once
    await run_once(stack, gh, 4, fail=True)
    recovered_job = (await run_once(stack, gh, 5, fail=False))[0]

    async def recovered_sent() -> list[dict[str, Any]]:
        got = alerts(receiver)
        assert [b["operation"] for b in got] == ["failing", "recovered"], got
        return got
    recovered = (await eventually(recovered_sent, timeout=30))[1]
    assert {k: recovered[k] for k in ("type", "success", "connectionId", "syncName", "failures", "jobId")} == {
        "type": "sync", "success": True, "connectionId": gh.connection_id, "syncName": "issues", "failures": 3,
        "jobId": recovered_job["id"]}
    assert recovered["recoveredAt"] and recovered["failingSince"] == failing["failingSince"]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", t)  # the one timestamp form
               for t in (failing["failingSince"], recovered["recoveredAt"]))
    # each alert's delivery is recorded on its run, beside the result webhooks (a success that changed nothing
    # sends none: notify_on_empty is off)
    async with stack.api(gh.key) as api:
        async def recorded() -> None:
            failed_run = (await api.get_job(jobs[0]["id"]))["notifications"]
            assert [a["status"] for a in failed_run] == [200, 200], failed_run  # its result and the alert
            recovered_run = (await api.get_job(recovered_job["id"]))["notifications"]
            assert [(a["status"], a["url"]) for a in recovered_run] == [(200, receiver.url)], recovered_run
        await eventually(recorded, timeout=30)

    # another success is no news; a new streak alerts again
    await run_once(stack, gh, 6, fail=False)
    await run_once(stack, gh, 7, fail=True)
    await run_once(stack, gh, 8, fail=True)

    async def second_streak() -> None:
        assert [b["operation"] for b in alerts(receiver)] == ["failing", "recovered", "failing"]
    await eventually(second_streak, timeout=30)

    # the customer's backend verifies them with Nango's own client
    if shutil.which("node") and shutil.which("npm"):
        await _install()
        deliveries = [(raw, headers) for raw, headers in receiver.received if "operation" in json.loads(raw)]
        code, out, err = await run_node("node", "-e", VERIFY, timeout=60, env={
            "SIGNING_KEY": "whsec-alerts", "DELIVERIES": json.dumps(deliveries)})
        assert code == 0, err
        assert json.loads(out) == [True] * 3
        forged = [(deliveries[0][0].replace('"failures":2', '"failures":1'), deliveries[0][1])]
        code, out, err = await run_node("node", "-e", VERIFY, timeout=60, env={
            "SIGNING_KEY": "whsec-alerts", "DELIVERIES": json.dumps(forged)})
        assert json.loads(out) == [False]


async def test_alerts_off_send_no_alert(stack: Stack, receiver: Receiver) -> None:  # noqa: F811
    gh = await ready(stack, receiver, alert_after_failures=0, notify_on_empty=True)
    async with stack.api(gh.key) as api:
        for bad in (-1, 1001, "three"):
            await api.request("PATCH", "/environment", json={"alert_after_failures": bad}, ok=(400,))
    for count in (2, 3, 4):
        await run_once(stack, gh, count, fail=True)
    await run_once(stack, gh, 5, fail=False)

    async def results_sent() -> None:  # every run's result webhook came: the receiver works
        assert [b["success"] for b in bodies(receiver)] == [False, False, False, True], bodies(receiver)
    await eventually(results_sent, timeout=30)
    assert alerts(receiver) == []


async def test_front_page_lists_the_failing_sync_and_charts_the_day(
        stack: Stack, receiver: Receiver, browser: Any) -> None:  # noqa: F811
    gh = await ready(stack, receiver, alert_after_failures=2)
    await run_once(stack, gh, 2, fail=True)
    jobs = await run_once(stack, gh, 3, fail=True)
    healthy = await setup_github(stack, issues=1)  # another environment's runs are not counted
    await wait_for_job(stack, healthy)

    page = await (await browser.new_context(viewport={"width": 1360, "height": 900})).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(stack.api_url + "/")
    await page.fill("#secret", gh.key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboard/connections**")

    rows = page.locator("section.health table.failing tbody tr")
    assert await rows.count() == 1
    cells = rows.first.locator("td")
    assert await cells.nth(0).inner_text() == "issues" and gh.connection_id in await cells.nth(1).inner_text()
    assert await cells.nth(2).inner_text() == "2"
    assert await page.locator("section.health .failing-count").inner_text() == "1"
    last_failed = page.locator("section.health a.failed-run")
    assert await last_failed.inner_text() == f"run #{jobs[0]['id']}"

    await page.wait_for_selector("#health-chart .legend")  # drawn
    bars = await page.locator("#health-chart svg g.hour").evaluate_all(
        "gs => gs.map(g => [Number(g.dataset.success), Number(g.dataset.failed)])")
    assert len(bars) == 24
    assert (sum(s for s, _ in bars), sum(f for _, f in bars)) == (1, 2), bars
    assert "1 succeeded" in await page.locator("#health-chart .legend").inner_text()

    await last_failed.click()
    await page.wait_for_url(lambda u: u.endswith(f"/dashboard/job?id={jobs[0]['id']}"))
    assert errors == []
