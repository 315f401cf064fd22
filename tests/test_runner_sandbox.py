"""The runner's sandbox tiers, warm children and worker start checks (no database needed)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from orchestrator.config.settings import Settings
from orchestrator.runner import sandbox
from orchestrator.runner.host import MODELS_MEMORY, Limits, Runner, RunSpec, run_script
from orchestrator.worker import IsolationUnavailableError, start_runner

SCRIPT = """
import os, socket
from ..helpers.util import double

async def run_action(nango, inp):
    try:
        socket.socket()
        sock = "allowed"
    except OSError as exc:
        sock = exc.strerror
    return {"value": double(inp["n"]), "meta": await nango.get_metadata(), "socket": sock,
            "uid": os.getuid(), "env": sorted(os.environ)}
"""


class Handler:
    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        assert method == "get_metadata"
        return {"repo": "a/b"}

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        self.logs.append((level, message))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    (root / "github" / "actions").mkdir(parents=True)
    (root / "github" / "helpers").mkdir(parents=True)
    (root / "github" / "actions" / "act.py").write_text(textwrap.dedent(SCRIPT))
    (root / "github" / "helpers" / "util.py").write_text("def double(n):\n    return 2 * n\n")
    return root


def spec(bundle: Path, timeout_s: float = 20) -> RunSpec:
    return RunSpec("action", bundle, "github/actions/act.py", timeout_s,
                   context={"connection_id": "c", "provider_config_key": "github", "input": {"n": 21}})


def test_detect_finds_the_full_sandbox() -> None:
    # the Makefile's sandbox-tools target installs bubblewrap and libseccomp2 on every machine the suite runs on
    box = sandbox.detect()
    info = box.describe()
    assert info["isolation"] == "bwrap" and info["sandboxed"] and box.bpf and box.child_bpf, info
    assert info["tmp_size_mb"] == 64 and info["shm_size_mb"] == 16


@pytest.mark.parametrize("tier", ["bwrap", "process"])
async def test_every_tier_runs_a_script_with_seccomp(bundle: Path, tier: str) -> None:
    runner = await Runner.create(tier=tier)
    assert runner.sandbox.tier == tier
    handler = Handler()
    try:
        outcome = await run_script(spec(bundle), handler, runner=runner)
    finally:
        await runner.close()  # waits for the used child's teardown, which runs after the result came back
    assert outcome.ok, outcome.error
    out = outcome.output
    assert out["value"] == 42 and out["meta"] == {"repo": "a/b"}
    if runner.sandbox.bpf:
        assert out["socket"] == "Operation not permitted"
    if tier == "bwrap":
        assert out["uid"] == sandbox.SANDBOX_UID
    assert not {"DATABASE_URL", "ENCRYPTION_KEY"} & set(out["env"])
    unsandboxed = [m for _, m in handler.logs if "NOT sandboxed" in m]
    assert bool(unsandboxed) == (tier == "process"), handler.logs  # said on every run without the sandbox


async def test_warm_children_start_scripts_fast_and_clean_up(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[sandbox.PidsCgroup] = []
    real_create = sandbox.PidsCgroup.create.__func__  # type: ignore[attr-defined]

    def recording(cls: type[sandbox.PidsCgroup], processes: int) -> sandbox.PidsCgroup | None:
        group = real_create(cls, processes)
        if group is not None:
            created.append(group)
        return group

    monkeypatch.setattr(sandbox.PidsCgroup, "create", classmethod(recording))
    runner = await Runner.create(warm=2)
    runner.prewarm(Limits())
    try:
        await runner.until_ready(Limits(), 2)
        for _ in range(4):  # each run takes a ready pooled child (tests/test_runner_pool.py checks it is never
            # one still booting); speed is measured in bench/runner.py, not asserted here
            outcome = await run_script(spec(bundle), Handler(), runner=runner)
            assert outcome.ok, outcome.error
            assert outcome.spawn_to_entry_s is not None
            await runner.until_ready(Limits())
    finally:
        await runner.close()
    if runner.sandbox.pids_cgroup:
        assert len(created) >= 4
        assert [g.path for g in created if g.path.exists()] == []  # every child's cgroup was removed


async def test_a_different_limit_gets_its_own_child(bundle: Path) -> None:
    runner = await Runner.create(warm=1)
    try:
        small = RunSpec(**{**spec(bundle).__dict__, "limits": Limits(memory_mb=256, cpu_seconds=3)})
        outcome = await run_script(small, Handler(), runner=runner)
        assert outcome.ok, outcome.error
    finally:
        await runner.close()


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text()


NICE_SCRIPT = """
import os, sys

MODELS_WARM = "pydantic.main" in sys.modules  # what generated models import, before this script imports it

async def run_action(nango, inp):
    preloaded = "ssl" in sys.modules
    import ssl
    return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "ssl_preloaded": preloaded, "ssl": ssl.OPENSSL_VERSION,
            "models_warm": MODELS_WARM}
"""


async def test_children_boot_and_run_scripts_at_runner_child_nice(tmp_path: Path) -> None:
    """RUNNER_CHILD_NICE reaches the sandboxed process from its boot (read from the host's /proc) and the script
    runs at it; the boot leaves ssl out (the child has no network) yet a script can still import it."""
    (tmp_path / "github" / "actions").mkdir(parents=True)
    (tmp_path / "github" / "actions" / "act.py").write_text(NICE_SCRIPT)
    runner = await start_runner(Settings(runner_child_nice=7, runner_warm_children=0))
    try:
        assert runner.sandbox.describe()["child_nice"] == 7
        child = await runner.spawn(Limits())
        try:
            await child.wait_ready()
            if runner.fork_server:  # RUNNER_FORK_SERVER: the run forked from the template is the process itself
                assert _comm(child.proc.pid).startswith("python") and _nice(child.proc.pid) == 7
                assert os.getpriority(os.PRIO_PROCESS, 0) != 7  # the worker's side is untouched
            else:
                pythons = [pid for pid in _descendants(child.proc.pid) if _comm(pid).startswith("python")]
                assert len(pythons) == 1 and _nice(pythons[0]) == 7, pythons
                assert _nice(child.proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)  # the worker's side is untouched
        finally:
            runner.retire(child)
        run = RunSpec("action", tmp_path, "github/actions/act.py", 20,
                      context={"connection_id": "c", "provider_config_key": "github", "input": {}})
        outcome = await run_script(run, Handler(), runner=runner)
    finally:
        await runner.close()
    assert outcome.ok, outcome.error
    assert outcome.output["nice"] == 7 and outcome.output["ssl_preloaded"] is False
    assert outcome.output["ssl"].startswith("OpenSSL")


MODELS_PY = """
from pydantic import BaseModel


class Thing(BaseModel):
    a: int
"""

USES_MODELS = """
from models import Thing


async def run_action(nango, inp):
    return Thing(a=inp["a"]).model_dump()
"""


async def test_boots_preload_pydantic_only_while_recent_runs_used_models(tmp_path: Path) -> None:
    """A boot imports pydantic (~130 ms of CPU) only while the runner's recent runs imported models: a worker
    whose scripts use none spends nothing on it, one whose scripts use models gets them preloaded."""
    (tmp_path / "github" / "actions").mkdir(parents=True)
    (tmp_path / "github" / "actions" / "act.py").write_text(NICE_SCRIPT)
    (tmp_path / "github" / "actions" / "uses.py").write_text(USES_MODELS)
    (tmp_path / "models.py").write_text(MODELS_PY)
    context = {"connection_id": "c", "provider_config_key": "github"}
    plain = RunSpec("action", tmp_path, "github/actions/act.py", 20, context={**context, "input": {}})
    models = RunSpec("action", tmp_path, "github/actions/uses.py", 20, context={**context, "input": {"a": 3}})
    runner = await start_runner(Settings(runner_warm_children=0))
    try:
        first = await run_script(plain, Handler(), runner=runner)
        assert first.ok and first.output["models_warm"] is False
        assert not runner.warm_models
        used = await run_script(models, Handler(), runner=runner)
        assert used.ok and used.output == {"a": 3}
        assert runner.warm_models
        after = await run_script(plain, Handler(), runner=runner)
        assert after.ok and after.output["models_warm"] is True  # paid by the boot, not on the run's path
        for _ in range(MODELS_MEMORY):
            runner.note_run(models=False)
        assert not runner.warm_models
        again = await run_script(plain, Handler(), runner=runner)
        # a fork server's template keeps what it imported: a fork costs the same with pydantic or without
        assert again.ok and again.output["models_warm"] is runner.fork_server
    finally:
        await runner.close()


async def test_worker_starts_with_the_full_sandbox_and_refuses_process_without_the_opt_out() -> None:
    runner = await start_runner(Settings(runner_warm_children=0))
    assert runner.sandbox.sandboxed and runner.sandbox.tier == "bwrap"
    await runner.close()
    with pytest.raises(IsolationUnavailableError, match="RUNNER_ISOLATION=process runs scripts without a sandbox"):
        await start_runner(Settings(runner_isolation="process", runner_warm_children=0, encryption_key=SecretStr("")))
    with pytest.raises(IsolationUnavailableError, match=r"'unshare' is not a sandbox tier \(removed"):
        await start_runner(Settings(runner_isolation="unshare", runner_warm_children=0))
    relaxed = await start_runner(Settings(runner_isolation="process", runner_allow_unsandboxed=True,
                                          runner_warm_children=0))
    assert relaxed.sandbox.tier == "process" and not relaxed.sandbox.sandboxed
    await relaxed.close()


async def test_script_without_entry_point_and_syntax_error_are_clear(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("async def nothing(nango):\n    pass\n")
    (tmp_path / "b.py").write_text("def broken(:\n")
    runner = await Runner.create()
    try:
        for module, needle in (("a.py", "has no function run_action()"), ("b.py", "SyntaxError")):
            outcome = await run_script(RunSpec("action", tmp_path, module, 10, context={
                "connection_id": "c", "provider_config_key": "p"}), Handler(), runner=runner)
            assert not outcome.ok
            assert outcome.error["type"] == "ScriptLoadError"
            assert needle in outcome.error["message"] or needle in outcome.error.get("traceback", "")
    finally:
        await runner.close()
