"""Deploy history, rollback and single-script deploys, through the real stack."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.authoring.compile import compile_project
from orchestrator.cli.main import app
from tests.conftest import EXAMPLES, Stack, setup_github, wait_for_job


async def test_history_rollback_and_partial_deploys(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    gh = await setup_github(stack, issues=2, folder=folder)
    await wait_for_job(stack, gh)
    script = folder / "github/syncs/issues.py"
    original = script.read_text()
    async with stack.api(gh.key) as api:
        # a change to the sync only (its schedule): only the sync is reported as updated
        yaml_file = folder / "nango.yaml"
        yaml_file.write_text(yaml_file.read_text().replace("every 5 minutes", "every 10 minutes"))
        result = await api.deploy(await asyncio.to_thread(compile_project, folder), deployed_by="alice@laptop")
        plan = result["integrations"][0]
        assert plan["updated"] == ["sync:issues"] and plan["unchanged"] == ["action:create-issue"]
        # code both use (the action imports the sync's mapper): both are updated
        script.write_text(original.replace('raw["title"]', 'raw["title"] + " (v2)"'))
        result = await api.deploy(await asyncio.to_thread(compile_project, folder))
        assert sorted(result["integrations"][0]["updated"]) == ["action:create-issue", "sync:issues"]

        # --action only: the action takes the new code, the sync keeps what it runs
        script.write_text(original.replace('raw["title"]', 'raw["title"] + " (v3)"'))
        result = await api.deploy(await asyncio.to_thread(compile_project, folder), only=["action:create-issue"])
        plan = result["integrations"][0]
        assert plan["updated"] == ["action:create-issue"] and plan["removed"] == [] and plan["unchanged"] == []
        async with stack.pool.acquire() as conn:
            shas = {r["name"]: r["bundle_sha256"] for r in await conn.fetch(
                "SELECT s.name, s.bundle_sha256 FROM deployed_scripts s JOIN environments e"
                " ON e.id = s.environment_id WHERE e.name = $1", gh.env)}
        assert shas["issues"] != shas["create-issue"]
        err = await api.request("POST", "/deploy/rollback", json={"integration": "github", "version": 99}, ok=(404,))
        assert "no deploy version 99" in err["error"]["message"]

        rows = await api.deploy_history("github")
        assert [r["version"] for r in rows] == [4, 3, 2, 1]
        assert rows[2]["deployed_by"] == "alice@laptop" and rows[0]["only_scripts"] == ["action:create-issue"]

        # roll back to v1 and the next run writes the original titles again
        await api.rollback("github", 1, deployed_by="bob@ci")
        await api.request("POST", "/sync/trigger", json={"syncs": ["issues"], "provider_config_key": "github",
                                                         "connection_id": "conn-1", "opts": {"reset": True}})
        await wait_for_job(stack, gh, count=2)
        titles = sorted(r["title"] for r in (await api.list_records("github", "conn-1", "GithubIssue"))["records"])
        assert titles == ["Issue 1", "Issue 2"]
        rows = await api.deploy_history("github")
        assert rows[0]["version"] == 5 and rows[0]["rollback_of"] == 1 and rows[0]["deployed_by"] == "bob@ci"

    env = {"NANGO_SECRET_KEY": gh.key, "NANGO_HOSTPORT": stack.api_url}
    out = await asyncio.to_thread(CliRunner().invoke, app, ["deploy", str(folder), "--history"], env=env)
    assert out.exit_code == 0, out.output
    assert "github v5" in out.output and "rollback to v1" in out.output


async def test_deploys_of_one_integration_at_once_each_get_their_own_version(stack: Stack) -> None:
    """A client that retries a deploy after a timeout while the first is still applying: both are applied and
    recorded (the second was refused by the history's unique version before)."""
    gh = await setup_github(stack, issues=1)
    bundles = await asyncio.to_thread(compile_project, EXAMPLES)
    async with stack.api(gh.key) as api:
        results = await asyncio.gather(*(api.deploy(bundles, deployed_by=f"retry-{i}") for i in range(4)))
        assert all(r["integrations"][0]["integration"] == "github" for r in results)
        rows = await api.deploy_history("github")
    assert sorted(r["version"] for r in rows) == [1, 2, 3, 4, 5]
    assert {r["deployed_by"] for r in rows} >= {f"retry-{i}" for i in range(4)}
