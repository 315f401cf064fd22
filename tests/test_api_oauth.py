"""The OAuth2 authorization-code flow against the demo provider: connect session -> provider -> callback."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp

from orchestrator.temporal import schedules
from orchestrator.temporal.names import sync_schedule_id
from tests.conftest import EXAMPLES, Stack, eventually, setup_github


async def _oauth_ready(stack: Stack, folder: Path | None = None) -> tuple[str, str]:
    gh = await setup_github(stack, issues=2, **({"folder": folder} if folder else {}))
    async with stack.api(gh.key) as api:
        await api.update_integration("github", client_id=stack.demo.client_id, client_secret=stack.demo.client_secret,
                                     authorization_url=f"{stack.provider_url}/login/oauth/authorize",
                                     token_url=f"{stack.provider_url}/login/oauth/access_token", scopes=["repo"])
    return gh.key, gh.repo


async def test_oauth_flow_creates_a_connection_runs_events_and_schedules(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    text = (folder / "nango.yaml").read_text().replace("    actions:\n", (
        "    on-events:\n      post-connection-creation: [welcome]\n    actions:\n"), 1)
    (folder / "nango.yaml").write_text(text)
    (folder / "github/on-events").mkdir()
    (folder / "github/on-events/welcome.py").write_text(
        "async def on_event(nango):\n    await nango.update_metadata({'welcomed': True})\n")
    key, repo = await _oauth_ready(stack, folder)
    async with stack.api(key) as api:
        session = await api.create_connect_session(
            allowed_integrations=["github"], connection_id="oauth-user",
            connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
        assert session["connect_url"] and "connect_session_token=" in session["connect_url"]
        async with aiohttp.ClientSession() as browser:
            # step by step, as a browser would follow the redirects
            async with browser.get(session["connect_url"], allow_redirects=False) as resp:
                assert resp.status == 302
                to_provider = resp.headers["Location"]
            q = parse_qs(urlsplit(to_provider).query)
            assert to_provider.startswith(f"{stack.provider_url}/login/oauth/authorize?")
            assert q["client_id"] == [stack.demo.client_id] and q["scope"] == ["repo"]
            assert q["redirect_uri"] == [f"{stack.api_url}/oauth/callback"] and len(q["state"][0]) > 30
            async with browser.get(to_provider, allow_redirects=False) as resp:
                assert resp.status == 302
                callback = resp.headers["Location"]
            async with browser.get(callback) as resp:
                assert resp.status == 200, await resp.text()
                assert await resp.json() == {"success": True, "connection_id": "oauth-user",
                                             "provider_config_key": "github", "created": True}
            async with browser.get(callback) as resp:  # a state is single use
                assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_state"

        conn = await api.get_connection("github", "oauth-user", refresh_token=True)
        creds = conn["credentials"]
        assert creds["type"] == "OAUTH2" and stack.demo.token_valid(creds["access_token"])
        assert creds["refresh_token"].startswith("ghr_")
        assert timedelta(minutes=55) < datetime.fromisoformat(creds["expires_at"]) - datetime.now(UTC)
        assert conn["connection_config"]["token_url"] == f"{stack.provider_url}/login/oauth/access_token"

        async def welcomed_and_synced() -> None:
            assert (await api.get_metadata("github", "oauth-user")).get("welcomed") is True
            recs = await api.list_records("github", "oauth-user", "GithubIssue")
            assert len(recs["records"]) == 2
        await eventually(welcomed_and_synced, timeout=45)
        envname = (await api.get_environment())["name"]
        assert await schedules.describe(stack.client, sync_schedule_id(envname, "github", "oauth-user", "issues"))
        # the refresh token it got works through the override token URL
        forced = await api.get_connection("github", "oauth-user", force_refresh=True)
        assert forced["credentials"]["access_token"] != creds["access_token"]


async def test_oauth_errors_and_who_may_start_a_flow(stack: Stack) -> None:
    key, _repo = await _oauth_ready(stack)
    async with stack.api(key) as api, aiohttp.ClientSession() as browser:
        base = f"{stack.api_url}/oauth/connect/github"
        async with browser.get(base + "?connection_id=c1", allow_redirects=False) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "missing_connect_session_token"
        async with browser.get(base + "?connection_id=c1&connect_session_token=nope", allow_redirects=False) as resp:
            assert resp.status == 401
        # a backend may start it with its secret key
        async with browser.get(base + "?connection_id=c1", allow_redirects=False,
                               headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 302
        # an end user holding a session that fixes no id cannot name one (it would overwrite another user's
        # connection): the flow creates a connection with a generated id and leaves the other one as it was
        victim = (await api.get_connection("github", "conn-1"))["credentials"]
        open_session = (await api.create_connect_session(allowed_integrations=["github"]))["token"]
        async with browser.get(f"{base}?connection_id=conn-1&connect_session_token={open_session}",
                               allow_redirects=False) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == "connection_id_not_allowed"
        async with browser.get(f"{base}?connect_session_token={open_session}", allow_redirects=False) as resp:
            to_provider = resp.headers["Location"]
        async with browser.get(to_provider, allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        async with browser.get(callback) as resp:
            made = await resp.json()
        assert made["success"] and made["created"] and str(uuid.UUID(made["connection_id"])) == made["connection_id"]
        assert (await api.get_connection("github", "conn-1"))["credentials"] == victim
        session = await api.create_connect_session(allowed_integrations=["github"], connection_id="fixed",
                                                   return_url="https://app.example/done?x=1")
        token = session["token"]
        async with browser.get(f"{base}?connection_id=other&connect_session_token={token}",
                               allow_redirects=False) as resp:
            assert resp.status == 403
        async with browser.get(f"{stack.api_url}/oauth/connect/elsewhere?connect_session_token={token}",
                               allow_redirects=False) as resp:
            assert resp.status == 403
        # the user says no: back to the app's return URL with the error
        stack.demo.deny_next_authorization = True
        async with browser.get(f"{base}?connect_session_token={token}", allow_redirects=False) as resp:
            to_provider = resp.headers["Location"]
        async with browser.get(to_provider, allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        async with browser.get(callback, allow_redirects=False) as resp:
            assert resp.status == 302
            back = urlsplit(resp.headers["Location"])
        assert back.netloc == "app.example" and parse_qs(back.query)["error"] == ["authorization_failed"]
        assert parse_qs(back.query)["x"] == ["1"]
        # a code the provider rejects (already used)
        async with browser.get(f"{base}?connect_session_token={token}", allow_redirects=False) as resp:
            to_provider = resp.headers["Location"]
        async with browser.get(to_provider, allow_redirects=False) as resp:
            callback = resp.headers["Location"]
        code = parse_qs(urlsplit(callback).query)["code"][0]
        stack.demo.codes.pop(code)
        async with browser.get(callback, allow_redirects=False) as resp:
            back = urlsplit(resp.headers["Location"])
        assert parse_qs(back.query)["error"] == ["token_exchange_failed"]
        assert all(c["connection_id"] != "fixed" for c in await api.list_connections())
        async with browser.get(f"{stack.api_url}/oauth/callback?state=forged&code=x") as resp:
            assert resp.status == 400
        # an integration without an OAuth client cannot start a flow
        await api.create_integration("gh-bare", "github")
        async with browser.get(f"{stack.api_url}/oauth/connect/gh-bare?connection_id=c1", allow_redirects=False,
                               headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "missing_oauth_client"
