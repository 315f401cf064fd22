"""A sync's run history for one connection: status and controls, a chart of recent run times, and
every run with its record counts and error, older ones a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.control import syncs as sync_control
from orchestrator.dashboard import queries
from orchestrator.dashboard.frame import Ctx, NotFound, Router, int_param, page
from orchestrator.dashboard.pages.controls import sync_controls
from orchestrator.dashboard.parts import (
    RUNS_PAGE,
    conn_href,
    frequency_cell,
    load_connection,
    record_counts,
    runs_chart_data,
    sync_statuses,
    temporal_link,
)
from orchestrator.dashboard.render import (
    Safe,
    badge,
    duration,
    duration_chart,
    esc,
    fmt,
    join,
    link,
    run_duration,
    url,
    when,
)

routes = web.RouteTableDef()
route = Router(routes)


def _count(n: int, cls: str) -> Safe:
    return fmt('<span class="{cls}">{n}</span>', cls=cls if n else "zero", n=f"{n:,}")


def _totals(counts: dict[str, dict[str, int]]) -> tuple[int, int, int]:
    return (sum(c["added"] for c in counts.values()), sum(c["updated"] for c in counts.values()),
            sum(c["deleted"] for c in counts.values()))


@route.page("/dashboard/sync")
async def sync_page(ctx: Ctx) -> web.Response:
    c, scripts = await load_connection(ctx, "No such sync for this connection.")
    name = ctx.query.get("sync", "")
    script = next((s for s in scripts if s.kind == "sync" and s.name == name), None)
    if script is None:
        raise NotFound("No such sync for this connection.")
    before = int_param(ctx.query.get("before"))
    st = (await sync_statuses(ctx, [sync_control.Target(c, script)]))[0]
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        runs = await queries.recent_runs(conn, c.id, name, "base", before=before, limit=RUNS_PAGE)
        chart_runs = runs[:30] if before is None else await queries.recent_runs(conn, c.id, name, "base", limit=30)
        counts = await queries.counts_for(conn, [r["id"] for r in runs])
    now = datetime.now(UTC)
    rows = []
    for r in runs:
        added, updated, deleted = _totals(counts.get(r["id"], {}))
        error = Safe("")
        if r["error"]:
            error = fmt('<div class="err">{e}</div>', e=r["error"])
            if r["error_details"]:
                error = fmt('{e}<details><summary>Traceback</summary><pre class="tb">{tb}</pre></details>', e=error,
                            tb=r["error_details"])
        status = badge(r["status"]) if r["attempts"] <= 1 else fmt(
            '{b} <span class="muted" title="retried after an infrastructure fault; see its log">{n} attempts</span>',
            b=badge(r["status"]), n=r["attempts"])
        rows.append((link(url("/dashboard/job", id=r["id"]), f"#{r['id']}"), status,
                     "full" if r["full_resync"] else "incremental", when(r["started_at"], now),
                     duration(run_duration(r["started_at"], r["ended_at"], now)),
                     _count(added, "n-add"), _count(updated, "n-upd"), _count(deleted, "n-del"), error,
                     link(url("/dashboard/job", id=r["id"]), "Logs")))
    more = Safe("")
    if len(runs) == RUNS_PAGE:
        more = fmt('<nav class="pager"><a href="{href}">Older runs →</a></nav>',
                   href=url("/dashboard/sync", integration=c.integration_key, connection=c.connection_id, sync=name,
                            before=runs[-1]["id"]))
    body = fmt(
        '<section class="card"><div class="card-head">{status}<span class="muted">{note}</span>'
        '<span class="right">{temporal}</span></div><dl class="facts"><div><dt>Frequency</dt><dd>{freq}</dd></div>'
        '<div><dt>Next run</dt><dd>{next}</dd></div><div><dt>Records</dt><dd>{records}</dd></div></dl>{controls}'
        '<h3>Execution time, recent runs</h3>{chart}</section>'
        '<section class="card flush"><table class="runs"><thead><tr><th>Run</th><th>Status</th><th>Type</th>'
        '<th>Started</th><th>Duration</th><th>Added</th><th>Updated</th><th>Deleted</th><th>Error</th><th></th>'
        '</tr></thead><tbody>{rows}</tbody></table></section>{more}',
        status=badge(st["status"]), note=st["note"] or "", temporal=temporal_link(ctx, st["schedule_id"]),
        freq=frequency_cell(st), next=when(st["nextScheduledSyncAt"]) if not st["paused"] else "paused",
        records=record_counts(st), controls=sync_controls(ctx, c.integration_key, c.connection_id, name, st,
                                                          ctx.request.path_qs),
        chart=duration_chart(runs_chart_data(chart_runs), "/dashboard/job", now),
        rows=join(Safe("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>") for row in rows)
        or Safe('<tr><td colspan="10" class="empty">No runs yet.</td></tr>'), more=more)
    return page(ctx, f"{name} · {c.connection_id}", body, active="connections",
                crumbs=[("Connections", "/dashboard/connections"),
                        (c.connection_id, conn_href(c.integration_key, c.connection_id))],
                refresh=4 if st["status"] == "RUNNING" else 0)
