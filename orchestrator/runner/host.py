"""Host side of a script run: start the child, serve its RPC, enforce the wall clock.

The child gets a fresh, explicit environment (nothing inherited, so no secret leaks) and one end
of a socketpair on which it talks framed JSON. Its stdout and stderr become log lines. Many RPC
calls may be in flight; each is served in its own task. The result is returned as soon as the
child's `done` frame and its end marks on stdout/stderr arrive (every line and call it sent before
is delivered first); the child is then killed and reaped in the background, off the caller's path.
A child serves exactly one run: scripts are untrusted and come from many tenants, so a used child
is always torn down, never recycled. Whatever happens (timeout, cancel, crash), the child's whole
process group is killed, and `Runner.close()` waits for every teardown.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from orchestrator.logging import rpc_summary
from orchestrator.runner.forkserver import ForkedProcess, ForkServerUnavailableError, ForkTemplate
from orchestrator.runner.sandbox import (
    PIDS_MAX,
    PidsCgroup,
    Sandbox,
    SandboxConfig,
    SandboxLimits,
    detect,
    seccomp_pipe,
)
from orchestrator.sdk import wire

log = structlog.get_logger(__name__)
# Forked runs share their template's memory layout (ASLR) and Python hash seed; a fresh template every so many
# runs bounds what one run can learn of the layout of the others (a new template costs one boot, ~0.3 s CPU).
RECYCLE_AFTER_FORKS = 200

ScriptKind = Literal["sync", "action", "webhook", "event"]
MAX_OUTPUT_LINES = 1000
MAX_LINE = 10_000
MAX_OUTPUT_BYTES = 10 * 1024 * 1024
MAX_BUNDLE_CHARS = 32 * 1024 * 1024
READY_TIMEOUT_S = 30.0  # a warm child that has not said `ready` by then is discarded
# while the pool still holds a ready child, a run's replacement starts this long after the run took its child:
# starting one holds the event loop (fork/exec) and its boot takes CPU, which a short run and what follows it
# (the job closed, the caller answered) would otherwise wait for. Measured on a ready child, load ~5: a
# trivial run_script 10.6-15.6 ms with the replacement starting during the run, 5.2-7.3 ms after it.
REFILL_DELAY_S = 0.05
END_MARK_WAIT_S = 2.0  # after `done`, how long the host waits for the end marks on stdout/stderr
# warm children import pydantic while any of the last this many runs (that reached `done`) imported it
MODELS_MEMORY = 16


class RpcHandler(Protocol):
    async def call(self, method: str, params: dict[str, Any]) -> Any: ...
    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None: ...


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 512
    cpu_seconds: int = 0
    open_files: int = 256
    file_size_mb: int = 64
    rpc_in_flight: int = 64  # RUNNER_MAX_RPC_IN_FLIGHT: the host's own cap, not sent to the child

    def as_init(self) -> dict[str, int]:
        return {"memory_bytes": self.memory_mb * 1024 * 1024, "cpu_seconds": self.cpu_seconds,
                "open_files": self.open_files, "file_size_bytes": self.file_size_mb * 1024 * 1024}

    def sandbox(self) -> SandboxLimits:
        init = self.as_init()
        return SandboxLimits(init["memory_bytes"], init["cpu_seconds"], init["open_files"], init["file_size_bytes"])


@dataclass
class RunSpec:
    kind: ScriptKind
    bundle_dir: Path
    module_path: str
    timeout_s: float
    context: dict[str, Any] = field(default_factory=dict)  # connection id, last sync date, input...
    limits: Limits = field(default_factory=Limits)
    frame_timeout_s: float = 10.0  # RUNNER_FRAME_TIMEOUT_S: a started frame must complete this soon (plus size)


@dataclass
class RunOutcome:
    ok: bool
    output: Any = None
    error: dict[str, Any] | None = None
    duration_s: float = 0.0
    spawn_to_entry_s: float | None = None
    result_to_return_s: float | None = None  # the child's `done` frame read -> run_script returns
    # the run failed because of the platform, as the host itself saw it (a frame it could not read, or a call it
    # failed with platform_error that the script then failed with); never taken from what the child says, which
    # can name any error type it likes
    platform_fault: bool = False


class RpcFailure(Exception):
    """A host-side call failed in a way the script should see (bad record, HTTP error...)."""

    def __init__(self, type: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.payload = {"type": type, "message": message, **details}


def child_env() -> dict[str, str]:
    """Built, not inherited: the child sees no database URL, key or token."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1", "HOME": "/tmp", "TMPDIR": "/tmp"}


class ChildNotReadyError(RuntimeError):
    """A warm child died or said something else before its `ready` frame."""


@dataclass
class Child:
    """A started child process. `ready` once it has sent its `ready` frame: its imports are done and
    its own seccomp filter is loaded, so it is blocked on its init frame and starts a run at once."""

    proc: asyncio.subprocess.Process | ForkedProcess
    sock: socket.socket
    cgroup: PidsCgroup | None
    limits: Limits
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ready: bool = False

    def alive(self) -> bool:
        return self.proc.returncode is None

    def usable(self) -> bool:
        """Whether an idle ready child may be handed out: still running and its socket not closed.

        Checked synchronously with a non-blocking peek, so a child that died a moment ago (before
        the event loop noticed its exit) is discarded too; an idle child never sends anything."""
        if not self.ready or not self.alive() or self.reader.at_eof():
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # end of stream, or a byte an idle child has no business sending

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Read the child's `ready` frame (ChildNotReadyError if it died or sent anything else)."""
        try:
            async with asyncio.timeout(timeout_s):
                msg = await wire.read_frame(self.reader, body_timeout_s=timeout_s)
        except (TimeoutError, wire.FrameError, OSError) as exc:
            raise ChildNotReadyError(f"the child did not get ready: {exc!r}") from None
        if not isinstance(msg, dict) or msg.get("method") != "ready":
            raise ChildNotReadyError("the child ended or sent something else before `ready`")
        self.ready = True

    def kill(self) -> None:
        if isinstance(self.proc, ForkedProcess):
            self.proc.kill()
        else:
            _kill_group(self.proc.pid)
        if self.cgroup is not None:
            self.cgroup.kill()

    async def release(self) -> None:
        """Kill everything the child started, reap it and drop its cgroup."""
        self.kill()
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except (ProcessLookupError, TimeoutError):
            log.warning("child_not_reaped", pid=self.proc.pid)
        if isinstance(self.proc, ForkedProcess):
            self.proc.close()
        self.writer.close()  # the transport owns the socket and closes it
        try:
            await self.writer.wait_closed()
        except (OSError, RuntimeError):
            pass
        if self.cgroup is not None:
            for _ in range(50):
                self.cgroup.kill()
                if self.cgroup.remove():
                    break
                await asyncio.sleep(0.02)


# run_script without a runner (the dry run): the sandbox where it works, else the author's machine
LOCAL = SandboxConfig(allow_unsandboxed=True)


class Runner:
    """Starts children for the isolation tier that works here, keeping `warm` of them pre-started.

    A warm child has already paid for the interpreter start and the SDK imports (and pydantic's while
    recent runs used it: `note_run`), loaded its seccomp filter and said `ready`; it sits blocked on
    its init frame and its bundle arrives in that frame. Only ready children enter the pool, so
    `acquire` never hands out one still booting; a child that died while idle is discarded. Each child
    serves one run and is then torn down in the background (`retire`); `close()` waits for every
    teardown. One runner per worker.
    """

    def __init__(self, sandbox: Sandbox, *, warm: int = 0) -> None:
        self.sandbox = sandbox
        self.warm = warm
        self._idle: dict[Limits, list[Child]] = {}
        self._refills: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()  # replacements due shortly (replace_soon)
        self._booting: dict[Limits, int] = {}  # warm children started, not yet ready
        self._waiting: dict[Limits, int] = {}  # acquirers waiting for one of them
        self._teardowns: set[asyncio.Task[None]] = set()
        self._pool_grew = asyncio.Event()
        self._bundles: dict[Path, dict[str, str]] = {}
        self._used_models: collections.deque[bool] = collections.deque(maxlen=MODELS_MEMORY)
        self._closed = False
        # RUNNER_FORK_SERVER: one template per limits class forks each run (forkserver.py); off once it cannot work
        self._fork = sandbox.config.fork_server and sandbox.sandboxed
        if sandbox.config.fork_server and not self._fork:   # unsandboxed (local development): said once, quietly
            log.info("fork_server_unavailable", reason="the fork server runs only inside the full sandbox")
        self._templates: dict[Limits, ForkTemplate] = {}
        self._template_lock = asyncio.Lock()

    @classmethod
    async def create(cls, config: SandboxConfig | None = None, *, tier: str | None = None, warm: int = 0) -> Runner:
        """The full sandbox or SandboxUnavailableError. `tier="process"` is an explicit opt-out in code
        (tests, benchmarks); the worker passes its settings as `config`."""
        config = config or SandboxConfig(fork_server=os.environ.get("RUNNER_FORK_SERVER", "true").lower() != "false")
        if tier:
            config = dataclasses.replace(config, isolation=tier, allow_unsandboxed=config.allow_unsandboxed
                                         or tier == "process")
        return cls(await asyncio.to_thread(detect, config), warm=warm)

    def note_run(self, *, models: bool) -> None:
        """A run said in `done` whether its script imported pydantic (generated models do). The child's word
        is untrusted but decides only whether later boots preload pydantic: a trivial script's boot no longer
        spends ~130 ms of CPU beside the runs in flight on a warm-up it does not use, and a workload that
        uses models gets it preloaded once the children already in the pool have served."""
        self._used_models.append(models)

    @property
    def fork_server(self) -> bool:
        """Whether runs are forked from a template (RUNNER_FORK_SERVER, and it works here so far)."""
        return self._fork

    @property
    def warm_models(self) -> bool:
        return any(self._used_models)

    async def spawn(self, limits: Limits) -> Child:
        if self._fork:
            try:
                return await self._fork_child(limits)
            except ForkServerUnavailableError as exc:
                self._fork = False
                log.warning("fork_server_unavailable", reason=str(exc),
                            note="RUNNER_FORK_SERVER is on but cannot work here: every run gets its own bwrap sandbox")
        host_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cgroup = PidsCgroup.create(PIDS_MAX) if self.sandbox.pids_cgroup else None
        seccomp_fd = None
        if self.sandbox.tier == "bwrap" and self.sandbox.bpf:
            seccomp_fd = seccomp_pipe(self.sandbox.bpf)
        fds = (child_sock.fileno(),) + ((seccomp_fd,) if seccomp_fd is not None else ())
        try:
            cmd = self.sandbox.command(child_sock.fileno(), limits.sandbox(), seccomp_fd=seccomp_fd, cgroup=cgroup,
                                       models=self.warm_models)
            proc = await asyncio.create_subprocess_exec(
                *cmd, pass_fds=fds, env=child_env(), cwd="/", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
                limit=MAX_LINE * 2)
        except BaseException:
            host_sock.close()
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            child_sock.close()
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        try:
            reader, writer = await asyncio.open_unix_connection(sock=host_sock, limit=wire.MAX_FRAME)
        except BaseException:
            host_sock.close()
            _kill_group(proc.pid)
            self._track(_reap(proc, cgroup))
            raise
        return Child(proc, host_sock, cgroup, limits, reader, writer)

    async def _fork_child(self, limits: Limits) -> Child:
        """A run forked from this limits class's template (started, or restarted after it died, as needed), in its
        own pids cgroup before its init frame can be sent."""
        template = await self._template(limits)
        if self.warm_models and not template.models:
            await template.warm_models()
        proc, host_sock = await template.fork(self._fork_request(limits), output_limit=MAX_LINE * 2)
        cgroup = PidsCgroup.create(PIDS_MAX) if self.sandbox.pids_cgroup else None
        try:
            if cgroup is not None:
                cgroup.join(proc.pid)
            reader, writer = await asyncio.open_unix_connection(sock=host_sock, limit=wire.MAX_FRAME)
        except BaseException:
            proc.kill()
            host_sock.close()
            self._track(_reap(proc, cgroup))
            raise
        return Child(proc, host_sock, cgroup, limits, reader, writer)

    def _fork_request(self, limits: Limits) -> dict[str, Any]:
        """What a forked run sets up for itself: its rlimits, /tmp and /dev/shm sizes, its /proc."""
        return {"limits": limits.as_init(), "tmp_mb": self.sandbox.config.tmp_size_mb,
                "shm_mb": self.sandbox.config.shm_size_mb, "proc": self.sandbox.proc}

    async def _template(self, limits: Limits) -> ForkTemplate:
        async with self._template_lock:
            template = self._templates.get(limits)
            if template is not None and template.alive() and template.forks < RECYCLE_AFTER_FORKS:
                return template
            if template is not None and template.alive():   # recycled: its runs in flight end normally
                self._track(template.retire())
            elif template is not None:
                log.warning("fork_template_restarted", note="the template died; its runs in flight failed as killed")
                self._track(template.close())
            template = await ForkTemplate.start(self.sandbox, limits.sandbox(), env=child_env(),
                                                models=self.warm_models, probe=self._fork_request(limits))
            self._templates[limits] = template
            return template

    async def acquire(self, limits: Limits, *, refill: bool = True) -> Child:
        """A ready warm child, never one still booting.

        `refill=False` leaves starting its replacement to the caller (`replace_soon`): run_script does it once
        the init frame is written, since starting a process holds the event loop for a few ms.

        When none is idle but a warm child is booting (and no other caller already waits for it),
        wait until it is ready: it started earlier than a new one would. Otherwise start a cold
        child (run_script reads its `ready` frame after sending the init frame)."""
        idle = self._idle.setdefault(limits, [])
        child: Child | None = None
        while child is None:
            while idle:
                candidate = idle.pop()
                if candidate.usable():
                    child = candidate
                    break
                self.retire(candidate)  # died while idle: discarded, never handed out
            if child is not None or self._closed or self._booting.get(limits, 0) <= self._waiting.get(limits, 0):
                break
            self._waiting[limits] = self._waiting.get(limits, 0) + 1
            try:
                self._pool_grew.clear()
                await self._pool_grew.wait()
            finally:
                self._waiting[limits] -= 1
        if refill and self.warm and not self._closed:
            self._schedule_refill(limits)
        return child if child is not None else await self.spawn(limits)

    def prewarm(self, limits: Limits) -> None:
        """Start the children the pool lacks for these limits (in the background)."""
        if self.warm and not self._closed:
            self._schedule_refill(limits)

    def replace_soon(self, limits: Limits) -> None:
        """After a run took its child: start the replacement now when the pool holds no ready child (the next
        run needs it), else REFILL_DELAY_S later, off a short run's path (a long run's pool is whole 50 ms on)."""
        if not self.warm or self._closed:
            return
        if self.ready_count(limits) == 0:
            self._schedule_refill(limits)
            return

        def fire() -> None:
            self._timers.discard(handle)
            self.prewarm(limits)
        handle = asyncio.get_running_loop().call_later(REFILL_DELAY_S, fire)
        self._timers.add(handle)

    def ready_count(self, limits: Limits) -> int:
        """How many ready children wait in the pool for these limits (health output, tests, the bench)."""
        return sum(1 for child in self._idle.get(limits, ()) if child.usable())

    async def until_ready(self, limits: Limits, count: int = 1) -> None:
        """Wait until `count` ready children (at most `warm`) wait in the pool: start-up, tests, the bench.

        A child that fails to start is replaced, so a sandbox that never starts makes this wait forever:
        bound it with a timeout."""
        count = min(count, self.warm)
        while self.ready_count(limits) < count and not self._closed:
            if not self._booting.get(limits, 0):
                idle = self._idle.get(limits, [])
                for dead in [child for child in idle if not child.usable()]:
                    idle.remove(dead)
                    self.retire(dead)
                self._schedule_refill(limits)
            self._pool_grew.clear()
            await self._pool_grew.wait()

    def retire(self, child: Child, pumps: list[asyncio.Task[None]] | None = None) -> None:
        """Kill a child now and reap it in the background: it never serves another run."""
        child.kill()
        self._track(_teardown(child, pumps or []))

    def _track(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

    def _schedule_refill(self, limits: Limits) -> None:
        """Start, side by side, as many children as the pool lacks (ready ones plus those booting)."""
        missing = self.warm - len(self._idle.get(limits, ())) - self._booting.get(limits, 0)
        for _ in range(max(0, missing)):
            self._booting[limits] = self._booting.get(limits, 0) + 1
            task = asyncio.get_running_loop().create_task(self._warm_one(limits))
            self._refills.add(task)
            task.add_done_callback(self._refills.discard)

    async def _warm_one(self, limits: Limits) -> None:
        """Start one child; it enters the pool only once it has said `ready`."""
        try:
            try:
                child = await self.spawn(limits)
            except OSError:
                log.exception("warm_spawn_failed")
                return
            try:
                await child.wait_ready()
            except BaseException as exc:
                self.retire(child)
                if isinstance(exc, ChildNotReadyError):
                    log.warning("warm_child_not_ready", error=str(exc))
                    return
                raise
            if self._closed:
                self.retire(child)
                return
            self._idle.setdefault(limits, []).append(child)
        finally:
            self._booting[limits] -= 1
            self._pool_grew.set()  # a waiting acquire looks again, whether this child made it or not

    async def bundle_files(self, bundle_dir: Path) -> dict[str, str]:
        """The bundle's files, sent in the init frame (bundle folders never change once unpacked)."""
        cached = self._bundles.get(bundle_dir)
        if cached is None:
            cached = await asyncio.to_thread(_read_bundle, bundle_dir)
            if len(self._bundles) > 64:
                self._bundles.clear()
            self._bundles[bundle_dir] = cached
        return cached

    async def close(self) -> None:
        """Stop refilling, kill the idle children and wait until every child ever started is reaped."""
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        refills = list(self._refills)
        for task in refills:
            task.cancel()
        await asyncio.gather(*refills, return_exceptions=True)
        for idle in self._idle.values():
            for child in idle:
                self.retire(child)
        self._idle.clear()
        while self._teardowns:
            await asyncio.gather(*list(self._teardowns), return_exceptions=True)
        for template in self._templates.values():
            await template.close()
        self._templates.clear()


async def _teardown(child: Child, pumps: list[asyncio.Task[None]]) -> None:
    """Reap a killed child, drop its cgroup and let its output pumps reach the end of the pipes."""
    await child.release()
    for pump in pumps:
        try:
            async with asyncio.timeout(2):
                await pump
        except TimeoutError:
            pump.cancel()
        except Exception:
            log.exception("output_pump_failed")


async def _reap(proc: asyncio.subprocess.Process | ForkedProcess, cgroup: PidsCgroup | None) -> None:
    """Reap a child that never became a `Child` (its connection could not be set up)."""
    try:
        async with asyncio.timeout(10):
            await proc.wait()
    except TimeoutError:
        log.warning("child_not_reaped", pid=proc.pid)
    if isinstance(proc, ForkedProcess):
        proc.close()
    if cgroup is not None:
        cgroup.kill()
        cgroup.remove()


def _read_bundle(bundle_dir: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    total = 0
    for path in sorted(bundle_dir.rglob("*")):
        rel = path.relative_to(bundle_dir)
        if not path.is_file() or any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        text = path.read_text(errors="replace")
        total += len(text)
        if total > MAX_BUNDLE_CHARS:
            raise RpcFailure("bundle_too_large", f"bundle {bundle_dir.name} exceeds {MAX_BUNDLE_CHARS} characters")
        files[rel.as_posix()] = text
    return files


@dataclass
class _Output:
    """One of the child's output pipes: read into log lines until the run's end mark arrives."""

    level: str
    mark: bytes
    ended: asyncio.Event = field(default_factory=asyncio.Event)


async def _pump(stream: asyncio.StreamReader | None, out: _Output, handler: RpcHandler,
                overflow: asyncio.Future[str]) -> None:
    """Deliver the stream's lines up to the end mark; after it, only drain the pipe (the run has returned)."""
    if stream is None:
        out.ended.set()
        return
    lines = 0
    size = 0
    try:
        while True:
            try:
                raw = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                raw = await stream.read(MAX_LINE)
            if not raw:
                return
            if out.ended.is_set():
                continue  # past the end mark: the result was returned, keep the pipe drained until EOF
            if raw.endswith(out.mark):
                out.ended.set()
                raw = raw[:-len(out.mark)]
                if not raw:
                    continue
            lines += 1
            size += len(raw)
            if size > MAX_OUTPUT_BYTES:
                # the run ends; keep draining (and dropping) until EOF, or the pipe never closes and
                # asyncio's Process.wait() never returns
                if not overflow.done():
                    overflow.set_result(f"script wrote more than {MAX_OUTPUT_BYTES // (1024 * 1024)} MiB to "
                                        f"{'stdout' if out.level == 'info' else 'stderr'}; use nango.log()")
                continue
            if lines <= MAX_OUTPUT_LINES:
                handler.log(out.level, raw.decode(errors="replace").rstrip("\n")[:MAX_LINE], {"stream": out.level})
            elif lines == MAX_OUTPUT_LINES + 1:
                handler.log("warn", f"output beyond {MAX_OUTPUT_LINES} lines is discarded", None)
    finally:
        out.ended.set()


async def run_script(spec: RunSpec, handler: RpcHandler,
                     on_start: Callable[[], Awaitable[None]] | None = None, *,
                     runner: Runner | None = None) -> RunOutcome:
    """Run one script in a fresh child and return its outcome as soon as the child reports it."""
    if runner is None:  # `nango dryrun`: the author's own script on the author's machine
        runner = Runner(await asyncio.to_thread(detect, LOCAL))
        try:
            return await run_script(spec, handler, on_start, runner=runner)
        finally:
            await runner.close()
    started = time.monotonic()
    mark = "\x1fnango-end-" + os.urandom(12).hex()
    init: dict[str, Any] = {"kind": spec.kind, "module_path": spec.module_path, "limits": spec.limits.as_init(),
                            **spec.context, "end_mark": mark}
    if runner.sandbox.private_fs:
        init["bundle_files"] = await runner.bundle_files(spec.bundle_dir)
    else:
        init["bundle_dir"] = str(spec.bundle_dir)
    if not runner.sandbox.sandboxed:
        log.warning("run_not_sandboxed", isolation=runner.sandbox.tier, module=spec.module_path)
        handler.log("warn", f"this run is NOT sandboxed (isolation: {runner.sandbox.tier}, "
                    "RUNNER_ALLOW_UNSANDBOXED=true): for local development only", None)
    child = await runner.acquire(spec.limits, refill=False)
    proc, reader, writer = child.proc, child.reader, child.writer
    loop = asyncio.get_running_loop()
    overflow: asyncio.Future[str] = loop.create_future()
    outputs = [_Output("info", mark.encode() + b"\n"), _Output("warn", mark.encode() + b"\n")]
    pumps = [asyncio.create_task(_pump(proc.stdout, outputs[0], handler, overflow)),
             asyncio.create_task(_pump(proc.stderr, outputs[1], handler, overflow))]
    calls: set[asyncio.Task[None]] = set()
    replies: list[bytes] = []  # held back until the end of the loop turn: they leave in one write
    turn_open: list[bool] = []  # a reply already left in this turn

    def end_turn() -> None:
        turn_open.clear()
        if replies:
            data = b"".join(replies) if len(replies) > 1 else replies[0]
            replies.clear()
            writer.write(data)
    outcome: RunOutcome | None = None
    finished = False  # the child sent `done`: the fast path (return now, tear down in the background)
    entered: list[float] = []
    done_at: list[float] = []
    waits: list[int] = []  # how often the RPC cap made the host stop reading
    platform_failures: list[str] = []  # calls the host failed inside the platform (platform_error replies)

    async def respond(msg_id: Any, method: str, params: dict[str, Any]) -> None:
        try:
            reply: dict[str, Any] = {"id": msg_id, "result": await handler.call(method, params)}
        except RpcFailure as exc:
            reply = {"id": msg_id, "error": exc.payload}
        except Exception as exc:
            # the call summarised (method, model, counts), never its records; the traceback has no locals
            log.exception("rpc_failed", **rpc_summary(method, params))
            platform_failures.append(method)
            reply = {"id": msg_id, "error": {"type": "platform_error",
                                             "message": f"{method} failed inside the platform: {type(exc).__name__}"}}
        try:
            data = wire.encode(reply)
        except (TypeError, wire.FrameError) as exc:
            data = wire.encode({"id": msg_id, "error": {"type": "rpc_error", "message": str(exc)}})
        # one write() per frame keeps frames whole, so no lock. The first reply of a loop turn leaves at
        # once; those that follow in the same turn (answers to a gather of calls) leave together at its end
        if turn_open:
            if not replies:
                loop.call_soon(end_turn)
            replies.append(data)
        else:
            end_turn()  # whatever is held back first, in order
            writer.write(data)
            turn_open.append(True)
        try:
            await writer.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child already ended (its script raised); its outcome is read elsewhere

    async def serve() -> RunOutcome:
        nonlocal finished
        try:
            writer.write(wire.encode(init))
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError):  # the child died before its run could start
            code = await proc.wait()
            return RunOutcome(False, error={"type": "ScriptCrashed", "message": _exit_reason(code, spec)})
        finally:
            runner.replace_soon(spec.limits)  # once this run's child has its init frame, and off a short run's path
        if not child.ready:  # a cold child: its `ready` frame comes first (the init frame already waits for it)
            try:
                await child.wait_ready(spec.timeout_s)
            except ChildNotReadyError:
                code = await proc.wait()
                return RunOutcome(False, error={"type": "ScriptCrashed", "message": _exit_reason(code, spec)})
        if on_start:
            await on_start()
        while True:
            try:
                msg = await wire.read_frame(reader, body_timeout_s=spec.frame_timeout_s)
                turn_open.clear()  # a frame came in: the next reply starts a new write
            except wire.FrameError as exc:
                return RunOutcome(False, error={"type": "ProtocolError", "message": f"script sent a bad frame: {exc}"},
                                  platform_fault=True)
            if msg is None:
                code = await proc.wait()
                return RunOutcome(False, error={"type": "ScriptCrashed", "message": _exit_reason(code, spec)})
            if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
                return RunOutcome(False, error={"type": "ProtocolError", "message": "script sent a malformed message"},
                                  platform_fault=True)
            method, params = msg["method"], msg.get("params") or {}
            if not isinstance(params, dict):
                return RunOutcome(False, error={"type": "ProtocolError", "message": "params must be an object"},
                                  platform_fault=True)
            if method == "done":
                done_at.append(time.monotonic())
                used = params.get("used")
                runner.note_run(models=isinstance(used, dict) and used.get("pydantic") is True)
                if calls:
                    await asyncio.gather(*calls, return_exceptions=True)
                finished = True
                error = params.get("error")
                return RunOutcome(bool(params.get("ok")), output=params.get("output"), error=error, platform_fault=(
                    not params.get("ok") and bool(platform_failures) and isinstance(error, dict)
                    and error.get("type") == "platform_error"))
            if method == "log":
                handler.log(str(params.get("level", "info")), str(params.get("message", "")),
                            params.get("fields") if isinstance(params.get("fields"), dict) else None)
                continue
            if method == "entry":
                entered.append(time.monotonic())
                continue
            if "id" in msg:
                task = asyncio.create_task(respond(msg["id"], method, params))
                calls.add(task)
                task.add_done_callback(calls.discard)
                if len(calls) >= spec.limits.rpc_in_flight:
                    await _backpressure(calls, spec.limits.rpc_in_flight, handler, waits)

    serving = asyncio.create_task(serve())
    try:
        async with asyncio.timeout(spec.timeout_s):
            await asyncio.wait({serving, overflow}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                outcome = serving.result()
            else:
                outcome = RunOutcome(False, error={"type": "OutputLimitExceeded", "message": overflow.result()})
            if finished:
                # the child flushed its output and wrote the end marks before `done`: once both pumps
                # have read them, every line it printed has been delivered
                marks = [asyncio.ensure_future(o.ended.wait()) for o in outputs]
                try:
                    await asyncio.wait(marks, timeout=END_MARK_WAIT_S)
                finally:
                    for waiting in marks:
                        waiting.cancel()
    except TimeoutError:
        if finished:  # the clock ran out after `done` (while the end marks were awaited): the result stands
            outcome = outcome or serving.result()
        else:
            limit = f"{spec.kind} script exceeded its wall-clock limit of {spec.timeout_s:g} s"
            outcome = RunOutcome(False, error={"type": "TimeoutError", "message": limit})
    finally:
        child.kill()
        serving.cancel()
        for task in calls:
            task.cancel()
        if finished:
            # result in hand: reaping, the cgroup and the pipes' last bytes are handled off the caller's path;
            # nothing the pipes still hold becomes a log line of a run that has returned
            for out in outputs:
                out.ended.set()
            runner.retire(child, pumps)
        else:
            # a crash, a timeout or a protocol error: wait for the pipes, which hold the child's last words
            # (a traceback, faulthandler's dump), before saying how it ended
            writer.close()
            await asyncio.gather(serving, *calls, return_exceptions=True)
            await _teardown(child, pumps)
    outcome.duration_s = time.monotonic() - started
    if done_at and finished:
        outcome.result_to_return_s = time.monotonic() - done_at[0]
    if entered:
        outcome.spawn_to_entry_s = entered[0] - started
    return outcome


async def _backpressure(calls: set[asyncio.Task[None]], cap: int, handler: RpcHandler, waits: list[int]) -> None:
    """At the cap of calls in flight, read nothing more until one finishes: the child's writes block on a
    full socket, so a flood of calls costs the worker `cap` tasks, not thousands."""
    if not waits:
        handler.log("warn", f"{cap} platform calls in flight, this run's cap (RUNNER_MAX_RPC_IN_FLIGHT={cap}): "
                    "further calls wait until earlier ones finish", None)
        log.warning("rpc_in_flight_cap", cap=cap)
        waits.append(0)
    waits[0] += 1
    while len(calls) >= cap:
        await asyncio.wait(set(calls), return_when=asyncio.FIRST_COMPLETED)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


SIGNAL_MEANINGS = {"SIGSEGV": "invalid memory access", "SIGBUS": "bus error", "SIGKILL": "killed",
                   "SIGABRT": "aborted", "SIGILL": "illegal instruction", "SIGFPE": "arithmetic error",
                   "SIGXFSZ": "file size limit exceeded", "SIGSYS": "forbidden system call"}


def _exit_reason(code: int, spec: RunSpec) -> str:
    """What ended the child, in words: which signal, and the memory limit when it is the likely cause."""
    if code > 128 and code - 128 in signal.valid_signals():  # bwrap reports a signalled child as 128+N
        code = 128 - code
    if code < 0:
        sig = signal.Signals(-code).name
        if sig == "SIGXCPU":
            return f"script exceeded its CPU time limit of {spec.limits.cpu_seconds} s (killed by signal SIGXCPU)"
        meaning = SIGNAL_MEANINGS.get(sig, "")
        text = f"script process was killed by signal {sig}" + (f" ({meaning})" if meaning else "")
        if sig in ("SIGKILL", "SIGSEGV", "SIGBUS"):
            # the child's peak memory is gone with it: say what the signal usually means here
            text += (f". If the script was holding much data, the likely cause is its memory limit of "
                     f"{spec.limits.memory_mb} MiB (RUNNER_MEMORY_MB): when an allocation fails, native code can "
                     "crash instead of raising MemoryError" + ("" if sig == "SIGKILL" else
                                                                "; otherwise a crash in native code (ctypes, "
                                                                "an extension): see the traceback in the logs"))
        return text
    return f"script process exited with code {code} before finishing"
