"""Run one script against real rows without Temporal: used by the runner's tests and the benchmark.

`ScriptBench` creates an environment, an integration and a connection, writes a bundle folder
from a dict of sources, and runs a script through `run_script` with a real `ScriptHost` writing to
the database (`DatabaseSink`), as a worker's run does.
"""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from orchestrator.bundles.store import DirectoryStore
from orchestrator.config.settings import Settings
from orchestrator.crypto import Sealer, new_secret_key
from orchestrator.platform import Platform
from orchestrator.providers.catalog import Provider, get_provider
from orchestrator.providers.egress import Egress
from orchestrator.runner.host import Limits, Runner, RunOutcome, RunSpec, ScriptKind, run_script
from orchestrator.runs.script_host import ScriptHost
from orchestrator.runs.sinks import DatabaseSink
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store.types import Connection, Credentials, OAuth2Credentials


@dataclass
class ScriptBench:
    pool: asyncpg.Pool
    sealer: Sealer
    session: aiohttp.ClientSession
    root: Path
    runner: Runner | None = None
    environment_id: int = 0
    environment_name: str = ""
    integration_id: int = 0
    integration_key: str = "github"
    provider_name: str = "github"
    hosts: list[ScriptHost] = field(default_factory=list)
    # The bench's EGRESS_ALLOW: a test lists the servers on loopback its scripts reach (the demo
    # provider, an echo server), as an operator lists internal hosts; nothing else is opened.
    egress_allow: list[str] = field(default_factory=list)

    def platform(self, egress: Egress | None = None) -> Platform:
        """The handles a refresh needs; a bench has no Temporal client and stores no bundles."""
        return Platform(settings=Settings(), pool=self.pool, sealer=self.sealer, temporal_client=None,
                        bundles=DirectoryStore(self.root / "bundles"), http=self.session, egress=egress)

    async def setup(self, *, integration_key: str = "github", provider: str = "github") -> ScriptBench:
        self.environment_name = "rt" + uuid.uuid4().hex[:10]
        self.integration_key = integration_key
        self.provider_name = provider
        async with self.pool.acquire() as conn:
            env = await environments_repo.create(conn, self.environment_name, new_secret_key())
            integration = await integrations_repo.upsert(conn, env.id, integration_key, provider)
        self.environment_id, self.integration_id = env.id, integration.id
        return self

    async def set_oauth_client(self, client_id: str, client_secret: str) -> None:
        async with self.pool.acquire() as conn:
            await integrations_repo.update_settings(conn, self.integration_id, oauth_client_id=client_id,
                                                    sealed_client_secret=self.sealer.seal(client_secret))

    async def connection(self, credentials: Credentials | None = None, *, connection_id: str | None = None,
                         connection_config: dict[str, Any] | None = None,
                         metadata: dict[str, Any] | None = None) -> Connection:
        creds = credentials or OAuth2Credentials(access_token="demo-token")
        cid = connection_id or "conn-" + uuid.uuid4().hex[:8]
        async with self.pool.acquire() as conn:
            pk, _ = await connections_repo.create(
                conn, self.sealer, environment_id=self.environment_id, integration_id=self.integration_id,
                connection_id=cid, credentials=creds, connection_config=connection_config, metadata=metadata)
            found = await connections_repo.get_by_pk(conn, self.sealer, pk)
        assert found is not None
        return found

    def bundle(self, files: dict[str, str]) -> Path:
        folder = self.root / ("bundle-" + uuid.uuid4().hex[:10])
        for rel, text in files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return folder

    async def open_job(self, connection: Connection, sync_name: str, kind: str = "sync") -> int:
        async with self.pool.acquire() as conn:
            job_id = await jobs_repo.open_job(
                conn, environment_id=self.environment_id, connection_pk=connection.id, script_name=sync_name,
                variant="base", kind=kind, full_resync=False, workflow_id="wf-" + uuid.uuid4().hex[:8],
                run_id="run-" + uuid.uuid4().hex[:8])
        return job_id

    async def run(
        self, source: str | dict[str, str], connection: Connection, *, kind: ScriptKind = "sync",
        timeout_s: float = 20, limits: Limits | None = None, provider: Provider | None = None,
        sync_name: str | None = "test-sync", job: bool = True, input: Any = None,
        environment_variables: list[dict[str, str]] | None = None, context: dict[str, Any] | None = None,
        variant: str = "base", **host_kwargs: Any,
    ) -> tuple[RunOutcome, ScriptHost]:
        files = {"script.py": source} if isinstance(source, str) else source
        module = "script.py" if isinstance(source, str) else next(iter(files))
        bundle_dir = self.bundle(files)
        provider = provider or get_provider(self.provider_name)
        job_id = await self.open_job(connection, sync_name or "action", kind) if job else None
        pool, session = self.pool, self.session

        async def refresh(force: bool) -> Connection:
            from orchestrator.providers import credentials

            host.connection = await credentials.refresh(self.platform(egress), host.connection, force=force)
            return host.connection

        async def write_metadata(metadata: dict[str, Any], merge: bool) -> dict[str, Any]:
            async with pool.acquire() as conn:
                written = await connections_repo.write_metadata(conn, [connection.id], metadata, merge=merge)
                return written.get(connection.id)

        sink = DatabaseSink(pool, environment_id=connection.environment_id, connection_pk=connection.id,
                            variant=variant, job_id=job_id, sync_name=sync_name)
        egress = Egress(",".join(self.egress_allow))
        host_kwargs.setdefault("egress", egress)
        host = ScriptHost(sink=sink, session=session, connection=connection, provider=provider,
                          environment_name=self.environment_name, job_id=job_id, refresh_credentials=refresh,
                          metadata_writer=write_metadata, environment_variables=environment_variables,
                          **host_kwargs)
        self.hosts.append(host)
        spec = RunSpec(kind=kind, bundle_dir=bundle_dir, module_path=module, timeout_s=timeout_s,
                       limits=limits or Limits(), context={
                           "connection_id": connection.connection_id, "provider_config_key": self.integration_key,
                           "provider": connection.provider, "environment": self.environment_name,
                           "job_id": job_id, "pagination": provider.pagination, "script_name": sync_name,
                           "variant": variant, "input": input, **(context or {})})
        try:
            outcome = await run_script(spec, host, runner=self.runner)
        finally:
            await egress.close()
            await host.flush_logs(final=True)
        return outcome, host
