"""Red team, issue 16 point 4: zip bombs, through the real path.

A bomb sent to POST /deploy (through the client and through `nango deploy`) is refused with a 413
that names the limit and the integration, and nothing is stored. A bomb that bypasses the API
(written straight into the bundle store, a deployed sync pointed at it) fails the run when the
worker unpacks it, with a non-retryable error in the job, no partial folder in the worker's cache
and no jump in the worker's memory. A normal sync succeeds right after each.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import os
import resource
import shutil
import zipfile
from pathlib import Path

import pytest

from orchestrator.authoring.compile import compile_project
from orchestrator.bundles.build import Bundle
from orchestrator.bundles.store import bundle_key
from orchestrator.client import ApiError
from tests.conftest import EXAMPLES, GithubSetup, Stack, setup_github, wait_for_job
from tests.redteam import assert_no_secret, normal_sync_after
from tests.test_cli_stack import nango

MiB = 1024 * 1024


def _github_bundle() -> Bundle:
    return next(b for b in compile_project(EXAMPLES) if b.integration == "github")


def _with_extra(base: Bundle, add: dict[str, int] | None = None, zeros: int = 0, noise: int = 0) -> Bundle:
    """The real github bundle plus hostile entries: `zeros` bytes of zeros in one entry (written in
    chunks), `noise` random bytes, and empty files by name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base.data)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            zf.writestr(info, src.read(info))
        for name in add or {}:
            zf.writestr(name, b"")
        if zeros:
            info = zipfile.ZipInfo("github/helpers/bomb.py")
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as out:
                chunk = bytes(MiB)
                for _ in range(zeros // MiB):
                    out.write(chunk)
        if noise:
            zf.writestr("github/helpers/noise.py", os.urandom(noise))
    data = buf.getvalue()
    return Bundle("github", data, hashlib.sha256(data).hexdigest(), base.manifest)


@functools.cache
def _bomb() -> Bundle:
    """A gigabyte of zeros in about a megabyte; built once (8 s of CPU), shared by the tests that only read it."""
    bomb = _with_extra(_github_bundle(), zeros=1024 * MiB)
    assert len(bomb.data) < 2 * MiB
    return bomb


async def _assert_nothing_deployed(stack: Stack, env: str, bundles: list[Bundle]) -> None:
    async with stack.platform() as platform:
        for b in bundles:
            assert not await platform.bundles.exists(bundle_key(env, "github", b.sha256))
    async with stack.pool.acquire() as conn:
        scripts = await conn.fetchval(
            "SELECT count(*) FROM deployed_scripts s JOIN integrations i ON i.id = s.integration_id"
            " JOIN environments e ON e.id = i.environment_id WHERE e.name = $1", env)
        history = await conn.fetchval(
            "SELECT count(*) FROM deploy_history h JOIN environments e ON e.id = h.environment_id WHERE e.name = $1",
            env)
    assert (scripts, history) == (0, 0)


async def test_a_zip_bomb_deploy_is_refused_naming_the_limit_and_nothing_is_stored(stack: Stack) -> None:
    env, key = await stack.new_environment()
    base = await asyncio.to_thread(_github_bundle)
    cases = {
        "BUNDLE_MAX_UNPACKED_BYTES": await asyncio.to_thread(_bomb),
        "BUNDLE_MAX_FILES": _with_extra(base, add={f"github/helpers/m{i}.py": 0 for i in range(2500)}),
        "BUNDLE_MAX_RATIO": _with_extra(base, zeros=8 * MiB),
        "BUNDLE_MAX_BYTES": await asyncio.to_thread(_with_extra, base, noise=21 * MiB),
    }
    async with stack.api(key) as api:
        for setting, bundle in cases.items():
            with pytest.raises(ApiError) as refused:
                await api.deploy([bundle])
            err = refused.value
            assert err.status == 413, (setting, err)
            assert err.code == "bundle_limit_exceeded"
            assert setting in err.message and "'github'" in err.message, err.message
            assert err.body["error"]["setting"] == setting and err.body["error"]["integration"] == "github"
    await _assert_nothing_deployed(stack, env, list(cases.values()))
    # the environment still takes a normal deploy, and its sync runs
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, EXAMPLES))
        repo = stack.demo.add_repo(f"{env}/repo", 2)
        await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
    await wait_for_job(stack, GithubSetup(env, key, repo, "conn-1"), status="success", timeout=90)


async def test_nango_deploy_shows_the_limit(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    helpers = folder / "github" / "many"
    helpers.mkdir()
    names = [f"m{i}" for i in range(2100)]
    for name in names:
        (helpers / f"{name}.py").write_text("")
    script = folder / "github/syncs/issues.py"
    script.write_text(f"from ..many import {', '.join(names)}  # noqa\n" + script.read_text())
    env, key = await stack.new_environment()
    run = await nango("deploy", str(folder), "--server", stack.api_url, "--secret-key", key, "--yes")
    assert run.code == 1
    assert "deploy failed: 413" in run.stderr and "BUNDLE_MAX_FILES=2000" in run.stderr, run.stderr
    assert "'github'" in run.stderr
    await _assert_nothing_deployed(stack, env, [])


async def test_a_bomb_in_the_store_fails_the_run_at_unpack_without_retry_or_leftovers(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh, status="success", timeout=90)
    bomb = await asyncio.to_thread(_bomb)
    skey = bundle_key(gh.env, "github", bomb.sha256)
    async with stack.platform() as platform:
        await platform.bundles.put(skey, bomb.data)  # what the API would have refused
    async with stack.pool.acquire() as conn:
        await conn.execute(
            "UPDATE deployed_scripts s SET bundle_key = $2, bundle_sha256 = $3 FROM integrations i, environments e"
            " WHERE i.id = s.integration_id AND e.id = i.environment_id AND e.name = $1", gh.env, skey, bomb.sha256)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; the worker runs in this process
    async with stack.api(gh.key) as api:
        await api.trigger_sync("github", ["issues"], gh.connection_id)
    jobs = await wait_for_job(stack, gh, count=2, status="failed", timeout=60)
    error = jobs[0]["error"]
    assert "BUNDLE_MAX_UNPACKED_BYTES" in error and "'github'" in error, error
    # no retry: one attempt of run_sync_script, failed as non-retryable BundleLimitError
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT workflow_id, run_id FROM jobs WHERE id = $1", jobs[0]["id"])
    history = await stack.client.get_workflow_handle(row["workflow_id"], run_id=row["run_id"]).fetch_history()
    failures = [e.activity_task_failed_event_attributes.failure for e in history.events
                if e.HasField("activity_task_failed_event_attributes")]
    assert len(failures) == 1
    info = failures[0].application_failure_info
    assert info.type == "BundleLimitError" and info.non_retryable
    # the worker's cache holds no partial unpack, and its memory did not grow by the bomb
    cache = stack.settings.bundle_cache_dir
    leftovers = [p.name for p in cache.iterdir() if p.name.startswith(bomb.sha256)] if cache.exists() else []
    assert leftovers == []
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 200, grown_mib
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, 2)
