"""`nango.trigger_action(...)` from inside a script: the same ActionWorkflow the API starts.

Limited to the script's own environment; the called action gets its own job (visible in the
actions history) and its failure reaches the calling script as an error naming the action.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import WorkflowFailureError

from orchestrator.runner.host import RpcFailure
from orchestrator.runs.deps import RunDeps
from orchestrator.store import connections as connections_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import scripts as scripts_repo
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
