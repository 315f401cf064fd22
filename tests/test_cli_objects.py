"""`nango integrations` and `nango connections` against the real API: create, list, show and delete without
hand-written HTTP, credentials from flags or a file, a connect URL for an OAuth integration, clear errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner, Result

from orchestrator.cli.main import app
from tests.conftest import Stack


async def _nango(stack: Stack, key: str, *args: str) -> Result:
    env = {"NANGO_SECRET_KEY": key, "NANGO_HOSTPORT": stack.api_url}
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


async def _ok(stack: Stack, key: str, *args: str) -> str:
    result = await _nango(stack, key, *args)
    assert result.exit_code == 0, result.output
    return result.output


async def test_integrations_and_connections_from_the_cli(stack: Stack, tmp_path: Path) -> None:
    _env, key = await stack.new_environment()
    out = await _ok(stack, key, "integrations", "create", "gh", "--provider", "github", "--client-id", "cid",
                    "--client-secret", "csecret", "--scopes", "repo,read:user")
    assert "created integration gh (github)" in out
    await _ok(stack, key, "integrations", "create", "crm", "--provider", "airtable")
    listed = json.loads(await _ok(stack, key, "integrations", "list", "--json"))
    assert sorted(i["unique_key"] for i in listed) == ["crm", "gh"]
    shown = await _ok(stack, key, "integrations", "show", "gh")
    assert "cid" in shown and "csecret" not in shown and "********" in shown

    # credentials from flags and from a file (Nango's shapes), with config, metadata, end user and tags
    await _ok(stack, key, "connections", "create", "gh", "tok", "--access-token", "t-1", "--refresh-token", "r-1",
              "--config", f"base_url={stack.provider_url}", "--metadata", '{"repo": "a/b"}',
              "--end-user", "u-7", "--tag", "team=core")
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"type": "BASIC", "username": "ada", "password": "pw"}))
    await _ok(stack, key, "connections", "create", "crm", "basic", "--file", str(creds))
    rows = json.loads(await _ok(stack, key, "connections", "list", "--json"))
    assert sorted((r["provider_config_key"], r["connection_id"]) for r in rows) == [("crm", "basic"), ("gh", "tok")]
    assert (await _ok(stack, key, "connections", "list", "--end-user", "u-7")).split() == ["gh/tok", "end", "user",
                                                                                          "u-7"]
    one = json.loads(await _ok(stack, key, "connections", "show", "gh", "tok", "--json"))
    assert one["credentials"] == {"type": "OAUTH2", "expires_at": None} and one["metadata"] == {"repo": "a/b"}
    assert one["connection_config"]["base_url"] == stack.provider_url
    assert one["end_user"]["id"] == "u-7" and one["tags"] == {"end_user_id": "u-7", "team": "core"}
    secret = json.loads(await _ok(stack, key, "connections", "show", "crm", "basic", "--json", "--credentials"))
    assert secret["credentials"] == {"type": "BASIC", "username": "ada", "password": "pw"}

    # an OAuth integration without credentials: a connect URL to open
    out = await _ok(stack, key, "connections", "create", "gh")
    assert "open this URL in a browser" in out and f"{stack.api_url}/oauth/connect/gh?connect_session_token=" in out

    # clear errors
    bad = await _nango(stack, key, "connections", "create", "gh", "x", "--api-key", "k", "--username", "u")
    assert bad.exit_code == 1 and "give one kind of credentials, not --api-key and --username" in bad.output
    bad = await _nango(stack, key, "connections", "create", "nope", "x", "--api-key", "k")
    assert bad.exit_code == 1 and "404 unknown_provider_config" in bad.output
    bad = await _nango(stack, key, "connections", "create", "gh", "x", "--config", "novalue", "--api-key", "k")
    assert bad.exit_code == 1 and "--config 'novalue' must be key=value" in bad.output
    bad = await _nango(stack, "sk_wrong", "integrations", "list")
    assert bad.exit_code == 1 and "refused the secret key" in bad.output

    await _ok(stack, key, "connections", "delete", "gh", "tok", "--yes")
    await _ok(stack, key, "integrations", "delete", "crm", "--yes")
    rows = json.loads(await _ok(stack, key, "connections", "list", "--json"))
    assert rows == []
    assert [i["unique_key"] for i in json.loads(await _ok(stack, key, "integrations", "list", "--json"))] == ["gh"]
