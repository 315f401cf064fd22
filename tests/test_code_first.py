"""Code-first definitions (issue 22): an integrations folder declared in typed Python instead of (or beside)
nango.yaml deploys and runs like its nango.yaml twin, through the CLI and the real stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner, Result

from orchestrator.authoring.compile import compile_project
from orchestrator.cli import authoring
from orchestrator.cli.main import app as main_app
from tests.conftest import EXAMPLES, Stack, eventually, setup_github, wait_for_job

CODE_EXAMPLE = EXAMPLES.parent / "nango-integrations-code"
ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# `nango migrate-to-code` and `nango export-yaml` beside the commands they convert for.
convert_app = typer.Typer()
convert_app.command(name="migrate-to-code")(authoring.migrate_to_code)
convert_app.command(name="export-yaml")(authoring.export_yaml)
convert_app.command()(authoring.validate)


def nango(*args: str, app: typer.Typer = main_app) -> Result:
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def declared(folder: Path) -> dict[str, Any]:
    """What a deploy of the folder declares: each bundle's manifest without its files (code differs)."""
    out = {}
    for bundle in compile_project(folder):
        manifest = dict(bundle.manifest)
        manifest.pop("files")
        manifest["scripts"] = [{k: v for k, v in s.items() if k != "sha256"} for s in manifest["scripts"]]
        out[bundle.integration] = manifest
    return out


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("dist", "__pycache__"))
    return dest


def test_the_code_first_example_declares_what_its_nango_yaml_twin_does() -> None:
    assert not (CODE_EXAMPLE / "nango.yaml").exists()
    assert declared(CODE_EXAMPLE) == declared(EXAMPLES)


async def test_the_code_first_example_syncs_and_acts_through_the_stack(stack: Stack) -> None:
    gh = await setup_github(stack, issues=3, folder=CODE_EXAMPLE)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        async def three() -> list[dict[str, Any]]:
            page = await api.list_records("github", gh.connection_id, "GithubIssue")
            assert len(page["records"]) == 3, page
            return list(page["records"])
        records = await eventually(three)
        assert sorted(r["number"] for r in records) == [1, 2, 3]
        out = await api.trigger_action("github", gh.connection_id, "create-issue", {"title": "code-first"})
    assert out["title"] == "code-first" and out["number"] == 4
    assert stack.demo.get_issue(gh.repo, 4)["title"] == "code-first"


def test_cli_validate_compile_generate_on_a_code_first_folder(tmp_path: Path, monkeypatch: Any) -> None:
    folder = copy(CODE_EXAMPLE, tmp_path / "f")
    models = (folder / "models.py").read_text()
    result = nango("validate", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "github: 1 sync, 1 action, 2 models",
        "  syncs: issues",
        "  actions: create-issue",
        "  models: CreateIssue, GithubIssue",
        f"{folder} is valid: 1 integration, 2 models",
    ]
    assert nango("generate", str(folder)).stdout.splitlines()[0] == (
        f"kept (code-first, yours) {folder}/models.py: 2 models")
    result = nango("compile", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"github: 2 scripts, 3 files -> {folder}/dist/github.zip")
    assert (folder / "models.py").read_text() == models  # never regenerated: it is the definition
    monkeypatch.chdir(folder / "github" / "syncs")  # found from a subfolder without nango.yaml
    assert nango("validate").stdout.splitlines()[-1] == f"{folder} is valid: 1 integration, 2 models"


def test_both_forms_in_one_folder_merge_and_a_name_twice_names_both_places(tmp_path: Path) -> None:
    folder = copy(CODE_EXAMPLE, tmp_path / "f")
    (folder / "nango.yaml").write_text(
        "integrations:\n  github:\n    actions:\n      close-issue:\n        input: CloseIssue\n"
        "        output: GithubIssue\n        endpoint: POST /github/issues/close\n"
        "models:\n  CloseIssue:\n    number: integer\n")
    (folder / "github/actions/close_issue.py").write_text(
        "from models import GithubIssue\nfrom orchestrator.sdk import NangoAction\n\n\n"
        "async def run_action(nango: NangoAction, input: dict) -> GithubIssue:\n    raise NotImplementedError\n")
    result = nango("validate", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:4] == ["github: 1 sync, 2 actions, 3 models", "  syncs: issues",
                                              "  actions: close-issue, create-issue",
                                              "  models: CloseIssue, CreateIssue, GithubIssue"]
    assert [s["name"] for s in declared(folder)["github"]["scripts"]] == ["issues", "close-issue", "create-issue"]

    (folder / "nango.yaml").write_text(
        "integrations:\n  github:\n    actions:\n      create-issue:\n        input: CreateIssue\n"
        "models:\n  GithubIssue:\n    id: string\n")
    result = nango("validate", str(folder))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{folder}/github/actions/create_issue.py:10:2: action 'create-issue' is defined twice: "
        f"{folder}/nango.yaml:4 and {folder}/github/actions/create_issue.py:10; keep one",
        f"{folder}/models.py:19:1: model 'GithubIssue' is defined twice: {folder}/nango.yaml:7 and "
        f"{folder}/models.py:19; keep one",
    ]


def test_bad_definitions_are_named_at_their_file_and_line(tmp_path: Path) -> None:
    folder = copy(CODE_EXAMPLE, tmp_path / "f")
    sync = folder / "github/syncs/issues.py"
    sync.write_text(sync.read_text().replace('frequency="every 5 minutes"', 'frequency="every 5 minuts"')
                    .replace("models=[GithubIssue]", "models=[GithubIsue]")
                    .replace('scopes=["repo"]', "scopes=SCOPES"))
    models = folder / "models.py"
    models.write_text(models.read_text().replace("    number: int\n", "    number: set[int]\n"))
    result = nango("validate", str(folder))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (f"{folder}/github/syncs/issues.py:28:13: @sync: unknown type 'GithubIsue': not a model of "
                        "models.py nor a type nango.yaml knows; did you mean 'GithubIssue'?")
    assert lines[1] == (f"{folder}/models.py:22:13: model 'GithubIssue': cannot read the type 'set[int]': use "
                        "list[...], Literal[...], Optional[...] or Nullable[...]")
    assert len(lines) == 2  # a model with a problem is still a model: no cascade in the scripts that use it
    sync.write_text(sync.read_text().replace("models=[GithubIsue]", "models=[GithubIssue]"))
    models.write_text(models.read_text().replace("set[int]", "int"))
    result = nango("validate", str(folder))
    assert result.stderr == (f"{folder}/github/syncs/issues.py:31:12: @sync: scopes must be written out as text (it "
                             "is read without running the script), got 'SCOPES'\n")
    sync.write_text(sync.read_text().replace("scopes=SCOPES", 'scopes=["repo"]'))
    result = nango("validate", str(folder))
    assert result.stderr.startswith(f"{folder}/github/syncs/issues.py:27:15: invalid schedule 'every 5 minuts'")


def test_reading_definitions_runs_none_of_the_folders_code(tmp_path: Path) -> None:
    """`nango validate` and `nango compile` read the Python statically: a folder's code never runs."""
    folder = copy(CODE_EXAMPLE, tmp_path / "f")
    marker = tmp_path / "ran"
    models = folder / "models.py"
    models.write_text(models.read_text() + f"\nimport pathlib\n\npathlib.Path({str(marker)!r}).write_text('x')\n")
    sync = folder / "github/syncs/issues.py"
    sync.write_text(sync.read_text().replace("@sync(", f"@sync(  # {marker}\n", 1))
    assert nango("validate", str(folder)).exit_code == 0
    assert nango("compile", str(folder)).exit_code == 0
    assert not marker.exists()


def test_migrate_to_code_in_place_then_export_back(tmp_path: Path) -> None:
    folder = copy(EXAMPLES, tmp_path / "f")
    before = declared(folder)
    result = nango("migrate-to-code", str(folder), app=convert_app)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"wrote {folder}/{rel}" for rel in
                                          ("github/actions/create_issue.py", "github/syncs/issues.py", "models.py")]
    assert not (folder / "nango.yaml").exists()
    assert (folder / "nango.yaml.bak").read_text() == (EXAMPLES / "nango.yaml").read_text()
    assert "@sync(" in (folder / "github/syncs/issues.py").read_text()
    assert declared(folder) == before

    result = nango("export-yaml", str(folder), "--out", str(tmp_path / "back"), app=convert_app)
    assert result.exit_code == 0, result.output
    back = tmp_path / "back"
    assert "@sync(" not in (back / "github/syncs/issues.py").read_text()
    assert (back / "models.py").read_text().startswith("# Generated by `nango generate`")
    assert declared(back) == before

    result = nango("export-yaml", str(folder), app=convert_app)  # in place: the hand-written models kept
    assert result.exit_code == 0, result.output
    assert (folder / "nango.yaml").is_file() and "@sync(" not in (folder / "github/syncs/issues.py").read_text()
    assert (folder / "models.py.bak").read_text().startswith('"""The models of the integrations, code-first')
    assert declared(folder) == before


def test_a_conversion_that_cannot_be_made_writes_nothing(tmp_path: Path) -> None:
    folder = copy(EXAMPLES, tmp_path / "f")
    (folder / "github/actions/create_issue.py").write_text('"""Not written yet."""\n')
    result = nango("migrate-to-code", str(folder), app=convert_app)
    assert result.exit_code == 1
    assert result.stderr == ("nothing converted:\ngithub/actions/create_issue.py: no 'run_action' to put the "
                             "definition on; add the entry point first\n")
    assert (folder / "nango.yaml").is_file() and not (folder / "nango.yaml.bak").exists()
    assert "@sync" not in (folder / "github/syncs/issues.py").read_text()
    result = nango("migrate-to-code", str(CODE_EXAMPLE), app=convert_app)
    assert result.exit_code == 1 and "already has code-first definitions" in result.stderr


def test_mypy_strict_passes_on_the_code_first_example() -> None:
    """What a Python developer's type checker sees: the definitions, models and scripts are fully typed."""
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--explicit-package-bases", "--follow-imports=silent",
         "--cache-dir", os.devnull, "."], cwd=CODE_EXAMPLE, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found in 3 source files")


EVERYTHING = """\
integrations:
  crm:
    syncs:
      contacts:
        runs: every 2h
        output: [Contact, Note]
        endpoint:
          - GET /contacts
          - {method: GET, path: /notes, group: Notes}
        sync_type: Incremental
        track_deletes: true
        auto_start: false
        input: ContactFilter
        scopes: read, write
        version: 1.2.0
        description: >
          Contacts and their notes.
        webhook-subscriptions: [contact.updated]
    actions:
      find-contact:
        input: string
        output: Contact[] | null
        endpoint: GET /contacts/search
      ping:
        output: "'pong' | 'down'"
    on-events:
      post-connection-creation: [setup]
      pre-connection-deletion: [setup, cleanup]
models:
  ContactFilter:
    since?: Date
    stage: lead | customer
  Base:
    id: string
  Contact:
    __extends: Base
    name: varchar | null
    age?: int
    score?: number | null
    tags: string[]
    $state: string | undefined
    address:
      street: string
      lines?:
        - text: string
    extra: object
    anything: any
    flags:
      __string: boolean
  Note:
    id: string
    contact: Contact
    kind: 1 | 2 | true
"""


def test_every_feature_round_trips_events_webhooks_nested_and_literals(tmp_path: Path) -> None:
    from orchestrator.authoring.migrate import to_code, to_yaml
    from orchestrator.cli.scaffold import generate_stubs, write_models
    from orchestrator.config.nango_yaml import parse_config

    folder = tmp_path / "yaml"
    folder.mkdir()
    (folder / "nango.yaml").write_text(EVERYTHING)
    config = parse_config(EVERYTHING)
    write_models(folder, config)
    generate_stubs(folder, config)
    expected = declared(folder)

    to_code(folder, tmp_path / "code")
    code = tmp_path / "code"
    assert declared(code) == expected
    assert (code / "crm/on-events/setup.py").read_text().count(
        '@on_event("post-connection-creation", "pre-connection-deletion")') == 1
    sync = (code / "crm/syncs/contacts.py").read_text()
    assert 'Endpoint("GET", "/notes", group="Notes")' in sync and 'webhook_subscriptions=["contact.updated"]' in sync
    models = (code / "models.py").read_text()
    for line in ("    since: Date | None = None", '    stage: Literal["lead", "customer"]',
                 "    score: Nullable[int | float] = None", '    state: str | None = Field(None, alias="$state")',
                 "class Contact(Base):", "    address: Address", "        lines: list[Lines] | None = None",
                 "        __pydantic_extra__: dict[str, bool] = Field(init=False)",
                 '    kind: Literal[1, 2, True]'):
        assert line in models, line
    to_yaml(code, tmp_path / "back")
    assert declared(tmp_path / "back") == expected


async def test_nango_dev_hot_reload_follows_definitions_and_models(stack: Stack, tmp_path: Path) -> None:
    import asyncio

    from orchestrator.devstack.reload import watch

    folder = copy(CODE_EXAMPLE, tmp_path / "ints")
    gh = await setup_github(stack, issues=1, folder=folder)
    lines: list[str] = []
    watcher = asyncio.create_task(watch(folder, stack.api_url, gh.key, interval=0.2, report=lines.append))
    try:
        await asyncio.sleep(0.5)
        models = folder / "models.py"
        models.write_text(models.read_text().replace("    number: int\n", "    number: frozenset[int]\n"))

        async def reported(text: str) -> None:
            assert lines and text in lines[-1], lines
        await eventually(lambda: reported("models.py:22:13: model 'GithubIssue': cannot read the type"), timeout=20)

        models.write_text(models.read_text().replace("frozenset[int]", "int").replace(
            "    closed_at: str | None\n", "    closed_at: str | None\n    milestone: str | None = None\n"))
        await eventually(lambda: reported("github updated: "), timeout=20)
        assert "sync:issues" in lines[-1] and "action:create-issue" in lines[-1]
        async with stack.api(gh.key) as api:
            deployed = await api.request("GET", "/scripts/config")
        schemas = list(_find(deployed, "GithubIssue"))
        assert schemas and all("milestone" in s["properties"] and "milestone" not in s["required"] for s in schemas)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


def _find(value: Any, key: str) -> Iterator[Any]:
    """Every value under `key`, anywhere in a JSON document."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from _find(item, key)


def test_a_definition_declares_only_its_own_script(tmp_path: Path) -> None:
    """A decorator speaks for the file it is in: its name, kind and entry point must match that file."""
    folder = copy(CODE_EXAMPLE, tmp_path / "f")
    head = "from models import GithubIssue\nfrom orchestrator.sdk import NangoAction, NangoSync, action, sync\n\n\n"
    (folder / "github/actions/renamed.py").write_text(
        head + '@action(name="create-issue", output=GithubIssue)\nasync def run_action(nango: NangoAction, '
        "input: None) -> None:\n    pass\n")
    (folder / "github/actions/misplaced.py").write_text(
        head + '@sync(frequency="every hour", models=[GithubIssue])\nasync def fetch_data(nango: NangoSync) '
        "-> None:\n    pass\n")
    (folder / "github/actions/helper.py").write_text(
        head + "@action(output=GithubIssue)\nasync def helper(nango: NangoAction) -> None:\n    pass\n")
    result = nango("validate", str(folder))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{folder}/github/actions/helper.py:5:2: @action decorates the entry point 'run_action', not 'helper'",
        f"{folder}/github/actions/misplaced.py:5:2: @sync belongs in github/syncs/, not in actions/",
        f"{folder}/github/actions/renamed.py:5:14: @action: a script named 'create-issue' lives in "
        "github/actions/create_issue.py, not in github/actions/renamed.py",
    ]


def test_init_code_first_gives_a_folder_that_compiles(tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    result = nango("init", str(folder), "--code-first")
    assert result.exit_code == 0, result.output
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {
        ".gitignore", ".env.example", "models.py", "github/mappers.py", "github/syncs/issues.py",
        "github/actions/create_issue.py"}
    assert "@sync(" in (folder / "github/syncs/issues.py").read_text()
    result = nango("compile", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"github: 2 scripts, 4 files -> {folder}/dist/github.zip")
