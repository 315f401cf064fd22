"""`nango dryrun` flags Nango users reach for (issue 21): --validate, --variant, --checkpoint, and what a bad value
of any flag says. Through the `nango` process against the real stack; the value errors in-process (no server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Stack
from tests.test_cli_commands import nango as nango_here
from tests.test_cli_stack import Project, connect, nango
from tests.test_cli_stack import project as project_fixture  # noqa: F401 (registers the `project` fixture)

# The template's sync, plus what the flags change: it logs the variant and the checkpoint it starts from, saves
# one, writes metadata (a dry run keeps that to itself) and, when the metadata asks, one record of the wrong shape.
SCRIPT = '''\
from orchestrator.sdk import NangoSync

from ..mappers import to_issue


async def fetch_data(nango: NangoSync) -> None:
    metadata = await nango.get_metadata()
    await nango.log(f"variant {nango.variant}, from checkpoint {await nango.get_checkpoint()}")
    async for page in nango.paginate(f"/repos/{metadata['repo']}/issues", params={"state": "all"}, limit=100):
        await nango.batch_save([to_issue(raw) for raw in page if "pull_request" not in raw], "GithubIssue")
    if metadata.get("bad"):
        await nango.batch_save([{"id": "bad-1", "number": "one", "title": "t", "body": None, "state": "open",
                                 "url": "u", "author": None, "labels": [], "created_at": "c", "updated_at": "u"}],
                               "GithubIssue")
    await nango.save_checkpoint({"after": "all"})
    await nango.update_metadata({"seen": True})
'''


@pytest.fixture
async def deployed(project_fixture: Project, stack: Stack) -> tuple[Project, str]:  # noqa: F811
    """test_cli_stack's project (`nango init`, auto_start off) with the script above deployed, and connection
    'c1' on a repo of 3 issues."""
    project = project_fixture
    (project.folder / "github/syncs/issues.py").write_text(SCRIPT)
    done = await nango("deploy", str(project.folder), *project.flags())
    assert done.code == 0, done.stderr
    repo = stack.demo.add_repo(f"{project.env}/flags", 3)
    await connect(stack, project, repo)
    return project, repo


async def test_validate_fails_the_run_naming_each_bad_record_and_field(stack: Stack,
                                                                       deployed: tuple[Project, str]) -> None:
    project, repo = deployed
    path = ["--quiet", "--path", str(project.folder), *project.flags()]
    bad = ["--metadata", json.dumps({"repo": repo, "bad": True})]

    # without --validate the record of the wrong shape is shown like the others
    run = await nango("dryrun", "issues", "c1", "--json", *bad, *path)
    assert run.code == 0, run.stderr
    assert "bad-1" in {r["id"] for r in json.loads(run.stdout)["records"]["GithubIssue"]["save"]}

    run = await nango("dryrun", "issues", "c1", "--validate", *bad, *path)
    assert run.code == 1
    assert run.stderr.splitlines() == [
        "sync 'issues' (--validate): 1 record does not match its model (an environment with record_validation "
        "reject would not save it):",
        "  record 'bad-1' of model GithubIssue: field 'number' should be integer, got string",
        "  record 'bad-1' of model GithubIssue: field 'closed_at' is required but missing",
    ]
    # the log says it as the job's log would, at the error level of reject mode
    assert "[error] record 'bad-1' of model GithubIssue: field 'number' should be integer, got string" in run.stdout
    assert "GithubIssue: 3 to save" in run.stdout.splitlines()   # what reject mode would save

    run = await nango("dryrun", "issues", "c1", "--validate", "--json", *bad, *path)
    assert run.code == 1
    result = json.loads(run.stdout)
    assert result["ok"] is False and result["error"]["type"] == "invalid_records"
    assert [(p["id"], p["field"]) for p in result["error"]["problems"]] == [("bad-1", "number"),
                                                                            ("bad-1", "closed_at")]
    assert sorted(r["number"] for r in result["records"]["GithubIssue"]["save"]) == [1, 2, 3]

    # records that match: the run passes
    run = await nango("dryrun", "issues", "c1", "--validate", *path)
    assert run.code == 0, run.stderr


async def test_variant_and_checkpoint_reach_the_script_and_nothing_is_stored(stack: Stack,
                                                                           deployed: tuple[Project, str]) -> None:
    project, repo = deployed
    path = ["--quiet", "--path", str(project.folder), *project.flags()]
    async with stack.api(project.key) as api:
        await api.request("POST", "/sync/issues/variant/eu", json={"provider_config_key": "github",
                                                                   "connection_id": "c1"})

    run = await nango("dryrun", "issues", "c1", "--json", *path)
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["logs"][0]["message"] == "variant base, from checkpoint None"
    assert result["checkpoint"] == {"after": "all"}    # where the next run would resume

    (project.folder / "checkpoint.json").write_text(json.dumps({"page": 2}))
    for given in ('{"page": 2}', f"@{project.folder}/checkpoint.json"):
        run = await nango("dryrun", "issues", "c1", "--json", "--variant", "eu", "--checkpoint", given, *path)
        assert run.code == 0, run.stderr
        assert json.loads(run.stdout)["logs"][0]["message"] == "variant eu, from checkpoint {'page': 2}"

    run = await nango("dryrun", "issues", "c1", "--checkpoint", '{"page": 2}', *path)
    assert run.code == 0, run.stderr
    assert 'checkpoint: {"after": "all"}' in run.stdout.splitlines()

    # an unknown variant: one line naming the flag, before the script runs
    run = await nango("dryrun", "issues", "c1", "--variant", "us", *path)
    assert run.code == 1
    assert run.stderr.splitlines() == [
        f"--variant: no variant 'us' of sync 'issues' of connection 'c1' on {stack.api_url} "
        "(create it with POST /sync/issues/variant/us)"]

    # nothing reached the server: no records in either variant, the metadata the script wrote stayed local
    async with stack.api(project.key) as api:
        for variant in ("base", "eu"):
            assert (await api.list_records("github", "c1", "GithubIssue", variant=variant))["records"] == []
        assert await api.get_metadata("github", "c1") == {"repo": repo}
        state = await api.request("GET", "/sync/status", params={
            "provider_config_key": "github", "syncs": "issues::eu", "connection_id": "c1"})
    assert state["syncs"][0]["finishedAt"] is None   # no run of the variant was recorded


def test_bad_flag_values_are_one_line_naming_the_flag(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    common = ["--path", str(folder), "--secret-key", "k", "--server", "http://127.0.0.1:1"]

    def err(*args: str) -> str:
        result = nango_here("dryrun", *args, *common)
        assert result.exit_code == 1, result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result.stderr.strip()

    assert err("issues", "c1", "--checkpoint", "{oops") == (
        "--checkpoint: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)")
    assert err("issues", "c1", "--checkpoint", "[1]") == "--checkpoint must be a JSON object"
    assert err("issues", "c1", "--checkpoint", f"@{tmp_path}/none.json").startswith(
        f"--checkpoint: cannot read {tmp_path}/none.json: ")
    assert err("issues", "c1", "--metadata", "{oops").startswith("--metadata: not valid JSON (")
    assert err("issues", "c1", "--metadata", f"@{tmp_path}/none.json").startswith("--metadata: cannot read ")
    assert err("create-issue", "c1", "--input", "[").startswith("--input: not valid JSON (")
    assert err("issues", "c1", "--variant", "") == "--variant: a variant name is 1-255 characters, got ''"
    assert err("issues", "c1", "--last-sync-date", "2024-13-01") == (
        "--last-sync-date: '2024-13-01' is not an ISO 8601 date or date-time")
    for flag, value in (("--variant", "eu"), ("--checkpoint", "{}"), ("--last-sync-date", "2024-01-01")):
        assert err("create-issue", "c1", "--input", "{}", flag, value) == (
            f"{flag} is for syncs; 'create-issue' is an action")
