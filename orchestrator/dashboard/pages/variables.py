"""The Variables page: the environment variables script runs read, masked until revealed, and the
forms that set or unset one. Names and values are checked by `orchestrator.control.environments`,
the rules `POST /environment-variables` applies; values are sealed at rest by the store."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.control import environments as environments_control
from orchestrator.dashboard import queries
from orchestrator.dashboard.forms import post_form, submit
from orchestrator.dashboard.frame import Ctx, Router, flash_back, page
from orchestrator.dashboard.render import Safe, fmt, table
from orchestrator.errors import OrchestratorError
from orchestrator.store import environment_variables as envvars_repo

routes = web.RouteTableDef()
route = Router(routes)


def _masked(value: str) -> Safe:
    if not value:
        return Safe('<span class="muted">(empty)</span>')
    return fmt('<details class="reveal"><summary><span class="mask">{m}</span> <span class="muted small">reveal'
               '</span></summary><pre class="json value">{v}</pre></details>', m="•" * min(len(value), 12), v=value)


@route.page("/dashboard/variables")
async def variables_page(ctx: Ctx) -> web.Response:
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        variables = await envvars_repo.list_all(conn, ctx.app[PLATFORM].sealer, ctx.env.id)
    rows = [(fmt('<code>{n}</code>', n=v["name"]), _masked(v["value"]),
             post_form(ctx.session.csrf, "/dashboard/variables", {"op": "unset", "name": v["name"]},
                       submit("Unset", "danger", op="unset", name=v["name"],
                              confirm=f"Unset {v['name']}? Script runs no longer receive it.")))
            for v in variables]
    set_form = post_form(ctx.session.csrf, "/dashboard/variables", {"op": "set"}, fmt(
        '<input name="name" aria-label="Name" placeholder="NAME" required maxlength="{max_name}" '
        'pattern="{pattern}" autocomplete="off">'
        '<textarea name="value" aria-label="Value" placeholder="value" rows="2" cols="48" maxlength="{max}">'
        '</textarea>{button}', max_name=environments_control.MAX_VARIABLE_NAME,
        pattern=environments_control.VARIABLE_NAME, max=environments_control.MAX_VARIABLE_VALUE,
        button=submit("Set", "primary", op="set")), cls="setvar")
    body = fmt(
        '<p class="muted">Script runs read these with <code>nango.get_environment_variables()</code>; values are '
        'sealed at rest. The API equivalent is <code>GET</code>/<code>POST /environment-variables</code>.</p>'
        '<section class="card flush">{table}</section>'
        '<section class="card"><h2>Set a variable</h2><p class="muted small">Adds it, or replaces the value of '
        'the variable of that name.</p>{form}</section>',
        table=table(["Name", "Value", ""], rows, cls="variables", empty="No environment variable is set."),
        form=set_form)
    return page(ctx, "Environment variables", body, active="variables")


@route.form("/dashboard/variables")
async def variables_change(ctx: Ctx, form: Any) -> web.StreamResponse:
    """Set (add or replace) or unset one variable: the stored set is rewritten as `POST /environment-variables`
    does, under a lock on the environment so two edits never lose one another."""
    op, name = str(form.get("op", "")), str(form.get("name", "")).strip()
    value = str(form.get("value", "")).replace("\r\n", "\n")
    message, failed = "", False
    try:
        if op not in ("set", "unset"):
            raise ValueError(f"Unknown control {op!r}.")
        checked = environments_control.check_variable(name, value if op == "set" else "")
        sealer = ctx.app[PLATFORM].sealer
        async with ctx.app[PLATFORM].pool.acquire() as conn, conn.transaction():
            await queries.lock_environment(conn, ctx.env.id)
            current = [(v["name"], v["value"]) for v in await envvars_repo.list_all(conn, sealer, ctx.env.id)]
            present = any(n == checked.name for n, _ in current)
            if op == "unset":
                if not present:
                    raise ValueError(f"{checked.name} is not set.")
                updated = [(n, v) for n, v in current if n != checked.name]
                message = f"Unset {checked.name}."
            else:
                updated = [(n, checked.value if n == checked.name else v) for n, v in current]
                if not present:
                    if len(current) >= environments_control.MAX_VARIABLES:
                        raise ValueError(f"At most {environments_control.MAX_VARIABLES} variables.")
                    updated = sorted([*updated, (checked.name, checked.value)])
                message = f"{'Replaced' if present else 'Set'} {checked.name}."
            await envvars_repo.replace(conn, sealer, ctx.env.id, updated)
    except ValueError as exc:
        message, failed = str(exc), True
    except OrchestratorError as exc:
        message, failed = exc.message, True
    raise flash_back(ctx, "/dashboard/variables", message, failed)
