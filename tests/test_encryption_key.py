"""Issue 17 blocker 2: ENCRYPTION_KEY never changes by itself, and it can be rotated online.

The fingerprint and rotation tests use a database of their own (the suite's session database holds
values sealed by other tests' random keys, and its fingerprint belongs to the `stack` fixture's key).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp import web
from pydantic import SecretStr
from typer.testing import CliRunner

from orchestrator.api.app import create_app
from orchestrator.cli.main import app as cli
from orchestrator.config.settings import Settings
from orchestrator.control import keys
from orchestrator.crypto import Sealer, key_fingerprint
from orchestrator.platform import EncryptionKeyMismatchError, check_key_fingerprint, sealer_for
from orchestrator.store import key_fingerprint as fingerprint_repo
from orchestrator.store.migrate import migrate
from orchestrator.store.pool import init_connection
from orchestrator.worker import run_worker
from tests.conftest import EXAMPLES, Stack, eventually, free_port, setup_github, wait_for_job


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


# --- the Sealer with two keys ---------------------------------------------------------------------

def test_sealer_opens_values_of_the_previous_key_and_reseals_them_once() -> None:
    old, new = os.urandom(32), os.urandom(32)
    blob = Sealer(old).seal({"access_token": "t"})
    with pytest.raises(Exception):  # noqa: B017 - InvalidTag: one key alone cannot open another's value
        Sealer(new).open(blob)
    rotating = Sealer(new, old)
    assert rotating.open(blob) == {"access_token": "t"}
    assert not rotating.is_current(blob)
    resealed = rotating.reseal(blob)
    assert resealed is not None and Sealer(new).open(resealed) == {"access_token": "t"}
    assert rotating.reseal(resealed) is None  # idempotent
    assert Sealer(new).open(rotating.seal("x")) == "x"  # sealing always uses the current key


def test_fingerprint_names_the_key_without_revealing_it() -> None:
    key = os.urandom(32)
    fp = key_fingerprint(key)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == Sealer(key).fingerprint and fp != key_fingerprint(os.urandom(32))
    assert key.hex()[:16] != fp and base64.b64encode(key).decode()[:16] != fp


# --- a database of its own --------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def own_database(database_url: str) -> AsyncIterator[str]:
    """A new, migrated database on the suite's server; its DSN."""
    name = "key_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
        conn = await asyncpg.connect(dsn)
        try:
            await init_connection(conn)
            await migrate(conn)
        finally:
            await conn.close()
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def cli_env(settings: Settings) -> dict[str, str]:
    return {"DATABASE_URL": settings.database_url.get_secret_value(), "TEMPORAL_ADDRESS": settings.temporal_address,
            "ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
            "ENCRYPTION_KEY_PREVIOUS": settings.encryption_key_previous.get_secret_value()}


async def test_first_process_stores_the_fingerprint_and_a_race_keeps_one(db_ready: str) -> None:
    async with own_database(db_ready) as dsn:
        pool = await asyncpg.create_pool(dsn, init=init_connection, min_size=1, max_size=8)
        try:
            sealers = [Sealer(os.urandom(32)) for _ in range(6)]

            async def start(sealer: Sealer) -> str:
                async with pool.acquire() as conn:
                    try:
                        return await check_key_fingerprint(conn, sealer)
                    except EncryptionKeyMismatchError as exc:
                        return exc.fields["expected"]
            stored = set(await asyncio.gather(*(start(s) for s in sealers)))
            assert len(stored) == 1 and stored <= {s.fingerprint for s in sealers}
            async with pool.acquire() as conn:
                assert await fingerprint_repo.get(conn) == stored.pop()
        finally:
            await pool.close()


async def test_a_process_with_another_key_refuses_to_start(stack: Stack, tmp_path: Path) -> None:
    async with own_database(stack.settings.database_url.get_secret_value()) as dsn:
        first = stack.settings.model_copy(update={"database_url": SecretStr(dsn),
                                                  "encryption_key": SecretStr(new_key())})
        other = first.model_copy(update={"encryption_key": SecretStr(new_key())})
        expected, actual = sealer_for(first).fingerprint, sealer_for(other).fingerprint

        async def nango_migrate(settings: Settings) -> tuple[int, str]:  # a process: it configures logging
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "orchestrator", "migrate", env={**os.environ, **cli_env(settings)},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
            return proc.returncode or 0, out.decode()

        # `nango migrate` with the first key stores its fingerprint (and passes again with it).
        for _ in range(2):
            code, output = await nango_migrate(first)
            assert code == 0, output

        # The API refuses to start with another key, naming both fingerprints.
        runner = web.AppRunner(create_app(other, temporal=stack.client))
        with pytest.raises(EncryptionKeyMismatchError) as refused:
            await runner.setup()
        await runner.cleanup()
        assert expected in refused.value.message and actual in refused.value.message

        # So does `nango worker`, as a process: exit status 1 and the reason on stderr, before it polls.
        env = {**os.environ, **cli_env(other), "MINIO_ENDPOINT": other.minio_endpoint, "MINIO_ACCESS_KEY": "testing",
               "MINIO_SECRET_KEY": "testing", "MINIO_BUCKET": other.minio_bucket, "WORKER_HEALTH_PORT": "0",
               "TASK_QUEUE_PREFIX": "fp-", "BUNDLE_CACHE_DIR": str(tmp_path / "cache"), "STARTUP_WAIT_MAX_S": "30"}
        env.pop("ENCRYPTION_KEY_PREVIOUS")
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "orchestrator", "worker", env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        text = (out + err).decode()
        assert proc.returncode == 1, text[-3000:]
        assert "ENCRYPTION_KEY does not match the database" in text
        assert f"fingerprint {expected}, this process has {actual}" in text
        assert "worker_started" not in text
        for settings in (first, other):
            assert settings.encryption_key.get_secret_value() not in text

        # And `nango migrate`.
        code, output = await nango_migrate(other)
        assert code == 1 and f"fingerprint {expected}, this process has {actual}" in output, output


# --- online rotation through the real stack -------------------------------------------------------

@dataclass
class Processes:
    """An API server and a worker of our own (own Settings, own database), like one rollout's pods."""

    settings: Settings
    runner: web.AppRunner
    stop: asyncio.Event
    worker: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.worker, 30)
        await self.runner.cleanup()


async def start(settings: Settings, stack: Stack) -> Processes:
    runner = web.AppRunner(create_app(settings, temporal=stack.client), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api_port).start()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop, client=stack.client))
    return Processes(settings, runner, stop, worker)


def slow_sync(tmp_path: Path) -> Path:
    """The example integration with a sync that first makes `slow_requests` (connection metadata) proxied
    requests, 0.3 s apart: 20 (~6 s) keep the run going through a rotation; the other runs need none."""
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    script = folder / "github/syncs/issues.py"
    script.write_text("import asyncio\n" + script.read_text().replace(
        "    metadata = await nango.get_metadata()\n",
        "    metadata = await nango.get_metadata()\n"
        "    for _ in range(metadata.get('slow_requests', 0)):\n"
        "        assert (await nango.get(f\"/repos/{metadata['repo']}/issues\")).status == 200\n"
        "        await asyncio.sleep(0.3)\n", 1))
    return folder


async def test_online_rotation_keeps_credentials_readable_and_syncs_running(stack: Stack, tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    async with own_database(stack.settings.database_url.get_secret_value()) as dsn:
        port = free_port()
        base = stack.settings.model_copy(update={
            "database_url": SecretStr(dsn), "encryption_key": SecretStr(old), "api_port": port,
            "task_queue_prefix": f"rot{uuid.uuid4().hex[:5]}-", "bundle_cache_dir": tmp_path / "cache",
            "minio_bucket": "rot-" + uuid.uuid4().hex[:6]})
        pool = await asyncpg.create_pool(dsn, init=init_connection, min_size=1, max_size=5)
        procs = await start(base, stack)
        try:
            mine = Stack(base, f"http://127.0.0.1:{port}", stack.client, pool, stack.demo, stack.provider_url)
            gh = await setup_github(mine, issues=3, folder=slow_sync(tmp_path))
            await wait_for_job(mine, gh)
            async with mine.api(gh.key) as api:
                # An integration without syncs (its connections start no job) with sealed secrets of its
                # own, and more sealed rows than one batch.
                await api.create_integration("spare", "github", client_id="cid", client_secret="csecret",
                                             webhook_secret="whsecret")
                for i in range(12):
                    await api.create_connection("spare", f"extra-{i}", {"type": "API_KEY", "apiKey": f"k-{i}"})
                await api.set_environment_variables({"TOKEN_A": "value-a", "TOKEN_B": "value-b"})
            async with pool.acquire() as conn:
                await conn.execute("UPDATE environments SET webhook_secret = $1 WHERE name = $2",
                                   Sealer(base64.b64decode(old)).seal("whsec"), gh.env)

            async def readable(api_url: str) -> None:
                async with Stack(base, api_url, stack.client, pool, stack.demo, stack.provider_url).api(gh.key) as api:
                    got = await api.get_connection("github", gh.connection_id)
                    assert got["credentials"]["access_token"] == "demo-token"
                    assert (await api.get_connection("spare", "extra-11"))["credentials"]["apiKey"] == "k-11"
                    spare = await api.get_integration("spare", include=["credentials"])
                    assert spare["credentials"]["client_secret"] == "csecret"
                    assert {v["name"]: v["value"] for v in await api.get_environment_variables()} == {
                        "TOKEN_A": "value-a", "TOKEN_B": "value-b"}
            await readable(mine.api_url)
            async with pool.acquire() as conn:
                gh_pk = await conn.fetchval("SELECT id FROM connections WHERE connection_id = $1", gh.connection_id)

            # Roll: every process gets the new key, and the old one as the previous key.
            await procs.close()
            rotating = base.model_copy(update={"encryption_key": SecretStr(new),
                                               "encryption_key_previous": SecretStr(old)})
            procs = await start(rotating, stack)
            await readable(mine.api_url)

            # Rotate while a sync runs (its proxied requests use the connection's credentials) and
            # clients read credentials.
            async with mine.api(gh.key) as api:
                await api.update_metadata("github", gh.connection_id, {"slow_requests": 20})
                await api.trigger_sync("github", connection_id=gh.connection_id)

            async def running() -> int:
                async with pool.acquire() as conn:
                    job = await conn.fetchval("SELECT id FROM jobs WHERE status = 'running' AND kind = 'sync'"
                                              " AND connection_pk = $1", gh_pk)
                assert job is not None
                return job
            job = await eventually(running, timeout=30)
            reads = 0
            done = asyncio.Event()

            async def keep_reading() -> None:
                nonlocal reads
                while not done.is_set():
                    await readable(mine.api_url)
                    reads += 1
            reader = asyncio.create_task(keep_reading())
            result = await asyncio.to_thread(CliRunner().invoke, cli,
                                             ["admin", "keys", "rotate-encryption", "--batch-size", "3"],
                                             env=cli_env(rotating))
            done.set()
            await reader
            assert result.exit_code == 0, result.output
            async with pool.acquire() as conn:  # the sync was still running when the rotation ended
                assert await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job) == "running"
            assert reads >= 1
            assert "connections.credentials=13" in result.output, result.output
            for resealed in ("environments.webhook_secret=1", "environment_variables.value=2",
                             "integrations.oauth_client_secret=1", "integrations.webhook_secret=1"):
                assert resealed in result.output, result.output
            await wait_for_job(mine, gh, count=2)
            async with mine.api(gh.key) as api:
                await api.update_metadata("github", gh.connection_id, {"slow_requests": 0})
            async with pool.acquire() as conn:
                assert await fingerprint_repo.get(conn) == key_fingerprint(base64.b64decode(new))
            assert not any((await keys.count_under_previous(pool, sealer_for(rotating))).values())
            # Idempotent: a second run re-seals nothing.
            again = await asyncio.to_thread(CliRunner().invoke, cli, ["admin", "keys", "rotate-encryption"],
                                            env=cli_env(rotating))
            assert again.exit_code == 0 and "connections.credentials=0" in again.output, again.output

            # Remove the previous key and roll again: everything opens with the new key alone.
            await procs.close()
            final = rotating.model_copy(update={"encryption_key_previous": SecretStr("")})
            procs = await start(final, stack)
            await readable(mine.api_url)
            async with mine.api(gh.key) as api:
                await api.trigger_sync("github", connection_id=gh.connection_id)
            await wait_for_job(mine, gh, count=3)
            async with pool.acquire() as conn:
                env_secret = await conn.fetchval("SELECT webhook_secret FROM environments WHERE name = $1", gh.env)
            assert Sealer(base64.b64decode(new)).open(env_secret) == "whsec"
            # A process still on the old key alone now refuses to start.
            async with pool.acquire() as conn:
                with pytest.raises(EncryptionKeyMismatchError):
                    await check_key_fingerprint(conn, sealer_for(base))
        finally:
            await procs.close()
            await pool.close()


async def test_rotation_needs_the_previous_key(db_ready: str) -> None:
    async with own_database(db_ready) as dsn:
        pool = await asyncpg.create_pool(dsn, init=init_connection, min_size=1, max_size=2)
        try:
            with pytest.raises(keys.KeyRotationError, match="ENCRYPTION_KEY_PREVIOUS is not set"):
                await keys.rotate_encryption(pool, Sealer(os.urandom(32)))
        finally:
            await pool.close()


async def test_a_value_neither_key_opens_stops_the_rotation_and_names_the_row(db_ready: str) -> None:
    async with own_database(db_ready) as dsn:
        pool = await asyncpg.create_pool(dsn, init=init_connection, min_size=1, max_size=2)
        old, new = os.urandom(32), os.urandom(32)
        try:
            async with pool.acquire() as conn:
                env_id = await conn.fetchval("INSERT INTO environments (name, secret_key_hash, webhook_secret)"
                                             " VALUES ('e', 'h', $1) RETURNING id", Sealer(os.urandom(32)).seal("x"))
                await fingerprint_repo.claim(conn, key_fingerprint(old))
            with pytest.raises(keys.KeyRotationError, match=rf"environments.webhook_secret of row \({env_id},\)"):
                await keys.rotate_encryption(pool, Sealer(new, old))
            async with pool.acquire() as conn:
                assert await fingerprint_repo.get(conn) == key_fingerprint(old)  # unchanged: not done
        finally:
            await pool.close()
