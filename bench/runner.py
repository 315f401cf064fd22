"""Runner benchmark: prints ONE JSON object.

- a trivial script run end to end through the Runner (warm pool, cold child), each beside a raw
  baseline measured in the same run: an already running plain Python process that gets the script's
  source in one frame, runs it and replies in one frame (warm), and starting a bare
  `python -I -S -c pass` to its exit (cold);
- result-to-return: the child's `done` frame read -> `run_script` returns, beside what the caller
  would wait if the child's teardown (kill, reap, cgroup) were still on its path;
- `Runner.acquire` with a ready warm child vs a cold spawn until the child says `ready`;
- spawn-to-entry-point p50/p95, for warm children (the worker's default) and cold ones;
- RPC round trips per second from inside the child (sequential awaits and 64 in flight);
- `batch_save` of N (default 50,000) ~1 KB records from inside the sandboxed child compared with
  the same save called directly on the host side (`ScriptHost.rpc_batch_save`), as a throughput
  ratio (target >= 0.7).

    .venv/bin/python -m bench.runner [--records N] [--spawns N] [--runs N] [--warm N] [--tier bwrap|process]

Uses DATABASE_URL when set, otherwise an embedded PostgreSQL under .nango/bench-*. Everything it
creates (the bench folder, the database folder, every child) is removed on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.records import database  # noqa: E402
from orchestrator.crypto import Sealer  # noqa: E402
from orchestrator.runner.host import Child, Limits, Runner, RunSpec, run_script  # noqa: E402
from orchestrator.runs.testing import ScriptBench  # noqa: E402
from orchestrator.sdk.nango import RECORDS_PER_CALL  # noqa: E402
from orchestrator.store.migrate import migrate  # noqa: E402
from orchestrator.store.pool import init_connection  # noqa: E402

RECORD_SCRIPT = """
import time

def make(n, tag):
    pad = "x" * 900
    return [{"id": f"{tag}-{i}", "number": i, "title": f"Record {i}", "state": "open", "body": pad,
             "labels": ["a", "b"], "updated_at": "2024-01-01T00:00:00Z"} for i in range(n)]

async def fetch_data(nango):
    records = make(COUNT, "child")
    started = time.perf_counter()
    await nango.batch_save(records, "BenchChild")
    nango.log("elapsed", elapsed=time.perf_counter() - started)
"""

RPC_SCRIPT = """
import asyncio, time

async def run_action(nango, inp):
    n = inp["n"]
    started = time.perf_counter()
    for _ in range(n):
        await nango.get_metadata()
    sequential = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(n // 64):
        await asyncio.gather(*(nango.get_metadata() for _ in range(64)))
    concurrent = time.perf_counter() - started
    return {"sequential": n / sequential, "concurrent": (n // 64) * 64 / concurrent}
"""

NOOP_SCRIPT = """
async def run_action(nango, inp):
    return None
"""


RAW_PEER = """
import asyncio, json, socket, struct, sys
sock = socket.socket(fileno=int(sys.argv[1]))
loop = asyncio.new_event_loop()
def exactly(n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
while True:
    (size,) = struct.unpack(">I", exactly(4))
    request = json.loads(exactly(size))
    scope = {}
    exec(compile(request["source"], "noop.py", "exec"), scope)
    body = json.dumps({"ok": True, "output": loop.run_until_complete(scope["run_action"](None, None))}).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)
"""


class TimedRunner(Runner):
    """The real runner, timing each used child's teardown (now off the caller's path) from kill to reap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teardown_ms: list[float] = []

    def retire(self, child: Child, pumps: list[asyncio.Task[None]] | None = None) -> None:
        started = time.perf_counter()
        super().retire(child, pumps)

        async def timed() -> None:
            await child.proc.wait()
            self.teardown_ms.append((time.perf_counter() - started) * 1000)
        self._track(timed())


class Quiet:
    """A handler with nothing behind it: the run's own cost, without the platform's."""

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        return {}

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        pass


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 2), "p95": round(pct(values, 0.95), 2)}


async def raw_warm_ms(n: int) -> list[float]:
    """A plain Python process already running (no sandbox) sent the script's source in one frame: it compiles
    it, runs its entry point on its event loop and replies in one frame. The floor of a warm run."""
    host, peer = socket.socketpair()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-I", "-S", "-c", RAW_PEER, str(peer.fileno()),
                                                pass_fds=(peer.fileno(),))
    peer.close()
    reader, writer = await asyncio.open_unix_connection(sock=host)
    out = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            body = orjson.dumps({"kind": "action", "module_path": "noop.py", "source": NOOP_SCRIPT})
            writer.write(len(body).to_bytes(4, "big") + body)
            size = int.from_bytes(await reader.readexactly(4), "big")
            orjson.loads(await reader.readexactly(size))
            out.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
        await proc.wait()
    return out


async def raw_cold_ms(n: int) -> list[float]:
    """Starting a bare interpreter (`python -I -S -c pass`, no sandbox) until it has exited."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-I", "-S", "-c", "pass")
        await proc.wait()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def trivial_runs(runner: TimedRunner, bundle: Path, n: int, pause: float,
                       ready_first: bool = False) -> tuple[list[float], list[float]]:
    """End to end through the Runner: (run_script's duration, done-frame-to-return), in ms. With
    `ready_first`, each run starts once a ready child waits in the pool (the run's own cost, without
    the pool running dry when children are used faster than they boot)."""
    spec = RunSpec("action", bundle, "noop.py", 30, context={"connection_id": "c", "provider_config_key": "p"})
    total, result = [], []
    for _ in range(n):
        if ready_first:
            await runner.until_ready(Limits())
        started = time.perf_counter()
        outcome = await run_script(spec, Quiet(), runner=runner)
        total.append((time.perf_counter() - started) * 1000)
        assert outcome.ok and outcome.result_to_return_s is not None, outcome.error
        result.append(outcome.result_to_return_s * 1000)
        await asyncio.sleep(pause)  # let the pool refill, as between real runs
    return total, result


async def acquire_ms(runner: Runner, cold: Runner, n: int) -> tuple[list[float], list[float]]:
    """`acquire` with a ready child in the pool vs a cold spawn until `ready` (each child is then torn down)."""
    limits = Limits()
    warm, fresh = [], []
    for _ in range(n):
        await runner.until_ready(limits)
        started = time.perf_counter()
        child = await runner.acquire(limits)
        warm.append((time.perf_counter() - started) * 1000)
        assert child.ready
        runner.retire(child)
        started = time.perf_counter()
        child = await cold.acquire(limits)
        await child.wait_ready()
        fresh.append((time.perf_counter() - started) * 1000)
        cold.retire(child)
    return warm, fresh


async def spawn_times(bench: ScriptBench, conn: Any, n: int, pause: float) -> list[float]:
    out = []
    for _ in range(n):
        outcome, _ = await bench.run(NOOP_SCRIPT, conn, kind="action", job=False)
        assert outcome.ok and outcome.spawn_to_entry_s is not None, outcome.error
        out.append(outcome.spawn_to_entry_s * 1000)
        await asyncio.sleep(pause)  # let the pool refill, as between real runs
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--spawns", type=int, default=30)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warm", type=int, default=4, help="warm pool size (RUNNER_WARM_CHILDREN, default 4)")
    parser.add_argument("--rpc", type=int, default=5_000)
    parser.add_argument("--tier", default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-runner-"))
    (scratch / "noop.py").write_text(textwrap.dedent(NOOP_SCRIPT))
    try:
        figures = await measure(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(orjson.dumps(figures).decode())


async def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    # without the database: the runner's own costs, beside raw baselines taken now
    lone = await TimedRunner.create(tier=args.tier, warm=args.warm)
    runner = TimedRunner(lone.sandbox, warm=args.warm)
    cold = TimedRunner(lone.sandbox, warm=0)
    try:
        runner.prewarm(Limits())
        raw_warm = await raw_warm_ms(args.runs)
        raw_cold = await raw_cold_ms(max(5, args.runs // 4))
        await trivial_runs(runner, scratch, 3, 0.25)  # first runs read the bundle and import lazily
        ready_total, _ = await trivial_runs(runner, scratch, args.runs, 0, ready_first=True)
        warm_total, warm_result = await trivial_runs(runner, scratch, args.runs, 0.1)
        back_to_back, _ = await trivial_runs(runner, scratch, args.runs, 0)
        cold_total, cold_result = await trivial_runs(cold, scratch, max(5, args.runs // 4), 0)
        acquire_warm, acquire_cold = await acquire_ms(runner, cold, max(5, args.runs // 4))
    finally:
        await runner.close()
        await cold.close()
    teardown = runner.teardown_ms + cold.teardown_ms
    run_figures = {
        "warm_pool": args.warm,
        "trivial_run_ms": {
            "ready_child": summary(ready_total), "warm_spaced_100ms": summary(warm_total),
            "warm_back_to_back": summary(back_to_back),
            "cold": summary(cold_total),
            "raw_warm_round_trip": summary(raw_warm), "raw_cold_python": summary(raw_cold),
            "ratio_ready_to_raw_warm": round(statistics.median(ready_total) / statistics.median(raw_warm), 2),
            "ratio_warm_to_raw_warm": round(statistics.median(warm_total) / statistics.median(raw_warm), 2),
            "ratio_cold_to_raw_cold": round(statistics.median(cold_total) / statistics.median(raw_cold), 2),
            "ratio_back_to_back_to_spaced": round(statistics.median(back_to_back) / statistics.median(warm_total),
                                                  2)},
        "result_to_return_ms": {
            **summary(warm_result + cold_result),
            "teardown_off_path": summary(teardown),
            "ratio_to_teardown": round(statistics.median(warm_result + cold_result) / statistics.median(teardown),
                                       3)},
        "acquire_ms": {
            "warm_ready": summary(acquire_warm), "cold_until_ready": summary(acquire_cold),
            "ratio_cold_to_warm": round(statistics.median(acquire_cold) / statistics.median(acquire_warm), 1)},
    }
    return {**run_figures, **await with_database(args)}


async def with_database(args: argparse.Namespace) -> dict[str, Any]:
    async with database() as dsn:
        conn0 = await asyncpg.connect(dsn)
        try:
            await migrate(conn0)
        finally:
            await conn0.close()
        pool = await asyncpg.create_pool(dsn, init=init_connection, min_size=2, max_size=4)
        session = aiohttp.ClientSession()
        warm = await Runner.create(tier=args.tier, warm=2)
        warm.prewarm(Limits())
        cold = Runner(warm.sandbox, warm=0)
        root = ROOT / ".nango" / f"bench-runner-{os.getpid()}"
        host_s = child_s = 0.0
        try:
            bench = await ScriptBench(pool, Sealer(os.urandom(32)), session, root, warm).setup()
            conn = await bench.connection(metadata={"k": "v"})
            await asyncio.sleep(1)
            warm_ms = await spawn_times(bench, conn, args.spawns, 0.25)
            bench.runner = cold
            cold_ms = await spawn_times(bench, conn, max(5, args.spawns // 3), 0)
            bench.runner = warm

            outcome, _ = await bench.run(RPC_SCRIPT, conn, kind="action", input={"n": args.rpc}, job=False)
            assert outcome.ok, outcome.error
            rpc = outcome.output

            # records: child first, then the host directly, each into its own model (all inserts)
            script = RECORD_SCRIPT.replace("COUNT", str(args.records))
            outcome, host = await bench.run(script, conn, timeout_s=600, limits=Limits(memory_mb=2048))
            assert outcome.ok, outcome.error
            async with pool.acquire() as db:
                row = await db.fetchrow("SELECT fields FROM script_logs WHERE job_id = $1 AND message = 'elapsed'",
                                        host.job_id)
            child_s = row["fields"]["elapsed"]
            namespace: dict[str, Any] = {}
            exec(compile(RECORD_SCRIPT.replace("COUNT", "0"), "records", "exec"), namespace)
            records = namespace["make"](args.records, "host")
            size = len(orjson.dumps(records)) / len(records)
            started = time.perf_counter()
            for at in range(0, len(records), RECORDS_PER_CALL):  # the calls the SDK makes, so the quota holds
                await host.rpc_batch_save("BenchHost", records[at:at + RECORDS_PER_CALL])
            host_s = time.perf_counter() - started
        finally:
            await warm.close()
            await cold.close()
            await session.close()
            await pool.close()
            shutil.rmtree(root, ignore_errors=True)
    return {
        "isolation": warm.sandbox.describe(),
        "spawn_to_entry_ms": {
            "warm_p50": round(statistics.median(warm_ms), 2), "warm_p95": round(pct(warm_ms, 0.95), 2),
            "cold_p50": round(statistics.median(cold_ms), 2), "cold_p95": round(pct(cold_ms, 0.95), 2)},
        "rpc_round_trips_per_s": {"sequential": round(rpc["sequential"]), "concurrent_64": round(rpc["concurrent"])},
        "batch_save": {
            "records": args.records, "bytes_per_record": round(size), "child_s": round(child_s, 3),
            "host_direct_s": round(host_s, 3), "child_records_per_s": round(args.records / child_s),
            "host_records_per_s": round(args.records / host_s), "ratio": round(host_s / child_s, 3),
            "target_ratio": 0.7},
    }


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # the finally blocks above have removed what the run created
        sys.exit(130)
