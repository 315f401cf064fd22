"""The worker's sandbox started as Kubernetes starts it: uid 10001, no capability, no privilege.

`setpriv --reuid 10001 --regid 10001 --clear-groups --inh-caps=-all --bounding-set=-all
--no-new-privs` (runAsUser/runAsGroup 10001, capabilities drop ALL, allowPrivilegeEscalation:
false) runs a small driver with a Python that uid can read: a virtualenv made from Debian's
/usr/bin/python3 (the project's own interpreter lives under /root) whose .pth points at this
checkout and at the project venv's site-packages (same CPython 3.11 ABI). The driver does what
`nango worker` does first, `start_runner(Settings())`, then runs a script through the runner: the
script runs fully sandboxed, or the worker refuses to start with the message of issue 16 point 2.
The second test masks /proc the way runc does (issue 17) in a private mount namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_PYTHON = Path("/usr/bin/python3")
UID = 10001
CANARY = "nonroot-canary-5f1c"
SETPRIV = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all", "--no-new-privs"]

DRIVER = '''
import asyncio, json, os, sys
from pathlib import Path

from orchestrator.config.settings import Settings
from orchestrator.runner.host import RunSpec, run_script
from orchestrator.worker import IsolationUnavailableError, start_runner


class Handler:
    logs = []

    async def call(self, method, params):
        return {"repo": "a/b"}

    def log(self, level, message, fields):
        self.logs.append(message)


async def main():
    try:
        runner = await start_runner(Settings(runner_warm_children=0))
    except IsolationUnavailableError as exc:
        print(json.dumps({"refused": str(exc)}))
        return
    try:
        spec = RunSpec("action", Path(sys.argv[1]), "attack.py", 30,
                       context={"connection_id": "c", "provider_config_key": "p"})
        outcome = await run_script(spec, Handler(), runner=runner)
    finally:
        await runner.close()
    print(json.dumps({"sandbox": runner.sandbox.describe(), "ok": outcome.ok, "output": outcome.output,
                      "error": outcome.error, "logs": Handler.logs, "host_uid": os.getuid()}))


asyncio.run(main())
'''

ATTACK = '''
import errno, os, socket, sys


def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__


async def run_action(nango, inp):
    return {"uid": os.getuid(), "env": dict(os.environ), "meta": await nango.get_metadata(),
            "fork": attempt(os.fork), "socket": attempt(socket.socket),
            "exec": attempt(lambda: os.execv(sys.executable, [sys.executable, "-c", "1"])),
            "passwd": read("/etc/passwd"), "environ_1": read("/proc/1/environ"),
            "ppid_environ": read(f"/proc/{os.getppid()}/environ"),
            "self_environ": read("/proc/self/environ"), "proc": _listdir("/proc"),
            "cpus": os.cpu_count(), "fds": _listdir("/proc/self/fd"),
            "aiohttp": _imp("aiohttp"),
            "dev": attempt(lambda: open("/dev/evil", "wb").write(b"x"))}


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__


def _imp(name):
    try:
        __import__(name)
        return "imported"
    except ImportError as exc:
        return type(exc).__name__
'''


@pytest.fixture(scope="module")
def nonroot_python() -> Iterator[tuple[Path, Path]]:
    """(python, folder): a world-readable venv of Debian's Python and a folder with the driver and the bundle."""
    if not DEBIAN_PYTHON.exists():
        pytest.skip("/usr/bin/python3 is absent: no Python that uid 10001 can read")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is absent")
    if os.getuid() != 0:
        pytest.skip("switching to uid 10001 needs root")
    version = subprocess.run([str(DEBIAN_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"/usr/bin/python3 is {version}; the project's compiled packages need {sys.version_info[:2]}")
    folder = Path(tempfile.mkdtemp(prefix="nango-nonroot-"))
    try:
        folder.chmod(0o755)
        venv = folder / "venv"
        subprocess.run([str(DEBIAN_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
        site = next((venv / "lib").glob("python3*/site-packages"))
        # this checkout and the project's packages, both world-readable (the interpreter under /root is not)
        (site / "nango-checkout.pth").write_text(f"{ROOT}\n{sysconfig.get_paths()['purelib']}\n")
        (folder / "driver.py").write_text(DRIVER)
        bundle = folder / "bundle"
        bundle.mkdir()
        (bundle / "attack.py").write_text(textwrap.dedent(ATTACK))
        for path in (folder / "driver.py", bundle, bundle / "attack.py"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        probe = subprocess.run([*SETPRIV, str(venv / "bin" / "python"), "-c", "import orchestrator.worker"],
                               capture_output=True, text=True, timeout=60, cwd="/")
        if probe.returncode != 0:
            pytest.skip(f"uid {UID} cannot import the project from this checkout: {probe.stderr[-300:]}")
        yield venv / "bin" / "python", folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_driver(python: Path, folder: Path, *, prefix: list[str] | None = None,
               inner: list[str] | None = None) -> dict[str, Any]:
    cmd = [*(prefix or []), *SETPRIV, *(inner or []), "env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp",
           f"NANGO_CANARY={CANARY}", f"ENCRYPTION_KEY_CANARY={CANARY}", str(python), str(folder / "driver.py"),
           str(folder / "bundle")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_sandboxed_or_refused(result: dict[str, Any]) -> str:
    if "refused" in result:
        message = result["refused"]
        assert message.startswith("the script sandbox is not available: ")
        assert "RUNNER_ALLOW_UNSANDBOXED" in message
        return "refused"
    assert result["host_uid"] == UID
    assert result["sandbox"]["isolation"] == "bwrap" and result["sandbox"]["sandboxed"], result["sandbox"]
    assert result["ok"], result
    out = result["output"]
    assert out["uid"] == 65534 and out["meta"] == {"repo": "a/b"}
    assert (out["fork"], out["socket"], out["exec"], out["dev"]) == ("EPERM", "EPERM", "EPERM", "EROFS"), out
    assert out["passwd"] == "FileNotFoundError" and out["aiohttp"] == "ModuleNotFoundError", out
    dump = json.dumps(out)
    assert CANARY not in dump and "NANGO_CANARY" not in dump
    assert set(out["env"]) <= {"HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "PWD"}, out["env"]
    return "sandboxed"


def test_the_sandbox_as_kubernetes_runs_it(nonroot_python: tuple[Path, Path]) -> None:
    python, folder = nonroot_python
    result = run_driver(python, folder)
    outcome = assert_sandboxed_or_refused(result)
    # on these machines unprivileged bubblewrap works: the scripts must run fully sandboxed
    if Path("/proc/sys/user/max_user_namespaces").read_text().strip() != "0":
        assert outcome == "sandboxed"
        # an unmasked /proc: the sandbox's own procfs, where only its own processes are listed
        assert result["sandbox"]["proc"] == "private"
        pids = [p for p in result["output"]["proc"] if p.isdigit()]
        assert len(pids) <= 3, pids


# what runc does to a container's /proc (its default maskedPaths and readonlyPaths)
MASK_PROC = ("mount --bind /dev/null /proc/keys && mount --bind /dev/null /proc/timer_list "
             "&& mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys "
             "&& { [ ! -e /proc/sysrq-trigger ] || { mount --bind /proc/sysrq-trigger /proc/sysrq-trigger "
             "&& mount -o remount,bind,ro /proc/sysrq-trigger; }; } && exec \"$@\"")


def test_under_a_masked_proc_as_runc_leaves_it(nonroot_python: tuple[Path, Path]) -> None:
    """Issue 17's reproduction: bubblewrap cannot mount a new /proc there ("Can't mount proc on
    /newroot/proc"); the worker's probe sees it and runs the sandbox without /proc, never the
    container's own: the script runs fully sandboxed and sees no process and no environment."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is absent")
    python, folder = nonroot_python
    result = run_driver(python, folder, prefix=["unshare", "-m", "--propagation", "private", "sh", "-c", MASK_PROC,
                                                "mask-proc"])
    assert assert_sandboxed_or_refused(result) == "sandboxed", result
    assert result["sandbox"]["proc"] == "none", result["sandbox"]
    out = result["output"]
    assert out["proc"] == "FileNotFoundError", out  # no /proc at all, not the worker's
    for key in ("environ_1", "ppid_environ", "self_environ"):
        assert out[key] == "FileNotFoundError", (key, out[key])
    assert out["cpus"] is None or out["cpus"] >= 1


# Loads a Kubernetes/OCI seccomp profile (JSON) the way the container runtime would, then execs the rest.
APPLY_PROFILE = """
import errno, json, os, sys
import pyseccomp as sc

profile = json.load(open(sys.argv[1]))
flt = sc.SyscallFilter(defaction=sc.ERRNO(profile.get("defaultErrnoRet", errno.EPERM)))
for rule in profile["syscalls"]:
    action = sc.ALLOW if rule["action"] == "SCMP_ACT_ALLOW" else sc.ERRNO(rule.get("errnoRet", errno.EPERM))
    for name in rule["names"]:
        try:
            flt.add_rule(action, name)
        except (RuntimeError, OSError, ValueError):
            pass  # not a syscall of this architecture
flt.load()
os.execvp(sys.argv[2], sys.argv[2:])
"""


@pytest.mark.parametrize("masked", [False, True], ids=["proc", "masked-proc"])
def test_the_sandbox_starts_under_the_charts_seccomp_profile(nonroot_python: tuple[Path, Path], masked: bool) -> None:
    """Issue 17: the chart's Localhost seccomp profile (files/worker-sandbox-seccomp.json) in place of
    Unconfined: loaded as the runtime loads it, as uid 10001 without capabilities, the worker's
    sandbox starts and runs a script fully confined (with and without a runc-masked /proc)."""
    if masked and shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is absent")
    python, folder = nonroot_python
    profile = ROOT / "deploy" / "helm" / "nango-orchestrator" / "files" / "worker-sandbox-seccomp.json"
    apply = folder / "apply_profile.py"
    apply.write_text(APPLY_PROFILE)
    apply.chmod(0o644)
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", MASK_PROC, "mask-proc"] if masked else None
    result = run_driver(python, folder, prefix=prefix, inner=[str(python), str(apply), str(profile)])
    assert assert_sandboxed_or_refused(result) == "sandboxed", result
    assert result["sandbox"]["proc"] == ("none" if masked else "private")


def test_without_what_the_profile_adds_the_worker_refuses(nonroot_python: tuple[Path, Path]) -> None:
    """The same profile minus what it adds for bubblewrap (as the runtime default is): the worker refuses to
    start, quoting bubblewrap; so the test above proves the profile, not a filter that never loaded."""
    python, folder = nonroot_python
    profile = json.loads((ROOT / "deploy" / "helm" / "nango-orchestrator" / "files" /
                          "worker-sandbox-seccomp.json").read_text())
    added = {"clone3", "unshare", "setns", "mount", "umount2", "pivot_root"}
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n not in added or rule["action"] != "SCMP_ACT_ALLOW"]
    stripped = folder / "runtime-default-like.json"
    stripped.write_text(json.dumps(profile))
    stripped.chmod(0o644)
    apply = folder / "apply_profile.py"
    apply.write_text(APPLY_PROFILE)
    apply.chmod(0o644)
    result = run_driver(python, folder, inner=[str(python), str(apply), str(stripped)])
    assert "refused" in result and "bubblewrap failed" in result["refused"], result
