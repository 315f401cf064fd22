"""`nango admin syncs ...` through the real stack: the same controls operators script against."""

from __future__ import annotations

import asyncio
import json

from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.temporal import schedules
from tests.conftest import Stack, setup_github, wait_for_job


def _env(stack: Stack) -> dict[str, str]:
    s = stack.settings
    return {"DATABASE_URL": s.database_url.get_secret_value(), "TEMPORAL_ADDRESS": s.temporal_address,
            "ENCRYPTION_KEY": s.encryption_key.get_secret_value()}


async def _admin(stack: Stack, *args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, app, ["admin", "syncs", *args], env=_env(stack))
    assert result.exit_code == 0, result.output
    return result.output


async def test_admin_pause_trigger_frequency_status_and_list(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    out = await _admin(stack, "pause", "github", "issues", "-e", gh.env, "--note", "maintenance window")
    assert "paused 1 schedule(s)" in out
    view = await schedules.describe(stack.client, gh.schedule_id())
    assert view is not None and view.paused and view.note == "maintenance window"

    await _admin(stack, "trigger", "github", "-e", gh.env, "--connection", "conn-1", "--full")
    jobs = await wait_for_job(stack, gh, count=2)
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT full_resync FROM jobs WHERE id = $1", jobs[0]["id"]) is True

    await _admin(stack, "frequency", "github", "issues", "every 6 hours", "-e", gh.env, "-c", "conn-1")
    view = await schedules.describe(stack.client, gh.schedule_id())
    assert view is not None and view.interval_s == 6 * 3600
    await _admin(stack, "resume", "github", "-e", gh.env)
    status = json.loads(await _admin(stack, "status", "github", "-e", gh.env, "--json"))
    assert status[0]["status"] == "SUCCESS" and status[0]["frequency"] == "every 6 hours" and not status[0]["paused"]
    listed = json.loads(await _admin(stack, "list", "-e", gh.env, "--json"))
    assert [(r["schedule_id"], r["frequency"]) for r in listed] == [(gh.schedule_id(), "every 6h")]
    assert f"{gh.schedule_id()}  every 6h  " in await _admin(stack, "list", "-e", gh.env)


async def test_admin_errors_are_clear(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["admin", "syncs", "pause", "github", "nope",
                                                               "-e", gh.env], env=_env(stack))
    assert result.exit_code == 1
    assert "unknown sync(s) nope" in result.output and "Traceback" not in result.output
    result = await asyncio.to_thread(CliRunner().invoke, app, ["admin", "syncs", "list", "-e", "no-such-env"],
                                     env=_env(stack))
    assert result.exit_code == 1 and "no environment 'no-such-env'" in result.output


def test_admin_keys_new_prints_a_usable_encryption_key() -> None:
    import base64

    from orchestrator.config.settings import Settings
    from orchestrator.crypto import Sealer

    first, second = (CliRunner().invoke(app, ["admin", "keys", "new"]) for _ in range(2))
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    key = first.stdout.strip()
    assert len(base64.b64decode(key)) == 32 and key != second.stdout.strip()
    sealer = Sealer(Settings(encryption_key=key).encryption_key_bytes())  # type: ignore[arg-type]
    assert sealer.open(sealer.seal("token")) == "token"
    with_no_key = Settings(encryption_key="")  # type: ignore[arg-type]
    try:
        with_no_key.encryption_key_bytes()
    except ValueError as exc:
        assert "nango admin keys new" in str(exc)
    else:
        raise AssertionError("an empty ENCRYPTION_KEY must be refused")
