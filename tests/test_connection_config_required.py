"""A connection without a connection_config value its provider's URLs need is refused at creation, naming the
key, and nothing is stored: through the real stack (POST /connections, the API-key connect flow, a minted mode)."""

from __future__ import annotations

from typing import Any

from orchestrator.client import NangoClient
from tests.conftest import Stack

KEY = {"type": "API_KEY", "apiKey": "k-123"}


async def _refused(api: NangoClient, body: dict[str, Any]) -> str:
    err = await api.request("POST", "/connections", ok=(400,), json=body)
    assert err["error"]["code"] == "invalid_connection_config", err
    return str(err["error"]["message"])


async def test_a_connection_missing_a_url_value_is_refused_by_name_and_nothing_is_stored(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.create_integration("workable", "workable")  # base_url https://${connectionConfig.subdomain}...
        body = {"provider_config_key": "workable", "connection_id": "c1", "credentials": KEY}
        message = await _refused(api, body)
        assert "subdomain" in message and "workable" in message, message
        assert "subdomain" in await _refused(api, {**body, "connection_config": {"subdomain": " "}})
        assert await api.list_connections() == []

        await api.request("POST", "/connections", json={**body, "connection_config": {"subdomain": "acme"}})
        # new credentials for the same connection, no config given: accepted, and the stored config is kept
        await api.request("POST", "/connections", json={**body, "credentials": {**KEY, "apiKey": "k-2"}})
        conn = await api.get_connection("workable", "c1")
        assert conn["connection_config"] == {"subdomain": "acme"}
        assert conn["credentials"]["apiKey"] == "k-2"

        # a base_url of its own replaces the provider's: nothing else is needed
        await api.request("POST", "/connections", json={
            **body, "connection_id": "c2", "connection_config": {"base_url": "https://workable.example.com"}})


async def test_the_connect_flow_and_a_minted_mode_refuse_it_before_anything_happens(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.create_integration("workable", "workable")
        err = await api.request("POST", "/api-auth/api-key/workable", ok=(400,), params={"connection_id": "f1"},
                                json={"apiKey": "k-1"})
        assert "subdomain" in err["error"]["message"] and err["error"]["code"] == "invalid_connection_config", err
        assert await api.list_connections() == []
        await api.request("POST", "/api-auth/api-key/workable", json={"apiKey": "k-1"},
                          params={"connection_id": "f1", "params[subdomain]": "acme"})
        assert (await api.get_connection("workable", "f1"))["connection_config"] == {"subdomain": "acme"}

        # OAUTH2_CC: the token URL needs munchkinId too; refused before any token is asked for
        await api.create_integration("marketo", "marketo")
        message = await _refused(api, {"provider_config_key": "marketo", "connection_id": "m1", "credentials": {
            "type": "OAUTH2_CC", "client_id": "id", "client_secret": "secret"}})
        assert "munchkinId" in message, message
        assert [c["connection_id"] for c in await api.list_connections()] == ["f1"]


async def test_a_value_that_would_change_the_provider_host_is_refused_everywhere(stack: Stack) -> None:
    """An end user types the subdomain (the Connect UI, `params[...]`): `evil.example#` in
    `https://${connectionConfig.subdomain}.bamboohr.com/token.php` would have sent the integration's client
    secret to evil.example at the callback. Refused with its key named, at creation and at the OAuth start."""
    import aiohttp

    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.create_integration("workable", "workable")
        body = {"provider_config_key": "workable", "connection_id": "c1", "credentials": KEY}
        for evil in ("evil.example#", "evil.example/", "x@evil.example", "evil.example?", "..", "a b"):
            message = await _refused(api, {**body, "connection_config": {"subdomain": evil}})
            assert "connection_config.subdomain" in message and "letters, digits" in message, message
        assert await api.list_connections() == []
        await api.request("POST", "/connections", json={**body, "connection_config": {"subdomain": "acme-eu.1"}})

        await api.create_integration("bamboohr", "bamboohr", client_id="bamboo-client", client_secret="s3cret")
        session = await api.create_connect_session(allowed_integrations=["bamboohr"])
        url = f"{stack.api_url}/oauth/connect/bamboohr"
        async with aiohttp.ClientSession() as browser:
            async with browser.get(url, allow_redirects=False, params={
                    "connect_session_token": session["token"], "params[subdomain]": "evil.example#"}) as resp:
                assert resp.status == 400, (resp.status, resp.headers.get("Location"))
                err = await resp.json()
            assert err["error"]["code"] == "invalid_connection_config" and "subdomain" in err["error"]["message"]
            async with browser.get(url, allow_redirects=False, params={
                    "connect_session_token": session["token"], "params[subdomain]": "acme"}) as resp:
                assert resp.status == 302
                assert resp.headers["Location"].startswith("https://acme.bamboohr.com/authorize.php?")
