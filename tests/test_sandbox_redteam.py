"""Hostile scripts: each attack must fail cleanly with a clear job error while other runs go on.

They run through `run_script` with a real `ScriptHost` (PostgreSQL rows, job logs) and the
isolation tier this machine offers; the assertions that need namespaces skip on weaker tiers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from orchestrator.crypto import Sealer
from orchestrator.runner.host import Limits, Runner
from orchestrator.runs.testing import ScriptBench
from orchestrator.store import jobs as jobs_repo
from orchestrator.store.pool import init_connection

ROOT = Path(__file__).resolve().parent.parent
CANARY = "canary-" + uuid.uuid4().hex
LIMITS = Limits(memory_mb=512, cpu_seconds=2)


@pytest.fixture(scope="module")
async def rt(db_ready: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ScriptBench]:
    os.environ["NANGO_REDTEAM_CANARY"] = CANARY  # in the worker's environment, never in the child's
    pool = await asyncpg.create_pool(db_ready, init=init_connection, min_size=1, max_size=4)
    session = aiohttp.ClientSession()
    runner = await Runner.create(warm=2)
    runner.prewarm(LIMITS)
    bench = await ScriptBench(pool, Sealer(os.urandom(32)), session, tmp_path_factory.mktemp("redteam"),
                              runner).setup()
    try:
        yield bench
    finally:
        await runner.close()
        await session.close()
        await pool.close()
        os.environ.pop("NANGO_REDTEAM_CANARY", None)


def sandboxed(rt: ScriptBench) -> bool:
    return rt.runner is not None and rt.runner.sandbox.private_fs


async def attack(rt: ScriptBench, body: str, *, timeout_s: float = 5, limits: Limits = LIMITS) -> dict:
    """Run `body` as an action; return the job's error (or output) with its logs."""
    connection = await rt.connection(metadata={"token_hint": "x"})
    outcome, host = await rt.run(body, connection, kind="action", timeout_s=timeout_s, limits=limits)
    async with rt.pool.acquire() as conn:
        logs = await jobs_repo.logs(conn, host.job_id) if host.job_id else []
    return {"ok": outcome.ok, "output": outcome.output, "error": outcome.error or {}, "logs": logs,
            "duration": outcome.duration_s}


def failed_with(result: dict, *needles: str) -> str:
    assert not result["ok"], result
    text = f"{result['error'].get('type')}: {result['error'].get('message')}"
    assert any(n.lower() in text.lower() for n in needles), text
    return text


async def test_tcp_socket_is_refused(rt: ScriptBench, database_url: str) -> None:
    port = int(database_url.rsplit(":", 1)[1].split("/")[0])
    result = await attack(rt, f"""
        import socket
        async def run_action(nango, inp):
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
    """)
    failed_with(result, "Operation not permitted", "Network is unreachable", "Connection refused")


async def test_dns_resolution_fails(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import socket
        async def run_action(nango, inp):
            return socket.getaddrinfo("example.com", 443)
    """)
    failed_with(result, "gaierror", "Operation not permitted", "Temporary failure", "Name or service")


async def test_environment_of_worker_and_pid_1_hold_no_secret(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import os
        async def run_action(nango, inp):
            seen = [repr(dict(os.environ))]
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        seen.append(open(f"/proc/{pid}/environ").read())
                    except OSError as exc:
                        seen.append(type(exc).__name__)
            return seen
    """)
    assert result["ok"], result
    dump = " ".join(result["output"])
    assert CANARY not in dump
    assert "DATABASE_URL" not in dump and "ENCRYPTION_KEY" not in dump and "postgresql://" not in dump


async def test_etc_passwd_is_not_visible(rt: ScriptBench) -> None:
    if not sandboxed(rt):
        pytest.skip("needs the bwrap tier (private filesystem view)")
    result = await attack(rt, """
        async def run_action(nango, inp):
            return open("/etc/passwd").read()
    """)
    failed_with(result, "FileNotFoundError")


async def test_worker_source_is_not_visible(rt: ScriptBench) -> None:
    if not sandboxed(rt):
        pytest.skip("needs the bwrap tier (private filesystem view)")
    result = await attack(rt, f"""
        import os
        async def run_action(nango, inp):
            found = []
            for path in ({str(ROOT / "orchestrator" / "worker.py")!r}, "/app/orchestrator/worker.py",
                         "/app/orchestrator/runs/script_host.py", "/app/orchestrator/config/settings.py"):
                if os.path.exists(path):
                    found.append(path)
            if found:
                return found
            open({str(ROOT / "orchestrator" / "worker.py")!r})
    """)
    failed_with(result, "FileNotFoundError")


async def test_database_data_directory_is_not_visible(rt: ScriptBench, tmp_root: Path) -> None:
    if not sandboxed(rt):
        pytest.skip("needs the bwrap tier (private filesystem view)")
    result = await attack(rt, f"""
        import os
        async def run_action(nango, inp):
            return os.listdir({str(tmp_root / "pgdata")!r})
    """)
    failed_with(result, "FileNotFoundError")


async def test_write_outside_tmp_is_read_only(rt: ScriptBench) -> None:
    if not sandboxed(rt):
        pytest.skip("needs the bwrap tier (read-only root)")
    result = await attack(rt, """
        async def run_action(nango, inp):
            with open("/tmp/fine.txt", "w") as f:   # the private /tmp is writable
                f.write("ok")
            open("/usr/lib/evil.so", "w").write("x")
    """)
    failed_with(result, "Read-only file system")


async def test_fork_bomb_is_stopped(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import os
        async def run_action(nango, inp):
            while True:
                os.fork()
    """)
    failed_with(result, "Operation not permitted", "Resource temporarily unavailable")


async def test_thread_bomb_hits_the_pids_limit(rt: ScriptBench) -> None:
    if rt.runner is None or not rt.runner.sandbox.pids_cgroup:
        pytest.skip("no writable pids cgroup here")
    result = await attack(rt, """
        import threading, time
        async def run_action(nango, inp):
            for _ in range(10_000):
                threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    """)
    failed_with(result, "can't start new thread", "Resource temporarily unavailable", "MemoryError")


async def test_two_gib_allocation_fails(rt: ScriptBench) -> None:
    result = await attack(rt, """
        async def run_action(nango, inp):
            blob = bytearray(2 * 1024 ** 3)
            return len(blob)
    """)
    failed_with(result, "MemoryError", "memory limit")


async def test_busy_loop_past_cpu_limit(rt: ScriptBench) -> None:
    result = await attack(rt, """
        async def run_action(nango, inp):
            n = 0
            while True:
                n += 1
    """, timeout_s=15)
    failed_with(result, "CPU time limit")
    assert result["duration"] < 10


async def test_sleep_past_wall_clock_timeout(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import asyncio
        async def run_action(nango, inp):
            await asyncio.sleep(60)
    """, timeout_s=1.5)
    failed_with(result, "wall-clock limit of 1.5 s")
    assert result["duration"] < 5


async def test_ctypes_socket_call_is_denied(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import ctypes
        async def run_action(nango, inp):
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.socket(2, 1, 0)
            if fd < 0:
                err = ctypes.get_errno()
                raise OSError(err, "socket() from ctypes: " + __import__("os").strerror(err))
            return fd
    """)
    failed_with(result, "Operation not permitted")


async def test_namespace_escape_syscalls_are_denied(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import ctypes, os
        async def run_action(nango, inp):
            libc = ctypes.CDLL(None, use_errno=True)
            results = {
                "unshare": libc.unshare(0x10000000),
                "mount": libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
                "ptrace": libc.ptrace(16, 1, 0, 0),
            }
            denied = {k for k, v in results.items() if v != 0}
            raise PermissionError(f"denied: {sorted(denied)} errno={os.strerror(ctypes.get_errno())}")
    """)
    text = failed_with(result, "denied")
    assert "['mount', 'ptrace', 'unshare']" in text


async def test_subprocess_cannot_start(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import subprocess
        async def run_action(nango, inp):
            return subprocess.run(["/bin/sh", "-c", "id"], capture_output=True).stdout.decode()
    """)
    failed_with(result, "Operation not permitted", "No such file")


async def test_third_party_import_is_refused(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import aiohttp
        async def run_action(nango, inp):
            return "unreachable"
    """)
    text = failed_with(result, "import of 'aiohttp' is not allowed")
    assert result["error"]["type"] == "ScriptLoadError", text


async def test_hundred_mb_to_stdout_is_cut_off(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import sys
        async def run_action(nango, inp):
            chunk = "x" * (1024 * 1024)
            for _ in range(100):
                sys.stdout.write(chunk + "\\n")
            sys.stdout.flush()
            return "done"
    """, timeout_s=20)
    failed_with(result, "MiB to stdout")
    assert len(result["logs"]) <= 1001


async def test_malformed_rpc_frames_end_the_run(rt: ScriptBench) -> None:
    result = await attack(rt, """
        async def run_action(nango, inp):
            nango._channel._writer.write(b"\\x00\\x00\\x00\\x05nope!")
            await nango._channel.drain()
            await nango.get_metadata()
    """)
    failed_with(result, "bad frame", "not JSON")
    huge = await attack(rt, """
        async def run_action(nango, inp):
            nango._channel._writer.write(b"\\xff\\xff\\xff\\xff")
            await nango._channel.drain()
            await nango.get_metadata()
    """)
    failed_with(huge, "exceeds")


async def test_log_limit_truncates_each_message(rt: ScriptBench) -> None:
    result = await attack(rt, """
        import json, struct
        async def run_action(nango, inp):
            nango.log("a" * 50_000, level="error")
            # bypassing the SDK does not help: the host truncates too
            body = json.dumps({"method": "log", "params": {"level": "shout", "message": "b" * 200_000}}).encode()
            nango._channel._writer.write(struct.pack(">I", len(body)) + body)
            return "logged"
    """)
    assert result["ok"], result
    messages = [(log["level"], log["message"]) for log in result["logs"]]
    assert len(messages) == 2
    assert all(len(m) <= 10_100 for _, m in messages)
    assert messages[0][0] == "error" and "truncated 40000 characters" in messages[0][1]
    assert messages[1][0] == "info"


async def test_hostile_run_does_not_disturb_a_concurrent_one(rt: ScriptBench) -> None:
    hog = attack(rt, """
        async def run_action(nango, inp):
            while True:
                pass
    """, timeout_s=15)
    good = attack(rt, """
        async def run_action(nango, inp):
            meta = await nango.get_metadata()
            return {"meta": meta, "sum": sum(range(1000))}
    """)
    bad, fine = await asyncio.gather(hog, good)
    failed_with(bad, "CPU time limit")
    assert fine["ok"] and fine["output"] == {"meta": {"token_hint": "x"}, "sum": 499500}
