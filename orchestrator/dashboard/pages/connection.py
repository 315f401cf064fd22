"""One connection: each of its syncs with status, controls and recent run times, and its metadata."""

from __future__ import annotations

from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.control import syncs as sync_control
from orchestrator.dashboard import queries
from orchestrator.dashboard.frame import Ctx, Router, page
from orchestrator.dashboard.pages.controls import sync_controls
from orchestrator.dashboard.parts import (
    frequency_cell,
    load_connection,
    models_of,
    runs_chart_data,
    sync_href,
    sync_statuses,
    temporal_link,
)
from orchestrator.dashboard.render import Safe, badge, duration_chart, fmt, join, link, pretty_json, url, when

routes = web.RouteTableDef()
route = Router(routes)


@route.page("/dashboard/connection")
async def connection_page(ctx: Ctx) -> web.Response:
    c, scripts = await load_connection(ctx)
    syncs = [s for s in scripts if s.kind == "sync"]
    items = [sync_control.Target(c, s) for s in syncs]
    statuses = await sync_statuses(ctx, items)
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        runs = {s.name: await queries.recent_runs(conn, c.id, s.name, "base", limit=30) for s in syncs}
    here = ctx.request.path_qs
    cards = []
    running = False
    for s, st in zip(syncs, statuses, strict=True):
        running = running or st["status"] == "RUNNING"
        models = join((link(url("/dashboard/records", integration=c.integration_key, connection=c.connection_id,
                                model=m), f"{m} ({(st['recordCount'] or {}).get(m, 0):,})") for m in models_of(s)),
                      " · ")
        cards.append(fmt(
            '<section class="card sync" data-sync="{name}"><div class="card-head"><h2><a href="{href}">{name}</a>'
            '</h2>{status}<span class="muted">{note}</span><span class="right">{temporal}</span></div>'
            '<dl class="facts"><div><dt>Last run</dt><dd>{last}</dd></div><div><dt>Next run</dt><dd>{next}</dd></div>'
            '<div><dt>Frequency</dt><dd>{freq}</dd></div><div><dt>Type</dt><dd>{type}</dd></div>'
            '<div><dt>Records</dt><dd>{models}</dd></div></dl>{error}{controls}'
            '<h3>Execution time, recent runs</h3>{chart}<p><a href="{href}">Run history →</a></p></section>',
            name=s.name, href=sync_href(c.integration_key, c.connection_id, s.name), status=badge(st["status"]),
            note=st["note"] or "", temporal=temporal_link(ctx, st["schedule_id"]), last=when(st["finishedAt"]),
            next=when(st["nextScheduledSyncAt"]) if not st["paused"] else "paused", freq=frequency_cell(st),
            type=st["type"].lower(), models=models or "-",
            error=fmt('<div class="flash error">Last run failed: {e}</div>', e=st["error"]) if st["error"] else "",
            controls=sync_controls(ctx, c.integration_key, c.connection_id, s.name, st, here),
            chart=duration_chart(runs_chart_data(runs[s.name]), "/dashboard/job")))
    meta = fmt('<section class="card"><div class="grid2"><div><h3>Metadata</h3>{meta}</div>'
               '<div><h3>Connection config</h3>{cfg}</div></div><p class="muted small">Integration {integ} · provider '
               '{provider} · created {created} · updated {updated}</p></section>',
               meta=pretty_json(c.metadata), cfg=pretty_json(c.connection_config), integ=c.integration_key,
               provider=c.provider, created=when(c.created_at), updated=when(c.updated_at))
    refused = c.refresh_error
    alert = fmt('<div class="flash error" data-auth-error>Token refresh refused since {at}: {msg}. Its syncs and '
                'scripts do not call the provider until the connection is reconnected (or a forced refresh works).'
                '</div>', at=when(refused.get("at")), msg=refused.get("message", "")) if refused else Safe("")
    body = alert + join(cards) + (Safe("") if syncs else Safe('<p class="card muted">No syncs deployed.</p>')) + meta
    return page(ctx, c.connection_id, body, active="connections",
                crumbs=[("Connections", url("/dashboard/connections", integration=c.integration_key))],
                refresh=4 if running else 0)
