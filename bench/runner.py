"""Runner benchmark: prints ONE JSON object.

- spawn-to-entry-point p50/p95, for warm children (the worker's default) and cold ones;
- RPC round trips per second from inside the child (sequential awaits and 64 in flight);
- `batch_save` of N (default 100,000) ~1 KB records from inside the sandboxed child compared with
  the same save called directly on the host side (`ScriptHost.rpc_batch_save`), as a throughput
  ratio (target >= 0.7).

    .venv/bin/python -m bench.runner [--records N] [--spawns N] [--tier bwrap|process]

Uses DATABASE_URL when set, otherwise an embedded PostgreSQL under .nango/bench-*.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
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
from orchestrator.runner.host import Limits, Runner  # noqa: E402
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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--spawns", type=int, default=30)
    parser.add_argument("--rpc", type=int, default=5_000)
    parser.add_argument("--tier", default=None)
    args = parser.parse_args()
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
            await session.close()
            await pool.close()
    print(orjson.dumps({
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
    }).decode())


if __name__ == "__main__":
    asyncio.run(main())
