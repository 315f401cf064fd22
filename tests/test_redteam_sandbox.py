"""Issue 16, points 2, 3 and 8: hostile sync scripts through the real path, and the start-up refusals.

Each red-team test deploys a copy of the example integrations whose sync script attacks the sandbox
(deploy -> schedule -> worker -> sandboxed child), asserts the safe outcome from the job row and
its logs, that no secret shows up there, and that a normal sync of a fresh environment succeeds
right after. The refusal tests monkeypatch the probes of orchestrator/runner/sandbox.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from orchestrator.config.settings import Settings
from orchestrator.runner import sandbox
from orchestrator.runner.host import Limits, Runner, RunSpec, run_script
from orchestrator.worker import IsolationUnavailableError, sandbox_config, start_runner
from tests.conftest import EXAMPLES, GithubSetup, Stack, setup_github, wait_for_job

REPORT = "REDTEAM-REPORT:"
ROOT = Path(__file__).resolve().parents[1]


def cached_bytecode(folder: str) -> list[str]:
    return [os.path.join(d, f) for d, dirs, files in os.walk(folder)
            for f in files + dirs if f.endswith(".pyc") or f == "__pycache__"]


def attack_folder(tmp_path: Path, body: str) -> Path:
    """The example integrations with `body` as the sync: it raises with a JSON report of what it saw."""
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(textwrap.dedent(body) + textwrap.dedent("""

        async def fetch_data(nango):
            report = attack()
            raise RuntimeError("REDTEAM-REPORT:" + json.dumps(report, sort_keys=True))


        async def on_webhook(nango, payload):
            pass
    """))
    return folder


def report_of(job: dict[str, Any]) -> dict[str, Any]:
    error = job["error"] or ""
    assert REPORT in error, error
    return json.loads(error.split(REPORT, 1)[1].strip().splitlines()[0])


async def job_text(stack: Stack, job_id: int) -> str:
    """Everything a job holds that a tenant could read: error, details, logs, records."""
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
        logs = await conn.fetch("SELECT message FROM script_logs WHERE job_id = $1", job_id)
    return json.dumps({k: str(v) for k, v in dict(row).items()}) + "\n".join(r["message"] for r in logs)


def secrets_of(stack: Stack, gh: GithubSetup) -> list[str]:
    return [stack.settings.encryption_key.get_secret_value(), stack.settings.database_url.get_secret_value(),
            gh.key, "demo-token"]


async def assert_clean_and_a_normal_sync_succeeds(stack: Stack, gh: GithubSetup, job_id: int) -> None:
    text = await job_text(stack, job_id)
    for secret in secrets_of(stack, gh):
        assert secret not in text
    fine = await setup_github(stack, issues=2)
    jobs = await wait_for_job(stack, fine, status="success")
    assert jobs[0]["status"] == "success"


@pytest.fixture
def no_pids_cgroup(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The stack worker's sandbox without its pids cgroup: what is refused is refused by seccomp alone."""
    box = sandbox.detect(sandbox_config(stack.settings))  # the very object the worker's runner holds
    monkeypatch.setattr(box, "pids_cgroup", False)
    yield


async def test_process_creation_and_exec_are_refused_by_seccomp_alone(
        stack: Stack, tmp_path: Path, no_pids_cgroup: None) -> None:
    folder = attack_folder(tmp_path, """
        import ctypes, errno, json, os, subprocess, sys, threading

        SYS = {"fork": 57, "vfork": 58, "clone": 56, "clone3": 435}  # x86_64

        def raw(name, *args):
            libc = ctypes.CDLL(None, use_errno=True)
            ret = libc.syscall(SYS[name], *args)
            if ret == 0:
                os._exit(0)  # a new process exists: never let it run on
            return errno.errorcode.get(ctypes.get_errno(), "?") if ret < 0 else f"created {ret}"

        def attempt(fn):
            try:
                fn()
                return "allowed"
            except OSError as exc:
                return errno.errorcode.get(exc.errno, str(exc.errno))

        def attack():
            out = {"fork": attempt(os.fork), "subprocess": attempt(lambda: subprocess.run(["/bin/true"])),
                   "execv": attempt(lambda: os.execv(sys.executable, [sys.executable, "-c", "print(1)"])),
                   "raw_fork": raw("fork"), "raw_vfork": raw("vfork"),
                   "raw_clone": raw("clone", 17, 0, 0, 0, 0),  # SIGCHLD: a new process
                   "raw_clone3": raw("clone3", 0, 0)}
            ran = []
            t = threading.Thread(target=lambda: ran.append(1))
            t.start()
            t.join()
            out["thread"] = "ran" if ran else "failed"
            return out
    """)
    gh = await setup_github(stack, issues=1, folder=folder)
    job = (await wait_for_job(stack, gh, status="failed"))[0]
    seen = report_of(job)
    assert seen == {"fork": "EPERM", "subprocess": "EPERM", "execv": "EPERM", "raw_fork": "EPERM",
                    "raw_vfork": "EPERM", "raw_clone": "EPERM", "raw_clone3": "ENOSYS", "thread": "ran"}, seen
    await assert_clean_and_a_normal_sync_succeeds(stack, gh, job["id"])


async def test_dev_shm_tmp_and_the_bundle_cache_are_capped_or_out_of_reach(stack: Stack, tmp_path: Path) -> None:
    cache = str(stack.settings.bundle_cache_dir.resolve())
    folder = attack_folder(tmp_path, f"""
        import errno, json, os, sys

        def fill(folder, limit_mib):
            written = 0
            try:
                for i in range(limit_mib):
                    with open(os.path.join(folder, f"fill-{{i}}"), "wb") as f:
                        f.write(b"x" * (1024 * 1024))
                    written += 1
                return f"wrote {{written}} MiB"
            except OSError as exc:
                return f"{{errno.errorcode.get(exc.errno)}} after {{written}} MiB"

        def attempt(fn):
            try:
                fn()
                return "allowed"
            except OSError as exc:
                return errno.errorcode.get(exc.errno, str(exc.errno))

        def attack():
            out = {{"dev": attempt(lambda: open("/dev/evil", "wb").write(b"x" * 1024 * 1024)),
                    "dev_null": attempt(lambda: open("/dev/null", "wb").write(b"x")),
                    "shm": fill("/dev/shm", 64), "tmp": fill("/tmp", 256),
                    "cache_visible": os.path.exists({cache!r}),
                    "cache_write": attempt(lambda: open(os.path.join({cache!r}, "evil.py"), "w").write("x")),
                    "dont_write_bytecode": sys.dont_write_bytecode,
                    "pycache": sorted(str(p) for p in __import__("pathlib").Path(os.getcwd()).rglob("*.pyc"))}}
            for folder in ("/dev/shm", "/tmp"):
                for name in os.listdir(folder):
                    if name.startswith("fill-"):
                        os.remove(os.path.join(folder, name))
            return out
    """)
    gh = await setup_github(stack, issues=1, folder=folder)
    job = (await wait_for_job(stack, gh, status="failed"))[0]
    seen = report_of(job)
    assert seen["dev"] == "EROFS" and seen["dev_null"] == "allowed", seen
    shm_err, shm_mib = seen["shm"].split(" after ")
    tmp_err, tmp_mib = seen["tmp"].split(" after ")
    assert shm_err == "ENOSPC" and int(shm_mib.split()[0]) <= stack.settings.runner_shm_size_mb, seen
    assert tmp_err == "ENOSPC" and int(tmp_mib.split()[0]) <= stack.settings.runner_tmp_size_mb, seen
    assert seen["cache_visible"] is False and seen["cache_write"] == "ENOENT", seen
    assert seen["dont_write_bytecode"] is True and seen["pycache"] == [], seen
    # and the worker's shared cache holds no bytecode either
    assert not cached_bytecode(cache)
    await assert_clean_and_a_normal_sync_succeeds(stack, gh, job["id"])


async def test_the_worker_dependencies_cannot_be_imported_even_bypassing_the_guard(
        stack: Stack, tmp_path: Path) -> None:
    # every folder where the worker's own packages live, as a script would guess them
    guesses = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                      str(Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
                          / "site-packages"), "/usr/lib/python3/dist-packages",
                      str(ROOT)})
    folder = attack_folder(tmp_path, f"""
        import importlib, json, sys

        def attempt(fn):
            try:
                fn()
                return "imported"
            except ImportError as exc:
                return type(exc).__name__

        def attack():
            out = {{"aiohttp": attempt(lambda: __import__("aiohttp")),
                    "asyncpg": attempt(lambda: importlib.import_module("asyncpg"))}}
            sys.path.extend({guesses!r})
            for name in ("aiohttp", "asyncpg", "requests", "pip", "orchestrator.config.settings",
                         "orchestrator.runs.script_host"):
                out["path+" + name] = attempt(lambda: importlib.import_module(name))
            return out
    """)
    gh = await setup_github(stack, issues=1, folder=folder)
    job = (await wait_for_job(stack, gh, status="failed"))[0]
    seen = report_of(job)
    assert set(seen.values()) == {"ModuleNotFoundError"}, seen
    await assert_clean_and_a_normal_sync_succeeds(stack, gh, job["id"])


async def test_a_segfault_is_reported_as_a_signal_with_the_memory_hint(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(
        "import ctypes\n\nasync def fetch_data(nango):\n    ctypes.string_at(0)\n\n"
        "async def on_webhook(nango, payload):\n    pass\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    job = (await wait_for_job(stack, gh, status="failed"))[0]
    error = job["error"]
    assert "killed by signal SIGSEGV (invalid memory access)" in error, error
    assert f"memory limit of {stack.settings.runner_memory_mb} MiB (RUNNER_MEMORY_MB)" in error, error
    text = await job_text(stack, job["id"])
    assert "Segmentation fault" in text and "fetch_data" in text  # faulthandler's traceback in the logs
    await assert_clean_and_a_normal_sync_succeeds(stack, gh, job["id"])


# --- the file-size limit, directly through the runner -----------------------------------------------------------

class Quiet:
    async def call(self, method: str, params: dict[str, Any]) -> Any:
        raise AssertionError(method)

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        pass


async def test_a_file_beyond_the_file_size_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(textwrap.dedent("""
        import errno
        async def run_action(nango, inp):
            try:
                with open("/tmp/big", "wb") as f:
                    f.write(b"x" * (3 * 1024 * 1024))
            except OSError as exc:
                return errno.errorcode[exc.errno]
            return "written"
    """))
    runner = await Runner.create()
    try:
        outcome = await run_script(RunSpec("action", tmp_path, "a.py", 20, limits=Limits(file_size_mb=2), context={
            "connection_id": "c", "provider_config_key": "p"}), Quiet(), runner=runner)
    finally:
        await runner.close()
    assert outcome.ok and outcome.output == "EFBIG", outcome


# --- the worker refuses to start without the full sandbox -------------------------------------------------------

@pytest.fixture
def fresh_detect() -> Iterator[None]:
    sandbox.detect.cache_clear()
    yield
    sandbox.detect.cache_clear()


def settings(**kw: Any) -> Settings:
    return Settings(runner_warm_children=0, encryption_key=SecretStr(""), **kw)


async def test_refusal_without_bubblewrap_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, fresh_detect: None) -> None:
    real = shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real(name))
    with pytest.raises(IsolationUnavailableError) as err:
        await start_runner(settings())
    assert "bubblewrap is not installed: apt-get install bubblewrap" in str(err.value)
    assert "RUNNER_ALLOW_UNSANDBOXED" in str(err.value)
    # pinning bwrap never downgrades, even with the opt-out
    with pytest.raises(IsolationUnavailableError, match="bubblewrap is not installed"):
        await start_runner(settings(runner_isolation="bwrap", runner_allow_unsandboxed=True))
    # the explicit opt-out (local development): runs as a plain process, loudly
    runner = await start_runner(settings(runner_allow_unsandboxed=True))
    assert runner.sandbox.tier == "process" and not runner.sandbox.sandboxed
    await runner.close()


async def test_refusal_without_libseccomp_or_prlimit(monkeypatch: pytest.MonkeyPatch, fresh_detect: None) -> None:
    class NoLibseccomp:
        def find_spec(self, name: str, *args: Any) -> None:
            if name == "pyseccomp":
                raise RuntimeError("Unable to find libseccomp")

    monkeypatch.delitem(sys.modules, "pyseccomp", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoLibseccomp(), *sys.meta_path])
    assert "libseccomp2 is missing" in (sandbox.seccomp_error() or "")
    assert "apt-get install libseccomp2" in (sandbox.seccomp_error() or "")
    monkeypatch.setattr(sandbox, "seccomp_error", lambda: "libseccomp2 is missing: apt-get install libseccomp2")
    real = shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None if name == "prlimit" else real(name))
    with pytest.raises(IsolationUnavailableError) as err:
        await start_runner(settings())
    text = str(err.value)
    assert "libseccomp2 is missing: apt-get install libseccomp2" in text
    assert "prlimit is not installed" in text and "apt-get install util-linux" in text


async def test_refusal_when_bubblewrap_fails_quotes_it_and_names_the_sysctl(
        monkeypatch: pytest.MonkeyPatch, fresh_detect: None) -> None:
    stderr = b"bwrap: No permissions to create new namespace, likely because the kernel does not allow " \
             b"non-privileged user namespaces."

    def failing(cmd: list[str], **kw: Any) -> Any:
        return sandbox.subprocess.CompletedProcess(cmd, 1, b"", stderr)

    monkeypatch.setattr(sandbox.subprocess, "run", failing)
    monkeypatch.setattr(sandbox, "_read_sysctl",
                        lambda name: "0" if name == "kernel.unprivileged_userns_clone" else None)
    with pytest.raises(IsolationUnavailableError) as err:
        await start_runner(settings())
    text = str(err.value)
    assert stderr.decode() in text
    assert "sysctl -w kernel.unprivileged_userns_clone=1" in text
    monkeypatch.setattr(sandbox, "_read_sysctl", lambda name: "0" if name == "user.max_user_namespaces" else None)
    sandbox.detect.cache_clear()
    with pytest.raises(IsolationUnavailableError, match=r"sysctl -w user\.max_user_namespaces=15000"):
        await start_runner(settings())


async def test_refusal_when_the_sandbox_starts_but_does_not_confine(
        monkeypatch: pytest.MonkeyPatch, fresh_detect: None) -> None:
    def unconfined(cmd: list[str], **kw: Any) -> Any:
        return sandbox.subprocess.CompletedProcess(cmd, 0, b"unconfined: fork() is not refused\n", b"")

    monkeypatch.setattr(sandbox.subprocess, "run", unconfined)
    with pytest.raises(IsolationUnavailableError, match=r"starts but does not confine: fork\(\) is not refused"):
        await start_runner(settings())


def test_the_probe_itself_passes_here_and_checks_what_it_claims(
        monkeypatch: pytest.MonkeyPatch, fresh_detect: None) -> None:
    box = sandbox.Sandbox("bwrap", sandbox.seccomp_bpf(), False)
    assert sandbox.probe_bwrap(box) is None
    # a child filter without execve/execveat: the probe catches it
    original = sandbox.seccomp_bpf
    monkeypatch.setattr(sandbox, "seccomp_bpf", lambda deny_exec=False: original(False))
    assert "execve() is not refused" in (sandbox.probe_bwrap(box) or "")


def test_the_probe_passes_without_proc_and_the_command_never_binds_the_hosts(fresh_detect: None) -> None:
    """Issue 17: RUNNER_SANDBOX_PROC=none (what auto falls back to under a masked /proc) passes the
    same self-check; neither mode binds the container's /proc."""
    limits = sandbox.SandboxLimits(64 * sandbox.MIB, 1, 16, sandbox.MIB)
    for proc in ("private", "none"):
        box = sandbox.Sandbox("bwrap", sandbox.seccomp_bpf(), False, sandbox.SandboxConfig(proc=proc), proc)
        assert sandbox.probe_bwrap(box) is None, proc
        cmd = box.command(3, limits, seccomp_fd=None, cgroup=None)
        binds = [cmd[i + 1] for i, arg in enumerate(cmd) if arg in ("--bind", "--ro-bind", "--dev-bind")]
        assert not [b for b in binds if b == "/proc" or b.startswith("/proc/")], binds
        assert ("--proc" in cmd) == (proc == "private")
        assert box.describe()["proc"] == proc


def test_auto_falls_back_to_no_proc_only_when_a_private_one_fails(
        monkeypatch: pytest.MonkeyPatch, fresh_detect: None) -> None:
    tried: list[str] = []

    def probe(box: sandbox.Sandbox) -> str | None:
        tried.append(box.proc)
        return "bubblewrap failed (exit 1): bwrap: Can't mount proc on /newroot/proc" if box.proc == "private" else None

    monkeypatch.setattr(sandbox, "probe_bwrap", probe)
    assert sandbox.detect(sandbox.SandboxConfig()).proc == "none" and tried == ["private", "none"]
    tried.clear()
    sandbox.detect.cache_clear()
    with pytest.raises(sandbox.SandboxUnavailableError, match="Can't mount proc"):
        sandbox.detect(sandbox.SandboxConfig(proc="private"))  # pinned: never falls back
    assert tried == ["private"]
    with pytest.raises(sandbox.SandboxUnavailableError, match="RUNNER_SANDBOX_PROC='host' is not one of"):
        sandbox.detect(sandbox.SandboxConfig(proc="host"))
    assert sandbox_config(settings(runner_sandbox_proc=" None ")).proc == "none"


def test_stale_cgroup_sweep_spares_live_and_foreign_workers(tmp_path: Path) -> None:
    ns = sandbox._pid_namespace()
    mine = tmp_path / sandbox.owner_name(os.getpid())
    dead = tmp_path / f"w999999999-12345-{ns}"
    reused = tmp_path / f"w1-999999999999-{ns}"  # pid 1 exists but started at another time: its worker is gone
    foreign = tmp_path / "w42-777-1"  # another pid namespace: cannot be checked, never swept
    legacy = tmp_path / "0123456789abcdef"  # the old flat layout: another worker version may own it
    for path in (mine / "run1", dead / "run1", reused, foreign / "run", legacy):
        path.mkdir(parents=True)
    removed = sandbox.sweep_stale_cgroups(tmp_path)
    assert sorted(removed) == sorted([dead, reused])
    assert mine.exists() and foreign.exists() and legacy.exists()
