"""Actions through the real stack: POST /action/trigger runs an ActionWorkflow and answers with its output."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import EXAMPLES, Stack, eventually, setup_github


async def _trigger(stack: Stack, key: str, body: dict, headers: dict | None = None, ok: tuple = ()) -> object:
    async with stack.api(key) as api:
        return await api.request("POST", "/action/trigger", json=body, ok=ok, headers={
            "Connection-Id": "conn-1", "Provider-Config-Key": "github", **(headers or {})})


async def test_action_output_is_returned_and_validated(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    out = await _trigger(stack, gh.key, {"action_name": "create-issue", "input": {"title": "From an action"}})
    assert isinstance(out, dict)
    assert out["title"] == "From an action" and out["number"] == 3 and out["state"] == "open"
    assert stack.demo.get_issue(gh.repo, 3)["title"] == "From an action"


async def test_action_error_answers_400_with_the_payload(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    err = await _trigger(stack, gh.key, {"action_name": "create-issue", "input": {"title": "  "}}, ok=(400,))
    assert err == {"error": {"code": "action_script_failure", "message": err["error"]["message"],
                             "payload": {"message": "title must not be empty", "field": "title"}}}


async def test_invalid_input_names_the_field(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    err = await _trigger(stack, gh.key, {"action_name": "create-issue", "input": {"body": "no title"}},
                         ok=(400, 500))
    assert "title" in err["error"]["message"]


async def test_async_action_and_result_by_id(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    started = await _trigger(stack, gh.key, {"action_name": "create-issue", "input": {"title": "async one"}},
                             headers={"X-Async": "true"})
    assert started["statusUrl"] == f"/action/{started['id']}"
    async with stack.api(gh.key) as api:
        async def finished() -> dict:
            res = await api.request("GET", started["statusUrl"], ok=(404,))
            assert "error" not in res, res
            return res
        out = await eventually(finished, timeout=30)
        assert out["title"] == "async one"
        bad = await api.request("GET", "/action/not-a-uuid", ok=(400,))
        assert "UUID" in bad["error"]["message"]
        bad = await api.request("POST", "/action/trigger", json={"action_name": "create-issue"}, ok=(400,),
                                headers={"Connection-Id": "conn-1", "Provider-Config-Key": "github",
                                         "X-Max-Retries": "9"})
        assert "X-Max-Retries" in bad["error"]["message"]


async def test_unknown_action_and_crashing_action(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/actions/create_issue.py").write_text(
        "async def run_action(nango, input):\n    raise RuntimeError('boom from the script')\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    err = await _trigger(stack, gh.key, {"action_name": "nope"}, ok=(404,))
    assert "no action 'nope'" in err["error"]["message"] and "create-issue" in err["error"]["message"]
    err = await _trigger(stack, gh.key, {"action_name": "create-issue", "input": {"title": "x"}}, ok=(500,))
    assert "boom from the script" in err["error"]["message"] and err["error"]["job_id"]


async def test_action_output_over_2mb_fails_naming_the_limit(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/actions/create_issue.py").write_text(
        "async def run_action(nango, input):\n    return {'blob': 'x' * (3 * 1024 * 1024)}\n")
    yaml_text = (folder / "nango.yaml").read_text()
    text = yaml_text.replace("        output: GithubIssue\n        endpoint: POST", "        endpoint: POST")
    (folder / "nango.yaml").write_text(text)
    gh = await setup_github(stack, issues=1, folder=folder)
    err = await _trigger(stack, gh.key, {"action_name": "create-issue", "input": {"title": "x"}}, ok=(500,))
    assert "limit is 2097152 bytes (2 MB)" in err["error"]["message"]


async def test_a_sync_can_trigger_an_action(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    sync_file = folder / "github/syncs/issues.py"
    keep = sync_file.read_text().split("async def fetch_data")[0]  # to_issue, which the action imports
    sync_file.write_text(keep +
        "async def fetch_data(nango):\n"
        "    made = await nango.trigger_action('github', nango.connection_id, 'create-issue', {'title': 'by a sync'})\n"
        "    await nango.batch_save([made], 'GithubIssue')\n"
        "    try:\n"
        "        await nango.trigger_action('github', nango.connection_id, 'nope', None)\n"
        "    except Exception as exc:\n"
        "        await nango.log(f'second call: {exc}')\n\n"
        "async def on_webhook(nango, payload):\n    pass\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    from tests.conftest import wait_for_job
    jobs = await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        records = (await api.list_records("github", "conn-1", "GithubIssue"))["records"]
    assert [r["title"] for r in records] == ["by a sync"]
    assert stack.demo.get_issue(gh.repo, 2)["title"] == "by a sync"
    async with stack.pool.acquire() as conn:
        logs = [r["message"] for r in await conn.fetch("SELECT message FROM script_logs WHERE job_id = $1",
                                                       jobs[0]["id"])]
        actions = await conn.fetchval("SELECT count(*) FROM jobs j JOIN environments e ON e.id = j.environment_id"
                                      " WHERE e.name = $1 AND j.kind = 'action' AND j.status = 'success'", gh.env)
    assert any("no action 'nope' is deployed" in m for m in logs), logs
    assert actions == 1


async def test_an_input_temporal_refuses_is_a_400_and_its_job_is_closed(stack: Stack) -> None:
    """Over Temporal's payload limit (2 MB by default) the action cannot start: said with the input's size, and
    its job is closed as not started rather than left running for ever (retention keeps running jobs)."""
    gh = await setup_github(stack, issues=1)
    big = {"title": "x", "body": "y" * (3 * 1024 * 1024)}
    for headers in ({}, {"X-Async": "true"}):
        err = await _trigger(stack, gh.key, {"action_name": "create-issue", "input": big}, headers, ok=(400,))
        assert isinstance(err, dict) and err["error"]["code"] == "action_not_started", err
        assert "3,145,7" in err["error"]["message"] and "2 MB" in err["error"]["message"], err
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch("SELECT status, error_type FROM jobs j JOIN connections c ON c.id = j.connection_pk"
                                " JOIN environments e ON e.id = c.environment_id WHERE e.name = $1"
                                " AND j.kind = 'action'", gh.env)
    assert [tuple(r) for r in rows] == [("failed", "not_started")] * 2
