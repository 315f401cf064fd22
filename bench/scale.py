"""Cost as work grows: prints ONE JSON object.

records: the per-record cost of `records.batch_save` (first save, every record changed) and of reading a
connection's records in pages of 10,000 (`records.read_page`), for fresh connections on an empty `records`
table and again after other connections filled it; one connection's reads are repeated at every size.

schedules: creating one schedule per connection through the reconciler against raw
`client.create_schedule` calls at the same concurrency (and one after the other, as the reconciler did
before), then (the schedules resumed, as running syncs are) a deploy that changes the sync's interval for
every connection, a reconcile with nothing to do (the listing), and describe-then-update re-timings of a
sample (the path a schedule without a PostgreSQL row, or listed paused, still takes) for comparison.

    .venv/bin/python -m bench.scale                       # a few minutes: 1M other records, 2,000 schedules
    .venv/bin/python -m bench.scale --others 2000000 --schedules 10000    # the issue's sizes
    .venv/bin/python -m bench.scale --part schedules      # or --part records
    .venv/bin/python -m bench.scale --part schedules --schedules 10000 --no-raw-baseline --sequential 0 \
        --retime-at 64,128,32                             # only re-timings, one redeploy per concurrency

CPU figures are per schedule, in ms, of the Temporal dev server, PostgreSQL and this process (`/proc/<pid>/stat`),
and the redeploy's calls are counted and timed where the client sends them, so a run says where the time went.

Everything runs here (embedded PostgreSQL under .nango/bench-scale-*, the Temporal dev server in memory
with the dev stack's RPS settings) and is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import gc
import os
import random
import shutil
import statistics
import string
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from pydantic import SecretStr
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.authoring.compile import compile_project  # noqa: E402
from orchestrator.config.settings import Settings  # noqa: E402
from orchestrator.control import deploy as deploy_control  # noqa: E402
from orchestrator.control.reconcile import reconcile_integration  # noqa: E402
from orchestrator.crypto import new_secret_key  # noqa: E402
from orchestrator.devstack.postgres import EmbeddedPostgres  # noqa: E402
from orchestrator.devstack.processes import free_port  # noqa: E402
from orchestrator.devstack.temporal import TemporalDevServer  # noqa: E402
from orchestrator.logging import configure_logging  # noqa: E402
from orchestrator.platform import Platform, open_platform  # noqa: E402
from orchestrator.store import environments as environments_repo  # noqa: E402
from orchestrator.store import integrations as integrations_repo  # noqa: E402
from orchestrator.store import records  # noqa: E402
from orchestrator.store.migrate import migrate  # noqa: E402
from orchestrator.store.pool import init_connection  # noqa: E402
from orchestrator.temporal import names, schedules  # noqa: E402

MODEL = "BenchIssue"
BATCH = 5_000
PAGE = 10_000


def make_records(n: int, *, revision: int = 0, seed: int = 11) -> list[dict[str, Any]]:
    """Deterministic ~1 KB records shaped like a typical API object."""
    rnd = random.Random(seed)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(3, 9))) for _ in range(500)]
    return [{
        "id": f"issue-{i:08d}", "number": i,
        "title": f"Issue {i}: " + " ".join(rnd.choices(words, k=6)) + (f" (rev {revision})" if revision else ""),
        "body": " ".join(rnd.choices(words, k=95)), "state": "open" if i % 3 else "closed",
        "url": f"https://github.example.com/acme/widgets/issues/{i}",
        "author": {"login": rnd.choice(words), "id": rnd.randint(1, 10**6), "site_admin": False},
        "labels": [rnd.choice(words) for _ in range(rnd.randint(0, 4))], "comments": rnd.randint(0, 50),
        "created_at": "2024-03-01T12:00:00Z", "updated_at": f"2024-03-{1 + revision:02d}T12:00:00Z",
        "closed_at": None,
    } for i in range(n)]


def batches(rows: list[Any], size: int = BATCH) -> list[list[Any]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def progress(line: str) -> None:
    """A phase's figure on stderr as soon as it is known (stdout carries only the final JSON)."""
    sys.stderr.write(f"bench.scale: {line}\n")
    sys.stderr.flush()


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


# ---------------------------------------------------------------------------------------------- records

class Store:
    """One database of the same server, migrated, with one integration whose connections are created as rows."""

    def __init__(self, pool: asyncpg.Pool, env_id: int, integration_id: int) -> None:
        self.pool, self.env_id, self.integration_id = pool, env_id, integration_id

    @classmethod
    async def create(cls, dsn: str, name: str) -> Store:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsn, database=name)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(dsn, database=name, init=init_connection, min_size=1, max_size=3)
        async with pool.acquire() as conn:
            env = await environments_repo.create(conn, "rec-" + uuid.uuid4().hex[:6], new_secret_key())
            integ = await integrations_repo.upsert(conn, env.id, "github", "github")
        return cls(pool, env.id, integ.id)

    async def new_connections(self, count: int, prefix: str) -> list[tuple[records.Scope, int]]:
        """(scope, running job id) for `count` new connections."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
                " SELECT $1, $2, $3 || g, '\\x00' FROM generate_series(1, $4) g RETURNING id",
                self.env_id, self.integration_id, f"{prefix}-{uuid.uuid4().hex[:6]}-", count)
            jobs = await conn.fetch(
                "INSERT INTO jobs (environment_id, connection_pk, script_name, status)"
                " SELECT $1, pk, 'bench', 'running' FROM unnest($2::bigint[]) pk RETURNING id, connection_pk",
                self.env_id, [r["id"] for r in rows])
        return [(records.Scope(self.env_id, j["connection_pk"], MODEL), j["id"]) for j in jobs]

    async def fill(self, total: int, per_connection: int) -> float:
        """Other connections' records until `total` more are stored (two writers, as two workers would)."""
        data = batches(make_records(per_connection, seed=5))
        queue = await self.new_connections(max(1, total // per_connection), "other")
        start = time.perf_counter()

        async def writer() -> None:
            async with self.pool.acquire() as conn:
                while queue:
                    scope, job = queue.pop()
                    for batch in data:
                        await records.batch_save(conn, scope, batch, job_id=job)
        await asyncio.gather(writer(), writer())
        elapsed = time.perf_counter() - start
        async with self.pool.acquire() as conn:
            # what autovacuum does after a load this size, done now rather than during a measurement
            await conn.execute("VACUUM (ANALYZE)")
            await conn.execute("CHECKPOINT")
        return elapsed

    async def save(self, scope: records.Scope, job: int, data: list[list[dict[str, Any]]]) -> tuple[float, float]:
        """Seconds, and CPU seconds of the PostgreSQL backend that did the work."""
        async with self.pool.acquire() as conn:
            cpu = backend_cpu(conn)
            start = time.perf_counter()
            for batch in data:
                await records.batch_save(conn, scope, batch, job_id=job)
            return time.perf_counter() - start, backend_cpu(conn) - cpu

    async def read(self, scope: records.Scope) -> tuple[float, float, int, tuple[int, int]]:
        """Seconds to page through the scope at limit 10,000, the backend's CPU seconds, records seen, and the
        blocks PostgreSQL touched for it (pg_statio, every table): (found in shared buffers, read from the OS)."""
        async with self.pool.acquire() as conn:
            before = await blocks(conn)
            cpu = backend_cpu(conn)
            start = time.perf_counter()
            cursor, seen = None, 0
            while True:
                page = await records.read_page(conn, scope, cursor=cursor, limit=PAGE)
                seen += page.count
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
            elapsed, cpu = time.perf_counter() - start, backend_cpu(conn) - cpu
            after = await blocks(conn)
            return elapsed, cpu, seen, (after[0] - before[0], after[1] - before[1])


def backend_cpu(conn: asyncpg.Connection) -> float:
    """CPU seconds the connection's PostgreSQL backend has run (Linux schedstat, nanoseconds): unlike the
    wall clock, barely moved by other processes competing for the same two cores."""
    pid = conn.get_server_pid()  # type: ignore[attr-defined]  # a pool's proxy forwards it
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


async def blocks(conn: asyncpg.Connection) -> tuple[int, int]:
    """Blocks of every user table, index and TOAST found in shared buffers and read from the OS so far
    (this backend's counts flushed first)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT coalesce(sum(coalesce(heap_blks_hit, 0) + coalesce(idx_blks_hit, 0) + coalesce(toast_blks_hit, 0)"
        " + coalesce(tidx_blks_hit, 0)), 0)::bigint AS hit, coalesce(sum(coalesce(heap_blks_read, 0)"
        " + coalesce(idx_blks_read, 0) + coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0)), 0)::bigint"
        " AS read FROM pg_statio_user_tables")
    return row["hit"], row["read"]


async def measure(stores: dict[str, Store], watched: dict[str, records.Scope], first: list[list[dict[str, Any]]],
                  changed: list[list[dict[str, Any]]], n: int, repeat: int) -> dict[str, dict[str, float]]:
    """Per-record cost (microseconds, median over `repeat` fresh connections) in each store, the stores
    taking turns so both see the same moment of a noisy machine."""
    figures: dict[str, dict[str, list[float]]] = {k: {} for k in stores}
    order = list(stores)
    for r in range(repeat):
        for key in order if r % 2 == 0 else order[::-1]:
            store, into = stores[key], figures[key]
            (scope, job), = await store.new_connections(1, "t")
            for name, data in (("save_first", first), ("save_changed", changed)):
                seconds, cpu = await store.save(scope, job, data)
                into.setdefault(f"{name}_us", []).append(seconds / n * 1e6)
                into.setdefault(f"{name}_pg_cpu_us", []).append(cpu / n * 1e6)
            for name, target in (("read", scope), ("watched_read", watched[key])):
                # the best of three reads: the cost of the read itself, less whatever else ran meanwhile
                runs = [await store.read(target) for _ in range(3)]
                assert all(seen == n for _, _, seen, _ in runs), runs
                into.setdefault(f"{name}_us", []).append(min(r[0] for r in runs) / n * 1e6)
                into.setdefault(f"{name}_pg_cpu_us", []).append(min(r[1] for r in runs) / n * 1e6)
                if name == "read":
                    hit, missed = runs[0][3]
                    into.setdefault("read_blocks_hit_per_1k", []).append(hit / n * 1000)
                    into.setdefault("read_blocks_missed_per_1k", []).append(missed / n * 1000)
    return {k: {name: round(statistics.median(v), 2) for name, v in f.items()} for k, f in figures.items()}


async def bench_records(dsn: str, *, n: int, repeat: int, others: int, steps: int) -> dict[str, Any]:
    """`grown` fills with other connections' records step by step; `empty` holds only what is measured."""
    first, changed = batches(make_records(n)), batches(make_records(n, revision=1))
    gc.freeze()  # the input records live for the whole run: keep the cyclic GC from walking them
    tag = uuid.uuid4().hex[:6]
    stores = {"grown": await Store.create(dsn, f"scale_grown_{tag}"),
              "empty": await Store.create(dsn, f"scale_empty_{tag}")}
    try:
        watched = {}
        for key, store in stores.items():  # one connection each, saved on the empty table, read at every size
            (scope, job), = await store.new_connections(1, "watched")
            await store.save(scope, job, first)
            watched[key] = scope
        sizes = [0] + ([others * (i + 1) // steps for i in range(steps)] if others else [])
        per_size: list[dict[str, Any]] = []
        loaded, fill_s = 0, 0.0
        for size in sizes:
            if size > loaded:
                fill_s += await stores["grown"].fill(size - loaded, per_connection=max(BATCH, min(20_000, n)))
                loaded = size
            figures = await measure(stores, watched, first, changed, n, repeat)
            grown, empty = figures["grown"], figures["empty"]
            per_size.append({"other_records": size, **figures, "ratios": {
                name: ratio(grown[name], empty[name])
                for name in grown if not name.startswith("read_blocks")}})
    finally:
        for store in stores.values():
            await store.pool.close()
    last = per_size[-1]["ratios"]
    return {
        "records_per_connection": n, "fresh_connections_per_size": repeat, "page_limit": PAGE,
        "fill_per_s": round(loaded / fill_s) if fill_s else None, "sizes": per_size,
        # cost with `others` records of other connections / cost on a table without them, measured in turns at
        # the same moment: the goal is 0.8-1.2 (the 0 row shows the noise floor)
        "save_first_ratio": last["save_first_us"], "save_changed_ratio": last["save_changed_us"],
        "read_ratio": last["read_us"], "watched_read_ratio": last["watched_read_us"],
        # the same ratios in CPU of the PostgreSQL backend (what the database did, whatever else ran)
        "pg_cpu_ratios": {name.removesuffix("_pg_cpu_us"): last[name] for name in last if "_pg_cpu_" in name},
    }


# -------------------------------------------------------------------------------------------- schedules

TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants: the Temporal dev server, or the
    postmaster and its backends."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        one = todo.pop()
        with contextlib.suppress(OSError):
            with open(f"/proc/{one}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        todo += children.get(one, [])
    return total


@dataclass
class Cpu:
    """CPU seconds of the three parties (the Temporal server, PostgreSQL, this process) over one phase."""

    pids: dict[str, int]
    start: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.start = self.now()

    def now(self) -> dict[str, float]:
        return {"ours": time.process_time(), **{name: tree_cpu(pid) for name, pid in self.pids.items()}}

    def per(self, count: int) -> dict[str, float]:
        """Milliseconds of CPU per item since the start, by party."""
        end = self.now()
        return {f"{name}_cpu_ms": round((end[name] - self.start[name]) / count * 1000, 2) for name in end}


class Tally:
    """Wraps one RPC of the client's workflow service: how many calls, how long each took, and how long at
    least one was in flight (wall clock)."""

    def __init__(self, service: Any, rpc: str) -> None:
        self.service, self.rpc, self.inner = service, rpc, getattr(service, rpc)
        self.count, self.total_s, self.busy_s, self.flying, self.since = 0, 0.0, 0.0, 0, 0.0
        setattr(service, rpc, self.call)

    async def call(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        if not self.flying:
            self.since = start
        self.flying += 1
        try:
            return await self.inner(*args, **kwargs)
        finally:
            end = time.perf_counter()
            self.flying -= 1
            self.count += 1
            self.total_s += end - start
            if not self.flying:
                self.busy_s += end - self.since

    def close(self) -> dict[str, float]:
        delattr(self.service, self.rpc)
        return {"calls": self.count, "in_flight_s": round(self.busy_s, 2),
                "mean_ms": round(self.total_s / self.count * 1000, 1) if self.count else 0.0}


async def phase(pids: dict[str, int], count: int, run: Awaitable[Any]) -> tuple[float, dict[str, float]]:
    """Seconds `run` took, and the CPU each party spent on it per item (ms)."""
    cpu = Cpu(pids)
    start = time.perf_counter()
    await run
    return time.perf_counter() - start, cpu.per(count)


def _folder(home: Path, runs: str) -> Path:
    """The example integration with its sync re-timed and not started by itself (no run is measured)."""
    folder = home / f"ints-{runs.replace(' ', '')}"
    shutil.copytree(ROOT / "examples" / "nango-integrations", folder)
    text = (folder / "nango.yaml").read_text().replace(
        "runs: every 5 minutes", f"runs: {runs}\n        auto_start: false")
    (folder / "nango.yaml").write_text(text)
    return folder


async def _deploy(platform: Platform, env: Any, home: Path, runs: str) -> None:
    bundles = await asyncio.to_thread(compile_project, _folder(home, runs))
    await deploy_control.deploy(platform, env, [deploy_control.UploadedBundle.parse(b.data) for b in bundles])


async def raw_creates(client: Client, count: int, concurrency: int, task_queue: str) -> float:
    """Seconds for `count` bare `create_schedule` calls (paused, one-hour interval) at this concurrency."""
    prefix = "raw-" + uuid.uuid4().hex[:6]
    ids = iter(range(count))

    async def worker() -> None:
        for i in ids:
            await client.create_schedule(f"{prefix}-{i}", Schedule(
                action=ScheduleActionStartWorkflow("SyncWorkflow", {"n": i}, id=f"{prefix}-wf-{i}",
                                                   task_queue=task_queue),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
                state=ScheduleState(paused=True)))
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def connection_added(platform: Platform, integration: Any, prefix: str, times: int = 5) -> float:
    """Median seconds to reconcile one new connection alone (what creating a connection does)."""
    seconds = []
    for i in range(times):
        async with platform.pool.acquire() as conn:
            pk = await conn.fetchval(
                "INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
                " VALUES ($1, $2, $3, '\\x00') RETURNING id", integration.environment_id, integration.id,
                f"{prefix}-{i}")
        start = time.perf_counter()
        report = await reconcile_integration(platform, integration, only_connections=[pk])
        seconds.append(time.perf_counter() - start)
        assert len(report.created) == 1, report
    return statistics.median(seconds)


async def bench_schedules(platform: Platform, home: Path, count: int, sequential: int, pids: dict[str, int],
                          raw_baseline: bool = True, retime_at: list[int] | None = None) -> dict[str, Any]:
    client, pool = platform.temporal, platform.pool
    concurrency = platform.settings.reconcile_concurrency
    queue = names.queue(platform.task_queue_prefix, names.SYNC_QUEUE)
    async with pool.acquire() as conn:
        env = await environments_repo.create(conn, "scale-" + uuid.uuid4().hex[:6], new_secret_key())
    await _deploy(platform, env, home, "every 30d")  # 30 then 31 days: a resumed schedule never fires here
    async with pool.acquire() as conn:
        integration = await integrations_repo.get(conn, env.id, "github")
        assert integration is not None
    one_before = await connection_added(platform, integration, "alone")
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
            " SELECT $1, $2, 'conn-' || g, '\\x00' FROM generate_series(1, $3) g", env.id, integration.id, count)

    # the raw baseline half before and half after ours: the server slows a little as schedules pile up
    raw_s = await raw_creates(client, count // 2, concurrency, queue) if raw_baseline else 0.0
    start = time.perf_counter()
    created = await reconcile_integration(platform, integration)
    ours_s = time.perf_counter() - start
    raw_s += await raw_creates(client, count - count // 2, concurrency, queue) if raw_baseline else 0.0
    progress(f"created {count} schedules: ours {ours_s:.1f} s, raw {raw_s:.1f} s")
    raw_seq_s = await raw_creates(client, sequential, 1, queue) if sequential else 0.0
    assert len(created.created) == count, len(created.created)

    # resumed, as most syncs are (a paused one is described before re-timing); then wait for the listing
    sids = [names.sync_schedule_id(env.name, "github", f"conn-{i}", "issues") for i in range(1, count + 1)]
    ids = iter(sids)

    async def resume() -> None:
        for sid in ids:
            await schedules.unpause(client, sid, "resumed", pool=pool)  # as the platform resumes: mark cleared
    applying = Cpu(pids)
    resume_s, resume_cpu = await phase(pids, count, asyncio.gather(*(resume() for _ in range(concurrency))))
    prefix = names.schedule_prefix(env.name, "github")

    async def until_listed(done: Callable[[schedules.Listed], bool]) -> None:
        """Until the listing shows every schedule so: Temporal has applied the calls it accepted. A listing of
        10,000 takes the server CPU the updates need, so the waits between listings are three times as long
        as the last listing took (the server spends at most about a quarter of its time on them)."""
        while True:
            listed: dict[str, schedules.Listed] = {}
            start = time.perf_counter()
            async for page in schedules.list_pages(client, prefix, page_size=1000):
                listed.update(page)
            if all(sid in listed and done(listed[sid]) for sid in sids):
                return
            await asyncio.sleep(max(1.0, 3 * (time.perf_counter() - start)))
    lag_s, _ = await phase(pids, count, until_listed(lambda shown: not shown.paused))
    resume_applied_cpu = applying.per(count)
    progress(f"resumed {count} schedules in {resume_s:.1f} s ({resume_cpu}), listed so {lag_s:.1f} s later "
             f"({resume_applied_cpu} in all)")

    redeploys: list[dict[str, Any]] = []
    for days, limit in enumerate(retime_at or [concurrency], start=31):
        # each redeploy at its own concurrency, once the listing showed the previous one applied
        at = dataclasses.replace(platform, settings=platform.settings.model_copy(
            update={"reconcile_concurrency": limit}))
        rpcs = [Tally(client.workflow_service, rpc)
                for rpc in ("list_schedules", "update_schedule", "describe_schedule")]
        applying = Cpu(pids)
        redeploy_s, redeploy_cpu = await phase(pids, count, _deploy(at, env, home, f"every {days}d"))
        calls = {t.rpc: t.close() for t in rpcs}
        progress(f"redeploy at {limit} in flight re-timed {count} schedules in {redeploy_s:.1f} s: "
                 f"CPU {redeploy_cpu}, calls {calls}")
        applied_s, _ = await phase(pids, count, until_listed(
            lambda shown, target=days * 86400: shown.interval_s == target))
        applied_s += redeploy_s
        applied_cpu = applying.per(count)
        progress(f"the listing showed them all re-timed {applied_s:.1f} s after the redeploy started ({applied_cpu})")
        redeploys.append({"concurrency": limit, "retime_s": round(redeploy_s, 2),
                          "retime_per_s": round(count / redeploy_s, 1), "applied_s": round(applied_s, 2),
                          "cpu_ms": redeploy_cpu, "applied_cpu_ms": applied_cpu, "calls": calls})
    noop_task = asyncio.ensure_future(reconcile_integration(platform, integration))
    noop_s, noop_cpu = await phase(pids, count, noop_task)
    noop = noop_task.result()
    progress(f"reconcile with nothing to do: {noop_s:.1f} s ({noop_cpu})")
    assert not (noop.created or noop.retimed or noop.deleted), noop
    one_after = await connection_added(platform, integration, "late")

    # read a sample back from Temporal: the new interval, still paused
    sample = random.Random(3).sample(range(1, count + 1), min(count, 200))
    gate = asyncio.Semaphore(8)  # a describe is a query the scheduler workflow answers: unbounded, they time out

    async def read(i: int) -> schedules.ScheduleView | None:
        async with gate:
            return await schedules.describe(client, names.sync_schedule_id(env.name, "github", f"conn-{i}", "issues"))
    views = await asyncio.gather(*(read(i) for i in sample))
    wrong = [v for v in views if v is None or v.interval_s != days * 86400 or v.paused or v.note != "resumed"]
    assert not wrong, wrong[:3]

    # the describe-then-update path on a sample, at the same concurrency: what every re-timing cost before
    baseline = iter(sids[:min(count, 500)])

    async def retime_described() -> None:
        for sid in baseline:
            await schedules.set_interval(client, sid, timedelta(days=days + 1), source="default", pool=pool,
                                         only_if_following_default=True)
    start = time.perf_counter()
    await asyncio.gather(*(retime_described() for _ in range(concurrency)))
    described_per_s = min(count, 500) / (time.perf_counter() - start)
    return {
        "schedules": count, "concurrency": concurrency,
        "create_ours_per_s": round(count / ours_s, 1),
        "create_raw_per_s": round(count / raw_s, 1) if raw_s else None,
        "create_raw_sequential_per_s": round(sequential / raw_seq_s, 1) if sequential else None,
        # ours / raw at the same concurrency: the goal is about 1 (no slower than the bare client)
        "create_vs_raw": ratio(raw_s, ours_s) if raw_s else None,
        "create_vs_raw_sequential": ratio(count / ours_s, sequential / raw_seq_s) if sequential else None,
        "resume_s": round(resume_s, 2), "listing_lag_s": round(lag_s, 2),
        # CPU per schedule (ms) of the Temporal server, PostgreSQL and this process: while the calls were made,
        # and until the listing showed them all applied (the server's work on each call goes on after it returns)
        "resume_cpu_ms": resume_cpu, "resume_applied_cpu_ms": resume_applied_cpu,
        "redeploy_cpu_ms": redeploys[0]["cpu_ms"], "redeploy_applied_cpu_ms": redeploys[0]["applied_cpu_ms"],
        # the first redeploy's calls: how many, their mean latency, and how long at least one was in flight
        "redeploy_calls": redeploys[0]["calls"],
        # every redeploy (--retime-at): its concurrency, seconds, CPU per schedule, calls
        "redeploys": redeploys,
        "redeploy_retime_s": redeploys[0]["retime_s"],  # goal: < 60 s for 10,000 connections
        "redeploy_retime_per_s": redeploys[0]["retime_per_s"],
        "redeploy_applied_s": redeploys[0]["applied_s"],  # until the listing showed every new interval
        "retime_described_per_s": round(described_per_s, 1),  # a sample of 500 through describe + update
        "redeploy_vs_described": ratio(redeploys[0]["retime_per_s"], described_per_s),
        "reconcile_noop_s": round(noop_s, 2),
        "reconcile_noop_cpu_ms": noop_cpu,  # per schedule: the listing's cost
        # a connection added (its schedule created by id, no listing): with `schedules` others / with none
        "connection_added_ms": {"alone": round(one_before * 1000, 1), "among_others": round(one_after * 1000, 1)},
        "connection_added_ratio": ratio(one_after, one_before),
        "sample_checked": len(sample),
    }


# ------------------------------------------------------------------------------------------------- main

@contextlib.asynccontextmanager
async def stack(home: Path, with_temporal: bool, concurrency: int,
                pids: dict[str, int], temporal_config: tuple[str, ...] = ()) -> AsyncIterator[Platform]:
    """The platform on its own PostgreSQL (and Temporal); `pids` gets their processes' ids for CPU figures."""
    async with contextlib.AsyncExitStack() as exits:
        pg = EmbeddedPostgres(home / "pg", free_port(), durable=False)
        dsn = await pg.start()
        exits.push_async_callback(pg.stop)
        assert pg.process is not None and pg.process.proc is not None
        pids["postgres"] = pg.process.proc.pid
        address = "127.0.0.1:1"
        if with_temporal:
            temporal = TemporalDevServer(port=free_port(), ui_port=None, db_file=None, log_file=home / "temporal.log",
                                         extra_config=temporal_config)
            await temporal.start()
            exits.push_async_callback(temporal.stop)
            assert temporal.process is not None and temporal.process.proc is not None
            pids["temporal"] = temporal.process.proc.pid
            address = temporal.address
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        settings = Settings(database_url=SecretStr(dsn), temporal_address=address, bundle_dir=home / "bundles",
                            bundle_cache_dir=home / "cache", reconcile_concurrency=concurrency,
                            encryption_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
                            api_port=free_port(), worker_health_port=0, reconcile_interval_s=0,
                            task_queue_prefix="bench-")
        yield await exits.enter_async_context(open_platform(settings, connect_temporal=with_temporal, wait=True))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("WARNING", "console")  # logs to stderr; stdout carries only the JSON
    home = ROOT / ".nango" / f"bench-scale-{os.getpid()}"
    home.mkdir(parents=True)
    out: dict[str, Any] = {"temporal_config": args.temporal_config}
    try:
        pids: dict[str, int] = {}
        async with stack(home, args.part in ("all", "schedules"), args.concurrency, pids,
                         tuple(args.temporal_config)) as platform:
            if args.part in ("all", "schedules"):
                out["schedules"] = await bench_schedules(platform, home, args.schedules, args.sequential, pids,
                                                         raw_baseline=args.raw_baseline, retime_at=args.retime_at)
            if args.part in ("all", "records"):
                out["records"] = await bench_records(
                    platform.settings.database_url.get_secret_value(), n=args.records, repeat=args.repeat,
                    others=args.others, steps=args.steps)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=("all", "records", "schedules"), default="all")
    parser.add_argument("--records", type=int, default=20_000, help="records per measured connection")
    parser.add_argument("--repeat", type=int, default=3, help="fresh connections measured at each size")
    parser.add_argument("--others", type=int, default=1_000_000, help="other connections' records at the end")
    parser.add_argument("--steps", type=int, default=2, help="sizes between 0 and --others")
    parser.add_argument("--schedules", type=int, default=2_000)
    parser.add_argument("--sequential", type=int, default=500,
                        help="schedules created one call after the other (the reconciler before), for scale")
    parser.add_argument("--raw-baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="bare create_schedule calls beside ours (--no-raw-baseline: only the re-timing matters)")
    parser.add_argument("--retime-at", type=lambda v: [int(x) for x in v.split(",")], default=None,
                        help="redeploys one after the other, each at its own concurrency (e.g. 64,128,32; the "
                        "next once the listing shows the previous applied); default: one at --concurrency")
    parser.add_argument("--concurrency", type=int, default=Settings.model_fields["reconcile_concurrency"].default)
    parser.add_argument("--temporal-config", action="append", default=[], metavar="KEY=VALUE",
                        help="a dynamic config value for the dev server beside the dev stack's (repeatable)")
    result = asyncio.run(main(parser.parse_args()))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
