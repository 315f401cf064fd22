"""Records writes beside their peers: prints ONE JSON object.

In one run, on one embedded PostgreSQL, the same ~1 KB records (200,000 by default, batches of 5,000) are
written three passes each (first save, unchanged re-save, every record changed) by:

- `batch_save`: the store (`orchestrator.store.records.batch_save`), with a job collecting counts;
- `batch_save_encoded` (first pass only): the same with each record's JSON passed in as the host passes it
  (`contract.quota_bodies`, computed for the size quota before the store is called; here before the clock),
  set against a COPY of those same bytes (`copy_encoded`): neither side encodes inside its clock;
- `naive`: a hand-written upsert on the same `records` table, `executemany` of `INSERT ... ON CONFLICT DO
  UPDATE ... WHERE data_hash IS DISTINCT FROM ...` with the JSON encoded and hashed per record in Python
  (it stores the record's JSON as its body and renders no metadata: less work than the store does);
- `copy`: a raw binary COPY of the same records (`external_id text, data jsonb`) into an unindexed table
  (first pass only: COPY cannot upsert), encoding them inside its clock as `batch_save` does, run just before
  the first save and again just after the two first saves; its time is the mean of the two (both in
  `copy_before_s`, `copy_after_s`), so a load change in between hits the baseline as it hits the saves;
  `copy_encoded` likewise with the host's bytes;
- `dlt`: dlt's merge load into PostgreSQL, when the optional `bench` extra is installed
  (`pip install -e .[bench]`); skipped with a note otherwise.

    .venv/bin/python -m bench.peers [--records N] [--batch N]

Autovacuum is off for `records` and the COPY tables; each phase starts after a VACUUM of `records` and a CHECKPOINT
(`settle`), so no writer pays for the vacuum of another's dead rows or for a checkpoint it did not cause. The
embedded PostgreSQL under .nango/bench-* is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.records import (  # noqa: E402
    MODEL,
    batches,
    copy_baseline,
    database,
    make_records,
    new_connection,
    prepared_database,
)
from orchestrator.sdk import contract  # noqa: E402
from orchestrator.store import records  # noqa: E402

PASSES = ("first", "unchanged", "changed")

_NAIVE = """
INSERT INTO records AS r (scope_id, environment_id, connection_pk, model, variant, external_id, body, meta_len,
                          data_hash, last_action, job_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, 'ADDED', $9)
ON CONFLICT (scope_id, external_id) DO UPDATE SET
    body = EXCLUDED.body, meta_len = 1, data_hash = EXCLUDED.data_hash, last_modified_at = now(),
    last_action = 'UPDATED', job_id = EXCLUDED.job_id, cursor = nextval('records_cursor_seq')
WHERE r.data_hash IS DISTINCT FROM EXCLUDED.data_hash
"""


async def settle(conn: asyncpg.Connection) -> None:
    """Start a phase from the same state whoever ran before: the previous phase's dead rows vacuumed now, as
    autovacuum would have (with it on, the vacuum of the naive pass's 200,000 dead rows ran during the store's
    changed pass, 1.2 s of CPU on a 2-core box), and its dirty pages written."""
    await conn.execute("VACUUM records")
    await conn.execute("CHECKPOINT")


async def naive_pass(pool: asyncpg.Pool, scope: records.Scope, data: list[list[dict[str, Any]]],
                     job_id: int) -> float:
    """The upsert a developer writes by hand: one statement per record, one transaction per batch."""
    async with pool.acquire() as conn:
        scope_id = await conn.fetchval(
            "INSERT INTO record_scopes (connection_pk, model, variant, environment_id) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (connection_pk, model, variant) DO UPDATE SET model = EXCLUDED.model RETURNING id",
            scope.connection_pk, scope.model, scope.variant, scope.environment_id)
        await settle(conn)
        start = time.perf_counter()
        for batch in data:
            args = []
            for record in batch:
                body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
                args.append((scope_id, scope.environment_id, scope.connection_pk, scope.model, scope.variant,
                             str(record["id"]), body.decode(), hashlib.sha256(body).digest(), job_id))
            async with conn.transaction():
                await conn.executemany(_NAIVE, args)
        return time.perf_counter() - start


async def save_pass(pool: asyncpg.Pool, scope: records.Scope, data: list[list[dict[str, Any]]],
                    job_id: int, encoded: list[list[bytes]] | None = None) -> tuple[float, records.WriteResult]:
    total = records.WriteResult()
    bodies: list[list[bytes]] | list[None] = encoded or [None] * len(data)
    async with pool.acquire() as conn:
        await settle(conn)
        start = time.perf_counter()
        for batch, body in zip(data, bodies, strict=True):
            result = await records.batch_save(conn, scope, batch, job_id=job_id, encoded=body)
            total.added += result.added
            total.updated += result.updated
        return time.perf_counter() - start, total


def dlt_pass(dsn: str, data: list[list[dict[str, Any]]], dataset: str) -> float:
    """dlt's merge load (primary key `id`) into PostgreSQL: the leading Python ELT library's upsert."""
    import dlt  # the optional `bench` extra

    pipeline = dlt.pipeline(pipeline_name=f"bench_{dataset}", destination=dlt.destinations.postgres(dsn),
                            dataset_name=dataset, pipelines_dir=str(ROOT / ".nango" / f"dlt-{dataset}"))
    try:
        start = time.perf_counter()
        pipeline.run((r for batch in data for r in batch), table_name="issues", write_disposition="merge",
                     primary_key="id")
        return time.perf_counter() - start
    finally:
        shutil.rmtree(ROOT / ".nango" / f"dlt-{dataset}", ignore_errors=True)


async def write_passes(pool: asyncpg.Pool, dsn: str, n: int, batch_size: int, *, with_dlt: bool,
                       save_to: tuple[records.Scope, int, str] | None = None) -> dict[str, Any]:
    """Every writer's three passes, interleaved pass by pass so load drifts hit all of them alike; `batch_save`
    writes to `save_to` (a fresh connection by default)."""
    first, changed = make_records(n), make_records(n, revision=1)
    data = {"first": batches(first, batch_size), "unchanged": batches(first, batch_size),
            "changed": batches(changed, batch_size)}
    gc.freeze()  # the input records live for the whole run; keep the cyclic GC from walking them
    seconds: dict[str, dict[str, float]] = {"batch_save": {}, "naive": {}}
    counts: dict[str, tuple[int, int]] = {}
    async with pool.acquire() as conn:  # vacuumed by `settle` between phases, never during one
        await conn.execute("ALTER TABLE records SET (autovacuum_enabled = off, toast.autovacuum_enabled = off)")
    save_scope, job_id, _ = save_to or await new_connection(pool, "save")
    naive_scope, naive_job, _ = await new_connection(pool, "naive")
    encoded_scope, encoded_job, _ = await new_connection(pool, "encoded")
    # what the host passes for each batch (its size quota's encoding), computed before any clock
    encoded: list[list[bytes]] = []
    for batch in data["first"]:
        bodies = contract.quota_bodies(batch, MODEL, "batchSave")
        assert bodies is not None and None not in bodies  # every bench record is JSON
        encoded.append(bodies)  # type: ignore[arg-type]
    for name in PASSES:
        seconds["naive"][name] = await naive_pass(pool, naive_scope, data[name], naive_job)
        if name == "first":
            copy_before = await copy_baseline(pool, data["first"])
            copy_encoded_before = await copy_baseline(pool, data["first"], encoded)
        seconds["batch_save"][name], result = await save_pass(pool, save_scope, data[name], job_id)
        counts[name] = (result.added, result.updated)
        if name == "first":
            seconds["batch_save_encoded"] = {}
            seconds["batch_save_encoded"][name], result = await save_pass(pool, encoded_scope, data[name],
                                                                          encoded_job, encoded)
            assert (result.added, result.updated) == (n, 0), result
            # the baselines again right after the two first saves, in the reverse order: the load of this shared
            # VM drifts within a minute, so each first save is set against the mean of a COPY of the same input
            # (the records, or their JSON) just before and one just after
            copy_encoded_after = await copy_baseline(pool, data["first"], encoded)
            copy_after = await copy_baseline(pool, data["first"])
            seconds["copy"] = {"first": (copy_before + copy_after) / 2}
            seconds["copy_encoded"] = {"first": (copy_encoded_before + copy_encoded_after) / 2}
            spread = {"copy_before_s": round(copy_before, 2), "copy_after_s": round(copy_after, 2),
                      "copy_encoded_before_s": round(copy_encoded_before, 2),
                      "copy_encoded_after_s": round(copy_encoded_after, 2)}
    assert counts == {"first": (n, 0), "unchanged": (0, 0), "changed": (0, n)}, counts
    notes = []
    if with_dlt:
        try:
            import dlt  # noqa: F401
        except ImportError:
            notes.append("dlt skipped: install the optional bench extra (pip install -e .[bench])")
        else:
            dataset = "d" + uuid.uuid4().hex[:8]
            seconds["dlt"] = {}
            for name in PASSES:
                seconds["dlt"][name] = await asyncio.to_thread(dlt_pass, dsn, data[name], dataset)
    rates = {who: {p: round(n / s) for p, s in passes.items()} for who, passes in seconds.items()}
    ratios = {f"save_vs_naive_{p}": round(seconds["naive"][p] / seconds["batch_save"][p], 3) for p in PASSES}
    ratios["save_vs_copy_first"] = round(seconds["copy"]["first"] / seconds["batch_save"]["first"], 3)
    ratios["save_encoded_vs_copy_first"] = round(seconds["copy_encoded"]["first"]
                                                 / seconds["batch_save_encoded"]["first"], 3)
    if "dlt" in seconds:
        ratios.update({f"save_vs_dlt_{p}": round(seconds["dlt"][p] / seconds["batch_save"][p], 3) for p in PASSES})
    return {"records": n, "batch_size": batch_size,
            "avg_record_bytes": round(sum(len(orjson.dumps(r)) for r in first) / n),
            "per_s": rates, "ratios": ratios,
            "seconds": {w: {p: round(s, 2) for p, s in v.items()} for w, v in seconds.items()}, **spread,
            **({"notes": notes} if notes else {})}


async def main(n: int, batch_size: int) -> dict[str, Any]:
    async with database() as dsn, prepared_database(dsn) as pool:
        return await write_passes(pool, dsn, n, batch_size, with_dlt=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    print(orjson.dumps(asyncio.run(main(args.records, args.batch))).decode())
