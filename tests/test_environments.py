"""Environments and their settings through the real stack: the admin API and `nango admin env`,
secret-key rotation with a grace period, webhook URLs, and `nango env` for environment variables."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr
from typer.testing import CliRunner

from orchestrator.api.app import create_app
from orchestrator.cli.main import app as cli_app
from orchestrator.client import ApiError, NangoClient
from orchestrator.devstack.processes import free_port
from orchestrator.store import schedule_intervals
from orchestrator.temporal import schedules
from tests.conftest import Stack, allow_egress, eventually, setup_github, wait_for_job

ADMIN_KEY = "admin-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def admin_url(stack: Stack) -> AsyncIterator[str]:
    """A second API process on the same stack, with the admin API switched on."""
    settings = stack.settings.model_copy(update={"admin_secret_key": SecretStr(ADMIN_KEY), "api_port": free_port()})
    runner = web.AppRunner(create_app(settings, temporal=stack.client), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api_port).start()
    try:
        yield f"http://127.0.0.1:{settings.api_port}"
    finally:
        await runner.cleanup()


def _cli_env(stack: Stack) -> dict[str, str]:
    s = stack.settings
    return {"DATABASE_URL": s.database_url.get_secret_value(), "TEMPORAL_ADDRESS": s.temporal_address,
            "ENCRYPTION_KEY": s.encryption_key.get_secret_value(), "TASK_QUEUE_PREFIX": s.task_queue_prefix}


async def _cli(stack: Stack, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, list(args), env=env or _cli_env(stack))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stdout if "--json" in args else result.output


async def _works(stack: Stack, key: str) -> bool:
    async with stack.api(key) as api:
        try:
            await api.request("GET", "/environment")
            return True
        except ApiError as exc:
            assert exc.status == 401, exc
            return False


async def _expect(call: Any, status: int, fragment: str) -> dict[str, Any]:
    with pytest.raises(ApiError) as err:
        await call
    assert err.value.status == status and fragment in err.value.message, (status, fragment, err.value.message)
    return err.value.body


async def test_admin_api_creates_lists_rotates_and_deletes(stack: Stack, admin_url: str) -> None:
    async with stack.api(ADMIN_KEY) as disabled:  # the session's API has no admin key
        body = await _expect(disabled.request("GET", "/admin/environments"), 404, "ADMIN_SECRET_KEY")
        assert body["error"]["code"] == "admin_api_disabled"
    async with NangoClient(admin_url, "wrong") as bad:
        await _expect(bad.request("GET", "/admin/environments"), 401, "admin key is not valid")
    name = "e" + uuid.uuid4().hex[:8]
    async with NangoClient(admin_url, ADMIN_KEY) as admin:
        created = await admin.request("POST", "/admin/environments", json={"name": name})
        key = created["secret_key"]
        assert created["name"] == name and key.startswith("sk_")
        async with stack.api(key) as api:
            assert (await api.request("GET", "/environment"))["name"] == name
        await _expect(admin.request("POST", "/admin/environments", json={"name": name}), 409, "already exists")
        await _expect(admin.request("POST", "/admin/environments", json={"name": "bad name!"}), 400,
                      "environment name must be")
        await _expect(admin.request("POST", "/admin/environments", json={}), 400, "name")
        listed = {e["name"]: e for e in (await admin.request("GET", "/admin/environments"))["environments"]}
        assert listed[name]["connections"] == 0 and listed[name]["previous_key_expires_at"] is None
        assert "secret_key" not in listed[name] and "secret_key_hash" not in listed[name]

        # Rotation: the new key works at once, the old one during the grace period only.
        rotated = await admin.request("POST", f"/admin/environments/{name}/rotate-key", json={"grace_period_s": 3600})
        key2 = rotated["secret_key"]
        assert rotated["previous_key_expires_at"] and key2 != key
        assert await _works(stack, key2) and await _works(stack, key)
        listed = {e["name"]: e for e in (await admin.request("GET", "/admin/environments"))["environments"]}
        assert listed[name]["previous_key_expires_at"] == rotated["previous_key_expires_at"]
        rotated = await admin.request("POST", f"/admin/environments/{name}/rotate-key", json={"grace_period_s": 1})
        key3 = rotated["secret_key"]
        assert await _works(stack, key3) and await _works(stack, key2)
        assert not await _works(stack, key)  # only the latest previous key is kept

        async def grace_over() -> None:
            assert not await _works(stack, key2)
        await eventually(grace_over, timeout=10)
        rotated = await admin.request("POST", f"/admin/environments/{name}/rotate-key", json={"grace_period_s": 0})
        assert rotated["previous_key_expires_at"] is None
        assert await _works(stack, rotated["secret_key"]) and not await _works(stack, key3)
        await _expect(admin.request("POST", f"/admin/environments/{name}/rotate-key",
                                    json={"grace_period_s": -5}), 400, "grace_period_s")
        await _expect(admin.request("POST", f"/admin/environments/{name}/rotate-key",
                                    json={"grace_period_s": 90 * 86400}), 400, "grace period must be from 0")
        await _expect(admin.request("POST", "/admin/environments/nope-env/rotate-key", json={}), 404,
                      "no environment 'nope-env'")

        # Deleting an environment with connections needs force; its schedules go with it.
        gh = await setup_github(stack, issues=1)
        await wait_for_job(stack, gh)
        async with stack.pool.acquire() as conn:  # what the platform wrote into the schedule is kept ...
            assert await schedule_intervals.for_ids(conn, [gh.schedule_id()])
        await _expect(admin.request("DELETE", f"/admin/environments/{gh.env}"), 409,
                      "1 integration(s) and 1 connection(s)")
        await _expect(admin.request("DELETE", f"/admin/environments/{gh.env}", params={"force": "maybe"}), 400,
                      "force must be true or false")
        deleted = await admin.request("DELETE", f"/admin/environments/{gh.env}", params={"force": "true"})
        assert deleted["schedules_deleted"] == [gh.schedule_id()]
        assert await schedules.describe(stack.client, gh.schedule_id()) is None
        async with stack.pool.acquire() as conn:  # ... and goes with the environment
            assert not await schedule_intervals.for_ids(conn, [gh.schedule_id()])
        assert not await _works(stack, gh.key)
        await admin.request("DELETE", f"/admin/environments/{name}")  # empty: no force needed
        await _expect(admin.request("DELETE", f"/admin/environments/{name}"), 404, f"no environment '{name}'")


async def test_own_key_rotation_and_webhook_urls(stack: Stack) -> None:
    received: dict[str, list[tuple[dict[str, Any], str]]] = {"a": [], "b": []}

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        received[request.match_info["which"]].append((orjson.loads(raw), request.headers["X-Nango-Hmac-Sha256"]))
        return web.Response(text="ok")
    receiver = web.Application()
    receiver.router.add_post("/hook/{which}", hook)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await _rotation_and_webhook_urls(stack, port, received)
    finally:
        await runner.cleanup()


async def _rotation_and_webhook_urls(stack: Stack, port: int,
                                     received: dict[str, list[tuple[dict[str, Any], str]]]) -> None:
    with allow_egress(stack, f"http://127.0.0.1:{port}"):  # the customer's app, on loopback here
        gh = await setup_github(stack, issues=2)
        await wait_for_job(stack, gh)
        async with stack.api(gh.key) as api:
            env = await api.request("PATCH", "/environment", json={
                "webhook_url": f"http://127.0.0.1:{port}/hook/a", "webhook_url_secondary":
                f"http://127.0.0.1:{port}/hook/b", "webhook_secret": "s3cret", "notify_on_empty": True})
            assert env["webhook_url_secondary"].endswith("/hook/b") and env["has_webhook_secret"]
            await _expect(api.request("PATCH", "/environment", json={"webhook_url_secondary": "ftp://x"}), 400,
                          "webhook_url_secondary")
            await api.request("POST", "/sync/trigger", json={"syncs": ["issues"], "provider_config_key": "github",
                                                             "connection_id": "conn-1"})
            await wait_for_job(stack, gh, count=2)

            async def both() -> None:
                assert received["a"] and received["b"]
            await eventually(both, timeout=15)
            for payload, signature in (received["a"][0], received["b"][0]):
                assert payload["syncName"] == "issues" and payload["model"] == "GithubIssue"
                assert signature == hmac.new(b"s3cret", orjson.dumps(payload), hashlib.sha256).hexdigest()
            await api.request("PATCH", "/environment", json={"webhook_url_secondary": ""})
            assert (await api.request("GET", "/environment"))["webhook_url_secondary"] is None

            rotated = await api.request("POST", "/environment/rotate-key", json={})
            await _expect(api.request("POST", "/environment/rotate-key", json={"grace_period_s": "soon"}), 400,
                          "grace_period_s")
        assert await _works(stack, rotated["secret_key"]) and await _works(stack, gh.key)
        async with stack.api(rotated["secret_key"]) as api:
            settings = await api.request("GET", "/environment")
        assert settings["previous_key_expires_at"] == rotated["previous_key_expires_at"]
        assert settings["secret_key_rotated_at"]


async def test_admin_env_cli(stack: Stack) -> None:
    name = "c" + uuid.uuid4().hex[:8]
    created = json.loads(await _cli(stack, "admin", "env", "create", name, "--json"))
    assert created["name"] == name and await _works(stack, created["secret_key"])
    out = await _cli(stack, "admin", "env", "create", name, code=1)
    assert f"environment '{name}' already exists" in out
    out = await _cli(stack, "admin", "env", "create", "no way", code=1)
    assert "environment name must be" in out
    listed = json.loads(await _cli(stack, "admin", "env", "list", "--json"))
    assert name in {e["name"] for e in listed}
    assert name in await _cli(stack, "admin", "env", "list")

    rotated = json.loads(await _cli(stack, "admin", "env", "rotate-key", name, "--grace", "600", "--json"))
    assert await _works(stack, rotated["secret_key"]) and await _works(stack, created["secret_key"])
    out = await _cli(stack, "admin", "env", "rotate-key", name, "--grace", "0")
    assert "the previous key no longer works" in out
    assert not await _works(stack, rotated["secret_key"])
    out = await _cli(stack, "admin", "env", "rotate-key", name, "--grace", "-1", code=1)
    assert "grace period must be from 0" in out
    out = await _cli(stack, "admin", "env", "delete", name)
    assert f"deleted environment '{name}'" in out
    out = await _cli(stack, "admin", "env", "delete", name, code=1)
    assert f"no environment '{name}'" in out


async def test_env_cli_sets_lists_and_unsets_variables(stack: Stack) -> None:
    _, key = await stack.new_environment()
    flags = ["--server", stack.api_url, "--secret-key", key]
    env = {"NANGO_SECRET_KEY": "", "NANGO_HOSTPORT": ""}
    assert "set API_TOKEN, REGION" in await _cli(stack, "env", "set", "API_TOKEN=abc=def", "REGION=eu", *flags,
                                                   env=env)
    await _cli(stack, "env", "set", "EMPTY=", *flags, env=env)
    listed = json.loads(await _cli(stack, "env", "list", "--json", *flags, env=env))
    assert listed == [{"name": "API_TOKEN", "value": "abc=def"}, {"name": "EMPTY", "value": ""},
                      {"name": "REGION", "value": "eu"}]
    masked = await _cli(stack, "env", "list", *flags, env=env)
    assert "API_TOKEN=********" in masked and "abc=def" not in masked
    assert "REGION=eu" in await _cli(stack, "env", "list", "--reveal", *flags, env=env)
    async with stack.api(key) as api:
        assert {v["name"] for v in await api.request("GET", "/environment-variables")} == {"API_TOKEN", "EMPTY",
                                                                                          "REGION"}
    assert "unset EMPTY" in await _cli(stack, "env", "unset", "EMPTY", *flags, env=env)
    out = await _cli(stack, "env", "unset", "NOPE", *flags, env=env, code=1)
    assert "not set: NOPE" in out and "API_TOKEN, REGION" in out
    out = await _cli(stack, "env", "set", "NOEQUALS", *flags, env=env, code=1)
    assert "expected KEY=VALUE" in out
    out = await _cli(stack, "env", "set", "1BAD=x", *flags, env=env, code=1)
    assert "invalid variable name '1BAD'" in out
    out = await _cli(stack, "env", "list", "--server", stack.api_url, "--secret-key", "sk_wrong", env=env, code=1)
    assert "refused the secret key" in out
    out = await _cli(stack, "env", "list", "--server", "http://127.0.0.1:1", "--secret-key", key, env=env, code=1)
    assert "cannot reach" in out
    out = await _cli(stack, "env", "list", env=env, code=1)
    assert "no secret key" in out


async def test_script_settings_default_change_and_refuse_unknown_values(stack: Stack) -> None:
    """The two script settings an environment carries: defaults as in Nango (every log line kept, no record
    validation), set one at a time, and a value outside the allowed set refused by name with nothing changed."""
    _, key = await stack.new_environment()
    async with stack.api(key) as api:
        shown = await api.get_environment()
        assert (shown["script_log_level"], shown["record_validation"]) == ("debug", "off")
        shown = await api.set_script_settings(script_log_level="warn")
        assert (shown["script_log_level"], shown["record_validation"]) == ("warn", "off")
        shown = await api.set_script_settings(record_validation="reject")
        assert (shown["script_log_level"], shown["record_validation"]) == ("warn", "reject")
        for bad in ({"script_log_level": "verbose"}, {"record_validation": "strict"}):
            with pytest.raises(ApiError) as err:
                await api.request("PATCH", "/environment", json=bad)
            assert err.value.status == 400 and next(iter(bad)) in str(err.value)
        shown = await api.get_environment()
        assert (shown["script_log_level"], shown["record_validation"]) == ("warn", "reject")


async def test_two_replacements_of_the_variables_at_once_leave_one_whole_set(stack: Stack) -> None:
    """Each POST /environment-variables replaces the set: two at once used to fail on a shared name (a 500) or
    leave the union of both sets."""
    _env, key = await stack.new_environment()
    sets = [[{"name": "SHARED", "value": f"v{i}"}, {"name": f"ONLY_{i}", "value": str(i)}] for i in range(4)]
    async with stack.api(key) as api:
        for _ in range(3):
            await asyncio.gather(*(api.request("POST", "/environment-variables", json=s) for s in sets))
            stored = await api.request("GET", "/environment-variables")
            assert sorted(stored, key=lambda v: v["name"]) in [sorted(s, key=lambda v: v["name"]) for s in sets], \
                stored
