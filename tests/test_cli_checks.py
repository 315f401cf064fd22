"""`nango compile`'s script checks: each rule with a broken file and its exact message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.authoring.checks import Problem, ScriptCheckError, check_project
from orchestrator.authoring.compile import compile_project
from orchestrator.cli.main import app
from orchestrator.config.codegen import generate_models_py
from orchestrator.config.nango_yaml import parse_config

YAML = """\
integrations:
  github:
    syncs:
      issues:
        runs: every hour
        output: Issue
      hooks:
        runs: every hour
        output: Hook
        webhook-subscriptions: [issues]
    actions:
      create-issue:
        input: NewIssue
        output: Issue
    on-events:
      post-connection-creation: [setup]
models:
  Issue:
    id: string
  Hook:
    id: string
  NewIssue:
    title: string
"""

GOOD = {
    "github/syncs/issues.py": """
        from models import Issue

        from orchestrator.sdk import NangoSync


        async def fetch_data(nango: NangoSync) -> None:
            await nango.batch_save([Issue(id="1")], "Issue")
    """,
    "github/syncs/hooks.py": """
        async def fetch_data(nango) -> None:
            pass


        async def on_webhook(nango, payload: dict) -> None:
            pass
    """,
    "github/actions/create_issue.py": """
        from orchestrator.sdk import NangoAction


        async def run_action(nango: NangoAction, input):
            return {"id": input.title}
    """,
    "github/on-events/setup.py": """
        async def on_event(nango):
            pass
    """,
}


def make(root: Path, files: dict[str, str], yaml: str = YAML) -> Path:
    (root / "nango.yaml").write_text(yaml)
    (root / "models.py").write_text(generate_models_py(parse_config(yaml)))
    for rel, text in {**GOOD, **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def problems(root: Path, files: dict[str, str], yaml: str = YAML) -> list[str]:
    make(root, files, yaml)
    return [p.render() for p in check_project(root, parse_config(yaml))]


def test_good_folder_has_no_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, {}) == []


def test_missing_script(tmp_path: Path) -> None:
    make(tmp_path, {})
    (tmp_path / "github/syncs/issues.py").unlink()
    assert [p.render() for p in check_project(tmp_path, parse_config(YAML))] == [
        "github/syncs/issues.py:1:1: sync 'issues' of integration 'github' has no script: "
        "create github/syncs/issues.py (`nango generate` writes a stub)"
    ]


def test_missing_entry_points(tmp_path: Path) -> None:
    assert problems(tmp_path, {
        "github/syncs/issues.py": "async def fetch(nango):\n    pass\n",
        "github/syncs/hooks.py": "async def fetch_data(nango):\n    pass\n",
        "github/actions/create_issue.py": "run_action = None\n",
        "github/on-events/setup.py": "x = 1\n",
    }) == [
        "github/actions/create_issue.py:1:1: action 'create-issue' needs the entry point "
        "'async def run_action(nango: NangoAction, input: Input) -> Output'",
        "github/on-events/setup.py:1:1: event 'setup' needs the entry point "
        "'async def on_event(nango: NangoAction) -> None'",
        "github/syncs/hooks.py:1:1: sync 'hooks' has webhook-subscriptions, so its module needs "
        "'async def on_webhook(nango: NangoSync, payload: dict) -> None'",
        "github/syncs/issues.py:1:1: sync 'issues' needs the entry point "
        "'async def fetch_data(nango: NangoSync) -> None'",
    ]


def test_entry_points_must_be_async(tmp_path: Path) -> None:
    assert problems(tmp_path, {
        "github/syncs/issues.py": "import asyncio\n\n\ndef fetch_data(nango):\n    pass\n",
    }) == [
        "github/syncs/issues.py:4:1: 'fetch_data' must be a coroutine function: "
        "'async def fetch_data(nango: NangoSync) -> None'",
    ]


def test_entry_point_signatures(tmp_path: Path) -> None:
    assert problems(tmp_path, {
        "github/syncs/issues.py": "async def fetch_data():\n    pass\n",
        "github/syncs/hooks.py": (
            "async def fetch_data(nango, extra):\n    pass\n\n\n"
            "async def on_webhook(nango):\n    pass\n"
        ),
        "github/actions/create_issue.py": "async def run_action(nango, *, input):\n    pass\n",
    }) == [
        "github/actions/create_issue.py:1:1: 'run_action' must take 2 arguments (nango, input): "
        "'async def run_action(nango: NangoAction, input: Input) -> Output'",
        "github/syncs/hooks.py:1:1: 'fetch_data' must take 1 argument (nango): "
        "'async def fetch_data(nango: NangoSync) -> None'",
        "github/syncs/hooks.py:5:1: 'on_webhook' must take 2 arguments (nango, payload): "
        "'async def on_webhook(nango: NangoSync, payload: dict) -> None'",
        "github/syncs/issues.py:1:1: 'fetch_data' must take 1 argument (nango): "
        "'async def fetch_data(nango: NangoSync) -> None'",
    ]


def test_flexible_signatures_are_fine(tmp_path: Path) -> None:
    assert problems(tmp_path, {
        "github/syncs/issues.py": "async def fetch_data(nango, verbose=False, *, dry=True):\n    pass\n",
        "github/actions/create_issue.py": "async def run_action(*args):\n    pass\n",
    }) == []


def test_syntax_error(tmp_path: Path) -> None:
    assert problems(tmp_path, {
        "github/syncs/issues.py": "async def fetch_data(nango):\n    if True\n        pass\n",
    }) == ["github/syncs/issues.py:2:12: syntax error: expected ':'"]


def test_forbidden_imports(tmp_path: Path) -> None:
    assert problems(tmp_path, {
        "github/syncs/issues.py": """
            import json
            import os.path
            import requests
            from orchestrator.runner import host
            from orchestrator import sdk
            from orchestrator.sdk.errors import ActionError
            import orchestrator.store


            async def fetch_data(nango):
                import httpx
        """,
    }) == [
        "github/syncs/issues.py:3:1: import of 'requests' is not allowed: scripts may import only the "
        "standard library, models, orchestrator.sdk and modules of the integrations folder (imported relatively)",
        "github/syncs/issues.py:4:1: import of 'orchestrator.runner' is not allowed: "
        "scripts may use only orchestrator.sdk from the platform",
        "github/syncs/issues.py:7:1: import of 'orchestrator.store' is not allowed: "
        "scripts may use only orchestrator.sdk from the platform",
        "github/syncs/issues.py:11:5: import of 'httpx' is not allowed: scripts may import only the "
        "standard library, models, orchestrator.sdk and modules of the integrations folder (imported relatively)",
    ]


def test_type_checking_imports_are_ignored(tmp_path: Path) -> None:
    assert problems(tmp_path, {
        "github/syncs/issues.py": """
            from typing import TYPE_CHECKING

            if TYPE_CHECKING:
                import requests
            else:
                import yaml


            async def fetch_data(nango):
                pass
        """,
    }) == [
        "github/syncs/issues.py:6:5: import of 'yaml' is not allowed: scripts may import only the standard "
        "library, models, orchestrator.sdk and modules of the integrations folder (imported relatively)",
    ]


def test_folder_modules_must_be_imported_relatively(tmp_path: Path) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers/api.py").write_text("X = 1\n")
    assert problems(tmp_path, {
        "github/syncs/issues.py": """
            import helpers.api
            from helpers.api import X


            async def fetch_data(nango):
                pass
        """,
    }) == [
        "github/syncs/issues.py:1:1: 'helpers' is a module of the integrations folder: import it relatively, "
        "as 'from ...helpers import api'",
        "github/syncs/issues.py:2:1: 'helpers' is a module of the integrations folder: import it relatively, "
        "as 'from ...helpers.api import X'",
    ]


def test_relative_imports_resolve_and_are_checked_transitively(tmp_path: Path) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers/api.py").write_text("from . import deep\n\nX = 1\n")
    (tmp_path / "helpers/deep.py").write_text("import requests\n")
    (tmp_path / "helpers/broken.py").write_text("def f(:\n")
    assert problems(tmp_path, {
        "github/syncs/issues.py": """
            from ...helpers.api import X
            from ...helpers import broken
            from ...helpers import nothing
            from ..missing import y
            from .... import escape


            async def fetch_data(nango):
                pass
        """,
    }) == [
        "github/syncs/issues.py:3:1: cannot import '...helpers': there is no helpers/nothing.py "
        "in the integrations folder",
        "github/syncs/issues.py:4:1: cannot import '..missing': there is no github/missing.py "
        "in the integrations folder",
        "github/syncs/issues.py:5:1: relative import '....' goes above the integrations folder",
        "helpers/broken.py:1:7: syntax error: invalid syntax",
        "helpers/deep.py:1:1: import of 'requests' is not allowed: scripts may import only the standard library, "
        "models, orchestrator.sdk and modules of the integrations folder (imported relatively)",
    ]


def test_models_import_needs_models_py(tmp_path: Path) -> None:
    make(tmp_path, {})
    (tmp_path / "models.py").unlink()
    assert [p.render() for p in check_project(tmp_path, parse_config(YAML))] == [
        "github/syncs/issues.py:1:1: models.py is missing from the integrations folder: run `nango generate`",
    ]


def test_compile_project_raises_every_problem(tmp_path: Path) -> None:
    make(tmp_path, {
        "github/syncs/issues.py": "import requests\n",
        "github/on-events/setup.py": "def on_event(nango):\n    pass\n",
    })
    with pytest.raises(ScriptCheckError) as info:
        compile_project(tmp_path)
    assert [p.path for p in info.value.problems] == [
        "github/on-events/setup.py", "github/syncs/issues.py", "github/syncs/issues.py"]
    assert info.value.problems[0] == Problem("github/on-events/setup.py", 1, 1, (
        "'on_event' must be a coroutine function: 'async def on_event(nango: NangoAction) -> None'"))
    assert info.value.render("proj").splitlines()[0].startswith("proj/github/on-events/setup.py:1:1: ")


def test_bundle_holds_imported_modules(tmp_path: Path) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers/__init__.py").write_text("")
    (tmp_path / "helpers/api.py").write_text("from .deep import Y\n\nX = 1\n")
    (tmp_path / "helpers/deep.py").write_text("Y = 2\n")
    (tmp_path / "helpers/unused.py").write_text("Z = 3\n")
    make(tmp_path, {
        "github/syncs/issues.py": "from ...helpers.api import X\n\n\nasync def fetch_data(nango):\n    pass\n",
    })
    (bundle,) = compile_project(tmp_path)
    assert sorted(bundle.manifest["files"]) == [
        "github/actions/create_issue.py", "github/on-events/setup.py", "github/syncs/hooks.py",
        "github/syncs/issues.py", "helpers/__init__.py", "helpers/api.py", "helpers/deep.py", "models.py"]
    assert sorted(bundle.manifest["config"]["models"]) == ["Hook", "Issue", "NewIssue"]
    assert compile_project(tmp_path)[0].sha256 == bundle.sha256  # deterministic


def test_compile_command_reports_all_problems_with_the_folder_prefix(tmp_path: Path) -> None:
    make(tmp_path, {
        "github/syncs/issues.py": "import requests\n\n\nasync def fetch_data(nango):\n    pass\n",
        "github/syncs/hooks.py": "async def fetch_data(nango):\n    pass\n",
    })
    result = CliRunner().invoke(app, ["compile", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{tmp_path}/github/syncs/hooks.py:1:1: sync 'hooks' has webhook-subscriptions, so its module needs "
        "'async def on_webhook(nango: NangoSync, payload: dict) -> None'",
        f"{tmp_path}/github/syncs/issues.py:1:1: import of 'requests' is not allowed: scripts may import only the "
        "standard library, models, orchestrator.sdk and modules of the integrations folder (imported relatively)",
    ]
    assert not (tmp_path / "dist").exists()
