"""How a script's child process is confined: the sandbox, its launch command, its limits.

The sandbox is all or nothing (`detect()` probes once per process and raises
`SandboxUnavailableError`, naming each missing part and how to install it):
- bubblewrap with every namespace unshared (no network but `lo`, own pid/ipc/uts/user/cgroup
  namespace), an empty environment, a read-only root made only of the shared libraries, the
  Python prefix with its site-packages hidden (only the standard library is importable), the SDK
  files and the few packages generated models need (pydantic, orjson), bound under /app; a
  size-capped private `/tmp` and `/dev/shm`, a read-only `/dev`; uid 65534 and no capabilities.
  `/proc` is the sandbox's own (`proc: private`, a fresh procfs of its pid namespace) or, where the
  container runtime masks /proc so that no new procfs can be mounted (runc/containerd as a non-root
  pod), absent (`proc: none`): never the worker's own /proc, which holds its environment and keys.
  The bundle is not mounted: the host sends its files in the init frame and the child writes
  them under its private `/tmp` (so warm children work and no run sees the worker's cache).
- two stacked seccomp filters: bwrap loads the denylist before it execs Python; the child loads
  the same list plus `execve`/`execveat` as its first act (before any import of the SDK), so
  after the interpreter starts no process can be created or replaced: fork, vfork and clone
  without CLONE_THREAD fail with EPERM, clone3 with ENOSYS (libc falls back to clone), exec with
  EPERM. This holds on cgroup v1, v2 or none; threads still work.
- rlimits set by `prlimit` (an exec wrapper, never `preexec_fn`): address space, CPU, open
  files, file size (RLIMIT_FSIZE), no core; and, where the v1 pids controller is writable, a
  per-run pids cgroup as a second line (RLIMIT_NPROC does not hold root).
The denylist also makes every socket() and non-Unix socketpair, ptrace, mount, namespaces, kexec,
bpf, perf, keyrings and friends fail with EPERM.

Tier `process` (a plain child with rlimits and, where libseccomp is present, the same filter) is
no isolation: it exists only for local development, behind RUNNER_ALLOW_UNSANDBOXED=true, and is
logged as a warning at start and on every run. The old `unshare` tier is gone: it gave the child
the host's filesystem and `/proc`.
"""

from __future__ import annotations

import base64
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

Tier = str  # "bwrap" | "process" (the latter only with RUNNER_ALLOW_UNSANDBOXED)
TIERS = ("bwrap", "process")
SANDBOX_APP = "/app"
SANDBOX_SITE = "/app/site"
SANDBOX_UID = 65534
PIDS_MAX = 32
CGROUP_V1_PIDS = Path("/sys/fs/cgroup/pids")
CGROUP_PARENT = "nango-runner"
MIB = 1024 * 1024
# packages the child may need: what generated models.py may import (pydantic), orjson to speed up the wire
CHILD_PACKAGES = (*sorted(contract.MODELS_MAY_IMPORT), "orjson")
CHILD_FILES = ("orchestrator/__init__.py", "orchestrator/runner/__init__.py", "orchestrator/runner/child.py",
               "orchestrator/runner/child_boot.py", "orchestrator/runner/seccomp_child.py",
               "orchestrator/runner/child_template.py")
CHILD_DIRS = ("orchestrator/sdk",)
# argv: <rpc fd> <child seccomp filter, base64, or "-"> <nice> <warm models: 0|1> <import paths...>
PROBE = ("import sys; sys.path[:0] = sys.argv[5:]; from orchestrator.runner.child import probe; "
         "probe(sys.argv[2])")
BOOT = ("import sys; sys.path[:0] = sys.argv[5:]; from orchestrator.runner.child_boot import start; "
        "start(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1')")
# the fork server's template (child_template.py): the same argv as BOOT
TEMPLATE_BOOT = ("import sys; sys.path[:0] = sys.argv[5:]; from orchestrator.runner.child_template import start; "
                 "start(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1')")
# the only unshare() the template's filter allows: a run's user, mount, pid, ipc and network namespaces
TEMPLATE_UNSHARE = 0x10000000 | 0x00020000 | 0x20000000 | 0x08000000 | 0x40000000
# what the template's bwrap filter allows beyond a child's: it forks, unshares and mounts for its runs
TEMPLATE_ALLOWED = ("fork", "vfork", "unshare", "mount")
# what the child's own filter adds to bwrap's: no program replaces the interpreter once it runs
EXEC_SYSCALLS = ("execve", "execveat")

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


@dataclass(frozen=True)
class SandboxConfig:
    """What the worker's settings ask of the sandbox (hashable: `detect()` probes once per config)."""

    isolation: str = ""  # "" or "bwrap": the full sandbox; "process": none (needs allow_unsandboxed)
    allow_unsandboxed: bool = False  # RUNNER_ALLOW_UNSANDBOXED: local development only
    tmp_size_mb: int = 64  # RUNNER_TMP_SIZE_MB: the private /tmp (the bundle is written there too)
    shm_size_mb: int = 16  # RUNNER_SHM_SIZE_MB: /dev/shm; the rest of /dev is read-only
    pids_cgroup: bool = True  # RUNNER_PIDS_CGROUP: a v1 pids cgroup per run where writable
    proc: str = "auto"  # RUNNER_SANDBOX_PROC: auto (private, else none), private or none
    child_nice: int = 0  # RUNNER_CHILD_NICE: > 0, children boot and run below the worker's CPU priority
    fork_server: bool = False  # RUNNER_FORK_SERVER: runs forked from a warm template (forkserver.py)


class SandboxUnavailableError(RuntimeError):
    """The full sandbox cannot run here; `problems` says which part is missing and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the script sandbox is not available: " + "; ".join(problems)
                         + ". Scripts never run without it unless RUNNER_ALLOW_UNSANDBOXED=true (local development "
                         "only: it gives scripts the worker's files and processes)")


def seccomp_error() -> str | None:
    """Why no seccomp filter can be built here, with how to fix it; None when it can."""
    try:
        import pyseccomp  # noqa: F401
    except ImportError:
        return "the pyseccomp package is missing from the worker's Python: pip install pyseccomp"
    except (OSError, RuntimeError) as exc:
        return f"libseccomp2 is missing ({exc}): apt-get install libseccomp2 (dnf install libseccomp on Fedora/RHEL)"
    return None if seccomp_bpf() else "the seccomp filter cannot be built with this libseccomp"


@functools.cache
def seccomp_bpf(deny_exec: bool = False, template: bool = False) -> bytes | None:
    """The denylist as a raw BPF program (built once, < 1 ms), or None without libseccomp.

    `deny_exec` adds execve/execveat: the child's own filter, loaded once Python runs (bwrap's
    filter cannot hold them, since bwrap loads it before it execs the interpreter).
    `template`: bwrap's filter for the fork server's template, which must fork (clone without
    CLONE_THREAD), unshare exactly a run's namespaces (TEMPLATE_UNSHARE) and mount a run's tmpfs and
    procfs; all else stays denied, and each run stacks the full child filter on it before its script.
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError):
        return None
    deny = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    for name in DENIED_SYSCALLS + (EXEC_SYSCALLS if deny_exec else ()):
        if template and name in TEMPLATE_ALLOWED:
            continue
        with contextlib.suppress(RuntimeError, OSError, ValueError):  # syscall unknown on this arch
            flt.add_rule(deny, name)
    import socket as _socket

    flt.add_rule(deny, "socketpair", sc.Arg(0, sc.NE, _socket.AF_UNIX))
    # clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc fall back to clone
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if template:
        flt.add_rule(deny, "unshare", sc.Arg(0, sc.NE, TEMPLATE_UNSHARE))
    else:  # clone: threads only (CLONE_THREAD set)
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
    # and never a new namespace
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


@functools.cache
def _python_paths() -> tuple[Path, tuple[Path, ...]]:
    """The interpreter prefix and the folders of the packages the child imports (found once per process:
    every spawn needs them, and packages do not move under a running worker)."""
    prefix = Path(sys.base_prefix)
    sites: list[Path] = []
    for name in CHILD_PACKAGES:
        spec_dir = _package_path(name)
        if spec_dir is not None:
            sites.append(spec_dir)
    return prefix, tuple(sites)


def _package_path(name: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def source_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


@functools.cache
def child_bytecode(root: Path, sites: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """(compiled file, where it goes in the sandbox) for the single files bound into the sandbox.

    A folder bound whole brings its `__pycache__` along; a file bound alone does not, and without its
    bytecode every child compiles it again at start (typing_extensions alone costs more than the rest
    of the boot). The child's own sources are compiled here first, by the worker, where they have no
    bytecode yet (an image built with PYTHONDONTWRITEBYTECODE). The child reads them read-only and
    writes none; Python checks each against its source's size and time, so a stale one is ignored.
    Found once per process; a tree the worker cannot write just goes without."""
    import importlib.util
    import py_compile

    sources = [root / rel for rel in CHILD_FILES]
    for folder in CHILD_DIRS:
        sources += sorted((root / folder).rglob("*.py"))
    for src in sources:
        cached = Path(importlib.util.cache_from_source(str(src)))
        try:
            if not cached.exists() or cached.stat().st_mtime < src.stat().st_mtime:
                py_compile.compile(str(src), cfile=str(cached), doraise=True)
        except (OSError, py_compile.PyCompileError) as exc:
            log.debug("child_bytecode_not_written", source=str(src), error=str(exc))
    binds: list[tuple[Path, str]] = []
    singles = [(root / rel, f"{SANDBOX_APP}/{rel}") for rel in CHILD_FILES]
    singles += [(site, f"{SANDBOX_SITE}/{site.name}") for site in sites if site.is_file()]
    for src, target in singles:
        cached = Path(importlib.util.cache_from_source(str(src)))
        if cached.is_file():
            binds.append((cached, str(Path(importlib.util.cache_from_source(target)))))
    return binds


PACKAGE_DIR_PATTERNS = ("python3*/site-packages", "python3*/dist-packages", "python3/dist-packages",
                        "lib*/python3*/site-packages", "lib*/python3*/dist-packages", "lib*/python3/dist-packages",
                        "local/lib*/python3*/site-packages", "local/lib*/python3*/dist-packages")


@functools.cache
def hidden_package_dirs(roots: tuple[Path, ...]) -> list[Path]:
    """Installed-package folders inside the trees bound into the sandbox, to be hidden there.

    A guard is only a guard if the files are not there: the child sees the standard library and
    the packages bound under /app/site, never the worker's own dependencies (aiohttp, asyncpg,
    the orchestrator itself when installed in the image's site-packages). Found once per process.
    """
    found: set[Path] = set()
    for root in roots:
        for pattern in PACKAGE_DIR_PATTERNS:
            for path in root.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    found.add(path)
    return sorted(found)


class PidsCgroup:
    """A per-child v1 pids cgroup: a second line behind seccomp (threads stop at `processes`), and
    kill() reaches every process. Children live under this worker's own parent (`worker_parent()`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, processes: int) -> PidsCgroup | None:
        if not pids_cgroup_available():
            return None
        path = worker_parent() / uuid.uuid4().hex[:16]
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(processes))
        except OSError:
            return None
        return cls(path)

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def join(self, pid: int) -> None:
        """Move a process (a forked run, which the host did not start itself) into this cgroup."""
        (self.path / "cgroup.procs").write_text(str(pid))

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


def _process_start(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def owner_name(pid: int) -> str:
    """`w<pid>-<start>-<pid namespace>`: enough to tell, from any worker, whether the owner still runs."""
    return f"w{pid}-{_process_start(pid) or 0}-{_pid_namespace()}"


def owner_alive(name: str) -> bool:
    """Whether the worker that named a parent cgroup `name` still runs (unknown counts as alive).

    A worker in another pid namespace cannot be checked from here, so its cgroups are never swept.
    """
    try:
        pid, start, pidns = name.removeprefix("w").split("-")
        if not name.startswith("w") or int(pidns) != _pid_namespace():
            return True  # not a worker's parent (or the old flat layout), or not checkable: leave it
        return _process_start(int(pid)) == start
    except ValueError:
        return True


@functools.cache
def worker_parent() -> Path:
    """This worker's parent pids cgroup: its runs' cgroups live there and only there."""
    return CGROUP_V1_PIDS / CGROUP_PARENT / owner_name(os.getpid())


def sweep_stale_cgroups(root: Path) -> list[Path]:
    """Remove the parent cgroups of workers that are gone, never another live worker's (no race)."""
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for parent in root.iterdir():
            if not parent.is_dir() or owner_alive(parent.name):
                continue
            for child in parent.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()
                removed.append(parent)
    return removed


@functools.cache
def pids_cgroup_available() -> bool:
    root = CGROUP_V1_PIDS / CGROUP_PARENT
    if not (CGROUP_V1_PIDS / "cgroup.procs").exists():
        return False
    try:
        root.mkdir(exist_ok=True)
        worker_parent().mkdir(exist_ok=True)
        probe = worker_parent() / ("probe-" + uuid.uuid4().hex[:8])
        probe.mkdir()
        (probe / "pids.max").write_text("4")
        probe.rmdir()
    except OSError:
        return False
    # cgroups left by a worker that died before cleaning up; a live worker's are never touched
    sweep_stale_cgroups(root)
    return True


@dataclass
class Sandbox:
    """Builds the launch command of a child: the full sandbox (`bwrap`) or, opted out, `process`."""

    tier: Tier
    bpf: bytes | None = field(repr=False)  # bwrap's filter (the denylist; exec must stay allowed)
    pids_cgroup: bool
    config: SandboxConfig = field(default_factory=SandboxConfig)
    proc: str = "private"  # "private": the sandbox's own procfs; "none": no /proc at all (masked /proc)

    @property
    def child_bpf(self) -> bytes | None:
        """The filter the child loads itself as its first act: the denylist plus exec."""
        return seccomp_bpf(deny_exec=True) if self.bpf else None

    @property
    def namespaces(self) -> bool:
        return self.tier == "bwrap"

    @property
    def private_fs(self) -> bool:
        return self.tier == "bwrap"

    @property
    def sandboxed(self) -> bool:
        """Whether this counts as isolation: only the full bubblewrap sandbox does."""
        return self.tier == "bwrap" and self.bpf is not None

    def describe(self) -> dict[str, object]:
        return {"isolation": self.tier, "sandboxed": self.sandboxed, "private_fs": self.private_fs,
                "seccomp": ("bwrap --seccomp + child filter without exec" if self.tier == "bwrap" else
                            "child filter") if self.bpf else "unavailable",
                "pids_cgroup": self.pids_cgroup, "proc": self.proc if self.tier == "bwrap" else "host",
                "tmp_size_mb": self.config.tmp_size_mb,
                "shm_size_mb": self.config.shm_size_mb, "child_nice": self.config.child_nice,
                "fork_server": self.config.fork_server}

    def command(self, fd: int, limits: SandboxLimits, *, seccomp_fd: int | None,
                cgroup: PidsCgroup | None, models: bool = False, template: bool = False) -> list[str]:
        """sh (joins the cgroup) -> prlimit (rlimits) -> [bwrap] -> python child (loads its filter first).

        `template`: the fork server's template instead of a child (bwrap only; its `seccomp_fd` holds
        seccomp_bpf(template=True)). It gets no CPU limit (it lives for many runs; each run sets its own)."""
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
            if limits.cpu_seconds and not template:
                # soft limit sends SIGXCPU (a clear "CPU limit" exit); the hard one a second later SIGKILLs
                cmd.append(f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}")
            cmd.append("--")
        elif self.tier == "bwrap":
            raise SandboxUnavailableError([PRLIMIT_MISSING])
        if self.tier == "bwrap":
            cmd += self._bwrap_args(prefix, sites, seccomp_fd)
            paths = [SANDBOX_APP, SANDBOX_SITE]
        else:
            paths = [str(source_root()), *sorted({str(p.parent) for p in sites})]
        child_bpf = self.child_bpf
        child_filter = base64.b64encode(child_bpf).decode() if child_bpf else "-"
        # -B: no bytecode is ever written (-I ignores PYTHONDONTWRITEBYTECODE)
        boot = TEMPLATE_BOOT if template else BOOT
        return [*cmd, python, "-I", "-S", "-B", "-c", boot, str(fd), child_filter, str(self.config.child_nice),
                "1" if models else "0", *paths]

    def _bwrap_args(self, prefix: Path, sites: tuple[Path, ...], seccomp_fd: int | None) -> list[str]:
        bwrap = shutil.which("bwrap") or "bwrap"
        args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
                "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
                "--ro-bind", "/usr/lib", "/usr/lib"]
        roots = [Path("/usr/lib")]
        for extra in ("/usr/lib64", "/usr/lib32"):
            if os.path.isdir(extra) and not os.path.islink(extra):
                args += ["--ro-bind", extra, extra]
                roots.append(Path(extra))
        for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64")):
            if os.path.islink(link) or not os.path.isdir(link):
                args += ["--symlink", target, link]
            else:
                args += ["--ro-bind", link, link]
                roots.append(Path(link))
        args += ["--ro-bind", str(prefix), str(prefix)]
        roots.append(prefix)
        # the interpreter's and the system's installed packages: hidden behind an empty read-only tmpfs
        for hidden in hidden_package_dirs(tuple(roots)):
            args += ["--tmpfs", str(hidden), "--remount-ro", str(hidden)]
        root = source_root()
        for rel in CHILD_FILES + CHILD_DIRS:
            src = root / rel
            if src.exists():
                args += ["--ro-bind", str(src), f"{SANDBOX_APP}/{rel}"]
        for site in sites:
            args += ["--ro-bind", str(site), f"{SANDBOX_SITE}/{site.name}"]
        for pyc, target in child_bytecode(root, sites):
            args += ["--ro-bind", str(pyc), target]
        # /dev: device nodes only, read-only; /dev/shm and /tmp are tmpfs with a size cap
        if self.proc == "private":
            args += ["--proc", "/proc"]
        # "none": no /proc at all; the container's own is never bound (the worker's environment and keys)
        args += ["--dev", "/dev",
                 "--size", str(self.config.shm_size_mb * MIB), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                 "--size", str(self.config.tmp_size_mb * MIB), "--tmpfs", "/tmp",
                 "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
                 "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
                 "--remount-ro", "/", "--chdir", "/tmp"]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        return args


PRLIMIT_MISSING = ("prlimit is not installed (it sets the memory, CPU, file-size and open-file limits): "
                   "apt-get install util-linux")
BWRAP_MISSING = "bubblewrap is not installed: apt-get install bubblewrap (dnf install bubblewrap on Fedora/RHEL)"


def seccomp_pipe(bpf: bytes) -> int:
    """A pipe read end holding the filter, for `bwrap --seccomp FD` (a filter is a few KB)."""
    r, w = os.pipe()
    try:
        os.write(w, bpf)
    finally:
        os.close(w)
    return r


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def userns_hints() -> list[str]:
    """What the kernel says about unprivileged user namespaces, as fixes an operator can apply."""
    hints = []
    if _read_sysctl("user.max_user_namespaces") == "0":
        hints.append("user namespaces are disabled: sysctl -w user.max_user_namespaces=15000")
    if _read_sysctl("kernel.unprivileged_userns_clone") == "0":
        hints.append("unprivileged user namespaces are disabled: sysctl -w kernel.unprivileged_userns_clone=1")
    if _read_sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        hints.append("AppArmor restricts unprivileged user namespaces: sysctl -w "
                     "kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile that allows userns")
    return hints


def probe_bwrap(candidate: Sandbox) -> str | None:
    """Start the real sandbox once with a self-check instead of the child; None when it holds.

    The check inside (child.probe) loads the child's filter and verifies fork, socket and exec are
    refused and the rlimits are set: a sandbox that starts but does not confine counts as missing.
    """
    limits = SandboxLimits(512 * MIB, 10, 64, MIB)
    bpf = candidate.bpf
    assert bpf is not None
    fd = seccomp_pipe(bpf)
    try:
        cmd = candidate.command(0, limits, seccomp_fd=fd, cgroup=None)
        at = cmd.index("-c") + 1
        cmd = [*cmd[:at], PROBE, *cmd[at + 1:]]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env={"PATH": "/usr/bin:/bin"},
                                  timeout=30, pass_fds=(fd,), check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bubblewrap could not be started: {exc}"
    finally:
        os.close(fd)
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode == 0 and out == "ok":
        return None
    err = proc.stderr.decode(errors="replace").strip()
    if out.startswith("unconfined:"):
        return f"the sandbox starts but does not confine: {out.removeprefix('unconfined:').strip()}"
    detail = f"bubblewrap failed (exit {proc.returncode}): {err[-800:] or out[-800:] or 'no message'}"
    hints = userns_hints()
    if not hints and "proc" in err:
        hints.append("in a container, the runtime's masked /proc keeps bubblewrap from mounting a new one "
                     "(see deploy/helm/README.md)")
    if not hints and ("Operation not permitted" in err or "No permissions" in err):
        hints.append("in a container, the seccomp and AppArmor profiles must allow unprivileged user namespaces "
                     "(see deploy/helm/README.md)")
    return "; ".join([detail, *hints])


PROC_MODES = ("auto", "private", "none")


def probe_proc_modes(config: SandboxConfig) -> tuple[str, list[str]]:
    """The /proc mode whose self-check passes here, or the problems of each mode tried.

    auto tries a private procfs first (what scripts expect), then none: under a container runtime
    that masks /proc (bind mounts over /proc/keys, a read-only /proc/sys), the kernel refuses a new
    procfs mount to a process without CAP_SYS_ADMIN in the pid namespace's owner, and only a sandbox
    without /proc can start. The container's own /proc is never bound instead.
    """
    if config.proc not in PROC_MODES:
        return "", [f"RUNNER_SANDBOX_PROC={config.proc!r} is not one of {', '.join(PROC_MODES)}"]
    modes = ("private", "none") if config.proc == "auto" else (config.proc,)
    errors: list[str] = []
    for mode in modes:
        error = probe_bwrap(Sandbox("bwrap", seccomp_bpf(), False, config, mode))
        if error is None:
            if errors:
                log.info("sandbox_proc_fallback", proc=mode, private_proc_error=errors[0],
                         note="no procfs can be mounted in the sandbox here (a masked /proc); scripts run "
                         "without /proc")
            return mode, []
        errors.append(error if len(modes) == 1 else f"with proc={mode}: {error}")
    return "", errors


def sandbox_problems(config: SandboxConfig) -> list[str]:
    """Each missing part of the full sandbox with how to fix it; empty when it all works here."""
    return _probe(config)[1]


def _probe(config: SandboxConfig) -> tuple[str, list[str]]:
    problems = []
    if not shutil.which("bwrap"):
        problems.append(BWRAP_MISSING)
    if (error := seccomp_error()) is not None:
        problems.append(error)
    if not shutil.which("prlimit"):
        problems.append(PRLIMIT_MISSING)
    if problems:
        return "", problems
    return probe_proc_modes(config)


@functools.cache
def detect(config: SandboxConfig = SandboxConfig()) -> Sandbox:
    """The full sandbox, probed once per process and config; raises SandboxUnavailableError without it.

    `process` is returned only when the config opts out (RUNNER_ALLOW_UNSANDBOXED): asked for
    (RUNNER_ISOLATION=process), or as the fallback when the sandbox is missing and no tier was
    pinned. RUNNER_ISOLATION=bwrap never falls back.
    """
    if config.isolation not in ("", *TIERS):
        why = (" (removed: it gave scripts the host's filesystem and /proc)" if config.isolation == "unshare"
               else "")
        raise SandboxUnavailableError([f"RUNNER_ISOLATION={config.isolation!r} is not a sandbox tier{why}; "
                                       "use bwrap (or leave it empty)"])
    cgroups = config.pids_cgroup and pids_cgroup_available()
    if config.isolation == "process":
        if not config.allow_unsandboxed:
            raise SandboxUnavailableError(["RUNNER_ISOLATION=process runs scripts without a sandbox, which needs "
                                           "RUNNER_ALLOW_UNSANDBOXED=true"])
        return Sandbox("process", seccomp_bpf(), cgroups, config)
    proc, problems = _probe(config)
    if not problems:
        return Sandbox("bwrap", seccomp_bpf(), cgroups, config, proc)
    if config.allow_unsandboxed and config.isolation == "":
        log.warning("sandbox_unavailable_running_unsandboxed", problems=problems,
                    note="RUNNER_ALLOW_UNSANDBOXED=true: scripts run as plain processes with the worker's "
                    "filesystem view; local development only")
        return Sandbox("process", seccomp_bpf(), cgroups, config)
    raise SandboxUnavailableError(problems)
