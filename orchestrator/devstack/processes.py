"""Child servers of the local stack: started, waited for, stopped; a busy port is a clear error."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path

import structlog

from orchestrator.errors import OrchestratorError

log = structlog.get_logger(__name__)


class StackError(OrchestratorError):
    code = "stack_error"


def ensure_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise StackError(f"port {port} on {host} is busy, so {what} cannot start there; stop whatever uses "
                             f"it or choose another port (see `nango dev --help`)") from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_port(host: str, port: int, timeout: float, proc: asyncio.subprocess.Process | None = None,
                        what: str = "server", log_file: Path | None = None) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if proc is not None and proc.returncode is not None:
            tail = _tail(log_file)
            raise StackError(f"{what} exited with code {proc.returncode} while starting{tail}")
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise StackError(f"{what} did not open {host}:{port} within {timeout:.0f} s{_tail(log_file)}") from None
            await asyncio.sleep(0.2)


def _tail(log_file: Path | None) -> str:
    if log_file is None or not log_file.exists():
        return ""
    lines = log_file.read_text(errors="replace").splitlines()[-15:]
    return f"; last lines of {log_file}:\n" + "\n".join(lines)


class ManagedProcess:
    """A server subprocess whose output goes to a log file; stopped with a signal, then killed."""

    def __init__(self, name: str, argv: list[str], log_file: Path, *, env: dict[str, str] | None = None,
                 user: str | None = None, stop_signal: int = signal.SIGTERM) -> None:
        self.name = name
        self.argv = argv
        self.log_file = log_file
        self.env = env
        self.user = user
        self.stop_signal = stop_signal
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> asyncio.subprocess.Process:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = await asyncio.to_thread(open, self.log_file, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL,
                env=self.env if self.env is not None else os.environ.copy(), user=self.user,
                # its own session: a terminal's Ctrl-C reaches only `nango dev`, which stops the servers in order
                # (PostgreSQL last, after the worker and the API have closed their pools), not all at once
                start_new_session=True)
        finally:
            out.close()
        log.info("process_started", name=self.name, pid=self.proc.pid)
        return self.proc

    async def stop(self, timeout: float = 15) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(self.stop_signal)
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.info("process_stopped", name=self.name, code=proc.returncode)
