"""`nango.trigger_action(...)` from inside a script: the same ActionWorkflow the API starts; and
`nango.start_sync` / `nango.trigger_sync`: the same schedule operations POST /sync/start and POST /sync/trigger
make (control/syncs.py, which runs/ may not import: both take the schedule steps from temporal/sync_runs.py).

Limited to the script's own environment: every name is looked up within it, and schedule ids carry its name.
The called action gets its own job (visible in the actions history) and its failure reaches the calling script
as an error naming the action.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import WorkflowFailureError

from orchestrator.runner.host import RpcFailure
from orchestrator.runs.deps import RunDeps
from orchestrator.runs.script_host import SyncControl
from orchestrator.store import connections as connections_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Connection
from orchestrator.temporal import names, schedules, sync_runs
from orchestrator.temporal.starter import start_action
from orchestrator.temporal.types import ScriptJobInput


def trigger_for(deps: RunDeps, environment_id: int, environment: str):  # type: ignore[no-untyped-def]
    """The ScriptHost callback for one run's environment."""

    async def trigger(integration: str, connection_id: str, action_name: str, input: Any) -> Any:
        if deps.temporal_client is None:
            raise RpcFailure("not_available", "trigger_action needs the worker's Temporal client")
        async with deps.pool.acquire() as conn:
            connection = await connections_repo.get(conn, deps.sealer, environment_id, integration, connection_id)
            if connection is None:
                raise RpcFailure("unknown_connection", f"trigger_action: no connection '{connection_id}' for "
                                                       f"integration '{integration}'")
            script = await scripts_repo.get(conn, connection.integration_id, "action", action_name)
            if script is None or not script.enabled:
                raise RpcFailure("unknown_action", f"trigger_action: no action '{action_name}' is deployed for "
                                                   f"integration '{integration}'")
            public_id = str(uuid.uuid4())
            job_id = await jobs_repo.open_job(conn, environment_id=environment_id, connection_pk=connection.id,
                                    script_name=action_name, kind="action", public_id=public_id, input=input)
        job = ScriptJobInput(environment_id=environment_id, environment=environment, integration=integration,
                             connection_id=connection_id, script_name=action_name, kind="action", job_id=job_id,
                             input=input)
        handle = await start_action(deps, job, public_id=public_id, max_retries=0)
        try:
            result = await handle.result()
        except WorkflowFailureError:
            pass  # the job row says why
        else:
            if result.ok:  # the workflow succeeds only once the job is closed with this very output
                return result.output
        async with deps.pool.acquire() as conn:
            done = await jobs_repo.get(conn, job_id, with_counts=False)
        assert done is not None
        if done.status == "success":
            return done.output
        raise RpcFailure("action_failed", f"action '{action_name}' failed: {done.error_text}",
                         payload=done.error_payload)

    return trigger


def sync_control_for(deps: RunDeps, environment_id: int, environment: str) -> SyncControl:
    """The ScriptHost's `sync_control` for one run's environment: start (unpause) or trigger syncs of its
    integrations, for one of their connections or all of them."""

    async def targets(call: str, integration: str, syncs: list[str], connection_id: str | None
                      ) -> list[tuple[Connection, str]]:
        async with deps.pool.acquire() as conn:
            found = await integrations_repo.get(conn, environment_id, integration)
            if found is None:
                raise RpcFailure("unknown_integration", f"{call}: no integration '{integration}' in this environment")
            deployed = {s.name for s in await scripts_repo.list_for_integration(conn, found.id) if s.kind == "sync"}
            unknown = [s for s in syncs if s not in deployed]
            if unknown:
                raise RpcFailure("unknown_sync", f"{call}: no sync {', '.join(map(repr, unknown))} is deployed for "
                                                 f"integration '{integration}'")
            if connection_id is None:
                conns = await connections_repo.list_for_integration(conn, deps.sealer, found.id)
            else:
                one = await connections_repo.get(conn, deps.sealer, environment_id, integration, connection_id)
                if one is None:
                    raise RpcFailure("unknown_connection", f"{call}: no connection '{connection_id}' for integration "
                                                           f"'{integration}'")
                conns = [one]
        return [(c, s) for c in conns for s in syncs]

    async def control(op: str, integration: str, syncs: list[str], connection_id: str | None, mode: str) -> int:
        call = f"{op}_sync"
        client = deps.temporal_client
        if client is None:
            raise RpcFailure("not_available", f"{call} needs the worker's Temporal client")
        items = await targets(call, integration, syncs, connection_id)
        ids = [names.sync_schedule_id(environment, integration, c.connection_id, s) for c, s in items]
        if op == "start":
            return sum([await sync_runs.reached(schedules.unpause(client, sid, "resumed by a script", pool=deps.pool))
                        for sid in ids])
        if mode != "incremental":  # a full resync: reset marked, a running run stopped, then the trigger
            await sync_runs.prepare_full_resync(client, deps.pool, [(c.id, s, "base") for c, s in items], ids,
                                                clear_cache=mode == "full_refresh_and_clear_cache")
        return sum([await sync_runs.reached(schedules.trigger(client, sid)) for sid in ids])

    return control
