"""The Webhooks page: webhooks received from providers, the webhook script runs they started, and
deliveries to the environment's own webhook URL (sync results and auth events)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.dashboard import queries
from orchestrator.dashboard.frame import Ctx, Router, int_param, page
from orchestrator.dashboard.parts import PAGE_SIZE
from orchestrator.dashboard.render import Safe, badge, fmt, link, short_json, table, url, when

routes = web.RouteTableDef()
route = Router(routes)


@route.page("/dashboard/webhooks")
async def webhooks_page(ctx: Ctx) -> web.Response:
    in_before, out_before = int_param(ctx.query.get("in_before")), int_param(ctx.query.get("out_before"))
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        incoming = await queries.incoming_webhooks(conn, ctx.env.id, before=in_before, limit=PAGE_SIZE)
        outgoing = await queries.outgoing_webhooks(conn, ctx.env.id, before=out_before, limit=PAGE_SIZE)
        runs = await queries.script_jobs(conn, ctx.env.id, "webhook", before=None, limit=10)
        auth = await queries.auth_webhooks(conn, ctx.env.id, limit=PAGE_SIZE)
    in_rows = [(when(w["received_at"]), w["unique_key"], w["event_type"] or "-", badge(w["status"]),
                ", ".join(w["connections"]) or "-", w["error"] or "", _forwarded(w["forward_attempts"]),
                fmt('<details><summary>{s}</summary><pre class="json">{b}</pre></details>',
                    s=short_json(bytes(w["body"]).decode(errors="replace"), 60),
                    b=bytes(w["body"]).decode(errors="replace"))) for w in incoming]
    out_rows = [(when(n["attempted_at"]), link(url("/dashboard/job", id=n["job_id"]), f"#{n['job_id']}"),
                 f"{n['sync_name']} · {n['connection_id']}", n["url"].split("?")[0],
                 badge(str(n["status"]) if n["status"] else "error"), n["error"] or "") for n in outgoing]
    auth_rows = [(when(a["attempted_at"]), f"{a['operation']} · {'success' if a['success'] else 'failure'}",
                  f"{a['integration']} · {a['connection_id']}", a["url"].split("?")[0],
                  badge(str(a["status"]) if a["status"] else "error"), a["error"] or "") for a in auth]
    run_rows = [(link(url("/dashboard/job", id=j["id"]), f"#{j['id']}"), when(j["started_at"]), j["sync_name"],
                 j["connection_id"], badge(j["status"]), j["error"] or "") for j in runs]

    def more(key: str, rows: list[Any], last: Any) -> Safe:
        return fmt('<nav class="pager"><a href="{h}">Older →</a></nav>',
                   h=url("/dashboard/webhooks", **{key: last})) if len(rows) == PAGE_SIZE else Safe("")

    body = fmt(
        '<h2>Incoming from providers</h2><section class="card flush">{inc}</section>{inc_more}'
        '<h2>Webhook script runs</h2><section class="card flush">{runs}</section>'
        '<h2>Outgoing to your app</h2><p class="muted">{target}</p><section class="card flush">{out}</section>'
        '{out_more}<h2>Auth events sent to your app</h2><section class="card flush">{auth}</section>',
        inc=table(["Received", "Integration", "Event", "Status", "Connections", "Error", "Forwarded", "Body"], in_rows,
                  empty="No webhook received yet."),
        inc_more=more("in_before", incoming, incoming[-1]["id"] if incoming else None),
        runs=table(["Run", "Started", "Script", "Connection", "Status", "Error"], run_rows,
                   empty="No webhook script has run."),
        target=f"Deliveries go to {ctx.env.webhook_url.split('?')[0]}" if ctx.env.webhook_url
        else "No webhook URL is set for this environment.",
        out=table(["Attempted", "Run", "Sync", "URL", "Status", "Error"], out_rows, empty="No delivery yet."),
        out_more=more("out_before", outgoing, outgoing[-1]["id"] if outgoing else None),
        auth=table(["Attempted", "Event", "Connection", "URL", "Status", "Error"], auth_rows,
                   empty="No auth webhook sent yet."))
    return page(ctx, "Webhooks", body, active="webhooks")


def _forwarded(attempts: list[dict[str, Any]]) -> str:
    """The forward's outcome per URL and connection: its last attempt's status (or error)."""
    last = {(a["url"], a.get("connection_id")): a for a in attempts}
    return ", ".join(str(a["status"] or "error") for a in last.values()) or "-"
