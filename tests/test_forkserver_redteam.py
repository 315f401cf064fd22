"""The fork server (RUNNER_FORK_SERVER) against hostile scripts, on this machine's real sandbox.

Every run here is forked from the runner's template (the fixture checks the runner did not fall back to a
sandbox per run). A forked run must be as confined as a per-run child: it cannot see or touch another run
forked from the same template, cannot create processes, namespaces, mounts or sockets, holds no capability
and no descriptor but its RPC socket and stdio, and its limits and crashes read as a child's do. The same
attacks against per-run children are in tests/test_sandbox_redteam.py and tests/test_redteam_sandbox.py;
`RUNNER_FORK_SERVER=true pytest tests/test_sandbox_redteam.py ...` runs those with the fork server too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.runner.host import Limits, Runner, RunOutcome, RunSpec, run_script
from orchestrator.runner.sandbox import SandboxConfig

LIMITS = Limits(memory_mb=512, cpu_seconds=2, file_size_mb=1)


class Handler:
    """The host side of a run: `get_metadata` answers once `release` is set (a run holds still until then)."""

    def __init__(self, release: asyncio.Event | None = None) -> None:
        self.release = release
        self.logs: list[str] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        if self.release is not None:
            await self.release.wait()
        return {}

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        self.logs.append(message)


@pytest.fixture(scope="module")
async def runner() -> AsyncIterator[Runner]:
    runner = await Runner.create(SandboxConfig(fork_server=True), warm=2)
    try:
        yield runner
    finally:
        await runner.close()


async def run(runner: Runner, tmp_path: Path, body: str, *, handler: Handler | None = None,
              timeout_s: float = 10, limits: Limits = LIMITS, input: Any = None) -> RunOutcome:
    folder = tmp_path / f"b{os.urandom(4).hex()}"
    folder.mkdir()
    (folder / "script.py").write_text(textwrap.dedent(body))
    spec = RunSpec("action", folder, "script.py", timeout_s, limits=limits,
                   context={"connection_id": "c", "provider_config_key": "p", "input": input})
    outcome = await run_script(spec, handler or Handler(), runner=runner)
    assert runner.fork_server, "the runner fell back to a sandbox per run: these tests would test nothing"
    return outcome


def error_text(outcome: RunOutcome) -> str:
    assert not outcome.ok, outcome.output
    error = outcome.error or {}
    return f"{error.get('type')}: {error.get('message')}"


async def test_two_runs_do_not_share_tmp_shm_processes_or_signals(runner: Runner, tmp_path: Path) -> None:
    release = asyncio.Event()
    first = asyncio.create_task(run(runner, tmp_path, """
        import os
        async def run_action(nango, inp):
            open("/tmp/secret-a", "w").write("a")
            open("/dev/shm/secret-a", "w").write("a")
            await nango.get_metadata()  # holds still until the second run has looked
            return {"pid": os.getpid(), "tmp": sorted(os.listdir("/tmp"))}
    """, handler=Handler(release)))
    await asyncio.sleep(0.5)
    second = await run(runner, tmp_path, """
        import os, signal, ctypes
        async def run_action(nango, inp):
            signalled = []
            for pid in range(2, 400):
                try:
                    os.kill(pid, signal.SIGKILL)
                    signalled.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            libc = ctypes.CDLL(None, use_errno=True)
            return {"pid": os.getpid(), "tmp": sorted(os.listdir("/tmp")), "shm": sorted(os.listdir("/dev/shm")),
                    "proc": sorted(os.listdir("/proc")), "signalled": signalled,
                    "ptrace": libc.ptrace(16, 1, 0, 0)}
    """)
    release.set()
    first_outcome = await first
    assert second.ok and first_outcome.ok, (second.error, first_outcome.error)
    seen = second.output
    assert "secret-a" not in seen["tmp"] and "secret-a" not in seen["shm"], seen
    assert seen["pid"] == 1 and first_outcome.output["pid"] == 1  # each run is pid 1 of its own namespace
    assert seen["signalled"] == [] and seen["ptrace"] == -1
    assert [p for p in seen["proc"] if p.isdigit() and p != "1"] == []
    assert "secret-a" in first_outcome.output["tmp"]  # the first run's own file was there all along


async def test_a_run_cannot_fork_exec_unshare_mount_or_open_a_socket(runner: Runner, tmp_path: Path) -> None:
    outcome = await run(runner, tmp_path, """
        import ctypes, os, socket
        async def run_action(nango, inp):
            libc = ctypes.CDLL(None, use_errno=True)
            allowed = []
            try:
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                allowed.append("fork")
            except PermissionError:
                pass
            try:
                os.execv("/usr/bin/true", ["true"])
            except PermissionError:
                pass
            else:
                allowed.append("exec")
            for name, flags in (("user", 0x10000000), ("mount", 0x00020000), ("net", 0x40000000),
                                ("pid", 0x20000000), ("exact template flags", 0x10000000 | 0x00020000 | 0x20000000
                                                       | 0x08000000 | 0x40000000)):
                if libc.unshare(flags) == 0:
                    allowed.append("unshare " + name)
            for target in (b"/tmp", b"/proc"):
                if libc.mount(b"tmpfs", target, b"tmpfs", 0, None) == 0:
                    allowed.append("mount " + target.decode())
            if libc.syscall(56, 0x00020000 | 17, 0, 0, 0, 0) >= 0:  # raw clone with a new mount namespace
                allowed.append("clone")
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
                allowed.append("socket")
            except PermissionError:
                pass
            return allowed
    """)
    assert outcome.ok, outcome.error
    assert outcome.output == []


async def test_seccomp_is_loaded_and_no_capability_or_descriptor_is_left(runner: Runner, tmp_path: Path) -> None:
    outcome = await run(runner, tmp_path, """
        import ctypes, os, socket, stat
        async def run_action(nango, inp):
            libc = ctypes.CDLL(None, use_errno=True)
            header = (ctypes.c_uint32 * 2)(0x20080522, 0)
            data = (ctypes.c_uint32 * 6)()
            libc.capget(header, data)
            descriptors = {}
            for fd in range(4096):
                try:
                    mode = os.fstat(fd).st_mode
                except OSError:
                    continue
                kind = "socket" if stat.S_ISSOCK(mode) else "pipe" if stat.S_ISFIFO(mode) else "other"
                if kind == "socket":
                    sock = socket.socket(fileno=os.dup(fd))
                    kind = f"socket type {int(sock.type)}"
                    sock.close()
                descriptors[fd] = kind
            status = ""
            try:
                status = open("/proc/self/status").read()
            except FileNotFoundError:
                pass
            return {"seccomp": libc.prctl(21, 0, 0, 0, 0), "caps": list(data), "descriptors": descriptors,
                    "status": status, "dumpable": libc.prctl(3, 0, 0, 0, 0), "uid": os.getuid()}
    """)
    assert outcome.ok, outcome.error
    out = outcome.output
    assert out["seccomp"] == 2 and out["caps"] == [0] * 6 and out["dumpable"] == 0 and out["uid"] == 65534
    if out["status"]:  # a fresh procfs where the kernel allows one; otherwise /proc is empty
        assert "Seccomp:\t2" in out["status"] and "CapEff:\t0000000000000000" in out["status"]
    descriptors = {int(fd): kind for fd, kind in out["descriptors"].items()}
    assert descriptors[1] == descriptors[2] == "pipe" and descriptors[3] == "socket type 1"
    # beyond stdio and the RPC socket only what the run's own event loop opened: its epoll and self-pipe (a
    # stream socketpair); the template's control socket (a SOCK_SEQPACKET) never reaches a run
    extra = {fd: kind for fd, kind in descriptors.items() if fd > 3}
    assert "socket type 5" not in descriptors.values() and "pipe" not in extra.values(), descriptors


async def test_the_template_is_out_of_reach(runner: Runner, tmp_path: Path) -> None:
    template = next(iter(runner._templates.values()))
    outcome = await run(runner, tmp_path, """
        import os
        async def run_action(nango, inp):
            reached = []
            for pid in (1, 2, 3, inp["template"]):
                try:
                    with open(f"/proc/{pid}/mem", "rb") as mem:
                        reached.append(pid)
                except OSError:
                    pass
            return reached
    """, input={"template": template.proc.pid})
    assert outcome.ok, outcome.error
    assert outcome.output == []


async def test_limits_hold_as_for_a_child(runner: Runner, tmp_path: Path) -> None:
    memory = await run(runner, tmp_path, """
        async def run_action(nango, inp):
            return len(bytearray(2 * 1024 ** 3))
    """)
    assert "MemoryError" in error_text(memory)
    cpu = await run(runner, tmp_path, """
        async def run_action(nango, inp):
            while True:
                pass
    """, timeout_s=15)
    assert "CPU time limit" in error_text(cpu) and cpu.duration_s < 10
    size = await run(runner, tmp_path, """
        async def run_action(nango, inp):
            with open("/tmp/big", "wb") as out:
                out.write(b"x" * (2 * 1024 * 1024))
    """)
    assert "File too large" in error_text(size) or "SIGXFSZ" in error_text(size)
    tmp = await run(runner, tmp_path, """
        async def run_action(nango, inp):
            for n in range(100):
                with open(f"/tmp/chunk{n}", "wb") as out:
                    out.write(b"x" * (1024 * 1023))
    """, limits=Limits(memory_mb=512, cpu_seconds=2, file_size_mb=1))
    assert "No space left on device" in error_text(tmp)  # the run's own /tmp has RUNNER_TMP_SIZE_MB


async def test_a_crash_is_reported_with_its_signal(runner: Runner, tmp_path: Path) -> None:
    outcome = await run(runner, tmp_path, """
        import ctypes
        async def run_action(nango, inp):
            ctypes.string_at(0)
    """)
    assert "SIGSEGV" in error_text(outcome)


async def test_a_timeout_kills_the_run(runner: Runner, tmp_path: Path) -> None:
    outcome = await run(runner, tmp_path, """
        import time
        async def run_action(nango, inp):
            time.sleep(60)
    """, timeout_s=1.5)
    assert "wall-clock limit of 1.5 s" in error_text(outcome) and outcome.duration_s < 5


async def test_a_killed_template_fails_its_runs_and_is_restarted(runner: Runner, tmp_path: Path) -> None:
    release = asyncio.Event()
    in_flight = asyncio.create_task(run(runner, tmp_path, """
        async def run_action(nango, inp):
            await nango.get_metadata()
    """, handler=Handler(release)))
    await asyncio.sleep(0.5)
    template = runner._templates[LIMITS]
    os.killpg(template.proc.pid, signal.SIGKILL)
    killed = await in_flight
    assert "ScriptCrashed" in error_text(killed) or "killed" in error_text(killed)
    release.set()
    for _ in range(3):  # the pool's children died with their template: each is replaced, never handed out dead
        after = await run(runner, tmp_path, """
            async def run_action(nango, inp):
                return "fine"
        """)
        assert after.ok and after.output == "fine", after.error
    assert runner._templates[LIMITS] is not template and runner._templates[LIMITS].alive()


async def test_a_template_is_recycled_after_its_share_of_runs_without_failing_any(
        runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs share their template's memory layout and hash seed: after RECYCLE_AFTER_FORKS runs a new template
    serves new runs, and the old one ends only once the runs it forked have ended."""
    from orchestrator.runner import host as host_module

    first = runner._templates[LIMITS]
    monkeypatch.setattr(host_module, "RECYCLE_AFTER_FORKS", first.forks + 3)
    release = asyncio.Event()
    held = asyncio.create_task(run(runner, tmp_path, """
        async def run_action(nango, inp):
            await nango.get_metadata()
            return "held to the end"
    """, handler=Handler(release)))
    for _ in range(6):
        done = await run(runner, tmp_path, """
            async def run_action(nango, inp):
                return "fine"
        """)
        assert done.ok and done.output == "fine", done.error
    assert runner._templates[LIMITS] is not first and runner._templates[LIMITS].alive()
    release.set()
    outcome = await held   # forked by the first template, which waited for it before it stopped
    assert outcome.ok and outcome.output == "held to the end", outcome.error
    await asyncio.sleep(0.5)
    assert not first.alive()


def test_the_template_filter_allows_only_what_forking_a_run_needs() -> None:
    """bwrap's filter for the template: fork, mount and exactly a run's unshare; socket, ptrace, setns, other
    unshares and namespaces by clone stay denied (each run stacks the full child filter on top)."""
    import ctypes
    import json

    from orchestrator.runner import sandbox, seccomp_child

    bpf = sandbox.seccomp_bpf(template=True)
    assert bpf is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read)
            seccomp_child.load(bpf)
            libc = ctypes.CDLL(None, use_errno=True)
            allowed = {
                "socket": libc.socket(2, 1, 0) >= 0,
                "ptrace": libc.ptrace(16, 1, 0, 0) == 0,
                "setns": libc.setns(0, 0) == 0 or ctypes.get_errno() != 1,
                "unshare user only": libc.unshare(0x10000000) == 0,
                "clone newnet": libc.syscall(56, 0x40000000 | 17, 0, 0, 0, 0) >= 0,
            }
            fork = os.fork()
            if fork == 0:
                os._exit(0)
            os.waitpid(fork, 0)
            allowed["fork"] = True
            allowed["unshare a run's namespaces"] = libc.unshare(sandbox.TEMPLATE_UNSHARE) == 0
            os.write(write, json.dumps(allowed).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        allowed = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert allowed == {"socket": False, "ptrace": False, "setns": False, "unshare user only": False,
                       "clone newnet": False, "fork": True, "unshare a run's namespaces": True}


async def test_a_template_that_cannot_fork_means_a_sandbox_per_run(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: a template whose runs cannot be made (here its bwrap filter refuses fork) never runs a
    script; the runner says why and starts a sandbox per run, and the script still runs."""
    from orchestrator.runner import forkserver, sandbox

    monkeypatch.setattr(forkserver, "seccomp_bpf", lambda template=False: sandbox.seccomp_bpf())
    runner = await Runner.create(SandboxConfig(fork_server=True))
    try:
        folder = tmp_path / "b"
        folder.mkdir()
        (folder / "script.py").write_text("import os\nasync def run_action(nango, inp):\n    return os.getpid()\n")
        spec = RunSpec("action", folder, "script.py", 20, context={"connection_id": "c", "provider_config_key": "p"})
        outcome = await run_script(spec, Handler(), runner=runner)
    finally:
        await runner.close()
    assert outcome.ok, outcome.error
    assert not runner.fork_server and outcome.output == 2  # bwrap's pid 1, the child pid 2: a sandbox per run
