"""The pytest plugin used the way a user would: `python -m pytest` in a temporary project (subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli.main import app
from tests.conftest import ROOT

USER_TEST = '''
from orchestrator.testing import NangoMock


def test_inline_mock(nango_mock):
    mock = nango_mock.mock(kind="sync", provider="slack")
    mock.respond("GET", "/users.list", {"ok": True, "members": [
        {"id": "U9", "name": "x", "profile": {"email": "x@example.com"}}], "response_metadata": {"next_cursor": ""}})
    result = nango_mock.run("users", integration="slack", mock=mock).assert_ok()
    result.assert_saved("SlackUser", {"id": "U9", "email": "x@example.com"}, count=1)
    assert isinstance(mock, NangoMock)


async def test_async_api(nango_mock):
    result = await nango_mock.arun("issues", integration="linear")
    result.assert_ok().assert_saved("LinearIssue", count=3)
    await nango_mock.aassert_matches_saved("issues", integration="linear")


def test_wrong_expectation_fails_readably(nango_mock):
    nango_mock.run("users", integration="slack").assert_saved("SlackUser", {"id": "NOPE"})
'''


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    registered = any(ep.value == "orchestrator.testing.plugin" for ep in entry_points(group="pytest11"))
    plugin = [] if registered else ["-p", "orchestrator.testing.plugin"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NANGO_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin,
                           "-o", "asyncio_mode=auto", *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


def test_plugin_in_a_user_project(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "integrations"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(folder), "--template", "github"]).exit_code == 0
    monkeypatch.chdir(folder)
    for name in ("hubspot", "slack", "linear", "notion", "zendesk"):
        result = runner.invoke(app, ["add", name])
        assert result.exit_code == 0, result.output

    # every template's own tests, together in one folder
    run = _pytest(folder, "tests")
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout and "failed" not in run.stdout

    (folder / "tests" / "test_mine.py").write_text(USER_TEST)
    run = _pytest(folder, "tests/test_mine.py")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 2 passed" in run.stdout, run.stdout
    assert "no record saved for SlackUser matches {\"id\": \"NOPE\"}" in run.stdout
    assert "U01" in run.stdout  # the records that were saved are listed


def test_plugin_reports_a_mismatch_with_a_diff(tmp_path: Path) -> None:
    folder = tmp_path / "integrations"
    assert CliRunner().invoke(app, ["init", str(folder), "--template", "zendesk"]).exit_code == 0
    records = folder / "zendesk" / "mocks" / "tickets" / "records.json"
    records.write_text(records.read_text().replace('"Cannot log in"', '"Cannot sign in"'))
    run = _pytest(folder, "tests", "-k", "match_saved")
    assert run.returncode == 1, run.stdout
    assert "does not produce its saved result" in run.stdout
    assert '"subject": "Cannot sign in"' in run.stdout and '"subject": "Cannot log in"' in run.stdout
