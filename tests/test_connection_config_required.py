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
