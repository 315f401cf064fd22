"""How a script's child process is confined: the isolation tier, its launch command, its limits.

Tiers, best first (`detect()` probes once per process and never claims a tier that does not work):
- `bwrap`: bubblewrap with every namespace unshared (no network but `lo`, own pid/ipc/uts/user
  namespace), an empty environment, a read-only root made only of the shared libraries, the
  Python prefix, the SDK files and the few packages generated models need (pydantic, orjson); a
  private size-capped `/tmp`; uid 65534 and no capabilities inside; a seccomp filter loaded by
  bwrap itself before Python starts. The bundle is not mounted: the host sends its files in the
  init frame and the child writes them under its private `/tmp` (so warm children work).
- `unshare`: util-linux `unshare` (network, pid, ipc, uts, mount namespaces); no private
  filesystem view; seccomp loaded by the child itself before user code runs.
- `process`: a plain child process with a clean environment and rlimits; seccomp loaded by the
  child. Logged as a warning at worker start.
Every tier: rlimits set by `prlimit` (an exec wrapper, never `preexec_fn`), and, where the pids
cgroup v1 controller is writable, a per-run pids cgroup (RLIMIT_NPROC does not hold root).
The seccomp denylist makes fork/vfork/new-process clone, every socket() and non-Unix
socketpair, ptrace, mount, namespaces, kexec, bpf, perf, keyrings and friends fail with EPERM.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from orchestrator.sdk import contract

log = structlog.get_logger(__name__)

Tier = str  # "bwrap" | "unshare" | "process"
NAMESPACE_TIERS = ("bwrap", "unshare")
SANDBOX_APP = "/app"
SANDBOX_SITE = "/app/site"
SANDBOX_UID = 65534
TMP_SIZE = "64M"
PIDS_MAX = 32
CGROUP_V1_PIDS = Path("/sys/fs/cgroup/pids")
CGROUP_PARENT = "nango-runner"
# packages the child may need: what generated models.py may import (pydantic), orjson to speed up the wire
CHILD_PACKAGES = (*sorted(contract.MODELS_MAY_IMPORT), "orjson")
CHILD_FILES = ("orchestrator/__init__.py", "orchestrator/runner/__init__.py", "orchestrator/runner/child.py",
               "orchestrator/runner/seccomp_child.py")
CHILD_DIRS = ("orchestrator/sdk",)
PROBE = "import sys; sys.path[:0] = sys.argv[2:]; import orchestrator.sdk; print('ok')"
BOOT = ("import sys; sys.path[:0] = sys.argv[2:]; from orchestrator.runner.child import entry; "
        "entry(int(sys.argv[1]))")

CLONE_THREAD = 0x00010000
# NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
CLONE_NAMESPACE_BITS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
                        0x00000080)
DENIED_SYSCALLS = (
    "ptrace", "mount", "umount2", "unshare", "setns", "kexec_load", "kexec_file_load", "bpf", "perf_event_open",
    "keyctl", "add_key", "request_key", "personality", "pivot_root", "chroot", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "userfaultfd", "process_vm_readv",
    "process_vm_writev", "open_by_handle_at", "name_to_handle_at", "quotactl", "syslog", "fanotify_init",
    "move_mount", "open_tree", "fsopen", "fsmount", "fspick", "mount_setattr", "iopl", "ioperm", "fork", "vfork",
    "socket", "lookup_dcookie", "io_uring_setup", "settimeofday", "clock_settime", "adjtimex",
)


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int
    cpu_seconds: int
    open_files: int
    file_size_bytes: int
    processes: int = PIDS_MAX


@functools.cache
def seccomp_bpf() -> bytes | None:
    """The denylist as a raw BPF program (built once, < 1 ms), or None without libseccomp."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError):
        return None
    deny = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in DENIED_SYSCALLS:
        with contextlib.suppress(RuntimeError, OSError, ValueError):  # syscall unknown on this arch
            flt.add_rule(deny, name)
    import socket as _socket

    flt.add_rule(deny, "socketpair", sc.Arg(0, sc.NE, _socket.AF_UNIX))
    # clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc fall back to clone
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    # clone: threads only (CLONE_THREAD set) and no new namespace
    flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    for bit in CLONE_NAMESPACE_BITS:
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    r, w = os.pipe()
    try:
        with os.fdopen(w, "wb") as out:
            flt.export_bpf(out)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
    return b"".join(chunks)


def _python_paths() -> tuple[Path, list[Path]]:
    """The interpreter prefix and the folders of the packages the child imports."""
    prefix = Path(sys.base_prefix)
    sites: list[Path] = []
    for name in CHILD_PACKAGES:
        spec_dir = _package_path(name)
        if spec_dir is not None:
            sites.append(spec_dir)
    return prefix, sites


def _package_path(name: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def source_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


class PidsCgroup:
    """A per-child v1 pids cgroup: fork bombs stop at `processes`, and kill() reaches every process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, processes: int) -> PidsCgroup | None:
        if not pids_cgroup_available():
            return None
        path = CGROUP_V1_PIDS / CGROUP_PARENT / uuid.uuid4().hex[:16]
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(processes))
        except OSError:
            return None
        return cls(path)

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def kill(self) -> None:
        try:
            pids = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> bool:
        try:
            self.path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            return False


@functools.cache
def pids_cgroup_available() -> bool:
    parent = CGROUP_V1_PIDS / CGROUP_PARENT
    if not (CGROUP_V1_PIDS / "cgroup.procs").exists():
        return False
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / ("probe-" + uuid.uuid4().hex[:8])
        probe.mkdir()
        (probe / "pids.max").write_text("4")
        probe.rmdir()
    except OSError:
        return False
    # sweep cgroups left by a previous worker that died before cleaning up
    for stale in parent.iterdir():
        if stale.is_dir():
            with contextlib.suppress(OSError):
                stale.rmdir()
    return True


@dataclass
class Sandbox:
    """Builds the launch command of a child for the tier that works here."""

    tier: Tier
    bpf: bytes | None = field(repr=False)
    pids_cgroup: bool

    @property
    def namespaces(self) -> bool:
        return self.tier in NAMESPACE_TIERS

    @property
    def private_fs(self) -> bool:
        return self.tier == "bwrap"

    def describe(self) -> dict[str, object]:
        return {"isolation": self.tier, "namespaces": self.namespaces, "private_fs": self.private_fs,
                "seccomp": ("bwrap --seccomp" if self.tier == "bwrap" else "loaded by child") if self.bpf
                else "unavailable", "pids_cgroup": self.pids_cgroup}

    def command(self, fd: int, limits: SandboxLimits, *, seccomp_fd: int | None,
                cgroup: PidsCgroup | None) -> list[str]:
        """sh (joins the cgroup) -> prlimit (rlimits) -> [bwrap | unshare] -> python child."""
        prefix, sites = _python_paths()
        python = str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
        if not os.path.exists(python):
            python = os.path.realpath(sys.executable)
        cmd: list[str] = []
        if cgroup is not None:
            cmd += ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', cgroup.procs_file]
        prlimit = shutil.which("prlimit")
        if prlimit:
            cmd += [prlimit, f"--as={limits.memory_bytes}", f"--nofile={limits.open_files}",
                    f"--fsize={limits.file_size_bytes}", "--core=0"]
            if limits.cpu_seconds:
                # soft limit sends SIGXCPU (a clear "CPU limit" exit); the hard one a second later SIGKILLs
                cmd.append(f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}")
            cmd.append("--")
        if self.tier == "bwrap":
            cmd += self._bwrap_args(prefix, sites, seccomp_fd)
            site_dir = SANDBOX_SITE
            paths = [SANDBOX_APP, site_dir]
        else:
            if self.tier == "unshare":
                cmd += ["unshare", "--net", "--ipc", "--uts", "--pid", "--fork", "--kill-child", "--mount",
                        "--propagation", "private", "--"]
            paths = [str(source_root()), *sorted({str(p.parent) for p in sites})]
        return [*cmd, python, "-I", "-S", "-c", BOOT, str(fd), *paths]

    def _bwrap_args(self, prefix: Path, sites: list[Path], seccomp_fd: int | None) -> list[str]:
        bwrap = shutil.which("bwrap") or "bwrap"
        args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
                "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
                "--ro-bind", "/usr/lib", "/usr/lib"]
        for extra in ("/usr/lib64", "/usr/lib32"):
            if os.path.isdir(extra):
                args += ["--ro-bind", extra, extra]
        for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64")):
            if os.path.islink(link) or not os.path.isdir(link):
                args += ["--symlink", target, link]
            else:
                args += ["--ro-bind", link, link]
        args += ["--ro-bind", str(prefix), str(prefix)]
        root = source_root()
        for rel in CHILD_FILES + CHILD_DIRS:
            src = root / rel
            if src.exists():
                args += ["--ro-bind", str(src), f"{SANDBOX_APP}/{rel}"]
        for site in sites:
            args += ["--ro-bind", str(site), f"{SANDBOX_SITE}/{site.name}"]
        args += ["--proc", "/proc", "--dev", "/dev", "--size", str(_size_bytes(TMP_SIZE)), "--tmpfs", "/tmp",
                 "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
                 "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
                 "--remount-ro", "/", "--chdir", "/tmp"]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        return args


def _size_bytes(text: str) -> int:
    units = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def _probe(cmd: list[str], pass_fds: tuple[int, ...] = ()) -> bool:
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env={"PATH": "/usr/bin:/bin"},
                              timeout=20, pass_fds=pass_fds, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == b"ok"


def seccomp_pipe(bpf: bytes) -> int:
    """A pipe read end holding the filter, for `bwrap --seccomp FD` (a filter is a few KB)."""
    r, w = os.pipe()
    try:
        os.write(w, bpf)
    finally:
        os.close(w)
    return r


@functools.cache
def detect(force: Tier | None = None) -> Sandbox:
    """Probe the tiers once per process; `force` (tests, settings) pins one when it works."""
    bpf = seccomp_bpf()
    cgroups = pids_cgroup_available()
    limits = SandboxLimits(512 * 1024 * 1024, 10, 64, 1024 * 1024)
    order = [force] if force else ["bwrap", "unshare", "process"]
    for tier in order:
        if tier == "process":
            return Sandbox("process", bpf, cgroups)
        if tier == "bwrap" and not shutil.which("bwrap"):
            continue
        if tier == "unshare" and not shutil.which("unshare"):
            continue
        candidate = Sandbox(tier, bpf, cgroups)
        cmd = candidate.command(0, limits, seccomp_fd=None, cgroup=None)
        # run the real command line with a probe instead of the child bootstrap
        idx = cmd.index("-c") + 1
        probe = [*cmd[:idx], PROBE, *cmd[idx + 1:]]
        fd = seccomp_pipe(bpf) if (bpf and tier == "bwrap") else None
        if fd is not None:
            probe = _with_seccomp(probe, fd)
        try:
            if _probe(probe, (fd,) if fd is not None else ()):
                return candidate
        finally:
            if fd is not None:
                os.close(fd)
        log.warning("sandbox_tier_unavailable", tier=tier)
    return Sandbox("process", bpf, cgroups)


def _with_seccomp(cmd: list[str], fd: int) -> list[str]:
    at = cmd.index("--chdir") + 2
    return [*cmd[:at], "--seccomp", str(fd), *cmd[at:]]
