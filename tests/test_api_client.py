"""The typed Python client (`orchestrator.client.NangoClient`) over the calls the other API tests do not make."""

from __future__ import annotations

import pytest

from orchestrator.client import ApiError
from tests.conftest import Stack, eventually, setup_github, wait_for_job


async def test_client_sync_controls_actions_and_integrations(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        await api.pause_sync("github", ["issues"], "conn-1")
        assert (await api.sync_status("github", ["issues"], "conn-1"))[0]["status"] == "PAUSED"
        await api.start_sync("github", ["issues"])
        status = (await api.sync_status("github", "*", "conn-1"))[0]
        assert status["status"] == "SUCCESS" and status["recordCount"] == {"GithubIssue": 2}
        assert await api.update_sync_connection_frequency("github", "issues", "conn-1", "every 1h") == "every 1h"
        assert await api.update_sync_connection_frequency("github", "issues", "conn-1", None) == "every 5 minutes"
        await api.trigger_sync("github", ["issues"], "conn-1", full_resync=True)
        await wait_for_job(stack, gh, count=2)

        started = await api.trigger_action_async("github", "conn-1", "create-issue", {"title": "typed"})

        async def finished() -> dict:
            try:
                return await api.get_action_result(started["id"])
            except ApiError as exc:
                raise AssertionError(exc) from None
        assert (await eventually(finished, timeout=30))["title"] == "typed"
        assert await api.get_token("github", "conn-1") == "demo-token"

        created = await api.create_integration("gh-2", "github", display_name="Second", client_id="cid",
                                               client_secret="csecret", scopes=["repo", "user"],
                                               authorization_url="https://ghe.example/login/oauth/authorize",
                                               token_url="https://ghe.example/login/oauth/access_token")
        assert created["unique_key"] == "gh-2" and created["display_name"] == "Second"
        full = await api.get_integration("gh-2", include=["webhook", "credentials"])
        assert full["credentials"] == {"type": "OAUTH2", "client_id": "cid", "client_secret": "csecret",
                                       "scopes": "repo,user",
                                       "authorization_url": "https://ghe.example/login/oauth/authorize",
                                       "token_url": "https://ghe.example/login/oauth/access_token"}
        assert full["webhook_url"].endswith(f"/webhook/{gh.env}/gh-2")
        renamed = await api.update_integration("gh-2", new_unique_key="gh-3")
        assert renamed["unique_key"] == "gh-3"
        with pytest.raises(ApiError) as err:
            await api.update_integration("gh-3", new_unique_key="github")
        assert err.value.status == 409
        await api.delete_integration("gh-3")
        assert [i["unique_key"] for i in await api.list_integrations()] == ["github"]
        assert "/connections/metadata" in (await api.openapi())["paths"]
