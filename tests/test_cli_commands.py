"""The authoring commands end to end on scratch folders, in-process (no server needed)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from orchestrator.cli.common import DEFAULT_SERVER, resolve_target
from orchestrator.cli.main import app
from orchestrator.config.codegen import HEADER
from orchestrator.devstack.processes import free_port
from tests.conftest import EXAMPLES

runner = CliRunner()


def nango(*args: str, input: str | None = None) -> Result:
    result = runner.invoke(app, list(args), input=input)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("command", ["init", "validate", "generate", "compile", "dryrun", "deploy", "dev",
                                     "server", "worker", "migrate"])
def test_help_on_every_command(command: str) -> None:
    result = nango(command, "--help")
    assert result.exit_code == 0 and "Usage: " in result.output


def test_init_gives_a_folder_that_compiles(tmp_path: Path) -> None:
    folder = tmp_path / "integrations"
    result = nango("init", str(folder))
    assert result.exit_code == 0, result.output
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {
        ".gitignore", ".env.example", "nango.yaml", "models.py", "github/mappers.py", "github/syncs/issues.py",
        "github/actions/create_issue.py"}
    assert (folder / "models.py").read_text().startswith(HEADER)
    result = nango("compile", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"github: 2 scripts, 4 files -> {folder}/dist/github.zip (sha256 ")
    with zipfile.ZipFile(folder / "dist/github.zip") as zf:
        assert sorted(zf.namelist()) == ["github/actions/create_issue.py", "github/mappers.py",
                                         "github/syncs/issues.py", "manifest.json", "models.py"]
        manifest = json.loads(zf.read("manifest.json"))
    assert [(s["kind"], s["name"]) for s in manifest["scripts"]] == [("sync", "issues"), ("action", "create-issue")]

    again = nango("init", str(folder))
    assert again.exit_code == 1
    assert again.stderr.startswith(f"{folder} already has .env.example, github/actions/create_issue.py, ")
    assert "nothing written" in again.stderr


def test_validate_summary_and_json(tmp_path: Path) -> None:
    result = nango("validate", str(EXAMPLES))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "github: 1 sync, 1 action, 2 models",
        "  syncs: issues",
        "  actions: create-issue",
        "  models: CreateIssue, GithubIssue",
        f"{EXAMPLES}/nango.yaml is valid: 1 integration, 2 models",
    ]
    result = nango("validate", str(EXAMPLES / "nango.yaml"), "--json")
    assert result.exit_code == 0
    parsed = json.loads(result.stdout)
    assert parsed["integrations"]["github"]["syncs"]["issues"]["interval_seconds"] == 300
    assert set(parsed["models"]) == {"CreateIssue", "GithubIssue"}


def test_validate_reports_every_error_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nango.yaml").write_text(
        "integrations:\n  github:\n    syncs:\n      issues:\n        runs: every 10s\n        output: Isue\n"
        "        trak_deletes: true\nmodels:\n  Issue:\n    id: string\n")
    monkeypatch.chdir(tmp_path)
    result = nango("validate")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("nango.yaml:5:15: invalid schedule 'every 10s': shorter than the 30s minimum;")
    assert lines[1:] == [
        "nango.yaml:6:17: unknown model 'Isue' in output of sync 'issues'; did you mean 'Issue'?",
        "nango.yaml:7:9: unknown key 'trak_deletes' in sync 'issues'; did you mean 'track_deletes'?",
    ]


def test_validate_missing_file(tmp_path: Path) -> None:
    result = nango("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert result.stderr == f"no such file or folder: {tmp_path}/nope.yaml\n"
    result = nango("validate", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == f"no nango.yaml in {tmp_path} (create one with `nango init`)\n"


GENERATE_YAML = """\
integrations:
  crm:
    syncs:
      contacts:
        description: Every contact.
        runs: every day
        output: Contact
        webhook-subscriptions: [contact.updated]
    actions:
      create-contact:
        input: NewContact
        output: Contact
      ping:
        output: boolean
    on-events:
      validate-connection: [check]
models:
  Address:
    street: string
    zip?: string | null
  Contact:
    id: string
    name: string
    emails: string[]
    address: Address | null
    status: active | archived
    $score?: number
  NewContact:
    name: string
"""


def test_generate_writes_models_and_stubs_that_compile(tmp_path: Path) -> None:
    (tmp_path / "nango.yaml").write_text(GENERATE_YAML)
    (tmp_path / "crm/actions").mkdir(parents=True)
    mine = "async def run_action(nango, input):\n    return True\n"
    (tmp_path / "crm/actions/ping.py").write_text(mine)
    result = nango("generate", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"wrote {tmp_path}/models.py: 3 models",
        f"created {tmp_path}/crm/syncs/contacts.py",
        f"created {tmp_path}/crm/actions/create_contact.py",
        f"created {tmp_path}/crm/on-events/check.py",
    ]
    assert (tmp_path / "crm/actions/ping.py").read_text() == mine  # never overwritten
    sync = (tmp_path / "crm/syncs/contacts.py").read_text()
    assert sync.startswith(
        '"""Sync \'contacts\' of integration \'crm\': Every contact."""\n\nfrom models import Contact\n')
    assert "async def fetch_data(nango: NangoSync) -> None:" in sync
    assert "async def on_webhook(nango: NangoSync, payload: dict) -> None:" in sync
    action = (tmp_path / "crm/actions/create_contact.py").read_text()
    assert "from models import Contact, NewContact\n" in action
    assert "async def run_action(nango: NangoAction, input: NewContact) -> Contact:" in action
    assert "async def on_event(nango: NangoAction) -> None:" in (tmp_path / "crm/on-events/check.py").read_text()

    again = nango("generate", str(tmp_path))
    assert again.stdout.splitlines() == [f"kept (up to date) {tmp_path}/models.py: 3 models"]
    result = nango("compile", str(tmp_path))
    assert result.exit_code == 0, result.output

    # codegen round trip: the generated module imports and validates sample data, keys as in nango.yaml
    models = load_module(tmp_path / "models.py", "cli_generated_models")
    contact = {"id": "1", "name": "Ada", "emails": ["a@x.io"], "address": {"street": "Main", "zip": None},
               "status": "active", "$score": 2.5}
    parsed = models.Contact.model_validate(contact)
    assert parsed.address.street == "Main"
    assert parsed.model_dump(mode="json", by_alias=True) == contact
    with pytest.raises(Exception, match="status"):
        models.Contact.model_validate({**contact, "status": "deleted"})


def test_compile_regenerates_a_stale_models_py(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    (folder / "models.py").write_text("# stale\n")
    result = nango("compile", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{folder}/models.py regenerated from nango.yaml\n"
    assert (folder / "models.py").read_text().startswith(HEADER)
    assert (folder / "dist/github.zip").is_file()


def test_compile_reports_yaml_errors_before_scripts(tmp_path: Path) -> None:
    (tmp_path / "nango.yaml").write_text("integrations:\n  github:\n    sincs: {}\n")
    result = nango("compile", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"{tmp_path}/nango.yaml:3:5: unknown key 'sincs' in integration 'github'; did you mean 'syncs'?\n")


# --------------------------------------------------------------------------- server settings


def test_resolve_target_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NANGO_SECRET_KEY", "NANGO_SECRET_KEY_PROD", "NANGO_HOSTPORT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text(
        "# settings\nNANGO_SECRET_KEY='from-dotenv'\nexport NANGO_SECRET_KEY_PROD=prod-dotenv # comment\n"
        "NANGO_HOSTPORT=localhost:9999\n")
    target = resolve_target(tmp_path, None, None, None)
    assert (target.server, target.secret_key) == ("http://localhost:9999", "from-dotenv")
    assert resolve_target(tmp_path, None, None, "prod").secret_key == "prod-dotenv"
    monkeypatch.setenv("NANGO_SECRET_KEY", "from-env")
    monkeypatch.setenv("NANGO_HOSTPORT", "https://api.example.com/")
    target = resolve_target(tmp_path, None, None, None)
    assert (target.server, target.secret_key) == ("https://api.example.com", "from-env")
    assert resolve_target(tmp_path, "http://x:1", "flag", "prod").secret_key == "flag"
    (tmp_path / ".env").unlink()
    monkeypatch.delenv("NANGO_HOSTPORT")
    assert resolve_target(tmp_path, None, None, None).server == DEFAULT_SERVER


def test_missing_secret_key_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NANGO_SECRET_KEY", raising=False)
    monkeypatch.delenv("NANGO_SECRET_KEY_DEV", raising=False)
    folder = tmp_path / "f"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    result = nango("deploy", str(folder), "--environment", "dev")
    assert result.exit_code == 1
    assert result.stderr == ("no secret key: pass --secret-key, or set NANGO_SECRET_KEY_DEV or NANGO_SECRET_KEY "
                             f"in the environment or in {folder}/.env\n")


def test_unreachable_server_is_a_user_error(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    # one line in the form PostgreSQL's and Temporal's failures take: the address and the settings that change it
    expected = f"cannot reach the API at 127.0.0.1:{port} (--server or NANGO_HOSTPORT): connection refused"
    result = nango("deploy", str(folder), "--server", server, "--secret-key", "k")
    assert result.exit_code == 1
    # the progress lines (compiling, uploading) come first on stderr
    assert result.stderr.splitlines()[-1] == f"deploy failed: {expected}"
    result = nango("dryrun", "issues", "c1", "--path", str(folder), "--server", server, "--secret-key", "k")
    assert (result.exit_code, result.stderr) == (1, expected + "\n")
    result = nango("deploy", str(folder), "--history", "--server", server, "--secret-key", "k")
    assert (result.exit_code, result.stderr) == (1, f"history failed: {expected}\n")


def test_dryrun_user_errors(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    common = ["--path", str(folder), "--secret-key", "k", "--server", "http://127.0.0.1:1"]

    def err(*args: str) -> str:
        result = nango("dryrun", *args, *common)
        assert result.exit_code == 1, result.output
        return result.stderr.strip()

    assert err("isues", "c1") == "no sync, action or event script named 'isues' in nango.yaml; did you mean 'issues'?"
    assert err("issues", "c1", "--integration", "gh") == "no integration 'gh' in nango.yaml"
    assert err("issues", "c1", "--input", "{}") == (
        "--input is for actions; sync 'issues' takes none (a sync reads its connection's metadata: --metadata)")
    assert err("create-issue", "c1") == "action 'create-issue' takes input (CreateIssue): pass --input JSON or @file"
    assert err("create-issue", "c1", "--input", "{oops") == (
        "--input: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)")
    assert err("create-issue", "c1", "--input", f"@{tmp_path}/none.json").startswith(
        f"--input: cannot read {tmp_path}/none.json: ")
    assert err("issues", "c1", "--metadata", "[1]") == "--metadata must be a JSON object"
    assert err("issues", "c1", "--last-sync-date", "yesterday") == (
        "--last-sync-date: 'yesterday' is not an ISO 8601 date or date-time")

    text = (folder / "nango.yaml").read_text().replace("integrations:\n", (
        "integrations:\n  other:\n    syncs:\n      issues:\n        runs: every day\n        output: GithubIssue\n"
    ), 1)
    (folder / "nango.yaml").write_text(text)
    assert err("issues", "c1") == "'issues' exists in integrations github, other: choose one with --integration"


def test_validate_prints_warnings_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "nango.yaml").write_text(
        "integrations:\n  github:\n    syncs:\n      issues:\n        runs: every hour\n        output: Issue\n"
        "models:\n  Issue:\n    id: string\n    author: Usr | null\n")
    result = nango("validate", str(tmp_path))
    assert result.exit_code == 0
    assert result.stderr == (f"{tmp_path}/nango.yaml:10:13: warning: unknown model 'Usr' in field 'author' of model "
                             "'Issue', read as a string literal\n")
    assert result.stdout.splitlines()[0] == "github: 1 sync, 0 actions, 1 model"
