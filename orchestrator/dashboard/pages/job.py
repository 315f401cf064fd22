"""One run (a sync, action, webhook or event job): its facts, error, input and output, webhook
deliveries and logs, plus the JSON log tail the page's script follows while the run goes on."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.control.syncs import every_model
from orchestrator.dashboard import queries
from orchestrator.dashboard.frame import (
    SECURITY_HEADERS,
    Ctx,
    Router,
    int_param,
    json_context,
    not_found,
    page,
)
from orchestrator.dashboard.parts import conn_href, sync_href
from orchestrator.dashboard.render import (
    Safe,
    badge,
    duration,
    fmt,
    join,
    link,
    pretty_json,
    run_duration,
    short_json,
    table,
    temporal_schedule_url,
    when,
)

routes = web.RouteTableDef()
route = Router(routes)

LOG_PAGE = 500


def _log_row(entry: dict[str, Any]) -> Safe:
    fields = short_json(entry.get("fields"), 400) if entry.get("fields") else ""
    return fmt('<tr data-id="{id}" class="lvl-{lvl}"><td class="ts">{ts}</td><td><span class="lvl">{lvl}</span></td>'
               '<td class="msg">{msg}{fields}</td></tr>', id=entry["id"], lvl=entry["level"],
               ts=entry["created_at"].astimezone(UTC).strftime("%H:%M:%S.%f")[:-3], msg=entry["message"],
               fields=fmt(' <span class="fields">{f}</span>', f=fields) if fields else "")


@route.page("/dashboard/job")
async def job_page(ctx: Ctx) -> web.Response:
    job_id = int_param(ctx.query.get("id"))
    level = ctx.query.get("level", "") if ctx.query.get("level", "") in queries.LEVELS else ""
    search = ctx.query.get("q", "").strip()
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        job = await queries.job(conn, ctx.env.id, job_id) if job_id else None
        if job is None:
            return not_found("No such run in this environment.")
        logs = await queries.logs(conn, job["id"], after=0, minimum=level or None, search=search or None,
                                  limit=LOG_PAGE)
        counts = (await queries.counts_for(conn, [job["id"]])).get(job["id"], {})
        if job["kind"] == "sync":  # every model of the sync, zeros where the run changed nothing, as the API says
            counts = every_model(counts, await queries.sync_models(conn, ctx.env.id, job["unique_key"],
                                                                   job["sync_name"]))
        notes = await queries.notifications_for_job(conn, job["id"])
        retries = await queries.retries(conn, job["id"])
    integ, cid, kind = job["unique_key"], job["connection_id"], job["kind"]
    facts = [("Status", badge(job["status"])), ("Kind", kind), ("Script", job["sync_name"]),
             ("Connection", link(conn_href(integ, cid), cid)), ("Started", when(job["started_at"])),
             ("Duration", duration(run_duration(job["started_at"], job["ended_at"])))]
    if job["attempts"]:
        facts.append(("Attempts", job["attempts"] if job["attempts"] == 1 else f"{job['attempts']} (retried)"))
    settings = ctx.app[PLATFORM].settings
    if settings.temporal_ui_url and job["workflow_id"]:
        wf = temporal_schedule_url(settings.temporal_ui_url, settings.temporal_namespace, "x").rsplit(
            "/schedules/", 1)[0]
        facts.append(("Temporal", fmt('<a href="{h}" target="_blank" rel="noopener">workflow ↗</a>',
                                      h=f"{wf}/workflows/{quote(job['workflow_id'], safe='')}/"
                                        f"{quote(job['run_id'] or '', safe='')}/history")))
    parts = [fmt('<section class="card"><dl class="facts">{f}</dl>{c}</section>',
                 f=join(fmt('<div><dt>{k}</dt><dd>{v}</dd></div>', k=k, v=v) for k, v in facts),
                 c=table(["Model", "Added", "Updated", "Deleted"],
                         [(m, f"{v['added']:,}", f"{v['updated']:,}", f"{v['deleted']:,}")
                          for m, v in counts.items()], cls="compact",
                         empty="No records changed.") if kind in ("sync", "webhook") else "")]
    if job["error"]:
        parts.append(fmt('<section class="card"><h2>Error</h2><div class="flash error">{e}</div>{tb}{payload}'
                         '</section>', e=job["error"],
                         tb=fmt('<h3>Traceback</h3><pre class="tb">{t}</pre>', t=job["error_details"])
                         if job["error_details"] else "",
                         payload=fmt('<h3>Error payload</h3>{p}', p=pretty_json(job["error_payload"]))
                         if job["error_payload"] is not None else ""))
    if kind in ("action", "webhook", "event") and (job["input"] is not None or job["output"] is not None):
        parts.append(fmt('<section class="card"><div class="grid2"><div><h3>Input</h3>{i}</div>'
                         '<div><h3>Output</h3>{o}</div></div></section>', i=pretty_json(job["input"]),
                         o=pretty_json(job["output"])))
    if retries:
        parts.append(fmt('<section class="card"><h2>Retries</h2>{t}</section>', t=table(
            ["At", "Attempt", "What failed", "Resumes"],
            [(when(r["at"]), str(r["attempt"]), r["cause"] or "", r["resumes"] or "") for r in retries],
            cls="compact")))
    if notes:
        parts.append(fmt('<section class="card"><h2>Webhook deliveries</h2>{t}</section>', t=table(
            ["Attempted", "URL", "Status", "Error"],
            [(when(n["attempted_at"]), n["url"].split("?")[0], n["status"] or "-", n["error"] or "")
             for n in notes], cls="compact")))
    options = join(fmt('<option value="{v}"{sel}>{label}</option>', v=v,
                       sel=Safe(" selected") if v == level else "", label=label)
                   for v, label in (("", "All levels"), ("debug", "Debug and up"), ("info", "Info and up"),
                                    ("warn", "Warnings and errors"), ("error", "Errors only")))
    running = job["status"] == "running"
    parts.append(fmt(
        '<section class="card flush"><form method="get" class="toolbar logs-filter">'
        '<input type="hidden" name="id" value="{id}"><select name="level" aria-label="Level">{options}</select>'
        '<input type="search" name="q" value="{q}" placeholder="Search messages" aria-label="Search logs">'
        '<button type="submit">Filter</button><span class="muted" id="tail-state">{state}</span></form>'
        '<table class="logs"><thead><tr><th>Time (UTC)</th><th>Level</th><th>Message</th></tr></thead>'
        '<tbody id="logs" data-job="{id}" data-after="{after}" data-level="{level}" data-q="{q}" '
        'data-running="{running}" data-full="{full}">{rows}</tbody></table>{empty}</section>',
        id=job["id"], options=options, q=search, state="live: following new lines" if running else "",
        after=logs[-1]["id"] if logs else 0, level=level, running="1" if running else "",
        full="1" if len(logs) == LOG_PAGE else "", rows=join(_log_row(e) for e in logs),
        empty=Safe('<p class="empty" id="logs-empty">No log lines.</p>') if not logs else ""))
    title = f"Run #{job['id']} · {job['sync_name']}"
    crumbs = [("Connections", "/dashboard/connections"), (cid, conn_href(integ, cid))]
    if kind == "sync":
        crumbs.append((job["sync_name"], sync_href(integ, cid, job["sync_name"])))
    elif kind == "action":
        crumbs = [("Actions", "/dashboard/actions")]
    return page(ctx, title, join(parts), active="actions" if kind == "action" else "connections", crumbs=crumbs)


@route.public("GET", "/dashboard/job/logs.json")
async def job_logs(request: web.Request) -> web.Response:
    ctx = await json_context(request)
    if isinstance(ctx, web.Response):
        return ctx
    job_id = int_param(request.query.get("id"))
    after = int_param(request.query.get("after")) or 0
    level = request.query.get("level") or None
    search = request.query.get("q", "").strip() or None
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        status = await queries.job_status(conn, ctx.env.id, job_id) if job_id else None
        if status is None:
            return web.json_response({"error": "no such run"}, status=404, headers=SECURITY_HEADERS)
        logs = await queries.logs(conn, job_id, after=after, minimum=level, search=search, limit=LOG_PAGE)
    out = [{"id": e["id"], "level": e["level"], "message": e["message"], "fields": e["fields"],
            "time": e["created_at"].astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]} for e in logs]
    body = orjson.dumps({"logs": out, "status": status, "running": status == "running",
                         "more": len(logs) == LOG_PAGE}, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, content_type="application/json", headers=SECURITY_HEADERS)
