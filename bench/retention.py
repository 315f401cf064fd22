"""Retention benchmark: prints ONE JSON object.

A sync's write rate (`records.batch_save`, batches of 5,000 records of about 1 KB, all new) measured alone, then
while the retention pass (`control/retention.expire`, the loop's own code) deletes --rows records soft-deleted
long ago from the same environment, then alone again; the ratio is the rate with the pass running over the mean
of the two alone (goal: >= 0.8, i.e. the sync slowed by at most 20%).

    flock /tmp/bench.lock .venv/bin/python -m bench.retention [--rows N] [--batch N] [--pause S]

Uses DATABASE_URL when set (a throw-away schema), otherwise an embedded PostgreSQL under .nango/bench-*, as
bench/records.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peers import settle  # noqa: E402
from bench.records import batches, database, make_records, new_connection, prepared_database  # noqa: E402
from orchestrator.control import retention  # noqa: E402
from orchestrator.store import records  # noqa: E402

POOL_BATCHES = 20  # distinct batches built up front, cycled (each cycle into a new model, so every save is new)


async def old_deleted_rows(pool: asyncpg.Pool, scope: records.Scope, rows: int) -> None:
    """`rows` records of about 300 bytes, soft-deleted 30 days ago, in the scope's connection (one model per
    100,000, as many syncs' leftovers would be)."""
    async with pool.acquire() as conn:
        for start in range(0, rows, 100_000):
            model = f"Old{start // 100_000}"
            sid = await conn.fetchval(
                "INSERT INTO record_scopes (connection_pk, model, variant, environment_id) VALUES ($1, $2, 'base', $3)"
                " RETURNING id", scope.connection_pk, model, scope.environment_id)
            await conn.execute(
                "INSERT INTO records (scope_id, environment_id, connection_pk, model, variant, external_id, meta_len,"
                " last_action, data_hash, body, deleted_at, last_modified_at)"
                " SELECT $1, $2, $3, $4, 'base', 'old-' || i, 2, 'DELETED', '\\x00'::bytea,"
                " '{\"id\":\"old-' || i || '\",\"pad\":\"' || repeat('x', 250) || '\"}', now() - interval '30 days',"
                " now() - interval '30 days' FROM generate_series($5::int, $6::int) i",
                sid, scope.environment_id, scope.connection_pk, model, start, min(start + 100_000, rows) - 1)
        await conn.execute("VACUUM ANALYZE records")
        await settle(conn)


async def write_phase(pool: asyncpg.Pool, scope: records.Scope, job_id: int, data: list[list[dict[str, Any]]],
                      phase: str, *, until: asyncio.Task[Any] | None = None, count: int = 0) -> dict[str, float]:
    """Save batches (`count`, or until `until` is done) into fresh models; records/s and the slowest batch."""
    done, cycle, slowest = 0, 0, 0.0
    async with pool.acquire() as conn:
        start = time.perf_counter()
        while (until is not None and not until.done()) or (until is None and done < count):
            target = records.Scope(scope.environment_id, scope.connection_pk, f"{phase}{cycle // POOL_BATCHES}")
            t0 = time.perf_counter()
            await records.batch_save(conn, target, data[cycle % POOL_BATCHES], job_id=job_id)
            slowest = max(slowest, time.perf_counter() - t0)
            done += 1
            cycle += 1
        seconds = time.perf_counter() - start
    n = done * len(data[0])
    return {"batches": done, "records": n, "seconds": round(seconds, 3), "per_s": round(n / seconds),
            "slowest_batch_s": round(slowest, 3)}


async def main(rows: int, batch: int, pause_s: float) -> dict[str, Any]:
    data = batches(make_records(POOL_BATCHES * 5_000), 5_000)
    async with database() as dsn, prepared_database(dsn) as pool:
        scope, job_id, _ = await new_connection(pool, "retention")
        build = time.perf_counter()
        await old_deleted_rows(pool, scope, rows)
        build_s = time.perf_counter() - build
        env = {"id": scope.environment_id, "records_retention_days": 7, "jobs_retention_days": None,
               "webhooks_retention_days": None}
        before = await write_phase(pool, scope, job_id, data, "alone_a", count=150)

        async def prune() -> tuple[dict[str, int], float]:
            async with pool.acquire() as conn:
                t0 = time.perf_counter()
                done = await retention.expire(conn, env, batch=batch, pause_s=pause_s)
                return done, time.perf_counter() - t0
        task = asyncio.create_task(prune())
        during = await write_phase(pool, scope, job_id, data, "during", until=task)
        pruned, prune_s = await task
        async with pool.acquire() as conn:
            await settle(conn)
        after = await write_phase(pool, scope, job_id, data, "alone_b", count=150)
        async with pool.acquire() as conn:
            left = await conn.fetchval("SELECT count(*) FROM records WHERE deleted_at IS NOT NULL")
    alone = statistics.mean([before["per_s"], after["per_s"]])
    return {"rows": rows, "batch": batch, "pause_s": pause_s, "pace": retention.PACE, "build_s": round(build_s, 1),
            "pruned": pruned["records"], "left_deleted": left, "prune_s": round(prune_s, 2),
            "prune_rows_per_s": round(pruned["records"] / prune_s),
            "writes": {"alone_before": before, "during_prune": during, "alone_after": after},
            "ratio_during_vs_alone": round(during["per_s"] / alone, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="old soft-deleted records to prune")
    parser.add_argument("--batch", type=int, default=retention.BATCH, help="rows per delete statement")
    parser.add_argument("--pause", type=float, default=retention.PAUSE_S, help="seconds between statements")
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: the JSON object only
    print(orjson.dumps(asyncio.run(main(args.rows, args.batch, args.pause))).decode())
