"""Switching deployed syncs and actions off and on, through the API and `nango admin scripts`."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from orchestrator.authoring.compile import compile_project
from orchestrator.cli.main import app
from orchestrator.client import ApiError
from orchestrator.temporal import schedules
from orchestrator.temporal.names import sync_schedule_id
from tests.conftest import EXAMPLES, Stack, eventually, setup_github, wait_for_job

HEADERS = {"Provider-Config-Key": "github", "Connection-Id": "conn-1"}


def _env(stack: Stack) -> dict[str, str]:
    s = stack.settings
    return {"DATABASE_URL": s.database_url.get_secret_value(), "TEMPORAL_ADDRESS": s.temporal_address,
            "ENCRYPTION_KEY": s.encryption_key.get_secret_value(), "TASK_QUEUE_PREFIX": s.task_queue_prefix}


async def _cli(stack: Stack, *args: str, code: int = 0) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, app, ["admin", "scripts", *args], env=_env(stack))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


async def test_disabling_a_sync_removes_its_schedules_and_endpoint_and_enabling_restores_them(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    variant_sid = sync_schedule_id(gh.env, "github", "conn-1", "issues", "v2")
    async with stack.api(gh.key) as api:
        await api.request("POST", "/sync/issues/variant/v2",
                          json={"provider_config_key": "github", "connection_id": "conn-1"})
        assert await schedules.describe(stack.client, variant_sid) is not None

        result = await api.request("PATCH", "/scripts/github/issues", json={"enabled": False})
        assert result["enabled"] is False and result["changed"] is True and result["kind"] == "sync"
        assert set(result["schedules_deleted"]) == {gh.schedule_id(), variant_sid}
        assert await schedules.describe(stack.client, gh.schedule_id()) is None
        assert await schedules.describe(stack.client, variant_sid) is None
        with pytest.raises(ApiError) as err:
            await api.request("GET", "/v1/github/issues", headers=HEADERS)
        assert err.value.status == 404 and "sync 'issues' is disabled" in err.value.message
        assert "POST /v1/github/issues (action create-issue)" in err.value.message
        listed = (await api.request("GET", "/scripts", params={"provider_config_key": "github"}))["scripts"]
        assert {(s["kind"], s["name"], s["enabled"]) for s in listed} == {
            ("sync", "issues", False), ("action", "create-issue", True)}
        doc = await api.request("GET", "/v1/openapi.json")
        assert list(doc["paths"]["/v1/github/issues"]) == ["post"]

        # A redeploy keeps the switch off; disabling again changes nothing.
        await api.deploy(await asyncio.to_thread(compile_project, EXAMPLES))
        assert await schedules.describe(stack.client, gh.schedule_id()) is None
        again = await api.request("PATCH", "/scripts/github/issues", json={"enabled": False})
        assert again["changed"] is False

        result = await api.request("PATCH", "/scripts/github/issues", json={"enabled": True, "kind": "sync"})
        assert result["enabled"] is True and set(result["schedules_created"]) == {gh.schedule_id(), variant_sid}
        await wait_for_job(stack, gh, count=2)  # a recreated schedule runs at once

        async def served() -> None:
            page = await api.request("GET", "/v1/github/issues", headers=HEADERS)
            assert len(page["records"]) == 2
        await eventually(served, timeout=10)

        # Bad input: every error names what was wrong.
        for path, body, status, fragment in (
                ("/scripts/github/nope", {"enabled": False}, 404, "no sync or action 'nope'"),
                ("/scripts/gitlab/issues", {"enabled": False}, 404, "no integration 'gitlab'"),
                ("/scripts/github/issues", {"enabled": False, "kind": "action"}, 404, "no action 'issues'"),
                ("/scripts/github/issues", {"enabled": "maybe"}, 400, "enabled"),
                ("/scripts/github/issues", {"kind": "sync"}, 400, "enabled"),
                ("/scripts/github/issues", {"enabled": True, "kind": "webhook"}, 400, "kind")):
            with pytest.raises(ApiError) as err:
                await api.request("PATCH", path, json=body)
            assert err.value.status == status and fragment in err.value.message, (path, body, err.value.message)
        assert "deployed: action create-issue, sync issues" in (await _error(api, "/scripts/github/nope"))


async def _error(api, path: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        await api.request("PATCH", path, json={"enabled": False})
    return err.value.message


async def test_admin_cli_switches_an_action(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    out = await _cli(stack, "disable", "github", "create-issue", "-e", gh.env)
    assert "disabled action 'create-issue' of github" in out
    async with stack.api(gh.key) as api:
        with pytest.raises(ApiError) as err:
            await api.request("POST", "/action/trigger", headers=HEADERS,
                              json={"action_name": "create-issue", "input": {"title": "x"}})
        assert err.value.status == 404 and "no action 'create-issue'" in err.value.message
        with pytest.raises(ApiError) as err:
            await api.request("POST", "/v1/github/issues", headers=HEADERS, json={"title": "x"})
        assert err.value.status == 404 and "action 'create-issue' is disabled" in err.value.message
        listed = json.loads(await _cli(stack, "list", "-e", gh.env, "--json"))
        assert {(r["name"], r["enabled"]) for r in listed} == {("issues", True), ("create-issue", False)}

        out = await _cli(stack, "enable", "github", "create-issue", "--kind", "action", "-e", gh.env)
        assert "enabled action 'create-issue' of github" in out
        created = await api.request("POST", "/v1/github/issues", headers=HEADERS, json={"title": "back on"})
        assert created["title"] == "back on"

    out = await _cli(stack, "disable", "github", "nope", "-e", gh.env, code=1)
    assert "no sync or action 'nope'" in out and "deployed: action create-issue, sync issues" in out
    out = await _cli(stack, "disable", "github", "issues", "--kind", "webhook", "-e", gh.env, code=1)
    assert "kind must be 'sync' or 'action'" in out
    out = await _cli(stack, "enable", "github", "issues", "-e", "no-such-env", code=1)
    assert "no environment 'no-such-env'" in out
