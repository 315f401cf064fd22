"""`nango dev`'s hot reload: a save recompiles and redeploys; a broken save reports file:line and deploys nothing."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from orchestrator.devstack.reload import watch
from tests.conftest import EXAMPLES, Stack, eventually, setup_github


async def test_save_redeploys_and_errors_are_reported_without_stopping(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    gh = await setup_github(stack, issues=1, folder=folder)
    lines: list[str] = []
    watcher = asyncio.create_task(watch(folder, stack.api_url, gh.key, interval=0.2, report=lines.append))
    try:
        await asyncio.sleep(0.5)
        script = folder / "github/syncs/issues.py"
        script.write_text(script.read_text() + "\n\ndef broken(:\n    pass\n")

        async def reported_error() -> None:
            assert lines and "github/syncs/issues.py:" in lines[-1] and "not deployed" in lines[-1], lines
        await eventually(reported_error, timeout=20)

        script.write_text(script.read_text().replace("\n\ndef broken(:\n    pass\n", "\n# edited\n"))

        async def redeployed() -> None:
            assert "github updated: " in lines[-1] and "sync:issues" in lines[-1], lines
        await eventually(redeployed, timeout=20)
        assert not watcher.done()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
