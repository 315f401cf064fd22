"""Templates: `nango templates`, `init --template`, `add` (merging nango.yaml, --force) and `nango test` on each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.cli.templates_cmd import available

TEMPLATES = ["github", "hubspot", "linear", "notion", "slack", "zendesk"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_templates_lists_six_providers() -> None:
    code, out = cli("templates", "--json")
    assert code == 0, out
    listed = {t["name"]: t["description"] for t in json.loads(out)}
    assert sorted(listed) == TEMPLATES == sorted(available())
    assert all(listed.values())


@pytest.mark.parametrize("name", TEMPLATES)
def test_init_from_template_passes_its_offline_tests(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    folder = tmp_path / "proj"
    code, out = cli("init", str(folder), "--template", name)
    assert code == 0, out
    assert (folder / "models.py").is_file() and (folder / ".gitignore").is_file()
    assert (folder / f"tests/test_{name}.py").is_file()
    assert list((folder / name / "mocks").iterdir())
    monkeypatch.chdir(folder / name)  # found from a subfolder
    code, out = cli("test", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] and report["results"] and all(r["requests"] > 0 for r in report["results"])
    code, out = cli("validate", str(folder))
    assert code == 0, out


def test_add_merges_nango_yaml_and_refuses_to_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "proj"
    assert cli("init", str(folder))[0] == 0  # the plain example: github issues + create-issue
    monkeypatch.chdir(folder)
    code, out = cli("add", "slack")
    assert code == 0, out
    config = yaml.safe_load((folder / "nango.yaml").read_text())
    assert set(config["integrations"]) == {"github", "slack"}
    assert {"GithubIssue", "SlackUser"} <= set(config["models"])
    assert "SlackUser" in (folder / "models.py").read_text()

    # the github template has the same scripts but other files and a differently described sync
    code, out = cli("add", "github")
    assert code == 1 and "would overwrite" in out and "github/syncs/issues.py" in out and "--force" in out
    assert "pagination" not in (folder / "github/syncs/issues.py").read_text()
    code, out = cli("add", "github", "--force")
    assert code == 0, out
    assert "link_rel_in_response_header" in (folder / "github/syncs/issues.py").read_text()
    code, out = cli("test")
    assert code == 0, out
    assert "PASS github/issues" in out and "PASS slack/users" in out

    # adding again changes nothing and needs no --force
    code, out = cli("add", "slack")
    assert code == 0 and "created" not in out


def test_unknown_template_and_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = cli("init", str(tmp_path / "x"), "--template", "gitub")
    assert code == 1 and "did you mean 'github'" in out
    monkeypatch.chdir(tmp_path)
    code, out = cli("add", "slack")
    assert code == 1 and "no nango.yaml" in out and "--path" in out
    code, out = cli("test")
    assert code == 1 and "no nango.yaml" in out
