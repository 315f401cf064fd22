"""The fork server, host side (RUNNER_FORK_SERVER, off by default): runs forked from a warm template.

A per-run child pays 100-300 ms of CPU to boot (bwrap, the interpreter, the SDK and pydantic imports);
back to back, those boots compete for the cores with the runs. With the fork server the runner keeps one
template per limits class (child_template.py), started in the same bubblewrap sandbox as a child, which
forks a fresh, separately confined process per run: still one process per run, never reused.

Per run the host makes the run's RPC socketpair and output pipes and passes them to the template with
SCM_RIGHTS, so the RPC is the one child.py speaks. The run's first byte on that socket carries its pid as
the kernel gives it to the host (SCM_CREDENTIALS; SO_PEERCRED would name the host, which made the pair):
the host opens a pidfd on it, moves it into the run's pids cgroup and only then sends the init frame.
The template reports each run's exit status (`ForkedProcess.wait()`); a run is killed through its pidfd.
A template that dies fails its runs in flight as killed and is started again by the runner; one that
cannot start (or whose first run fails the confinement self-check) raises ForkServerUnavailableError and
the runner goes back to a bwrap sandbox per run.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import structlog

from orchestrator.runner.sandbox import Sandbox, SandboxLimits, seccomp_bpf, seccomp_pipe

log = structlog.get_logger(__name__)

START_TIMEOUT_S = 30.0  # the template's `ready`, and its self-check run
HELLO_TIMEOUT_S = 10.0  # a forked run's first byte: its confinement is done in a few milliseconds
MAX_MESSAGE = 65536
UCRED = struct.Struct("iII")


class ForkServerUnavailableError(RuntimeError):
    """The fork server cannot run here (why in the message); the runner uses a bwrap sandbox per run."""


@dataclass(eq=False)
class ForkedProcess:
    """A run forked by the template, with what run_script uses of an asyncio subprocess."""

    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader
    exited: asyncio.Future[int]
    pid: int = 0  # as the host sees it (SCM_CREDENTIALS)
    pidfd: int | None = None

    @property
    def returncode(self) -> int | None:
        return self.exited.result() if self.exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)

    def kill(self) -> None:
        """SIGKILL the run through its pidfd (never a recycled pid); it is pid 1 of its namespace, so all its
        threads go with it."""
        if self.pidfd is not None and not self.exited.done():
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


async def _until(sock: socket.socket, *, write: bool = False, timeout_s: float | None = None) -> None:
    """Wait until a non-blocking socket can be read (or written)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    add(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        async with asyncio.timeout(timeout_s):
            await ready
    finally:
        remove(sock.fileno())


async def pipe_reader(fd: int, limit: int) -> asyncio.StreamReader:
    """A StreamReader over the read end of a pipe (a run's stdout or stderr)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    return reader


async def run_pid(sock: socket.socket, timeout_s: float = HELLO_TIMEOUT_S) -> int:
    """The pid of the process that wrote the first byte on `sock`, translated by the kernel (0 at end of stream:
    the run refused to start, and its stderr says why)."""
    while True:
        try:
            data, ancdata, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(UCRED.size))
            break
        except BlockingIOError:
            await _until(sock, timeout_s=timeout_s)
    if not data:
        return 0
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= UCRED.size:
            return int(UCRED.unpack(payload[:UCRED.size])[0])
    raise OSError("the forked run's first byte carried no credentials")


@dataclass(eq=False)
class ForkTemplate:
    """One running template (per runner and limits class) and the runs it forked that have not ended."""

    proc: asyncio.subprocess.Process
    control: socket.socket
    models: bool
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    next_id: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    dead: bool = False
    forks: int = 0

    @classmethod
    async def start(cls, sandbox: Sandbox, limits: SandboxLimits, *, env: dict[str, str], models: bool,
                    probe: dict[str, Any]) -> ForkTemplate:
        """Start the template and fork one self-check run from it; ForkServerUnavailableError unless both work."""
        bpf = seccomp_bpf(template=True)
        if sandbox.tier != "bwrap" or not sandbox.sandboxed or bpf is None:
            raise ForkServerUnavailableError("the fork server runs only inside the full bwrap sandbox")
        if sandbox.proc != "private":
            raise ForkServerUnavailableError("without a procfs in the sandbox (proc: none) a template cannot map "
                                             "a run's user namespace")
        host, inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        seccomp_fd = seccomp_pipe(bpf)
        try:
            cmd = sandbox.command(inside.fileno(), limits, seccomp_fd=seccomp_fd, cgroup=None, models=models,
                                  template=True)
            proc = await asyncio.create_subprocess_exec(
                *cmd, pass_fds=(inside.fileno(), seccomp_fd), env=env, cwd="/", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            host.close()
            raise ForkServerUnavailableError(f"the template could not be started: {exc}") from None
        finally:
            inside.close()
            os.close(seccomp_fd)
        host.setblocking(False)
        template = cls(proc, host, models)
        template.tasks += [asyncio.create_task(template._log_output(proc.stdout)),
                           asyncio.create_task(template._log_output(proc.stderr))]
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                hello = json.loads(await asyncio.get_running_loop().sock_recv(host, MAX_MESSAGE) or b"{}")
            if hello.get("ready") is not True:
                raise ForkServerUnavailableError("the template ended before it was ready (its output is logged as "
                                                 "fork_template_output)")
            template.tasks.append(asyncio.create_task(template._serve()))
            await template._self_check(limits, probe)
        except BaseException as exc:
            await template.close()
            if isinstance(exc, TimeoutError):
                raise ForkServerUnavailableError("the template did not get ready in time") from None
            if isinstance(exc, (OSError, ValueError)):
                raise ForkServerUnavailableError(f"the template failed at start: {exc!r}") from None
            raise
        return template

    def alive(self) -> bool:
        return not self.dead and self.proc.returncode is None

    async def _log_output(self, stream: asyncio.StreamReader | None) -> None:
        """The template is trusted code; whatever it prints is a platform problem worth a log line."""
        if stream is None:
            return
        while line := await stream.readline():
            log.warning("fork_template_output", line=line.decode(errors="replace").rstrip()[:2000])

    async def _serve(self) -> None:
        """Exit statuses from the template; at its end every run still in flight reads as killed."""
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(self.control, MAX_MESSAGE):
                message = json.loads(data)
                waiter = self.exits.get(message.get("id"))
                if waiter is not None and "exit" in message:
                    del self.exits[message["id"]]
                    if not waiter.done():
                        waiter.set_result(int(message["exit"]))
        except (OSError, ValueError) as exc:
            log.warning("fork_template_misbehaved", error=repr(exc))
        finally:
            self.dead = True
            for waiter in self.exits.values():
                if not waiter.done():
                    waiter.set_result(-signal.SIGKILL)
            self.exits.clear()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        while True:
            try:
                self.control.sendmsg([data], ancillary)
                return
            except BlockingIOError:
                await _until(self.control, write=True)

    async def warm_models(self) -> None:
        """Have the template import what generated models need: every later fork has it for free."""
        await self._send({"op": "models"})
        self.models = True

    async def fork(self, request: dict[str, Any], *, output_limit: int,
                   probe: bool = False) -> tuple[ForkedProcess, socket.socket]:
        """Fork one run; returns it (pid and pidfd known unless `probe`) and the host's end of its RPC socket."""
        if not self.alive():
            raise OSError("the fork template is not running")
        host, run = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        host.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.next_id += 1
        self.forks += 1
        ident = self.next_id
        exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.exits[ident] = exited
        try:
            await self._send({**request, "op": "fork", "id": ident, "probe": probe}, [run.fileno(), out_w, err_w])
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            host.close()
            self.exits.pop(ident, None)
            raise
        finally:
            run.close()
            os.close(out_w)
            os.close(err_w)
        proc = ForkedProcess(await pipe_reader(out_r, output_limit), await pipe_reader(err_r, output_limit), exited)
        if probe:
            return proc, host
        try:
            host.setblocking(False)
            pid = await run_pid(host)
            if pid <= 0:
                code = await asyncio.wait_for(proc.wait(), HELLO_TIMEOUT_S)
                why = (await proc.stderr.read(4000)).decode(errors="replace").strip()
                raise OSError(f"the forked run refused to start (exit {code}): {why or 'no message'}")
            proc.pid = pid
            proc.pidfd = os.pidfd_open(pid)
            host.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
        except TimeoutError:
            # a run that neither starts nor ends: the template misbehaves, and the runner starts a new one
            host.close()
            await self.close()
            raise OSError("a forked run did not start in time; the template was stopped") from None
        except BaseException:
            host.close()
            raise
        return proc, host

    async def _self_check(self, limits: SandboxLimits, request: dict[str, Any]) -> None:
        """Fork one run that checks its own confinement (child_template._probe) before any script runs."""
        proc, sock = await self.fork(request, output_limit=65536, probe=True)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                out = (await proc.stdout.read()).decode(errors="replace").strip()
                err = (await proc.stderr.read()).decode(errors="replace").strip()
                code = await proc.wait()
        except TimeoutError:
            raise ForkServerUnavailableError("the fork server's self-check run did not finish") from None
        finally:
            sock.close()
        if code != 0 or out != "ok":
            raise ForkServerUnavailableError(f"a forked run is not confined here (exit {code}): "
                                             f"{out[-600:] or err[-600:] or 'no message'}")

    async def retire(self) -> None:
        """Stop this template once the runs it forked have ended (a replacement serves new runs meanwhile)."""
        pending = [waiter for waiter in self.exits.values() if not waiter.done()]
        if pending:
            await asyncio.wait(pending)
        await self.close()

    async def close(self) -> None:
        """Kill the template and with it every run it forked (they die with its pid namespace)."""
        self.dead = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            async with asyncio.timeout(10):
                await self.proc.wait()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(OSError):
            self.control.close()
