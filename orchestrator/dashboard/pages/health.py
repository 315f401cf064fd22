"""The environment's health at a glance, at the top of the front page (the Connections page, unfiltered): syncs at
or past the environment's `alert_after_failures` streak, each linked to its last failed run, runs per hour, and
a chart of successful and failed runs over the last 24 hours, drawn by app.js from `/dashboard/health.json`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.dashboard import queries
from orchestrator.dashboard.frame import SECURITY_HEADERS, Ctx, Router, json_context
from orchestrator.dashboard.parts import sync_href
from orchestrator.dashboard.render import Safe, fmt, link, table, url, when

routes = web.RouteTableDef()
route = Router(routes)

HOURS = 24
FAILING_SHOWN = 50


def _day_start(now: datetime) -> datetime:
    """The start of the chart's first hour: the current hour is the last of the 24."""
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)


async def section(ctx: Ctx) -> Safe:
    """The health card: failing syncs, runs per hour, and the chart's placeholder app.js fills in."""
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        after = await queries.alert_after_failures(conn, ctx.env.id)
        failing = await queries.failing_syncs(conn, ctx.env.id, after, limit=FAILING_SHOWN) if after else []
        hours = await queries.hourly_outcomes(conn, ctx.env.id, _day_start(datetime.now(UTC)), HOURS)
    succeeded, failed = sum(h["success"] for h in hours), sum(h["failed"] for h in hours)
    facts = fmt('<dl class="facts"><div><dt>Runs per hour</dt><dd class="runs-per-hour">{avg}</dd></div>'
                '<div><dt>This hour</dt><dd>{now}</dd></div><div><dt>Last 24 h</dt><dd>{ok} succeeded · '
                '{bad} failed</dd></div><div><dt>Failing syncs</dt><dd class="failing-count">{n}</dd></div></dl>',
                avg=f"{(succeeded + failed) / HOURS:.1f}", now=hours[-1]["success"] + hours[-1]["failed"],
                ok=f"{succeeded:,}", bad=f"{failed:,}", n=len(failing) if after else "alerts off")
    chart = Safe('<div id="health-chart" class="health-chart" data-src="/dashboard/health.json">'
                 '<p class="muted chart-empty">Loading the chart...</p></div>')
    return fmt('<section class="card health"><div class="card-head"><h2>Health</h2><span class="muted">syncs that '
               'failed {after} runs in a row, and runs over the last 24 hours (UTC)</span></div>{facts}{failing}'
               '{chart}</section>', after=after or "N", facts=facts, failing=_failing_table(failing, after),
               chart=chart)


def _failing_table(rows: list[dict[str, Any]], after: int) -> Safe:
    if not after:
        return Safe('<p class="muted">Failing-sync alerts are off for this environment (alert_after_failures is 0: '
                    'set it with <code>PATCH /environment</code>).</p>')
    return table(["Sync", "Connection", "Failed runs in a row", "Failing since", "Last failed run", "Alert sent"], (
        (link(sync_href(r["integration"], r["connection_id"], r["sync_name"]), r["sync_name"]
              + ("" if r["variant"] == "base" else f" ({r['variant']})")),
         fmt('{c} <span class="muted small">{i}</span>', c=r["connection_id"], i=r["integration"]),
         r["failures"], when(r["since"]),
         link(url("/dashboard/job", id=r["last_failed_job_id"]), f"run #{r['last_failed_job_id']}", "failed-run"),
         when(r["alerted_at"]) if r["alerted_at"] else Safe('<span class="muted">no</span>'))
        for r in rows), cls="failing compact", empty="No sync is failing.")


@route.public("GET", "/dashboard/health.json")
async def health_json(request: web.Request) -> web.Response:
    """The chart's data: sync runs that succeeded or failed, by the UTC hour they started, last 24 hours first."""
    ctx = await json_context(request)
    if isinstance(ctx, web.Response):
        return ctx
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        hours = await queries.hourly_outcomes(conn, ctx.env.id, _day_start(datetime.now(UTC)), HOURS)
    body = orjson.dumps({"hours": [{"hour": h["hour"].astimezone(UTC).isoformat(), "success": h["success"],
                                    "failed": h["failed"]} for h in hours]})
    return web.Response(body=body, content_type="application/json", headers=SECURITY_HEADERS)


__all__ = ["routes", "section"]
