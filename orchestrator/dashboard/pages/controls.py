"""A sync's controls (pause/resume, trigger, full resync, cancel, frequency) and the POST they send.

Each control goes through `orchestrator.control.syncs`, the code path the API and `nango admin`
use; a frequency is parsed and validated there (`orchestrator.config.schedule.parse_schedule`), so
the dashboard accepts exactly the texts `PUT /sync/update-connection-frequency` accepts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.control import syncs as sync_control
from orchestrator.dashboard.forms import hidden, post_form, submit
from orchestrator.dashboard.frame import Ctx, Router, flash_back, safe_next
from orchestrator.dashboard.render import Safe, fmt, join
from orchestrator.errors import OrchestratorError

routes = web.RouteTableDef()
route = Router(routes)


def sync_controls(ctx: Ctx, integration: str, connection_id: str, sync: str, st: dict[str, Any],
                  back: str) -> Safe:
    """The control forms of one (connection, sync), given its status `st`; each comes back to `back`."""
    fields = {"integration": integration, "connection": connection_id, "sync": sync, "next": back}

    def control(op: str, controls: Safe, cls: str = "inline") -> Safe:
        return post_form(ctx.session.csrf, "/dashboard/control", {"op": op, **fields}, controls, cls=cls)

    def button(op: str, label: str, cls: str = "", confirm: str = "") -> Safe:
        return control(op, submit(label, cls, op=op, confirm=confirm))

    parts = [button("resume", "Resume", "primary") if st.get("paused") else button("pause", "Pause")]
    parts.append(button("trigger", "Trigger now"))
    parts.append(button("full", "Full resync", "warn",
                        "Reset this sync's state and re-fetch everything? A running run is cancelled."))
    if st.get("status") == "RUNNING":
        parts.append(button("cancel", "Cancel run", "danger", "Cancel the running run?"))
    parts.append(control("frequency", fmt(
        '<input name="frequency" aria-label="Frequency" placeholder="{ph}" size="16">{button}',
        ph=st.get("frequency") or "every 1h", button=submit("Set frequency", op="frequency")), cls="inline freq"))
    if st.get("frequency_source") in ("override", "ui"):
        parts.append(control("frequency", hidden("frequency", "") + submit("Reset to deployed", "linkish",
                                                                           op="reset-frequency")))
    return fmt('<div class="controls">{p}</div>', p=join(parts))


@route.form("/dashboard/control")
async def control(ctx: Ctx, form: Any) -> web.StreamResponse:
    op = str(form.get("op", ""))
    integration, connection_id, sync = (str(form.get(k, "")) for k in ("integration", "connection", "sync"))
    back = safe_next(str(form.get("next", "")))
    platform, env = ctx.app[PLATFORM], ctx.env
    message, failed = "", False
    try:
        items = await sync_control.targets(platform, env, integration, [sync], connection_id)
        if op == "pause":
            done = await sync_control.pause(platform, env, items, "paused from the dashboard")
            message = f"Paused {sync}." if done else "No schedule to pause."
        elif op == "resume":
            done = await sync_control.resume(platform, env, items, "resumed from the dashboard")
            message = f"Resumed {sync}." if done else "No schedule to resume."
        elif op in ("trigger", "full"):
            done = await sync_control.trigger(platform, env, items, full=op == "full")
            message = (f"{'Full resync' if op == 'full' else 'Run'} of {sync} started." if done
                       else "No schedule to trigger.")
        elif op == "cancel":
            stopped = await sync_control.cancel(platform, env, items, "cancelled from the dashboard")
            message = f"Cancel sent to {stopped} running run(s)." if stopped else "Nothing was running."
        elif op == "frequency":
            text = await sync_control.set_frequency(platform, env, items,
                                                    str(form.get("frequency", "")).strip() or None)
            message = f"{sync} now runs {text}."
        else:
            message, failed = f"Unknown control {op!r}.", True
    except OrchestratorError as exc:
        message, failed = exc.message, True
    raise flash_back(ctx, back, message, failed)
