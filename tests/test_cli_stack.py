"""`nango deploy` and `nango dryrun` end to end against the real stack, run as the `nango` process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.demo_provider.app import SEED_START
from tests.conftest import ROOT, Stack


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


async def nango(*args: str, stdin: str = "", cwd: Path | None = None) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANGO_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", *args, cwd=str(cwd or ROOT), env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    run = Run(proc.returncode or 0, out.decode(), err.decode())
    assert "Traceback (most recent call last)" not in run.stderr or "failed:" in run.stderr, run.stderr
    return run


@dataclass
class Project:
    folder: Path
    env: str
    key: str

    def flags(self) -> list[str]:
        return ["--server", self.server, "--secret-key", self.key]

    server: str = ""


@pytest.fixture
async def project(stack: Stack, tmp_path: Path) -> Project:
    """`nango init` output in a fresh environment; the sync does not start by itself (auto_start: false),
    so whatever records exist were saved by something else than a dry run."""
    folder = tmp_path / "integrations"
    created = await nango("init", str(folder))
    assert created.code == 0, created.stderr
    text = (folder / "nango.yaml").read_text()
    (folder / "nango.yaml").write_text(text.replace("        sync_type: incremental\n",
                                                    "        sync_type: incremental\n        auto_start: false\n"))
    env, key = await stack.new_environment()
    return Project(folder, env, key, server=stack.api_url)


async def connect(stack: Stack, project: Project, repo: str, connection_id: str = "c1") -> None:
    async with stack.api(project.key) as api:
        await api.create_connection("github", connection_id, {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})


async def test_deploy_prints_changes_and_asks_before_removing(stack: Stack, project: Project) -> None:
    folder = project.folder
    first = await nango("deploy", str(folder), *project.flags())
    assert first.code == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"deployed to {stack.api_url}",
        "github:",
        "  added    sync issues",
        "  added    action create-issue",
    ]
    assert (folder / "dist").exists() is False  # deploy builds in memory

    again = await nango("deploy", str(folder), *project.flags())
    assert again.stdout.splitlines() == [f"deployed to {stack.api_url}", "github: no changes"]

    action = folder / "github/actions/create_issue.py"
    action.write_text(action.read_text() + "\n# changed\n")
    changed = await nango("deploy", str(folder), *project.flags())
    # the server compares whole bundles today, so the sync (same bundle) may be listed as updated too
    assert changed.stdout.splitlines()[1] == "github:"
    assert "  updated  action create-issue" in changed.stdout.splitlines()

    # removing the action from nango.yaml: asked first; "no" (or no answer) deploys nothing
    text = (folder / "nango.yaml").read_text()
    start = text.index("    actions:\n")
    (folder / "nango.yaml").write_text(text[:start] + text[text.index("models:"):])
    refused = await nango("deploy", str(folder), *project.flags(), stdin="n\n")
    assert refused.code == 1
    assert refused.stdout.startswith("this deploy removes:\n  github: action create-issue\nRemove them? [y/N]: ")
    # stderr: the progress lines (compiling, uploading), then the refusal
    assert refused.stderr.endswith("\nnothing deployed (pass --yes to remove them)\n")
    no_answer = await nango("deploy", str(folder), *project.flags())
    assert no_answer.code == 1 and no_answer.stderr.endswith("\nnothing deployed (pass --yes to remove them)\n")

    confirmed = await nango("deploy", str(folder), *project.flags(), stdin="y\n")
    assert confirmed.code == 0, confirmed.stderr
    assert confirmed.stdout.splitlines()[-1] == "  removed  action create-issue"


async def test_deploy_yes_and_environment_key_from_dotenv(stack: Stack, project: Project) -> None:
    folder = project.folder
    (folder / ".env").write_text(f"NANGO_HOSTPORT={stack.api_url}\nNANGO_SECRET_KEY_STAGING={project.key}\n"
                                 "NANGO_SECRET_KEY=wrong-key\n")
    first = await nango("deploy", "--environment", "staging", "--json", cwd=folder)
    assert first.code == 0, first.stderr
    assert json.loads(first.stdout)["applied"] is True
    wrong = await nango("deploy", cwd=folder)
    assert wrong.code == 1
    assert wrong.stderr.splitlines()[-1].startswith(f"deploy failed: {stack.api_url} refused the secret key")

    text = (folder / "nango.yaml").read_text()
    (folder / "nango.yaml").write_text(text[:text.index("    actions:\n")] + text[text.index("models:"):])
    removed = await nango("deploy", "-e", "staging", "--yes", cwd=folder)
    assert removed.code == 0, removed.stderr
    lines = removed.stdout.splitlines()
    assert lines[:2] == [f"deployed to {stack.api_url} (staging)", "github:"]
    assert lines[-1] == "  removed  action create-issue"


async def test_deploy_refuses_a_folder_that_does_not_compile(stack: Stack, project: Project) -> None:
    (project.folder / "github/syncs/issues.py").write_text("import requests\n")
    run = await nango("deploy", str(project.folder), *project.flags())
    assert run.code == 1
    assert run.stderr.splitlines() == [
        "compiling 1 integration: github",
        f"{project.folder}/github/syncs/issues.py:1:1: import of 'requests' is not allowed: scripts may import only "
        "the standard library, models, orchestrator.sdk and modules of the integrations folder (imported relatively)",
        f"{project.folder}/github/syncs/issues.py:1:1: sync 'issues' needs the entry point "
        "'async def fetch_data(nango: NangoSync) -> None'",
    ]


async def test_dryrun_sync_and_action_save_nothing(stack: Stack, project: Project) -> None:
    deployed = await nango("deploy", str(project.folder), *project.flags())
    assert deployed.code == 0, deployed.stderr
    repo = stack.demo.add_repo(f"{project.env}/dry", 7)
    await connect(stack, project, repo)
    path = ["--path", str(project.folder), *project.flags()]

    run = await nango("dryrun", "issues", "c1", "--json", *path)
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["integration"], result["kind"], result["ok"]) == ("github", "sync", True)
    saved = result["records"]["GithubIssue"]["save"]
    assert sorted(r["number"] for r in saved) == list(range(1, 8))
    assert [log["message"] for log in result["logs"]] == [f"saved 7 issues from {repo}"]

    # human output: log lines, then the records per model
    run = await nango("dryrun", "issues", "c1", *path)
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert re.fullmatch(rf"\d\d:\d\d:\d\d\.\d{{3}} \[info\] saved 7 issues from {re.escape(repo)}", lines[0]), lines
    assert datetime.fromisoformat(result["logs"][0]["time"]) <= datetime.now(UTC)   # when the script wrote it
    assert lines[1] == "GithubIssue: 7 to save"
    assert json.loads(lines[2])["title"].startswith("Issue ")
    assert lines[-1].startswith("dry run of sync 'issues' (github) on connection 'c1' finished in ")
    assert lines[-1].endswith("; nothing was saved")

    # --last-sync-date reaches the script as nango.last_sync_date (the demo API filters by `since`)
    stack.demo.update_issue(repo, 3, title="renamed")
    since = (SEED_START + timedelta(hours=4)).replace(tzinfo=None).isoformat()  # naive: read as UTC
    run = await nango("dryrun", "issues", "c1", "--json", "--last-sync-date", since, *path)
    assert run.code == 0, run.stderr
    saved = json.loads(run.stdout)["records"]["GithubIssue"]["save"]
    assert sorted((r["number"], r["title"]) for r in saved) == [
        (3, "renamed"), (5, "Issue 5"), (6, "Issue 6"), (7, "Issue 7")]

    # the action runs against the real API: the issue really is created; --metadata replaces the repo
    other = stack.demo.add_repo(f"{project.env}/other", 0)
    (project.folder / "input.json").write_text(json.dumps({"title": "From a dry run", "labels": ["x"]}))
    run = await nango("dryrun", "create-issue", "c1", "--input", f"@{project.folder}/input.json",
                      "--metadata", json.dumps({"repo": other}), "--json", *path)
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["output"]["title"] == "From a dry run" and result["output"]["number"] == 1
    assert stack.demo.get_issue(other, 1)["title"] == "From a dry run"
    assert result["logs"][0]["message"] == f"created issue #1 in {other}"

    # an ActionError is shown with its payload, exit 1
    run = await nango("dryrun", "create-issue", "c1", "--input", '{"title": "x"}', "--metadata", "{}", *path)
    assert run.code == 1
    assert run.stderr.strip() == ("action 'create-issue' raised ActionError: "
                                  "{\"message\": \"set the connection's metadata 'repo' (owner/name) first\"}")

    # invalid input fails in the runner, exactly as a deployed run would
    run = await nango("dryrun", "create-issue", "c1", "--input", '{"body": "no title"}', *path)
    assert run.code == 1
    assert run.stderr.splitlines()[0] == ("action 'create-issue' failed: InputValidationError: action input does not "
                                          "match model CreateIssueInput: field 'title': Field required")

    # nothing was saved by any dry run
    async with stack.api(project.key) as api:
        page = await api.list_records("github", "c1", "GithubIssue")
    assert page["records"] == []


async def test_dryrun_script_failure_shows_the_traceback(stack: Stack, project: Project) -> None:
    deployed = await nango("deploy", str(project.folder), *project.flags())
    assert deployed.code == 0, deployed.stderr
    await connect(stack, project, stack.demo.add_repo(f"{project.env}/r", 1))
    path = ["--path", str(project.folder), *project.flags()]
    run = await nango("dryrun", "issues", "c1", "--metadata", "{}", *path)
    assert run.code == 1
    assert run.stderr.startswith("sync 'issues' failed: ValueError: set the connection's metadata 'repo'")
    assert "Traceback (most recent call last)" in run.stderr and "issues.py" in run.stderr

    missing = await nango("dryrun", "issues", "nope", *path)
    assert missing.code == 1
    assert missing.stderr.startswith(f"no connection 'nope' for integration 'github' on {stack.api_url}: ")


async def test_dryrun_signs_oauth1_family_requests_with_the_integrations_consumer(stack: Stack,
                                                                                 project: Project) -> None:
    """A TBA connection in a dry run: the CLI reads the integration's consumer with the author's secret key and
    signs on the author's machine; the demo provider verifies the signature with oauthlib."""
    deployed = await nango("deploy", str(project.folder), *project.flags())
    assert deployed.code == 0, deployed.stderr
    repo = stack.demo.add_repo(f"{project.env}/tba", 3)
    token = stack.demo.auth.add_tba_token("42_SB1")
    async with stack.api(project.key) as api:
        await api.update_integration("github", client_id=stack.demo.client_id, client_secret=stack.demo.client_secret)
        await api.create_connection("github", "tba", {"type": "TBA", "token_id": token["token_id"],
                                                      "token_secret": token["token_secret"]},
                                    connection_config={"base_url": stack.provider_url, "accountId": "42-sb1"},
                                    metadata={"repo": repo})
    run = await nango("dryrun", "issues", "tba", "--json", "--path", str(project.folder), *project.flags())
    assert run.code == 0, run.stderr
    assert len(json.loads(run.stdout)["records"]["GithubIssue"]["save"]) == 3
    calls = [r for r in stack.demo.requests if r["path"] == f"/repos/{repo}/issues"]
    assert calls and {c["auth_scheme"] for c in calls} == {"tba"}
