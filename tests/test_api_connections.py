"""The public API through the real stack: auth and isolation, connections, credentials, metadata,
environment variables, jobs. (OAuth in test_api_oauth.py, proxy in test_api_proxy.py.)"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from orchestrator.client import ApiError
from tests.conftest import EXAMPLES, Stack, eventually, setup_github, wait_for_job


async def test_missing_or_wrong_key_is_a_401_json_error(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer sk_wrong"}, {"Authorization": "Basic Zm9vOmJhcg=="},
                        {"Authorization": "Bearer "}):
            for method, path in (("GET", "/connections"), ("GET", "/records/?model=X"), ("POST", "/sync/trigger"),
                                 ("GET", "/proxy/user"), ("GET", "/environment-variables"), ("GET", "/jobs/1")):
                async with http.request(method, stack.api_url + path, headers=headers) as resp:
                    assert resp.status == 401, (method, path, headers)
                    assert resp.content_type == "application/json"
                    body = await resp.json()
                    assert body["error"]["code"] in ("missing_auth_header", "unknown_account")
                    assert "Traceback" not in body["error"]["message"]


async def test_a_key_never_reads_another_environments_data(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    jobs = await wait_for_job(stack, gh)
    other_env, other_key = await stack.new_environment()
    async with stack.api(gh.key) as mine:
        await mine.set_environment_variables({"SECRET_OF_A": "a-value"})
        assert len((await mine.list_records("github", "conn-1", "GithubIssue"))["records"]) == 2
        assert (await mine.get_job(jobs[0]["id"]))["status"] == "success"
    async with stack.api(other_key) as other:
        assert await other.list_connections() == []
        assert await other.list_integrations() == []
        assert await other.get_environment_variables() == []
        assert await other.list_jobs() == []
        for call in (
            other.get_connection("github", "conn-1"),
            other.list_records("github", "conn-1", "GithubIssue"),
            other.get_job(jobs[0]["id"]),
            other.job_logs(jobs[0]["id"]),
            other.set_metadata("github", "conn-1", {"x": 1}),
            other.delete_connection("github", "conn-1"),
            other.proxy("GET", "/user", integration="github", connection_id="conn-1"),
            other.trigger_action("github", "conn-1", "create-issue", {"title": "x"}),
            other.trigger_sync("github", ["issues"], "conn-1"),
            other.sync_status("github", "*", "conn-1"),
            other.get_integration("github"),
        ):
            with pytest.raises(ApiError) as err:
                await call
            assert err.value.status in (400, 404), err.value
    async with stack.api(gh.key) as mine:  # untouched
        assert [c["connection_id"] for c in await mine.list_connections()] == ["conn-1"]
        assert (await mine.get_connection("github", "conn-1"))["metadata"] == {"repo": gh.repo}
    assert other_env != gh.env


async def test_connections_with_each_credential_type(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        created = await api.create_connection("github", "key-1", {"type": "API_KEY", "apiKey": "k-123456"},
                                              metadata={"team": "a"})
        assert created["credentials"] == {"type": "API_KEY", "apiKey": "k-123456"}
        await api.create_connection("github", "basic-1", {"type": "BASIC", "username": "u", "password": "p-secret"})
        await api.request("POST", "/connections", json={  # Nango's flat import form
            "provider_config_key": "github", "connection_id": "oauth-1", "access_token": "at-1",
            "refresh_token": "rt-1", "expires_at": "2099-01-01T00:00:00Z"})
        await api.create_connection("github", "oauth-2", {"type": "OAUTH2", "access_token": "at-2",
                                                          "expires_in": 7200})

        got = await api.get_connection("github", "basic-1")
        assert got["credentials"] == {"type": "BASIC", "username": "u", "password": "p-secret"}
        assert {"id", "connection_id", "provider_config_key", "provider", "created_at", "updated_at",
                "last_fetched_at", "connection_config", "metadata", "errors", "end_user", "tags",
                "credentials"} <= set(got)
        oauth = await api.get_connection("github", "oauth-1")
        assert oauth["credentials"]["access_token"] == "at-1"
        assert "refresh_token" not in oauth["credentials"]  # only when asked for
        oauth = await api.get_connection("github", "oauth-1", refresh_token=True)
        assert oauth["credentials"]["refresh_token"] == "rt-1"
        assert oauth["credentials"]["expires_at"].startswith("2099-01-01T00:00:00")
        expires = datetime.fromisoformat((await api.get_connection("github", "oauth-2"))["credentials"]["expires_at"])
        assert timedelta(minutes=110) < expires - datetime.now(UTC) < timedelta(minutes=121)

        listed = await api.list_connections()
        assert [c["connection_id"] for c in listed] == ["conn-1", "key-1", "basic-1", "oauth-1", "oauth-2"]
        assert set(listed[1]) == {"id", "connection_id", "provider_config_key", "provider", "created", "metadata",
                                  "errors", "end_user", "tags"}
        assert listed[1]["metadata"] == {"team": "a"} and listed[1]["provider"] == "github"
        assert [c["connection_id"] for c in await api.list_connections(search="OAUTH")] == ["oauth-1", "oauth-2"]
        assert [c["connection_id"] for c in await api.list_connections(
            search="oauth", integration_id=["github", "nope"], limit=1, page=1)] == ["oauth-2"]
        assert await api.list_connections(search="%") == [] and await api.list_connections(search="_") == []
        assert [c["connection_id"] for c in await api.list_connections(connection_id="key-1")] == ["key-1"]
        assert [c["connection_id"] for c in await api.list_connections(limit=2, page=1)] == ["basic-1", "oauth-1"]
        assert len(await api.list_connections(integration_id=["github", "nope"])) == 5
        assert await api.list_connections(integration_id="nope") == []
        assert (await api.request("GET", "/connections", params={"endUserId": "u1"}))["connections"] == []

        bad = await api.request("POST", "/connections", ok=(400,), json={
            "provider_config_key": "github", "connection_id": "x", "credentials": {"type": "API_KEY"}})
        assert "apiKey" in bad["error"]["message"]
        bad = await api.request("POST", "/connections", ok=(404,), json={
            "provider_config_key": "nope", "connection_id": "x", "credentials": {"type": "API_KEY", "apiKey": "k"}})
        assert bad["error"]["code"] == "unknown_provider_config"
        bad = await api.request("GET", "/connections/key-1", ok=(400,))
        assert bad["error"]["code"] == "missing_provider_config_key"

        # sealed at rest: no secret appears in the stored bytes
        async with stack.pool.acquire() as conn:
            blobs = [r["credentials"] for r in await conn.fetch(
                "SELECT c.credentials FROM connections c JOIN environments e ON e.id = c.environment_id"
                " WHERE e.name = $1", gh.env)]
        assert len(blobs) == 5 and not any(s in b for b in blobs for s in (b"k-123456", b"p-secret", b"at-1", b"rt-1"))

        assert await api.request("DELETE", "/connections/key-1", params={"provider_config_key": "github"}) == {
            "success": True}
        with pytest.raises(ApiError) as err:
            await api.get_connection("github", "key-1")
        assert err.value.status == 404 and err.value.code == "unknown_connection"


async def test_oauth_tokens_are_refreshed_before_expiry_through_get_connection(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    token_url = f"{stack.provider_url}/login/oauth/access_token"
    async with stack.api(gh.key) as api:
        await api.update_integration("github", client_id=stack.demo.client_id, client_secret=stack.demo.client_secret)
        issued = stack.demo.issue_token(ttl_seconds=120)  # expires within the 15 minute margin
        await api.create_connection("github", "soon", {"type": "OAUTH2", "access_token": issued["access_token"],
                                                       "refresh_token": issued["refresh_token"], "expires_in": 120},
                                    connection_config={"base_url": stack.provider_url, "token_url": token_url})
        got = await api.get_connection("github", "soon", refresh_token=True)
        creds = got["credentials"]
        assert creds["access_token"] != issued["access_token"] and stack.demo.token_valid(creds["access_token"])
        assert creds["refresh_token"] != issued["refresh_token"]  # rotated by the provider
        assert datetime.fromisoformat(creds["expires_at"]) - datetime.now(UTC) > timedelta(minutes=50)
        # not due: the same token; force_refresh: a new one
        again = await api.get_connection("github", "soon")
        assert again["credentials"]["access_token"] == creds["access_token"]
        forced = await api.get_connection("github", "soon", force_refresh=True)
        assert forced["credentials"]["access_token"] != creds["access_token"]
        # a refresh the provider refuses is a 4xx naming it, not a 500
        await api.create_connection("github", "revoked", {"type": "OAUTH2", "access_token": "x",
                                                          "refresh_token": "not-a-refresh-token", "expires_in": 60},
                                    connection_config={"token_url": token_url})
        err = await api.request("GET", "/connections/revoked", params={"provider_config_key": "github"}, ok=(400,))
        assert err["error"]["code"] == "refresh_token_external_error" and "bad_refresh_token" in err["error"]["message"]


async def test_metadata_set_and_update_for_one_or_many_connections(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        await api.create_connection("github", "conn-2", {"type": "API_KEY", "apiKey": "k"}, metadata={"old": 1})
        body = {"metadata": {"a": 1, "nested": {"x": 1}}, "connection_id": ["conn-1", "conn-2"],
                "provider_config_key": "github"}
        assert await api.request("POST", "/connections/metadata", json=body) == body
        assert await api.get_metadata("github", "conn-2") == {"a": 1, "nested": {"x": 1}}
        echoed = await api.update_metadata("github", "conn-2", {"b": 2, "nested": {"y": 2}})
        assert echoed == {"metadata": {"b": 2, "nested": {"y": 2}}, "connection_id": "conn-2",
                          "provider_config_key": "github"}
        assert await api.get_metadata("github", "conn-2") == {"a": 1, "b": 2, "nested": {"y": 2}}
        assert await api.get_metadata("github", "conn-1") == {"a": 1, "nested": {"x": 1}}
        # all or nothing: one unknown id changes none
        err = await api.request("PATCH", "/connections/metadata", ok=(404,), json={
            "metadata": {"c": 3}, "connection_id": ["conn-1", "ghost"], "provider_config_key": "github"})
        assert "ghost" in err["error"]["message"]
        assert "c" not in await api.get_metadata("github", "conn-1")
        for bad in ({"connection_id": "conn-1", "provider_config_key": "github"},
                    {"metadata": [], "connection_id": "conn-1", "provider_config_key": "github"},
                    {"metadata": {}, "connection_id": [], "provider_config_key": "github"}):
            await api.request("POST", "/connections/metadata", json=bad, ok=(400,))


async def test_environment_variables_are_sealed_and_reach_scripts(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    text = (folder / "nango.yaml").read_text().replace("    actions:\n", (
        "    actions:\n      read-env:\n        description: Returns the environment variables.\n"), 1)
    (folder / "nango.yaml").write_text(text)
    (folder / "github/actions/read_env.py").write_text(
        "async def run_action(nango, input):\n"
        "    return {'vars': await nango.get_environment_variables()}\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    async with stack.api(gh.key) as api:
        assert await api.get_environment_variables() == []
        stored = await api.set_environment_variables({"API_BASE": "https://x.example", "TOKEN": "tok-secret-1"})
        assert stored == [{"name": "API_BASE", "value": "https://x.example"},
                          {"name": "TOKEN", "value": "tok-secret-1"}]
        # Nango's client reads the same shape
        assert await api.request("GET", "/environment-variables") == stored
        async with stack.pool.acquire() as conn:
            blobs = [r["value"] for r in await conn.fetch(
                "SELECT v.value FROM environment_variables v JOIN environments e ON e.id = v.environment_id"
                " WHERE e.name = $1", gh.env)]
        assert len(blobs) == 2 and not any(b"tok-secret-1" in b or b"x.example" in b for b in blobs)
        out = await api.trigger_action("github", "conn-1", "read-env")
        assert out == {"vars": stored}
        replaced = await api.request("POST", "/environment-variables", json=[{"name": "ONLY", "value": "1"}])
        assert replaced == [{"name": "ONLY", "value": "1"}]
        for bad in ({"variables": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
                    {"variables": [{"name": "has space", "value": "1"}]}, {"variables": "x"}):
            await api.request("POST", "/environment-variables", json=bad, ok=(400,))


async def test_jobs_api_lists_runs_with_counts_and_logs(stack: Stack) -> None:
    gh = await setup_github(stack, issues=3)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        jobs = await api.list_jobs(integration="github", connection_id="conn-1", kind="sync")
        assert jobs and jobs[0]["name"] == "issues" and jobs[0]["status"] == "success"
        job = await api.get_job(jobs[0]["id"])
        assert job["counts"] == {"GithubIssue": {"added": 3, "updated": 0, "deleted": 0}}
        assert job["notifications"] == []  # no webhook URL set for this environment
        assert isinstance(await api.job_logs(jobs[0]["id"]), list)
        action = await api.trigger_action_async("github", "conn-1", "create-issue", {"title": "via jobs"})

        async def done() -> None:
            assert (await api.get_job(action["id"]))["status"] == "success"
        await eventually(done, timeout=30)
        for bad, status in (("not-a-job", 400), ("99999999999", 404)):
            err = await api.request("GET", f"/jobs/{bad}", ok=(status,))
            assert err["error"]["code"] in ("invalid_uri_params", "not_found")
