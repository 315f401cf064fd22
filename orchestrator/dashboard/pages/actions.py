"""The Actions page: recent action runs of the environment with their input and output."""

from __future__ import annotations

from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.dashboard import queries
from orchestrator.dashboard.frame import Ctx, Router, int_param, page
from orchestrator.dashboard.parts import RUNS_PAGE, conn_href
from orchestrator.dashboard.render import (
    Safe,
    badge,
    duration,
    fmt,
    link,
    pretty_json,
    run_duration,
    short_json,
    table,
    url,
    when,
)

routes = web.RouteTableDef()
route = Router(routes)


@route.page("/dashboard/actions")
async def actions_page(ctx: Ctx) -> web.Response:
    before = int_param(ctx.query.get("before"))
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        jobs = await queries.script_jobs(conn, ctx.env.id, "action", before=before, limit=RUNS_PAGE)
    rows = []
    for j in jobs:
        result = fmt('<div class="err">{e}</div>', e=j["error"]) if j["error"] else \
            fmt('<details><summary>{s}</summary>{p}</details>', s=short_json(j["output"], 80) or "none",
                p=pretty_json(j["output"]))
        rows.append((link(url("/dashboard/job", id=j["id"]), f"#{j['id']}"), when(j["started_at"]),
                     fmt('<strong>{n}</strong>', n=j["sync_name"]),
                     link(conn_href(j["unique_key"], j["connection_id"]), j["connection_id"]), badge(j["status"]),
                     duration(run_duration(j["started_at"], j["ended_at"])),
                     fmt('<details><summary>{s}</summary>{p}</details>', s=short_json(j["input"], 80) or "none",
                         p=pretty_json(j["input"])), result))
    more = fmt('<nav class="pager"><a href="{h}">Older →</a></nav>',
               h=url("/dashboard/actions", before=jobs[-1]["id"])) if len(jobs) == RUNS_PAGE else Safe("")
    body = fmt('<section class="card flush">{t}</section>{more}', more=more, t=table(
        ["Run", "Started", "Action", "Connection", "Status", "Duration", "Input", "Output"], rows, cls="actions",
        empty="No action has run yet."))
    return page(ctx, "Actions", body, active="actions")
