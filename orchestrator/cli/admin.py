"""`nango admin`: operators' controls, straight through PostgreSQL and the Temporal client.

Same code path as the API and the dashboard (orchestrator.control.syncs). Settings (DATABASE_URL,
TEMPORAL_ADDRESS, ENCRYPTION_KEY...) come from the environment, the integrations folder's `.env` or a
running `nango dev` stack's `.nango/dev.json`, as for every command (cli/settings_discovery.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from orchestrator.platform import Platform
    from orchestrator.store.types import Environment

admin_app = typer.Typer(help="Operate a running platform: syncs, connections, environments, keys.",
                        no_args_is_help=True)
syncs_app = typer.Typer(help="Pause, resume, trigger, cancel and re-time syncs.", no_args_is_help=True)
admin_app.add_typer(syncs_app, name="syncs")

T = TypeVar("T")

EnvOpt = Annotated[str, typer.Option("--environment", "-e", envvar="NANGO_ENVIRONMENT", help="Environment name.")]
ConnOpt = Annotated[str | None, typer.Option("--connection", "-c", help="One connection (default: all).")]
SyncsArg = Annotated[list[str] | None, typer.Argument(help="Sync names (default: all syncs).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _fail(message: str) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def load_settings() -> Any:
    """Found as every command finds them (cli/settings_discovery.py): the environment, the folder's .env, a
    running `nango dev` stack."""
    from orchestrator.cli.settings_discovery import load_settings as discovered

    return discovered()


async def _with_context(env_name: str, fn: Callable[[Platform, Environment], Awaitable[T]]) -> T:
    from orchestrator.platform import open_platform
    from orchestrator.store import environments as environments_repo

    async with open_platform(load_settings()) as platform:
        async with platform.pool.acquire() as conn:
            env = await environments_repo.by_name(conn, env_name)
        if env is None:
            _fail(f"no environment '{env_name}'")
        return await fn(platform, env)


def _run(env_name: str, fn: Callable[[Platform, Environment], Awaitable[T]]) -> T:
    from orchestrator.cli.settings_discovery import run

    return run(lambda: _with_context(env_name, fn))


def _targets(integration: str, syncs: list[str] | None, connection: str | None
             ) -> Callable[[Platform, Environment], Awaitable[list[Any]]]:
    from orchestrator.control import syncs as sync_control

    async def resolve(platform: Platform, env: Environment) -> list[Any]:
        return await sync_control.targets(platform, env, integration, syncs or None, connection)
    return resolve


@syncs_app.command("list")
def list_syncs(env_name: EnvOpt = "dev", integration: Annotated[str | None, typer.Option(help="Filter.")] = None,
               as_json: JsonOpt = False) -> None:
    """Every sync schedule of the environment, as Temporal reports it."""
    from orchestrator.temporal import names, schedules

    async def run(platform: Platform, env: Environment) -> list[dict[str, Any]]:
        client = platform.temporal
        rows = []
        for sid in await schedules.list_ids(client, names.schedule_prefix(env.name, integration)):
            view = await schedules.describe(client, sid)
            if view is None:
                continue
            parts = names.parse_schedule_id(sid) or {}
            rows.append({"schedule_id": sid, "integration": parts.get("integration"),
                         "connection": parts.get("connection_id"), "sync": parts.get("sync"),
                         "interval_s": view.interval_s, "frequency": view.frequency, "paused": view.paused,
                         "note": view.note,
                         "next_run": view.next_run.isoformat() if view.next_run else None,
                         "running": len(view.running_workflow_ids)})
        return rows

    rows = _run(env_name, run)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "paused" if r["paused"] else ("running" if r["running"] else "scheduled")
        typer.echo(f"{r['schedule_id']}  {r['frequency'] or '-'}  {state}  next={r['next_run'] or '-'}"
                   + (f"  note={r['note']!r}" if r["note"] else ""))


connections_app = typer.Typer(help="List connections with their token state; force a token refresh.",
                               no_args_is_help=True)
admin_app.add_typer(connections_app, name="connections")


@connections_app.command("list")
def list_connections(env_name: EnvOpt = "dev",
                     integration: Annotated[str | None, typer.Option(help="Filter.")] = None,
                     as_json: JsonOpt = False) -> None:
    """Every connection of the environment, with when its token expires and any refused refresh."""
    from orchestrator.store import connections as connections_repo

    async def run(platform: Platform, env: Environment) -> list[dict[str, Any]]:
        async with platform.pool.acquire() as conn:
            found = await connections_repo.list_for_environment(conn, platform.sealer, env.id,
                                                               integration_key=integration)
        return [{"integration": c.integration_key, "connection": c.connection_id,
                 "expires_at": (exp.isoformat() if (exp := getattr(c.credentials, "expires_at", None)) else None),
                 "refresh_error": c.refresh_error} for c in found]

    rows = _run(env_name, run)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        error = r["refresh_error"]
        state = (f"REFRESH REFUSED since {error.get('at')}: {error.get('message')}" if error
                 else f"token expires {r['expires_at']}" if r["expires_at"] else "no expiry")
        typer.echo(f"{r['integration']}/{r['connection']}  {state}")


@connections_app.command("refresh")
def refresh_connection(integration: Annotated[str, typer.Argument(help="Integration (provider config key).")],
                       connection: Annotated[str, typer.Argument(help="Connection id.")],
                       env_name: EnvOpt = "dev") -> None:
    """Force a token refresh now: once the cause of a refused refresh is fixed, this clears it when it works."""
    from orchestrator.providers import credentials
    from orchestrator.store import connections as connections_repo

    async def run(platform: Platform, env: Environment) -> str:
        async with platform.pool.acquire() as conn:
            found = await connections_repo.get(conn, platform.sealer, env.id, integration, connection)
        if found is None:
            _fail(f"no connection '{connection}' of integration '{integration}' in environment '{env.name}'")
        fresh = await credentials.refresh(platform, found, force=True)
        expires = getattr(fresh.credentials, "expires_at", None)
        return f"refreshed {integration}/{connection}: token expires {expires.isoformat() if expires else 'never'}"

    typer.echo(_run(env_name, run))


def _on_targets(env_name: str, integration: str, syncs: list[str] | None, connection: str | None,
                control: Callable[[Platform, Environment, list[Any]], Awaitable[T]]) -> T:
    """Resolve the (connection, sync) pairs, then apply one sync_control function to them."""

    async def run(platform: Platform, env: Environment) -> T:
        items = await _targets(integration, syncs, connection)(platform, env)
        return await control(platform, env, items)
    return _run(env_name, run)


@syncs_app.command()
def pause(integration: str, syncs: SyncsArg = None, connection: ConnOpt = None, env_name: EnvOpt = "dev",
          note: Annotated[str, typer.Option(help="Shown in the Temporal UI.")] = "paused by nango admin") -> None:
    """Pause the schedules (a running run finishes)."""
    from orchestrator.control import syncs as sync_control

    done = _on_targets(env_name, integration, syncs, connection,
                       lambda platform, env, items: sync_control.pause(platform, env, items, note))
    typer.echo(f"paused {done} schedule(s)")


@syncs_app.command()
def resume(integration: str, syncs: SyncsArg = None, connection: ConnOpt = None, env_name: EnvOpt = "dev",
           note: Annotated[str, typer.Option(help="Shown in the Temporal UI.")] = "resumed by nango admin") -> None:
    """Unpause the schedules."""
    from orchestrator.control import syncs as sync_control

    done = _on_targets(env_name, integration, syncs, connection,
                       lambda platform, env, items: sync_control.resume(platform, env, items, note))
    typer.echo(f"resumed {done} schedule(s)")


@syncs_app.command()
def trigger(integration: str, syncs: SyncsArg = None, connection: ConnOpt = None, env_name: EnvOpt = "dev",
            full: Annotated[bool, typer.Option("--full", help="Full resync: reset state, cancel a running run.")]
            = False) -> None:
    """Run now (a paused sync runs once and stays paused)."""
    from orchestrator.control import syncs as sync_control

    done = _on_targets(env_name, integration, syncs, connection,
                       lambda platform, env, items: sync_control.trigger(platform, env, items, full=full))
    typer.echo(f"triggered {done} sync(s){' (full resync)' if full else ''}")


@syncs_app.command()
def cancel(integration: str, syncs: SyncsArg = None, connection: ConnOpt = None, env_name: EnvOpt = "dev",
           reason: Annotated[str, typer.Option(help="Recorded on the job.")] = "cancelled by nango admin") -> None:
    """Cancel running runs (the schedule goes on)."""
    from orchestrator.control import syncs as sync_control

    done = _on_targets(env_name, integration, syncs, connection,
                       lambda platform, env, items: sync_control.cancel(platform, env, items, reason))
    typer.echo(f"cancelled {done} running run(s)")


@syncs_app.command()
def frequency(integration: str, sync: str,
              every: Annotated[str, typer.Argument(help="e.g. 'every 2h', or 'default' to follow nango.yaml.")],
              connection: ConnOpt = None, env_name: EnvOpt = "dev") -> None:
    """Set a per-connection interval (or 'default')."""
    from orchestrator.control import syncs as sync_control

    value = None if every.strip().lower() in ("default", "reset", "null", "none") else every
    text = _on_targets(env_name, integration, [sync], connection,
                       lambda platform, env, items: sync_control.set_frequency(platform, env, items, value))
    typer.echo(f"frequency: {text}")


@syncs_app.command()
def status(integration: str, syncs: SyncsArg = None, connection: ConnOpt = None, env_name: EnvOpt = "dev",
           as_json: JsonOpt = False) -> None:
    """Status of each sync: schedule state, last run, counts."""
    from orchestrator.control import syncs as sync_control

    rows = _on_targets(env_name, integration, syncs, connection,
                       lambda platform, env, items: sync_control.status(platform, env, items))
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        typer.echo(f"{r['connection_id']}/{r['name']}: {r['status']} {r['frequency']}"
                   f" next={r['nextScheduledSyncAt'] or '-'} last={r['latestResult']}")


# --------------------------------------------------------------------------- environments and script switches

env_admin_app = typer.Typer(help="Create, list and delete environments; rotate their secret keys.",
                            no_args_is_help=True)
scripts_app = typer.Typer(help="Switch deployed syncs and actions on and off.", no_args_is_help=True)
admin_app.add_typer(env_admin_app, name="env")
admin_app.add_typer(scripts_app, name="scripts")

KindOpt = Annotated[str | None, typer.Option("--kind", help="sync or action (needed only when both share the name).")]


def _run_platform(fn: Callable[[Platform], Awaitable[T]], *, temporal: bool = False) -> T:
    """Run `fn(platform)` (connected to Temporal only when asked); errors end the command."""
    from orchestrator.cli.settings_discovery import run
    from orchestrator.platform import open_platform

    async def main() -> T:
        async with open_platform(load_settings(), connect_temporal=temporal) as platform:
            return await fn(platform)

    with contextlib.redirect_stdout(sys.stderr):  # log lines must not mix with --json output
        return run(main)


@env_admin_app.command("create")
def env_create(name: Annotated[str, typer.Argument(help="Environment name (letters, digits, '-', '_').")],
               as_json: JsonOpt = False) -> None:
    """Create an environment; prints its secret key (shown once, only its hash is stored)."""
    from orchestrator.control import environments

    async def run(platform: Platform) -> tuple[Any, str]:
        return await environments.create(platform.pool, name)
    env, key = _run_platform(run)
    if as_json:
        typer.echo(json.dumps({"name": env.name, "secret_key": key}))
        return
    typer.echo(f"created environment '{env.name}'\nsecret key: {key}")


@env_admin_app.command("list")
def env_list(as_json: JsonOpt = False) -> None:
    """Every environment, with its counts and key rotation state."""
    from orchestrator.control import environments

    async def run(platform: Platform) -> list[dict[str, Any]]:
        return await environments.list_all(platform.pool)
    rows = _run_platform(run)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        grace = f"  previous key valid until {r['previous_key_expires_at']}" if r["previous_key_expires_at"] else ""
        typer.echo(f"{r['name']}  integrations={r['integrations']} connections={r['connections']}"
                   f"  webhook={r['webhook_url'] or '-'}{grace}")


@env_admin_app.command("delete")
def env_delete(name: str,
               force: Annotated[bool, typer.Option("--force", help="Delete even with integrations and "
                                                                   "connections (and their records).")] = False
               ) -> None:
    """Delete an environment with its schedules (its integrations and connections need --force)."""
    from orchestrator.control import environments

    async def run(platform: Platform) -> dict[str, Any]:
        return await environments.delete(platform, name, force=force)
    result = _run_platform(run, temporal=True)
    typer.echo(f"deleted environment '{name}' ({result['integrations']} integration(s), "
               f"{result['connections']} connection(s), {len(result['schedules_deleted'])} schedule(s))")


@env_admin_app.command("rotate-key")
def env_rotate_key(
    name: str,
    grace: Annotated[float | None, typer.Option("--grace", help="Seconds the current key keeps working (default: "
                                                "SECRET_KEY_GRACE_S, 24 h; 0 ends it now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A new secret key that works at once; the current one keeps working for the grace period."""
    from orchestrator.control import environments

    seconds = grace if grace is not None else load_settings().secret_key_grace_s

    async def run(platform: Platform) -> Any:
        return await environments.rotate_key(platform.pool, name, environments.check_grace(seconds))
    rotated = _run_platform(run)
    if as_json:
        typer.echo(json.dumps(rotated.as_dict()))
        return
    until = rotated.previous_key_expires_at
    typer.echo(f"new secret key for '{name}': {rotated.secret_key}\n"
               + (f"the previous key works until {until.isoformat()}" if until else "the previous key no longer works"))


def _switch(integration: str, name: str, enabled: bool, kind: str | None, env_name: str) -> None:
    from orchestrator.control import scripts as scripts_control

    async def run(platform: Platform, env: Environment) -> Any:
        return await scripts_control.switch(platform, env, integration, name, enabled, kind)
    result = _run(env_name, run)
    state = "enabled" if enabled else "disabled"
    if not result.changed:
        typer.echo(f"{result.kind} '{name}' of {integration} was already {state}")
    touched = result.schedules_created if enabled else result.schedules_deleted
    typer.echo(f"{state} {result.kind} '{name}' of {integration}"
               + (f": {len(touched)} schedule(s) {'created' if enabled else 'removed'}" if result.kind == "sync"
                  else ""))


keys_app = typer.Typer(help="The platform's own keys: make a new ENCRYPTION_KEY, rotate it online.",
                       no_args_is_help=True)
admin_app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new() -> None:
    """Print a new ENCRYPTION_KEY (base64 of 32 random bytes); it touches nothing, store it yourself."""
    import base64
    import secrets

    typer.echo(base64.b64encode(secrets.token_bytes(32)).decode())


@keys_app.command("rotate-encryption")
def keys_rotate_encryption(
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows re-sealed per transaction.")] = 500,
    as_json: JsonOpt = False,
) -> None:
    """Re-seal every credential and secret under ENCRYPTION_KEY (values under ENCRYPTION_KEY_PREVIOUS
    still open meanwhile), then record the new key's fingerprint. Idempotent: run it again if interrupted."""
    from orchestrator.control import keys

    async def run(platform: Platform) -> dict[str, Any]:
        return await keys.rotate_encryption(platform.pool, platform.sealer, batch_size=batch_size)
    result = _run_platform(run)
    if as_json:
        typer.echo(json.dumps(result))
        return
    counts = ", ".join(f"{name}={n}" for name, n in result["resealed"].items())
    typer.echo(f"re-sealed under the key of fingerprint {result['fingerprint']} ({counts}); the database now "
               f"expects that key. Remove ENCRYPTION_KEY_PREVIOUS (fingerprint {result['previous_fingerprint']}) "
               "and roll the pods.")


@scripts_app.command("enable")
def scripts_enable(integration: str, name: str, kind: KindOpt = None, env_name: EnvOpt = "dev") -> None:
    """Switch a sync or action on (a sync's schedules are recreated for every connection)."""
    _switch(integration, name, True, kind, env_name)


@scripts_app.command("disable")
def scripts_disable(integration: str, name: str, kind: KindOpt = None, env_name: EnvOpt = "dev") -> None:
    """Switch a sync or action off (schedules paused then removed; its endpoint answers 404)."""
    _switch(integration, name, False, kind, env_name)


@scripts_app.command("list")
def scripts_list(env_name: EnvOpt = "dev", integration: Annotated[str | None, typer.Option(help="Filter.")] = None,
                 as_json: JsonOpt = False) -> None:
    """Deployed syncs and actions with their switch."""
    from orchestrator.control import scripts as scripts_control

    async def run(platform: Platform, env: Environment) -> list[dict[str, Any]]:
        return await scripts_control.list_scripts(platform.pool, env, integration)
    rows = _run(env_name, run)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['integration']}  {r['kind']:<6} {r['name']}  {'enabled' if r['enabled'] else 'disabled'}")
