"""The MCP server at /mcp through the real stack, driven by the official `mcp` SDK's own client
(streamable_http_client + ClientSession): the connection's enabled actions as tools, run as POST /action/trigger
runs them (a job in GET /jobs), failures as tool errors, and only for the caller's own connections."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import orjson
import pytest
from mcp.client import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import Stack, setup_github
from tests.test_scripts_config import _with_echo_action


@contextlib.asynccontextmanager
async def mcp_session(stack: Stack, key: str, connection_id: str = "conn-1",
                      integration: str = "github") -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}", "connection-id": connection_id, "provider-config-key": integration}
    try:
        async with (httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=90)) as http,
                    streamable_http_client(f"{stack.api_url}/mcp", http_client=http) as (read, write),
                    ClientSession(read, write) as session):
            await session.initialize()
            yield session
    except BaseExceptionGroup as group:  # the client's task groups wrap what failed: raise that
        raise _leaf(group) from group


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def test_tools_are_the_connections_actions_and_a_call_is_an_action_job(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    async with mcp_session(stack, gh.key) as session:
        tools = (await session.list_tools()).tools
        assert [t.name for t in tools] == ["create-issue"]
        assert tools[0].input_schema == {"type": "object", "required": ["title"], "properties": {
            "title": {"type": "string"}, "body": {"type": "string"}}}
        assert tools[0].description and tools[0].description.startswith("Open an issue")

        result = await session.call_tool("create-issue", {"title": "From an MCP client"})
        assert not result.is_error, result
        assert result.structured_content is not None and result.structured_content["number"] == 3
        assert orjson.loads(result.content[0].text)["title"] == "From an MCP client"  # type: ignore[union-attr]
    assert stack.demo.get_issue(gh.repo, 3)["title"] == "From an MCP client"
    async with stack.api(gh.key) as api:
        jobs = (await api.request("GET", "/jobs", params={"kind": "action"}))["jobs"]
    assert [(j["name"], j["status"], j["connection_id"]) for j in jobs] == [("create-issue", "success", "conn-1")]


async def test_a_failed_action_is_a_tool_error_with_its_message(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with mcp_session(stack, gh.key) as session:
        bad_input = await session.call_tool("create-issue", {"body": "no title"})
        assert bad_input.is_error
        text = bad_input.content[0].text  # type: ignore[union-attr]
        assert "title" in text and orjson.loads(text)["error"]["code"] == "invalid_action_input"

        refused = await session.call_tool("create-issue", {"title": "  "})  # the script's ActionError
        assert refused.is_error and refused.structured_content == {"error": {
            "code": "action_script_failure", "message": refused.structured_content["error"]["message"],
            "payload": {"message": "title must not be empty", "field": "title"}}}

        with pytest.raises(MCPError, match="no tool 'nope'"):
            await session.call_tool("nope", {})
    async with stack.api(gh.key) as api:
        jobs = (await api.request("GET", "/jobs", params={"kind": "action"}))["jobs"]
    assert sorted(j["status"] for j in jobs) == ["failed", "failed"]


async def test_a_plain_input_is_the_tools_one_argument(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=1, folder=_with_echo_action(tmp_path))
    async with mcp_session(stack, gh.key) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert tools["echo"].input_schema == {"type": "object", "properties": {"input": {"type": "string"}},
                                              "required": ["input"]}
        result = await session.call_tool("echo", {"input": "hello"})
        assert not result.is_error and result.structured_content == {"said": "hello"}


async def test_the_sdks_high_level_client_on_the_newest_protocol(stack: Stack) -> None:
    """`Client` probes server/discover and speaks 2026-07-28 (one self-contained POST per request)."""
    gh = await setup_github(stack, issues=1)
    headers = {"Authorization": f"Bearer {gh.key}", "connection-id": "conn-1", "provider-config-key": "github"}
    async with (httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=90)) as http,
                Client(streamable_http_client(f"{stack.api_url}/mcp", http_client=http)) as client):
        assert client.session.discover_result is not None  # not the initialize handshake
        assert [t.name for t in (await client.list_tools()).tools] == ["create-issue"]
        result = await client.call_tool("create-issue", {"title": "newest protocol"})
        assert not result.is_error and result.structured_content["title"] == "newest protocol"


async def test_a_disabled_action_is_no_tool(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        await api.request("PATCH", "/scripts/github/create-issue", json={"enabled": False})
    async with mcp_session(stack, gh.key) as session:
        assert (await session.list_tools()).tools == []
        with pytest.raises(MCPError, match="no tool 'create-issue'"):
            await session.call_tool("create-issue", {"title": "x"})


async def _post(stack: Stack, headers: dict[str, str]) -> tuple[int, dict]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx2.AsyncClient() as http:
        res = await http.post(f"{stack.api_url}/mcp", json=body, headers={
            "Accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18", **headers})
    return res.status_code, res.json()


async def test_a_wrong_key_or_another_environments_connection_is_refused(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    other = await setup_github(stack, issues=1, connection_id="theirs")
    names = {"connection-id": "conn-1", "provider-config-key": "github"}
    status, body = await _post(stack, names)
    assert status == 401 and body["error"]["data"]["code"] == "missing_auth_header" and body["jsonrpc"] == "2.0"
    status, body = await _post(stack, {**names, "Authorization": "Bearer not-a-key"})
    assert status == 401 and body["error"]["data"]["code"] == "unknown_account"
    # gh's key, the other environment's connection: not found, as on every route
    status, body = await _post(stack, {"Authorization": f"Bearer {gh.key}", "connection-id": "theirs",
                                       "provider-config-key": "github"})
    assert status == 404 and "no connection 'theirs'" in body["error"]["message"]
    assert body["error"]["data"] == {"code": "unknown_connection"}
    status, body = await _post(stack, {"Authorization": f"Bearer {gh.key}"})
    assert status == 400 and "Connection-Id" in body["error"]["message"] and body["jsonrpc"] == "2.0"
    status, body = await _post(stack, {"Authorization": f"Bearer {gh.key}", **names, "X-Max-Retries": "9"})
    assert status == 400 and "X-Max-Retries" in body["error"]["message"]
    status, body = await _post(stack, {"Authorization": f"Bearer {gh.key}", **names})  # the plain JSON-RPC answer
    assert status == 200 and [t["name"] for t in body["result"]["tools"]] == ["create-issue"]

    # the SDK's client: refused before any tool is listed, our message shown where we can
    with pytest.raises(MCPError, match="no connection 'theirs'"):
        async with mcp_session(stack, gh.key, connection_id="theirs"):
            pass
    with pytest.raises(MCPError, match="the secret key is not valid"):  # the 401 is a JSON-RPC error too
        async with mcp_session(stack, "not-a-key"):
            pass
    async with mcp_session(stack, other.key, connection_id="theirs") as session:
        assert (await session.call_tool("create-issue", {"title": "theirs"})).is_error is False
    async with stack.api(gh.key) as api:
        assert (await api.request("GET", "/jobs", params={"kind": "action"}))["jobs"] == []
