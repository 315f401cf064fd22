"""Hot reload for `nango dev`: watch the integrations folder, recompile on save, redeploy locally.

Polling modification times (no extra dependency): a save shows compile errors with file and
line without stopping the stack, or redeploys so the next run uses the new code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from orchestrator.authoring.compile import compile_project
from orchestrator.client import ApiError, NangoClient
from orchestrator.config.code_first import has_code_models
from orchestrator.errors import OrchestratorError

log = structlog.get_logger(__name__)
WATCHED = ("*.py", "nango.yaml", "providers.yaml")
IGNORED_PARTS = {"dist", "__pycache__", "mocks", ".git", "node_modules"}


def snapshot(folder: Path) -> dict[Path, float]:
    """Modification times of what a deploy reads; models.py only when it is code-first (else it is generated)."""
    out: dict[Path, float] = {}
    for pattern in WATCHED:
        for path in folder.rglob(pattern):
            if IGNORED_PARTS.isdisjoint(path.relative_to(folder).parts) and (
                    path.name != "models.py" or (path == folder / "models.py" and has_code_models(folder))):
                try:
                    out[path] = path.stat().st_mtime
                except FileNotFoundError:
                    continue
    return out


async def redeploy(folder: Path, api_url: str, secret_key: str) -> str:
    """Compile and deploy once; returns a one-line report (errors included, never raised)."""
    try:
        bundles = await asyncio.to_thread(compile_project, folder)
    except OrchestratorError as exc:
        return f"not deployed, fix these first:\n{exc.message}"
    try:
        async with NangoClient(api_url, secret_key) as api:
            result = await api.deploy(bundles, allow_removal=True)
    except ApiError as exc:
        return f"deploy failed: {exc.message}"
    changes = []
    for plan in result["integrations"]:
        for kind in ("added", "updated", "removed"):
            if plan[kind]:
                changes.append(f"{plan['integration']} {kind}: {', '.join(plan[kind])}")
    return "redeployed: " + ("; ".join(changes) if changes else "no change")


async def watch(folder: Path, api_url: str, secret_key: str, *, interval: float = 1.0,
                report: Callable[[str], None] = print) -> None:
    before = await asyncio.to_thread(snapshot, folder)
    while True:
        await asyncio.sleep(interval)
        now = await asyncio.to_thread(snapshot, folder)
        if now == before:
            continue
        await asyncio.sleep(0.3)  # let an editor finish writing every file of a save
        before = await asyncio.to_thread(snapshot, folder)
        report(await redeploy(folder, api_url, secret_key))
