"""Unified endpoints (/v1/<path> of each deployed `endpoint`) and the environment's OpenAPI reference,
through the real stack."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from orchestrator.authoring.compile import compile_project
from orchestrator.client import ApiError
from orchestrator.config.codegen import generate_models_py
from orchestrator.config.nango_yaml import load_config
from tests.conftest import EXAMPLES, Stack, eventually, setup_github, wait_for_job

HEADERS = {"Provider-Config-Key": "github", "Connection-Id": "conn-1"}

EXTRA_YAML = """
      multi:
        runs: every 1h
        output: [Alpha, Beta]
        endpoint:
          - GET /multi/alpha
          - GET /multi/beta
"""
EXTRA_ACTION = """
      echo:
        input: EchoInput
        output: EchoInput
        endpoint: GET /echo
"""
EXTRA_MODELS = """
  Alpha:
    id: string
    n: integer
  Beta:
    id: string
    tags: string[]
  EchoInput:
    q: string
    tag?: string | string[]
"""
MULTI_PY = '''from orchestrator.sdk import NangoSync


async def fetch_data(nango: NangoSync) -> None:
    await nango.batch_save([{"id": "a1", "n": 1}, {"id": "a2", "n": 2}], "Alpha")
    await nango.batch_save([{"id": "b1", "tags": ["x"]}], "Beta")
'''
ECHO_PY = '''from orchestrator.sdk import NangoAction


async def run_action(nango: NangoAction, input):
    return input
'''


def _extended_project(root: Path) -> Path:
    """The example integration plus a two-output sync and a GET action."""
    folder = root / "integrations"
    shutil.copytree(EXAMPLES, folder)
    text = (folder / "nango.yaml").read_text()
    text = text.replace("    actions:\n", EXTRA_YAML + "    actions:\n", 1)
    text = text.replace("\nmodels:\n", EXTRA_ACTION + "\nmodels:\n" + EXTRA_MODELS.lstrip("\n"), 1)
    (folder / "nango.yaml").write_text(text)
    (folder / "github" / "syncs" / "multi.py").write_text(MULTI_PY)
    (folder / "github" / "actions" / "echo.py").write_text(ECHO_PY)
    (folder / "models.py").write_text(generate_models_py(load_config(folder / "nango.yaml")))
    return folder


async def test_sync_endpoint_serves_the_records_api(stack: Stack) -> None:
    gh = await setup_github(stack, issues=5)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        page = await api.request("GET", "/v1/github/issues", headers=HEADERS, params={"limit": "3"})
        assert len(page["records"]) == 3 and page["next_cursor"]
        assert all("_nango_metadata" in r and r["_nango_metadata"]["last_action"] == "ADDED" for r in page["records"])
        rest = await api.request("GET", "/v1/github/issues/", headers=HEADERS, params={"cursor": page["next_cursor"]})
        assert len(rest["records"]) == 2 and rest["next_cursor"] is None
        same = await api.request("GET", "/records", headers=HEADERS, params={"model": "GithubIssue"})
        assert [r["id"] for r in same["records"]] == [r["id"] for r in page["records"] + rest["records"]]
        only = await api.request("GET", "/v1/github/issues", headers=HEADERS,
                                 params=[("ids", page["records"][0]["id"]), ("filter", "added")])
        assert [r["id"] for r in only["records"]] == [page["records"][0]["id"]]

        # The records API's parameter errors, unchanged.
        for params, fragment in (({"limit": "0"}, "limit must be from 1"), ({"filter": "nope"}, "filter accepts"),
                                 ({"modified_after": "yesterday"}, "ISO 8601"), ({"cursor": "garbage"}, "cursor"),
                                 ({"model": "CreateIssue"}, "model must be one of the outputs")):
            with pytest.raises(ApiError) as err:
                await api.request("GET", "/v1/github/issues", headers=HEADERS, params=params)
            assert err.value.status == 400 and fragment in err.value.message, (params, err.value.message)


async def test_action_endpoint_runs_the_action_with_the_body(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        out = await api.request("POST", "/v1/github/issues", headers=HEADERS,
                                json={"title": "from the unified endpoint", "body": "hi"})
        assert out["title"] == "from the unified endpoint" and out["body"] == "hi" and out["number"] == 2
        assert stack.demo.repos[gh.repo].issues[2].title == "from the unified endpoint"
        with pytest.raises(ApiError) as err:  # the script's ActionError: 400 with its payload
            await api.request("POST", "/v1/github/issues", headers=HEADERS, json={"title": "  "})
        assert err.value.status == 400 and err.value.code == "action_script_failure"
        assert err.value.body["error"]["payload"]["field"] == "title"
        with pytest.raises(ApiError) as err:  # input that does not fit the model
            await api.request("POST", "/v1/github/issues", headers=HEADERS, json={"body": "no title"})
        assert err.value.status == 400 and err.value.code == "invalid_action_input"
        with pytest.raises(ApiError) as err:
            await api.request("POST", "/v1/github/issues", headers={**HEADERS, "Content-Type": "application/json"},
                              data=b"{not json")
        assert err.value.status == 400 and err.value.code == "invalid_json"


async def test_unknown_paths_and_missing_headers_are_clear(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        with pytest.raises(ApiError) as err:
            await api.request("GET", "/v1/github/pulls", headers=HEADERS)
        assert err.value.status == 404 and err.value.code == "unknown_endpoint"
        assert "no endpoint GET /v1/github/pulls" in err.value.message
        assert "GET /v1/github/issues (sync issues)" in err.value.message
        assert "POST /v1/github/issues (action create-issue)" in err.value.message
        with pytest.raises(ApiError) as err:  # right path, wrong method
            await api.request("DELETE", "/v1/github/issues", headers=HEADERS)
        assert err.value.status == 404 and "no endpoint DELETE /v1/github/issues" in err.value.message
        with pytest.raises(ApiError) as err:
            await api.request("GET", "/v1/github/issues")
        assert err.value.status == 400 and "Connection-Id" in err.value.message
        with pytest.raises(ApiError) as err:
            await api.request("GET", "/v1/github/issues", headers={**HEADERS, "Provider-Config-Key": "gitlab"})
        assert err.value.status == 404 and "no integration 'gitlab'" in err.value.message
        with pytest.raises(ApiError) as err:
            await api.request("GET", "/v1/github/issues", headers={**HEADERS, "Connection-Id": "nobody"})
        assert err.value.status == 404 and "no connection 'nobody'" in err.value.message
    async with stack.api("sk_wrong") as api:
        with pytest.raises(ApiError) as err:
            await api.request("GET", "/v1/github/issues", headers=HEADERS)
        assert err.value.status == 401


async def test_several_outputs_query_input_and_the_openapi_reference(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=1)
    folder = await asyncio.to_thread(_extended_project, tmp_path)
    async with stack.api(gh.key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, folder))

        async def both_synced() -> tuple[dict, dict]:
            alpha = await api.request("GET", "/v1/multi/alpha", headers=HEADERS)
            beta = await api.request("GET", "/v1/multi/beta", headers=HEADERS)
            assert len(alpha["records"]) == 2 and len(beta["records"]) == 1
            return alpha, beta
        alpha, beta = await eventually(both_synced, timeout=45)
        assert {r["id"] for r in alpha["records"]} == {"a1", "a2"} and beta["records"][0]["tags"] == ["x"]

        # GET action: the query is the input (a repeated key becomes a list).
        echoed = await api.request("GET", "/v1/echo", headers=HEADERS, params=[("q", "hello"), ("tag", "a"),
                                                                             ("tag", "b")])
        assert echoed == {"q": "hello", "tag": ["a", "b"]}
        with pytest.raises(ApiError) as err:
            await api.request("GET", "/v1/echo", headers=HEADERS)
        assert err.value.status == 400 and err.value.code == "invalid_action_input"

        doc = await api.request("GET", "/v1/openapi.json")
        only = await api.request("GET", "/v1/openapi.json", params={"provider_config_key": "github"})
        with pytest.raises(ApiError) as err:
            await api.request("GET", "/v1/openapi.json", params={"provider_config_key": "nope"})
        assert err.value.status == 404
    assert only["paths"] == doc["paths"]
    assert doc["openapi"] == "3.1.0" and gh.env in doc["info"]["title"]
    assert set(doc["paths"]) == {"/v1/github/issues", "/v1/multi/alpha", "/v1/multi/beta", "/v1/echo"}
    schemas = doc["components"]["schemas"]
    issue = schemas["GithubIssue"]
    assert issue["properties"]["labels"] == {"type": "array", "items": {"type": "string"}}
    assert issue["properties"]["body"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert "body" not in schemas["CreateIssue"]["required"] and "title" in schemas["CreateIssue"]["required"]

    sync_op = doc["paths"]["/v1/github/issues"]["get"]
    assert sync_op["x-nango"] == {"integration": "github", "kind": "sync", "script": "issues", "model": "GithubIssue"}
    record = sync_op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["records"]["items"]
    assert record["allOf"][0] == {"$ref": "#/components/schemas/GithubIssue"}
    assert {p["name"] for p in sync_op["parameters"]} >= {"Connection-Id", "Provider-Config-Key", "cursor", "limit"}
    assert doc["paths"]["/v1/multi/beta"]["get"]["x-nango"]["model"] == "Beta"

    action_op = doc["paths"]["/v1/github/issues"]["post"]
    assert action_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateIssue"}
    assert action_op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GithubIssue"}
    echo_params = {p["name"]: p for p in doc["paths"]["/v1/echo"]["get"]["parameters"]}
    assert echo_params["q"]["required"] and not echo_params["tag"]["required"]
    # Every reference resolves.
    refs = _refs(doc)
    assert refs and all(r.removeprefix("#/components/schemas/") in schemas for r in refs)


def _refs(node: object) -> set[str]:
    if isinstance(node, dict):
        out = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            out |= _refs(value)
        return out
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()
