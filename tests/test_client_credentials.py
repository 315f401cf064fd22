"""OAUTH2_CC connections (issue 19): the platform mints a token with the client's own id and secret (RFC 6749 4.4)
before the connection is stored, sends it on every proxied request, and mints a new one before it expires (the
background refresher); a refused client stores nothing and says why."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.control import refresher
from tests.conftest import Stack


async def test_client_credentials_connections_are_minted_used_and_reminted(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.request("POST", "/providers", json={
            "name": "demo-cc", "display_name": "Demo (client credentials)", "auth_mode": "OAUTH2_CC",
            "token_url": f"{stack.provider_url}/login/oauth/access_token", "base_url": stack.provider_url})
        await api.create_integration("cc", "demo-cc", client_id=stack.demo.client_id,
                                     client_secret=stack.demo.client_secret, scopes="repo")
        made = await api.create_connection("cc", "machine", {"type": "OAUTH2_CC"})
        assert made["connection_id"] == "machine"
        got = await api.get_connection("cc", "machine")
        creds = got["credentials"]
        assert creds["type"] == "OAUTH2_CC" and creds["client_id"] == stack.demo.client_id
        # the integration's secret is not copied into the connection, where a script's get_connection would see it
        # (the stored credentials, as GET /connections/{id} shows them); it is read from the integration to mint
        assert creds["client_secret"] == "" and stack.demo.token_valid(creds["token"])
        assert "refresh_token" not in creds["raw"] and creds["raw"]["access_token"] == creds["token"]
        assert datetime.fromisoformat(creds["expires_at"]) - datetime.now(UTC) > timedelta(minutes=50)

        # /proxy sends it as a Bearer token (the demo's /user answers only an authorized caller)
        user = await api.request("GET", "/proxy/user", headers={"Connection-Id": "machine",
                                                                "Provider-Config-Key": "cc"})
        assert user["login"]

        # a token that comes due (halfway through a life this short) is minted again by the refresher with the
        # same client credentials
        default_ttl, stack.demo.token_ttl_seconds = stack.demo.token_ttl_seconds, 2
        try:  # (reading it through GET /connection would renew it on the way, as a script's get_token does)
            short = (await api.create_connection("cc", "short", {"type": "OAUTH2_CC"}))["credentials"]
        finally:
            stack.demo.token_ttl_seconds = default_ttl
        assert datetime.fromisoformat(short["expires_at"]) - datetime.now(UTC) < timedelta(seconds=3)
        async with stack.platform() as platform:
            await asyncio.sleep(1.1)
            tally = await refresher.refresh_due(platform)
        assert tally["refreshed"] == 1, tally
        fresh = (await api.get_connection("cc", "short"))["credentials"]
        assert fresh["token"] != short["token"] and stack.demo.token_valid(fresh["token"])
        assert datetime.fromisoformat(fresh["expires_at"]) - datetime.now(UTC) > timedelta(minutes=50)
        assert (await api.get_connection("cc", "machine"))["credentials"]["token"] == creds["token"]  # not due

        # the CLI makes one the same way
        result = await asyncio.to_thread(CliRunner().invoke, app, ["connections", "create", "cc", "cli",
                                                                   "--client-credentials"],
                                         env={"NANGO_SECRET_KEY": key, "NANGO_HOSTPORT": stack.api_url})
        assert result.exit_code == 0 and "created connection cc/cli" in result.output, result.output
        assert stack.demo.token_valid((await api.get_connection("cc", "cli"))["credentials"]["token"])

        # a refused client: a clear error, nothing stored
        err = await api.request("POST", "/connections", ok=(400,), json={
            "provider_config_key": "cc", "connection_id": "wrong",
            "credentials": {"type": "OAUTH2_CC", "client_id": stack.demo.client_id, "client_secret": "nope"}})
        assert err["error"]["code"] == "client_credentials_refused"
        assert "incorrect_client_credentials" in err["error"]["message"]
        assert sorted(c["connection_id"] for c in await api.list_connections()) == ["cli", "machine", "short"]
