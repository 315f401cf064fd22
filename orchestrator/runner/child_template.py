"""The fork server's template: trusted code inside the sandbox that forks one confined process per run.

Started by the host (forkserver.py) inside the same bubblewrap sandbox as a per-run child, with a
relaxed bwrap filter (sandbox.seccomp_bpf(template=True): fork, this module's unshare and mount
allowed; everything else denied as for a child). It imports the SDK (and pydantic when asked), says
`ready` on its control socket (SOCK_SEQPACKET, one JSON message each) and then serves `fork`
requests, each carrying the run's RPC socket and output pipes by SCM_RIGHTS. It never reads a
script's byte.

Per run: the template forks a middle process, which unshares a user, mount, pid, ipc and network
namespace (its own uid mapped to itself) and forks the run, pid 1 of its pid namespace. Before it
reads anything from the host the run mounts its own size-capped /tmp and /dev/shm and a fresh
procfs (or hides /proc where the kernel refuses one), drops every capability, sets its rlimits,
loads the child's full seccomp filter (no fork, exec, unshare or mount from then on) and checks
that the filter is loaded and no capability is left, or exits: fail closed. Only then does it say
hello (the kernel attaches its pid, which the host reads) and run child.main as a per-run child does.
The middle reports the run's end as its own exit status (128+N for signal N); the template reaps it
and tells the host.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import os
import selectors
import signal
import socket
import struct
import sys
import types
from typing import Any

from orchestrator.runner import child_boot

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
RUN_NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_RDONLY = 2, 4, 8, 1
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_GET_SECCOMP, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 1, 4, 21, 24, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_VERSION_3 = 0x20080522
RPC_FD = 3
MAX_MESSAGE = 65536
# exit codes of a run that refused to start (fail closed), read by the host's self-check and logs
EXIT_SETUP = 70

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg: int = 0) -> int:
    return int(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)))


def _mount(source: str, target: str, fstype: str, flags: int, data: str | None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode(), ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {fstype} on {target}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _capabilities() -> int:
    """Effective | permitted capabilities of this process, asked of the kernel (capget)."""
    header = _CapHeader(CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return sum((d.effective | d.permitted) << (32 * i) for i, d in enumerate(data))


def _drop_capabilities(uid: int, gid: int) -> None:
    """No capability survives into script code: ambient cleared, bounding set emptied, all sets zeroed."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(64):
        if _prctl(PR_CAPBSET_DROP, cap) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = _CapHeader(CAP_VERSION_3, 0)
    _check(_libc.capset(ctypes.byref(header), (_CapData * 2)()), "capset")


def _own_filesystems(req: dict[str, Any]) -> str:
    """The run's own /tmp and /dev/shm (size-capped tmpfs) and /proc: a fresh procfs of its pid namespace, or,
    where the kernel refuses one (bwrap's covered /proc is not 'fully visible'), an empty read-only tmpfs over the
    template's, which shows the other runs. Returns the /proc mode the run got."""
    flags = MS_NOSUID | MS_NODEV
    _mount("tmpfs", "/tmp", "tmpfs", flags, f"size={int(req['tmp_mb'])}m,mode=1777")
    _mount("tmpfs", "/dev/shm", "tmpfs", flags | MS_NOEXEC, f"size={int(req['shm_mb'])}m,mode=1777")
    if not os.path.isdir("/proc"):
        return "none"
    if req.get("proc") == "private":
        try:
            _mount("proc", "/proc", "proc", flags | MS_NOEXEC, None)
            return "private"
        except OSError:
            pass
    _mount("tmpfs", "/proc", "tmpfs", flags | MS_NOEXEC | MS_RDONLY, "size=4k,mode=555")
    return "none"


def _set_limits(limits: dict[str, int]) -> None:
    import resource

    cpu = int(limits.get("cpu_seconds") or 0)
    table = ((resource.RLIMIT_AS, limits.get("memory_bytes")), (resource.RLIMIT_NOFILE, limits.get("open_files")),
             (resource.RLIMIT_FSIZE, limits.get("file_size_bytes")), (resource.RLIMIT_CORE, 0))
    for which, value in table:
        if value is not None:
            resource.setrlimit(which, (int(value), int(value)))
    if cpu:  # soft: SIGXCPU, a clear "CPU limit" exit; hard a second later: SIGKILL (as prlimit sets it per run)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _confined() -> list[str]:
    """What is wrong with this process's confinement (empty: the run may start)."""
    problems = []
    if _prctl(PR_GET_SECCOMP) != 2:
        problems.append("seccomp filter not loaded")
    if _capabilities() != 0:
        problems.append("capabilities left")
    try:
        with open("/proc/self/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        if fields.get("Seccomp", "").strip() != "2" or int(fields.get("CapEff", "0").strip(), 16) != 0:
            problems.append("/proc/self/status disagrees: " + fields.get("Seccomp", "?").strip())
    except FileNotFoundError:
        pass  # no procfs in this run: the kernel's own answers above stand
    return problems


def _run(req: dict[str, Any], child: types.ModuleType, child_filter: str, uid: int, gid: int) -> None:
    """pid 1 of the run's namespaces: confine, check, say hello, then serve the run as child.main does."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()
    _own_filesystems(req)
    os.chdir("/tmp")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    for target in (1, 2):
        os.dup2(req["_fds"][target], target)
    os.dup2(req["_fds"][0], RPC_FD)
    os.closerange(RPC_FD + 1, 1 << 16)  # the control socket, the template's pipes: none reach the script
    _drop_capabilities(uid, gid)
    _prctl(PR_SET_DUMPABLE, 0)
    _set_limits(req["limits"])
    # pid 1 of a namespace ignores a signal it has no handler for, the CPU limit's SIGXCPU included: end as a
    # child killed by it would (the middle reports 128+N), or a second later by the hard limit's SIGKILL
    signal.signal(signal.SIGXCPU, lambda *_: os._exit(128 + signal.SIGXCPU))
    if "random" in sys.modules:  # the template's state is every run's: no two runs share a sequence
        sys.modules["random"].seed()
    child._load_filter(child_filter)  # exits if it cannot be loaded
    problems = _confined()
    if problems:
        os.write(2, f"sandbox: the run is not confined ({', '.join(problems)}): refusing to start\n".encode())
        os._exit(EXIT_SETUP)
    if req.get("probe"):
        _probe(child)
    sock = socket.socket(fileno=RPC_FD)
    sock.sendmsg([b"R"])  # the host set SO_PASSCRED: the kernel attaches this process's pid, as the host sees it
    sock.detach()
    import asyncio
    import faulthandler

    faulthandler.enable()
    code = asyncio.run(child.main(RPC_FD))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _probe(child: types.ModuleType) -> None:
    """The fork server's self-check at start: prints `ok` only if the run cannot fork, exec, unshare, mount or
    open a socket and is pid 1 of its own pid namespace."""
    failures: list[str] = child.process_and_socket_allowed()
    if _libc.unshare(CLONE_NEWNS) == 0:
        failures.append("unshare() is not refused")
    try:
        _mount("tmpfs", "/tmp", "tmpfs", 0, None)
        failures.append("mount() is not refused")
    except OSError:
        pass
    if os.getpid() != 1:
        failures.append(f"not pid 1 of its own pid namespace (pid {os.getpid()})")
    child.say_ok_unless(failures)
    os._exit(0)


def _middle(req: dict[str, Any], child: types.ModuleType, child_filter: str, template: int) -> None:
    """Between the template and the run: unshare the run's namespaces, map its id, fork it, report its end."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != template:
        os._exit(EXIT_SETUP)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    uid, gid = os.getuid(), os.getgid()
    try:
        _check(_libc.unshare(RUN_NAMESPACES), "unshare")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1\n"), ("gid_map", f"{gid} {gid} 1\n")):
            with open(f"/proc/self/{name}", "w") as out:
                out.write(text)
    except OSError as exc:
        os.write(req["_fds"][2], f"sandbox: the run's namespaces could not be made: {exc}\n".encode())
        os._exit(EXIT_SETUP)
    pid = os.fork()
    if pid == 0:
        try:
            _run(req, child, child_filter, uid, gid)
        except BaseException as exc:
            try:
                os.write(2, f"sandbox: the run could not be confined: {exc!r}\n".encode())
            finally:
                os._exit(EXIT_SETUP)
        os._exit(EXIT_SETUP)
    os.closerange(0, 1 << 16)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(EXIT_SETUP)
        except InterruptedError:
            continue
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status))


class Template:
    """The template's loop: fork requests in, exit statuses out, one SOCK_SEQPACKET message each."""

    def __init__(self, fd: int, child: types.ModuleType, child_filter: str) -> None:
        self.control = socket.socket(fileno=fd)
        self.child = child
        self.child_filter = child_filter
        self.runs: dict[int, Any] = {}  # middle pid -> request id
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def send(self, message: dict[str, Any]) -> None:
        self.control.sendall(json.dumps(message).encode())

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.send({"ready": True, "pid": os.getpid()})
        selector = selectors.DefaultSelector()
        selector.register(self.control, selectors.EVENT_READ)
        selector.register(self.wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is self.control:
                    if not self.receive():
                        return
                else:
                    while True:
                        try:
                            if not os.read(self.wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                    self.reap()

    def receive(self) -> bool:
        try:
            data, ancdata, _flags, _ = self.control.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(3 * 4))
        except InterruptedError:
            return True
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) - len(payload) % 4])
        if not data:
            return False  # the host is gone; bwrap's --die-with-parent ends the rest
        try:
            request = json.loads(data)
            if request.get("op") == "models":
                self.child._warm_imports(True)
                gc.freeze()
            elif request.get("op") == "fork" and len(fds) == 3:
                self.fork(request, fds)
                fds = []
            else:
                self.send({"id": request.get("id"), "error": "bad request"})
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def fork(self, request: dict[str, Any], fds: list[int]) -> None:
        request["_fds"] = fds
        template = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                self.control.close()
                os.close(self.wake_r)
                os.close(self.wake_w)
                _middle(request, self.child, self.child_filter, template)
            finally:
                os._exit(EXIT_SETUP)
        for fd in fds:
            os.close(fd)
        self.runs[pid] = request.get("id")
        self.send({"id": request.get("id"), "forked": pid})

    def reap(self) -> None:
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ident = self.runs.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            self.send({"id": ident, "exit": code})


def start(fd: int, child_filter: str, nice: int, models: bool = False) -> None:
    """Entry of the template process (sandbox.TEMPLATE_BOOT): warm up like a child, then serve forks."""
    child_boot.lower_priority(nice)
    child = child_boot.import_child()
    sys.dont_write_bytecode = True
    child._warm_imports(models)
    # what the template holds is never collected in a run: the runs' collections skip it and leave its pages
    # shared instead of copying them on write
    gc.freeze()
    Template(fd, child, child_filter).serve()
