"""Host side of a script run: start the child, serve its RPC, enforce the wall clock.

The child gets a fresh, explicit environment (nothing inherited, so no secret leaks) and one end
of a socketpair on which it talks framed JSON. Its stdout and stderr become log lines. Many RPC
calls may be in flight; each is served in its own task. Whatever happens (timeout, cancel,
crash), the child's whole process group is killed in `finally`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from orchestrator.runner import child_wire

log = structlog.get_logger(__name__)

ScriptKind = Literal["sync", "action", "webhook", "event"]
MAX_OUTPUT_LINES = 1000
MAX_LINE = 10_000


class RpcHandler(Protocol):
    async def call(self, method: str, params: dict[str, Any]) -> Any: ...
    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None: ...


@dataclass
class Limits:
    memory_mb: int = 512
    cpu_seconds: int = 0
    open_files: int = 256
    file_size_mb: int = 64

    def as_init(self) -> dict[str, int]:
        return {"memory_bytes": self.memory_mb * 1024 * 1024, "cpu_seconds": self.cpu_seconds,
                "open_files": self.open_files, "file_size_bytes": self.file_size_mb * 1024 * 1024}


@dataclass
class RunSpec:
    kind: ScriptKind
    bundle_dir: Path
    module_path: str
    timeout_s: float
    context: dict[str, Any] = field(default_factory=dict)  # connection id, last sync date, input...
    limits: Limits = field(default_factory=Limits)


@dataclass
class RunOutcome:
    ok: bool
    output: Any = None
    error: dict[str, Any] | None = None
    duration_s: float = 0.0
    spawn_to_entry_s: float | None = None


class RpcFailure(Exception):
    """A host-side call failed in a way the script should see (bad record, HTTP error...)."""

    def __init__(self, type: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.payload = {"type": type, "message": message, **details}


def child_command(fd: int) -> list[str]:
    return [sys.executable, "-I", "-m", "orchestrator.runner.child", str(fd)]


def child_env() -> dict[str, str]:
    """Built, not inherited: the child sees no database URL, key or token."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1", "HOME": "/tmp", "TMPDIR": "/tmp"}


async def _pump(stream: asyncio.StreamReader | None, level: str, handler: RpcHandler) -> None:
    if stream is None:
        return
    lines = 0
    while True:
        try:
            raw = await stream.readline()
        except (ValueError, asyncio.LimitOverrunError):
            raw = await stream.read(MAX_LINE)
        if not raw:
            return
        lines += 1
        if lines <= MAX_OUTPUT_LINES:
            handler.log(level, raw.decode(errors="replace").rstrip("\n")[:MAX_LINE], {"stream": level})
        elif lines == MAX_OUTPUT_LINES + 1:
            handler.log("warn", f"output beyond {MAX_OUTPUT_LINES} lines is discarded", None)


async def run_script(spec: RunSpec, handler: RpcHandler,
                     on_start: Callable[[], Awaitable[None]] | None = None) -> RunOutcome:
    started = time.monotonic()
    host_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = await asyncio.create_subprocess_exec(
            *child_command(child_sock.fileno()), pass_fds=(child_sock.fileno(),), env=child_env(),
            cwd=str(spec.bundle_dir), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=MAX_LINE * 2)
    finally:
        child_sock.close()
    reader, writer = await asyncio.open_unix_connection(sock=host_sock, limit=child_wire.MAX_FRAME)
    pumps = [asyncio.create_task(_pump(proc.stdout, "info", handler)),
             asyncio.create_task(_pump(proc.stderr, "warn", handler))]
    calls: set[asyncio.Task[None]] = set()
    write_lock = asyncio.Lock()
    outcome: RunOutcome | None = None

    async def respond(msg_id: Any, method: str, params: dict[str, Any]) -> None:
        try:
            reply: dict[str, Any] = {"id": msg_id, "result": await handler.call(method, params)}
        except RpcFailure as exc:
            reply = {"id": msg_id, "error": exc.payload}
        except Exception as exc:
            log.exception("rpc_failed", method=method)
            reply = {"id": msg_id, "error": {"type": "platform_error",
                                             "message": f"{method} failed inside the platform: {type(exc).__name__}"}}
        try:
            data = child_wire.encode(reply)
        except (TypeError, child_wire.FrameError) as exc:
            data = child_wire.encode({"id": msg_id, "error": {"type": "rpc_error", "message": str(exc)}})
        async with write_lock:
            writer.write(data)
            await writer.drain()

    async def serve() -> RunOutcome:
        init = {"kind": spec.kind, "bundle_dir": str(spec.bundle_dir), "module_path": spec.module_path,
                "limits": spec.limits.as_init(), **spec.context}
        writer.write(child_wire.encode(init))
        await writer.drain()
        if on_start:
            await on_start()
        while True:
            try:
                msg = await child_wire.read_frame(reader)
            except child_wire.FrameError as exc:
                return RunOutcome(False, error={"type": "ProtocolError", "message": f"script sent a bad frame: {exc}"})
            if msg is None:
                code = await proc.wait()
                return RunOutcome(False, error={"type": "ScriptCrashed", "message": _exit_reason(code, spec)})
            if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
                return RunOutcome(False, error={"type": "ProtocolError", "message": "script sent a malformed message"})
            method, params = msg["method"], msg.get("params") or {}
            if not isinstance(params, dict):
                return RunOutcome(False, error={"type": "ProtocolError", "message": "params must be an object"})
            if method == "done":
                if calls:
                    await asyncio.gather(*calls, return_exceptions=True)
                return RunOutcome(bool(params.get("ok")), output=params.get("output"), error=params.get("error"))
            if method == "log":
                handler.log(str(params.get("level", "info")), str(params.get("message", ""))[:MAX_LINE],
                            params.get("fields") if isinstance(params.get("fields"), dict) else None)
                continue
            if "id" in msg:
                task = asyncio.create_task(respond(msg["id"], method, params))
                calls.add(task)
                task.add_done_callback(calls.discard)

    try:
        async with asyncio.timeout(spec.timeout_s):
            outcome = await serve()
        # let the child exit by itself after it said done
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            pass
    except TimeoutError:
        limit = f"{spec.kind} script exceeded its wall-clock limit of {spec.timeout_s:g} s"
        outcome = RunOutcome(False, error={"type": "TimeoutError", "message": limit})
    finally:
        _kill_group(proc.pid)
        for task in calls:
            task.cancel()
        writer.close()
        await asyncio.gather(*calls, return_exceptions=True)
        await proc.wait()
        for pump in pumps:
            try:
                async with asyncio.timeout(2):
                    await pump
            except TimeoutError:
                pump.cancel()
    outcome.duration_s = time.monotonic() - started
    return outcome


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_reason(code: int, spec: RunSpec) -> str:
    if code < 0:
        sig = signal.Signals(-code).name
        if sig == "SIGXCPU":
            return "script exceeded its CPU time limit (SIGXCPU)"
        if sig == "SIGKILL":
            return f"script was killed (SIGKILL); memory limit is {spec.limits.memory_mb} MiB"
        return f"script process died from signal {sig}"
    return f"script process exited with code {code} before finishing"
