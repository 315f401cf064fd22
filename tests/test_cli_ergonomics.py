"""CLI ergonomics: the integrations folder found from the current folder upwards by every command but `init`,
the dotfiles `init` writes, the per-environment key from `.env`, progress on stderr and `--json` on stdout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from orchestrator.cli.common import resolve_target
from orchestrator.cli.main import app
from tests.conftest import Stack
from tests.test_cli_stack import nango as run_nango

runner = CliRunner()


def nango(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(autouse=True)
def _no_nango_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NANGO_SECRET_KEY", "NANGO_SECRET_KEY_DEV", "NANGO_SECRET_KEY_PROD", "NANGO_HOSTPORT"):
        monkeypatch.delenv(name, raising=False)


def make_project(tmp_path: Path) -> Path:
    """`nango init` into tmp_path/proj (the sync does not start by itself: auto_start false)."""
    folder = tmp_path / "proj"
    result = nango("init", str(folder))
    assert result.exit_code == 0, result.output
    text = (folder / "nango.yaml").read_text()
    (folder / "nango.yaml").write_text(text.replace("        sync_type: incremental\n",
                                                    "        sync_type: incremental\n        auto_start: false\n"))
    return folder


# --------------------------------------------------------------------------- finding the folder


NO_FOLDER = [
    ["validate"], ["generate"], ["compile"], ["deploy", "--secret-key", "k"], ["dryrun", "issues", "c1"],
    ["test"], ["add", "slack"],
]


@pytest.mark.parametrize("args", NO_FOLDER, ids=lambda a: a[0])
def test_no_folder_is_a_clear_error(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "sub" / "dir"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    result = nango(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (f"no nango.yaml in {here} or any parent folder; pass --path or run `nango init`\n")


def test_commands_find_the_folder_from_a_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_project(tmp_path)
    (folder / "models.py").unlink()
    here = folder / "sub" / "dir"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)

    result = nango("validate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"{folder}/nango.yaml is valid: 1 integration, 2 models"

    result = nango("generate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"wrote {folder}/models.py: 2 models"]

    result = nango("compile")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"github: 2 scripts, 4 files -> {folder}/dist/github.zip (sha256 ")

    # from inside the folder itself, paths are shown relative as before
    monkeypatch.chdir(folder)
    result = nango("validate")
    assert result.stdout.splitlines()[-1] == "nango.yaml is valid: 1 integration, 2 models"


def test_positional_folder_and_path_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_project(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # no nango.yaml here: the folder comes from the argument or --path
    for command in ("validate", "generate", "compile"):
        assert nango(command, str(folder)).exit_code == 0, command
        assert nango(command, "--path", str(folder)).exit_code == 0, command
        assert nango(command, "--path", str(folder / "nango.yaml")).exit_code == 0, command
    both = nango("compile", str(folder), "--path", str(other))
    assert both.exit_code == 1
    assert both.stderr == f"two integrations folders given ({folder} and --path {other}): pass one\n"
    missing = nango("validate", "--path", str(other))
    assert missing.exit_code == 1
    assert missing.stderr == f"no nango.yaml in {other} (create one with `nango init`)\n"
    # deploy takes --path too (it fails at the key, after finding the folder)
    result = nango("deploy", "--path", str(folder), "-e", "prod")
    assert result.exit_code == 1 and "set NANGO_SECRET_KEY_PROD or NANGO_SECRET_KEY" in result.stderr


# --------------------------------------------------------------------------- init's dotfiles, .env


@pytest.mark.parametrize("template", [None, "slack"])
def test_init_writes_gitignore_and_env_example(template: str | None, tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    result = nango("init", str(folder), *(["--template", template] if template else []))
    assert result.exit_code == 0, result.output
    ignored = (folder / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and "dist/" in ignored
    example = (folder / ".env.example").read_text()
    settings = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    assert settings == {"NANGO_HOSTPORT": "http://127.0.0.1:3003", "NANGO_SECRET_KEY_DEV": "",
                        "NANGO_SECRET_KEY_PROD": ""}
    assert "--environment" in example and example.count("#") >= 4
    assert "cp .env.example .env" in result.stdout


def test_environment_picks_its_key_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("NANGO_HOSTPORT=127.0.0.1:4000\nNANGO_SECRET_KEY_DEV=dev-key\n"
                                   "NANGO_SECRET_KEY_PROD=prod-key\n")
    assert resolve_target(tmp_path, None, None, "prod").secret_key == "prod-key"
    assert resolve_target(tmp_path, None, None, "dev").secret_key == "dev-key"
    # a generic key exported in the shell does not win over the environment's own key from .env
    monkeypatch.setenv("NANGO_SECRET_KEY", "shell-key")
    target = resolve_target(tmp_path, None, None, "prod")
    assert (target.server, target.secret_key, target.environment) == ("http://127.0.0.1:4000", "prod-key", "prod")
    assert resolve_target(tmp_path, None, None, None).secret_key == "shell-key"
    assert resolve_target(tmp_path, None, None, "staging").secret_key == "shell-key"  # the fallback
    monkeypatch.setenv("NANGO_SECRET_KEY_PROD", "shell-prod")
    assert resolve_target(tmp_path, None, None, "prod").secret_key == "shell-prod"  # the process env first
    assert resolve_target(tmp_path, None, "flag", "prod").secret_key == "flag"


# --------------------------------------------------------------------------- --json


def test_json_output_of_the_authoring_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "proj"
    result = nango("init", str(folder), "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created == {"folder": str(folder), "template": None, "created": sorted(created["created"])}
    assert {".gitignore", ".env.example", "nango.yaml", "models.py", "github/syncs/issues.py"} <= set(
        created["created"])

    result = nango("init", str(tmp_path / "t"), "--template", "slack", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["template"] == "slack"

    monkeypatch.chdir(folder / "github")
    text = (folder / "nango.yaml").read_text()
    (folder / "nango.yaml").write_text(text.replace("    actions:\n", "    actions:\n      close-issue:\n"
                                                    "        input: CreateIssueInput\n"))
    result = nango("generate", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "folder": str(folder), "models": {"path": f"{folder}/models.py", "written": False, "count": 2},
        "created": [f"{folder}/github/actions/close_issue.py"]}

    result = nango("compile", "--json")
    assert result.exit_code == 0, result.output
    built = json.loads(result.stdout)
    assert built["folder"] == str(folder)
    (bundle,) = built["bundles"]
    assert {k: bundle[k] for k in ("integration", "scripts", "files", "path")} == {
        "integration": "github", "scripts": 3, "files": 5, "path": f"{folder}/dist/github.zip"}
    assert re.fullmatch(r"[0-9a-f]{64}", bundle["sha256"])

    result = nango("validate", "--json")
    assert result.exit_code == 0 and "close-issue" in json.loads(result.stdout)["integrations"]["github"]["actions"]

    result = nango("templates", "--json")
    assert result.exit_code == 0 and {"name", "description"} == set(json.loads(result.stdout)[0])

    result = nango("add", "slack", "--json")
    assert result.exit_code == 0, result.output
    added = json.loads(result.stdout)
    assert added["template"] == "slack" and "nango.yaml" in added["written"]

    result = nango("test", "--integration", "slack", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and {r["integration"] for r in report["results"]} == {"slack"}

    (folder / "providers.yaml").write_text("acme:\n  display_name: Acme\n  auth_mode: API_KEY\n"
                                           "  base_url: https://api.acme.test\n")
    result = nango("providers", "list", "--local", "--json")  # the folder's providers.yaml, found upwards
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["acme"]["source"] == "local" and rows["github"]["source"] == "builtin"
    result = nango("providers", "show", "acme", "--local", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["base_url"] == "https://api.acme.test"


# --------------------------------------------------------------------------- deploy and dryrun on the stack


async def test_deploy_and_dryrun_from_a_subfolder_with_progress(stack: Stack, tmp_path: Path) -> None:
    """As the `nango` process (the stack runs in this one and logs to its stdout): stdout must hold the JSON
    document alone, the progress goes to stderr."""
    folder = make_project(tmp_path)
    env, key = await stack.new_environment()
    (folder / ".env").write_text(f"NANGO_HOSTPORT={stack.api_url}\nNANGO_SECRET_KEY_DEV=wrong-key\n"
                                 f"NANGO_SECRET_KEY=wrong-too\nNANGO_SECRET_KEY_PROD={key}\n")
    here = folder / "github" / "syncs"

    first = await run_nango("deploy", "--environment", "prod", "--json", cwd=here)
    assert first.code == 0, first.stderr
    answer = json.loads(first.stdout)
    assert answer["applied"] is True
    assert answer["integrations"][0]["added"] == ["sync:issues", "action:create-issue"]
    progress = first.stderr.splitlines()
    assert progress[0] == "compiling 1 integration: github"
    assert re.fullmatch(r"  github: 2 scripts, 4 files \(sha256 [0-9a-f]{12}\)", progress[1])
    assert progress[2] == f"uploading 1 bundle to {stack.api_url} (prod)"
    assert progress[-1] == "github: 2 added, 0 updated, 0 removed"

    again = await run_nango("deploy", "-e", "prod", "--sync", "issues", cwd=here)
    assert again.code == 0, again.stderr
    assert again.stdout.splitlines() == [f"deployed to {stack.api_url} (prod)", "github: no changes"]
    assert f"uploading sync:issues of 1 bundle to {stack.api_url} (prod)" in again.stderr

    wrong = await run_nango("deploy", "-e", "dev", cwd=here)
    assert wrong.code == 1
    assert wrong.stderr.splitlines()[-1].startswith(f"deploy failed: {stack.api_url} refused the secret key")

    # a dry run over many pages: a progress line per request on stderr, the JSON alone on stdout
    repo = stack.demo.add_repo(f"{env}/many", 250)
    async with stack.api(key) as api:
        await api.create_connection("github", "c1", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
    run = await run_nango("dryrun", "issues", "c1", "-e", "prod", "--json", cwd=here)
    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert len(result["records"]["GithubIssue"]["save"]) == 250
    lines = [line for line in run.stderr.splitlines() if line.startswith("GET ")]
    assert len(lines) == 3, run.stderr
    assert lines[0].startswith(f"GET /repos/{repo}/issues?") and "per_page=100" in lines[0]
    assert lines[0].endswith("-> 200 (request 1, 0 records so far)")
    assert lines[2].endswith("-> 200 (request 3, 200 records so far)")
    assert "demo-token" not in run.stderr

    quiet = await run_nango("dryrun", "issues", "c1", "-e", "prod", "--quiet", cwd=here)
    assert quiet.code == 0, quiet.stderr
    assert "GET " not in quiet.stderr
    assert re.fullmatch(rf"\d\d:\d\d:\d\d\.\d{{3}} \[info\] saved 250 issues from {re.escape(repo)}",
                        quiet.stdout.splitlines()[0]), quiet.stdout   # the time the script wrote the line
