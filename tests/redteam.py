"""What every red-team test checks after an attack: no secret reached anything stored, and the
platform still works (a normal sync of the same connection succeeds right after)."""

from __future__ import annotations

import asyncio

from orchestrator.authoring.compile import compile_project
from tests.conftest import EXAMPLES, GithubSetup, Stack, wait_for_job


async def assert_no_secret(stack: Stack, env: str, *more: str) -> None:
    """No credential or platform secret in any job, log line or record of the environment."""
    secrets = ["demo-token", stack.settings.encryption_key.get_secret_value(),
               stack.settings.database_url.get_secret_value(), stack.settings.minio_secret_key.get_secret_value(),
               *more]
    async with stack.pool.acquire() as conn:
        texts = await conn.fetch(
            "SELECT concat_ws(' ', j.error, j.error_details, j.output::text, j.input::text) AS t FROM jobs j"
            " JOIN environments e ON e.id = j.environment_id WHERE e.name = $1"
            " UNION ALL SELECT concat_ws(' ', l.message, l.fields::text) FROM script_logs l JOIN jobs j"
            " ON j.id = l.job_id JOIN environments e ON e.id = j.environment_id WHERE e.name = $1"
            " UNION ALL SELECT r.body FROM records r JOIN record_scopes s ON s.id = r.scope_id"
            " JOIN connections c ON c.id = s.connection_pk JOIN environments e ON e.id = c.environment_id"
            " WHERE e.name = $1", env)
    for row in texts:
        for secret in secrets:
            if secret:
                assert secret not in (row["t"] or ""), "a secret reached a job, log line or record"


async def normal_sync_after(stack: Stack, gh: GithubSetup, done: int) -> list[dict[str, object]]:
    """Deploy the example unchanged and run it: the connection's next job (its `done + 1`th) succeeds."""
    async with stack.api(gh.key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, EXAMPLES))
        await api.trigger_sync("github", ["issues"], gh.connection_id)
    return await wait_for_job(stack, gh, count=done + 1, status="success", timeout=90)
