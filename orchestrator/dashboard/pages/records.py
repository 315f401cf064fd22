"""A connection's records, one model at a time, in the order consumers read them (by cursor), with
their `_nango_metadata` and a filter on the last action."""

from __future__ import annotations

import orjson
from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.dashboard.frame import Ctx, Router, not_found, page
from orchestrator.dashboard.parts import PAGE_SIZE, conn_href, load_connection, models_of
from orchestrator.dashboard.render import Safe, badge, fmt, join, link, pretty_json, short_json, table, url, when
from orchestrator.errors import OrchestratorError
from orchestrator.store import records as records_repo

routes = web.RouteTableDef()
route = Router(routes)


@route.page("/dashboard/records")
async def records_page(ctx: Ctx) -> web.Response:
    c, scripts = await load_connection(ctx)
    models = sorted({m for s in scripts if s.kind == "sync" for m in models_of(s)})
    model = ctx.query.get("model") or (models[0] if models else "")
    cursor = ctx.query.get("cursor") or None
    action = ctx.query.get("filter", "")
    actions = [action] if action in records_repo.ACTIONS else None
    scope = records_repo.Scope(ctx.env.id, c.id, model)
    try:
        async with ctx.app[PLATFORM].pool.acquire() as conn:
            chunk = await records_repo.read_page(conn, scope, cursor=cursor, limit=PAGE_SIZE, actions=actions)
            total = await records_repo.count(conn, scope)
    except OrchestratorError as exc:
        return not_found(exc.message)
    rows = []
    for raw in chunk.records_json:
        rec = orjson.loads(raw)
        meta = rec.pop("_nango_metadata", {}) or {}
        rows.append((fmt('<code>{i}</code>', i=rec.get("id")), badge(meta.get("last_action")),
                     when(meta.get("last_modified_at")), when(meta.get("first_seen_at")),
                     when(meta.get("deleted_at")) if meta.get("deleted_at") else "-",
                     fmt('<details><summary>{s}</summary>{full}<h4>_nango_metadata</h4>{meta}</details>',
                         s=short_json(rec, 110), full=pretty_json(rec), meta=pretty_json(meta))))
    tabs = join(link(url("/dashboard/records", integration=c.integration_key, connection=c.connection_id, model=m),
                     m, "tab active" if m == model else "tab") for m in models)
    filters = join(link(url("/dashboard/records", integration=c.integration_key, connection=c.connection_id,
                            model=model, filter=f), label or "all", "tab active" if f == action else "tab")
                   for f, label in (("", "all"), ("added", "added"), ("updated", "updated"), ("deleted", "deleted")))
    first = url("/dashboard/records", integration=c.integration_key, connection=c.connection_id, model=model,
                filter=action)
    pager = fmt('<nav class="pager">{first}{next}</nav>',
                first=link(first, "⇤ First page") if cursor else Safe('<span class="muted">⇤ First page</span>'),
                next=link(url("/dashboard/records", integration=c.integration_key, connection=c.connection_id,
                              model=model, filter=action, cursor=chunk.next_cursor), "Next page →")
                if chunk.next_cursor else Safe('<span class="muted">Next page →</span>'))
    body = fmt('<div class="toolbar"><span class="tabs">{tabs}</span><span class="tabs right">{filters}</span></div>'
               '<p class="muted">{total} live record{plural} of {model}, in the order consumers read them '
               '(by cursor).</p><section class="card flush">{table}</section>{pager}',
               tabs=tabs, filters=filters, total=f"{total:,}", plural="" if total == 1 else "s", model=model,
               table=table(["Id", "Last action", "Modified", "First seen", "Deleted", "Data"], rows,
                           cls="records", empty="No records."), pager=pager)
    return page(ctx, f"Records · {c.connection_id}", body, active="connections",
                crumbs=[("Connections", "/dashboard/connections"),
                        (c.connection_id, conn_href(c.integration_key, c.connection_id))])
