"""GET /scripts/config through the real stack: Nango's shape (what @nangohq/node's getScriptsConfig() reads) and
the enabled actions as OpenAI-style tool definitions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import EXAMPLES, Stack, setup_github
from tests.test_node_client import _install, _run

CREATE_ISSUE_PARAMS = {"type": "object", "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
                       "required": ["title"]}


def _with_echo_action(tmp_path: Path) -> Path:
    """The example integrations plus an action `echo` whose input is a plain string and whose description
    describes the parameters of create-issue the way Nango reads them (`- field: text`)."""
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/actions/echo.py").write_text("async def run_action(nango, input):\n    return {'said': input}\n")
    text = (folder / "nango.yaml").read_text()
    text = text.replace("        description: Open an issue in the repository named in the connection's metadata.\n",
                        "        description: |\n          Open an issue.\n          - title: The issue's title\n")
    text = text.replace("\nmodels:\n", "      echo:\n        input: string\n        output: Echo\n\nmodels:\n"
                        "  Echo:\n    said: string\n")
    (folder / "nango.yaml").write_text(text)
    return folder


async def test_nango_format_lists_syncs_and_actions_with_their_models(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        configs = await api.request("GET", "/scripts/config")
        assert configs == await api.request("GET", "/scripts/config", params={"format": "nango"})
    assert [(c["providerConfigKey"], c["provider"]) for c in configs] == [("github", "github")]
    github = configs[0]
    assert [s["name"] for s in github["syncs"]] == ["issues"] and github["on-events"] == []
    sync = github["syncs"][0]
    assert sync["type"] == "sync" and sync["returns"] == ["GithubIssue"] and sync["runs"] == "every 5 minutes"
    assert sync["sync_type"] == "incremental" and sync["enabled"] is True and sync["scopes"] == ["repo"]
    assert sync["endpoints"] == [{"method": "GET", "path": "/github/issues", "group": None}]
    assert sync["webhookSubscriptions"] == ["issues"] and sync["last_deployed"]
    issue = sync["json_schema"]["definitions"]["GithubIssue"]
    assert issue["properties"]["labels"] == {"type": "array", "items": {"type": "string"}}
    assert "closed_at" in issue["required"] and list(sync["json_schema"]["definitions"]) == ["GithubIssue"]
    action = github["actions"][0]
    assert action["name"] == "create-issue" and action["type"] == "action" and action["input"] == "CreateIssue"
    assert action["returns"] == ["GithubIssue"] and "sync_type" not in action
    assert sorted(action["json_schema"]["definitions"]) == ["CreateIssue", "GithubIssue"]
    assert action["json_schema"]["definitions"]["CreateIssue"]["required"] == ["title"]


async def test_openai_format_lists_enabled_actions_as_tools(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=1, folder=_with_echo_action(tmp_path))
    async with stack.api(gh.key) as api:
        tools = (await api.request("GET", "/scripts/config", params={"format": "openai"}))["data"]
        assert [t["type"] for t in tools] == ["function", "function"]
        by_name = {t["function"]["name"]: t["function"] for t in tools}
        assert sorted(by_name) == ["create-issue", "echo"]  # actions only: a sync is not a tool
        create = by_name["create-issue"]
        assert create["description"].startswith("Open an issue.")
        assert create["parameters"] == {**CREATE_ISSUE_PARAMS, "properties": {
            "title": {"type": "string", "description": "The issue's title"}, "body": {"type": "string"}}}
        # a string input is the tool's one argument `input`
        assert by_name["echo"]["parameters"] == {"type": "object", "properties": {"input": {"type": "string"}},
                                                 "required": ["input"]}
        assert by_name["echo"]["description"] == "Run the action echo of github"

        # a disabled action is no tool, but Nango's format still lists it, switched off
        await api.request("PATCH", "/scripts/github/echo", json={"enabled": False})
        tools = (await api.request("GET", "/scripts/config", params={"format": "openai"}))["data"]
        assert [t["function"]["name"] for t in tools] == ["create-issue"]
        actions = (await api.request("GET", "/scripts/config"))[0]["actions"]
        assert {a["name"]: a["enabled"] for a in actions} == {"create-issue": True, "echo": False}


async def test_bad_query_is_named_and_environments_do_not_mix(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    _, other_key = await stack.new_environment()
    async with stack.api(gh.key) as api:
        err = await api.request("GET", "/scripts/config", params={"format": "claude"}, ok=(400,))
        assert err["error"]["code"] == "invalid_query_params" and "'claude'" in err["error"]["message"]
        assert "nango, openai" in err["error"]["message"]
        err = await api.request("GET", "/scripts/config", params={"provider_config_key": "gitlab"}, ok=(404,))
        assert "no integration 'gitlab'" in err["error"]["message"] and "github" in err["error"]["message"]
        assert len(await api.request("GET", "/scripts/config", params={"provider_config_key": "github"})) == 1
    async with stack.api(other_key) as other:  # the other environment sees none of gh's scripts
        assert await other.request("GET", "/scripts/config") == []
        assert await other.request("GET", "/scripts/config", params={"format": "openai"}) == {"data": []}
    async with stack.api("not-a-key") as nobody:
        err = await nobody.request("GET", "/scripts/config", ok=(401,))
        assert err["error"]["code"] == "unknown_account"


NODE_SCRIPT = """
import { Nango } from '@nangohq/node';
const cfg = JSON.parse(process.env.NANGO_COMPAT);
const nango = new Nango({ host: cfg.host, secretKey: cfg.key });
const out = { nango: await nango.getScriptsConfig(), openai: await nango.getScriptsConfig('openai') };
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                    reason="Node.js (node and npm) is not installed")
async def test_nangos_node_client_reads_the_scripts_config(stack: Stack) -> None:
    await _install()
    gh = await setup_github(stack, issues=1)
    env = {"NANGO_COMPAT": json.dumps({"host": stack.api_url, "key": gh.key})}
    code, out, err = await _run("node", "--input-type=module", "-e", NODE_SCRIPT, timeout=60, env=env)
    assert code == 0, f"node failed:\n{err}\n{out[-2000:]}"
    r: dict[str, Any] = orjson.loads(out)
    assert [c["providerConfigKey"] for c in r["nango"]] == ["github"]
    assert r["nango"][0]["actions"][0]["json_schema"]["definitions"]["CreateIssue"]["required"] == ["title"]
    assert [t["function"]["name"] for t in r["openai"]["data"]] == ["create-issue"]
    assert r["openai"]["data"][0]["function"]["parameters"] == CREATE_ISSUE_PARAMS
