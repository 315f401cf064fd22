"""The pytest plugin (entry point `pytest11: nango`): fixtures for testing integration scripts offline.

    def test_issues(nango_mock):
        result = nango_mock.run("issues")            # saved responses of github/mocks/issues/
        result.assert_ok().assert_saved("GithubIssue", {"number": 1}, count=2)
        nango_mock.assert_matches_saved("issues")   # what `nango test issues` checks

    async def test_inline(nango_mock):
        mock = nango_mock.mock(metadata={"repo": "o/r"}).respond("GET", "/repos/o/r/issues", [{"id": 1}])
        await fetch_data(mock.nango)
        mock.assert_saved("GithubIssue", count=1)

The integrations folder is found from the test file's folder upwards (or `--nango-path`). A script whose
mocks were recorded by Nango's own CLI (its 0.6x files or 0.7x `.test.json`) runs against those the same way;
`variant="eu"` runs a sync as that variant, against the variant's own recording when Nango recorded one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.testing.mocks import ResponseBook
from orchestrator.testing.nango_mock import NangoMock
from orchestrator.testing.runs import (
    SavedCheck,
    ScriptResult,
    check_saved,
    check_saved_async,
    find_integrations_folder,
    make_mock,
    resolve,
    run,
    run_async,
)


class NangoTesting:
    """What the `nango_mock` fixture gives: mocks to hand to scripts, and runs of the folder's scripts."""

    def __init__(self, start: Path, folder: Path | None = None) -> None:
        self._start = start
        self._folder = folder

    @property
    def folder(self) -> Path:
        if self._folder is None:
            found = find_integrations_folder(self._start)
            if found is None:
                raise pytest.UsageError(f"no nango.yaml in {self._start} or its parents (pass --nango-path)")
            self._folder = found
        return self._folder

    def mock(self, responses: ResponseBook | Path | str | None = None, **kwargs: Any) -> NangoMock:
        """A fresh `NangoMock` (`responses`: a saved mocks folder, or none and `.respond(...)` inline)."""
        return NangoMock(responses, **kwargs)

    __call__ = mock

    def for_script(self, name: str, *, integration: str | None = None, saved: bool = True,
                   variant: str | None = None, **overrides: Any) -> NangoMock:
        """The mock `run(name)` would use: its saved responses and settings, with `overrides`."""
        return make_mock(self.folder, resolve(self.folder, name, integration), saved=saved, variant=variant,
                         **overrides)

    def run(self, name: str, *, integration: str | None = None, input: Any = None, payload: Any = None,
            mock: NangoMock | None = None, variant: str | None = None, **overrides: Any) -> ScriptResult:
        """Run script `name` of the folder against its saved responses (or `mock`); a sync as `variant`."""
        script = resolve(self.folder, name, integration)
        mock = mock or make_mock(self.folder, script, variant=variant, **overrides)
        return run(self.folder, script, mock, input=input, payload=payload)

    async def arun(self, name: str, *, integration: str | None = None, input: Any = None, payload: Any = None,
                   mock: NangoMock | None = None, variant: str | None = None, **overrides: Any) -> ScriptResult:
        script = resolve(self.folder, name, integration)
        mock = mock or make_mock(self.folder, script, variant=variant, **overrides)
        return await run_async(self.folder, script, mock, input=input, payload=payload)

    def assert_matches_saved(self, name: str, *, integration: str | None = None,
                             variant: str | None = None) -> SavedCheck:
        """Rerun `name` (a sync as `variant`) against its saved responses; fail with a diff unless it produces the
        saved result."""
        return _raise_on_mismatch(check_saved(self.folder, resolve(self.folder, name, integration), variant))

    async def aassert_matches_saved(self, name: str, *, integration: str | None = None,
                                    variant: str | None = None) -> SavedCheck:
        return _raise_on_mismatch(await check_saved_async(self.folder, resolve(self.folder, name, integration),
                                                          variant))


def _raise_on_mismatch(check: SavedCheck) -> SavedCheck:
    if check.error:
        raise AssertionError(f"{check.script.name}: {check.error}")
    if not check.ok:
        raise AssertionError(f"{check.script.name} does not produce its saved result:\n" + "\n".join(check.diff))
    return check


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nango")
    group.addoption("--nango-path", default=None, help="The integrations folder (default: found from each test).")


@pytest.fixture
def nango_mock(request: pytest.FixtureRequest) -> NangoTesting:
    """Mocks for scripts and runs of the integrations folder's scripts against saved responses."""
    option = request.config.getoption("--nango-path", default=None)
    folder = Path(option).resolve() if option else None
    return NangoTesting(Path(str(request.path)).parent, folder)
