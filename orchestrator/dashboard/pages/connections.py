"""The Connections page: every connection of the environment (searchable, by integration, paged) with
the status of each of its syncs; it refreshes itself while one of them runs."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.control import syncs as sync_control
from orchestrator.dashboard import queries
from orchestrator.dashboard.frame import Ctx, Router, int_param, page
from orchestrator.dashboard.pages import health
from orchestrator.dashboard.parts import (
    PAGE_SIZE,
    conn_href,
    frequency_cell,
    record_counts,
    sync_href,
    sync_statuses,
)
from orchestrator.dashboard.render import Safe, badge, fmt, join, link, url, when
from orchestrator.store import connections as connections_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import DeployedScript

routes = web.RouteTableDef()
route = Router(routes)


@route.page("/dashboard/connections")
async def connections_page(ctx: Ctx) -> web.Response:
    search = ctx.query.get("q", "").strip() or None
    integration = ctx.query.get("integration", "").strip() or None
    page_no = max(int_param(ctx.query.get("page")) or 1, 1)
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        rows, total = await queries.connections_page(conn, ctx.env.id, search, integration, PAGE_SIZE,
                                                      (page_no - 1) * PAGE_SIZE)
        scripts = await scripts_repo.list_for_environment(conn, ctx.env.id)
        conns = [await connections_repo.get_by_pk(conn, ctx.app[PLATFORM].sealer, r["id"]) for r in rows]
    syncs: dict[str, list[DeployedScript]] = {}
    for s in scripts:
        if s.kind == "sync":
            syncs.setdefault(s.integration_key, []).append(s)
    items = [sync_control.Target(c, s) for c in conns if c is not None for s in syncs.get(c.integration_key, [])]
    found = await sync_statuses(ctx, items)
    statuses = {(t.connection.id, t.script.name): st for t, st in zip(items, found, strict=True)}
    body_rows: list[Safe] = []
    running = False
    for c in conns:
        if c is None:
            continue
        mine = syncs.get(c.integration_key, [])
        first = fmt('<td rowspan="{n}"><a href="{href}" class="conn"><strong>{cid}</strong></a>{auth}'
                    '<div class="muted small">{integ} · created {created}</div></td>',
                    n=max(len(mine), 1), href=conn_href(c.integration_key, c.connection_id), cid=c.connection_id,
                    integ=c.integration_key, created=when(c.created_at),
                    auth=Safe(' <span class="badge b-failed" title="token refresh refused">auth error</span>')
                    if c.refresh_error else "")
        if not mine:
            body_rows.append(Safe(f'<tr>{first}<td colspan="6" class="muted">no syncs deployed</td></tr>'))
            continue
        for i, s in enumerate(mine):
            st = statuses[(c.id, s.name)]
            running = running or st["status"] == "RUNNING"
            cells = fmt('<td><a href="{href}">{name}</a></td><td>{status}</td><td>{last}</td><td>{next}</td>'
                        '<td>{freq}</td><td class="num">{records}</td>',
                        href=sync_href(c.integration_key, c.connection_id, s.name), name=s.name,
                        status=badge(st["status"]), last=when(st["finishedAt"]),
                        next=when(st["nextScheduledSyncAt"]) if not st["paused"] else Safe('<span class="muted">'
                                                                                            'paused</span>'),
                        freq=frequency_cell(st), records=record_counts(st))
            body_rows.append(Safe(f"<tr>{first if i == 0 else ''}{cells}</tr>"))
    if not body_rows:
        body_rows.append(Safe('<tr><td colspan="7" class="empty">No connection matches.</td></tr>'))
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    pager = _pager(page_no, pages, lambda p: url("/dashboard/connections", q=search, integration=integration, page=p))
    body = fmt(
        '<form method="get" class="toolbar search"><input type="search" name="q" value="{q}" '
        'placeholder="Search connection ids" aria-label="Search connections">'
        '<input type="hidden" name="integration" value="{integ}"><button type="submit">Search</button>'
        '<span class="muted">{total} connection{plural}{filter}</span></form>'
        '<section class="card flush"><table class="conns"><thead><tr><th>Connection</th><th>Sync</th><th>Status</th>'
        '<th>Last run</th><th>Next run</th><th>Frequency</th><th class="num">Records</th></tr></thead>'
        '<tbody>{rows}</tbody></table></section>{pager}',
        q=search or "", integ=integration or "", total=f"{total:,}", plural="" if total == 1 else "s",
        filter=f" in {integration}" if integration else "", rows=join(body_rows), pager=pager)
    if not search and not integration and page_no == 1:  # the front page: the environment's health comes first
        body = join([await health.section(ctx), body])
    return page(ctx, "Connections", body, active="connections", refresh=5 if running else 0)


def _pager(current: int, pages: int, href: Any) -> Safe:
    prev = link(href(current - 1), "← Previous") if current > 1 else Safe('<span class="muted">← Previous</span>')
    nxt = link(href(current + 1), "Next →") if current < pages else Safe('<span class="muted">Next →</span>')
    return fmt('<nav class="pager">{prev}<span>Page {p} of {n}</span>{next}</nav>', prev=prev, p=current,
               n=f"{pages:,}", next=nxt)
