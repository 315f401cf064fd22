"""Log search: the environment's log lines across its jobs, newest first, with the filters and the cursor of
`GET /logs` (read by the same `log_search_params` and `search_logs`), each line linked to its run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from orchestrator.api import jobs as jobs_api
from orchestrator.api.keys import PLATFORM
from orchestrator.dashboard.frame import Ctx, Router, page
from orchestrator.dashboard.parts import conn_href
from orchestrator.dashboard.render import Safe, fmt, join, link, short_json, url
from orchestrator.store import jobs as jobs_repo

routes = web.RouteTableDef()
route = Router(routes)

PAGE = 100
FILTERS = ("provider_config_key", "connection_id", "script", "from", "to", "text")


def _local(value: datetime | None) -> str:
    """A time as a datetime-local input shows it (the page's times are UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") if value else ""


def _row(e: dict[str, Any]) -> Safe:
    fields = short_json(e.get("fields"), 400) if e.get("fields") else ""
    return fmt('<tr class="lvl-{lvl}"><td class="ts">{ts}</td><td><span class="lvl">{lvl}</span></td>'
               '<td>{run}</td><td>{integ}</td><td>{conn}</td><td>{script}</td><td class="msg">{msg}{fields}</td></tr>',
               lvl=e["level"], ts=e["created_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
               run=link(url("/dashboard/job", id=e["job_id"]), f"#{e['job_id']}", "job-link"),
               integ=e["integration_key"], conn=link(conn_href(e["integration_key"], e["connection_id"]),
                                                     e["connection_id"]),
               script=e["script_name"], msg=e["message"],
               fields=fmt(' <span class="fields">{f}</span>', f=fields) if fields else "")


@route.page("/dashboard/logs")
async def logs_page(ctx: Ctx) -> web.Response:
    error = ""
    lines: list[dict[str, Any]] = []
    next_cursor = None
    try:
        query, before, limit = jobs_api.log_search_params(ctx.query, default_limit=PAGE)
    except jobs_api.LogParamError as exc:
        error, query, before, limit = str(exc), jobs_repo.LogQuery(), None, PAGE
    if not error:
        async with ctx.app[PLATFORM].pool.acquire() as conn:
            lines, next_cursor = await jobs_api.search_logs(conn, ctx.env.id, query, before, limit)
    values = {"provider_config_key": query.integration_key or "", "connection_id": query.connection_id or "",
              "script": query.script_name or "", "from": _local(query.since), "to": _local(query.until),
              "text": query.text or ""}
    levels = join(fmt('<label class="check"><input type="checkbox" name="level" value="{v}"{c}> {v}</label>', v=v,
                      c=Safe(" checked") if query.levels and v in query.levels else "")
                  for v in jobs_repo.LEVELS)
    form = fmt(
        '<form method="get" class="toolbar log-search" action="/dashboard/logs">'
        '<input name="provider_config_key" value="{provider_config_key}" placeholder="Integration" '
        'aria-label="Integration">'
        '<input name="connection_id" value="{connection_id}" placeholder="Connection" aria-label="Connection">'
        '<input name="script" value="{script}" placeholder="Script" aria-label="Script">{levels}'
        '<label>From <input type="datetime-local" step="1" name="from" value="{from_}" aria-label="From (UTC)">'
        '</label><label>To <input type="datetime-local" step="1" name="to" value="{to}" aria-label="To (UTC)">'
        '</label><input type="search" name="text" value="{text}" placeholder="Text in the message" '
        'aria-label="Text"><button type="submit">Search</button></form>',
        levels=levels, from_=values.pop("from"), **values)
    kept = {**{k: ctx.query.get(k, "") for k in FILTERS}, "level": ",".join(query.levels or [])}
    pager = join([
        link(url("/dashboard/logs", **kept), "Newest") if before is not None else Safe(""),
        link(url("/dashboard/logs", **kept, cursor=next_cursor), "Older →", "older") if next_cursor else Safe("")])
    body = fmt(
        '{err}<section class="card flush">{form}<table class="logs search"><thead><tr><th>Time (UTC)</th>'
        '<th>Level</th><th>Run</th><th>Integration</th><th>Connection</th><th>Script</th><th>Message</th></tr>'
        '</thead><tbody id="log-results">{rows}</tbody></table>{empty}</section>{pager}',
        err=fmt('<div class="flash error" role="alert">{e}</div>', e=error) if error else "", form=form,
        rows=join(_row(e) for e in lines),
        empty=Safe('<p class="empty">No log line matches.</p>') if not lines else "",
        pager=fmt('<nav class="pager">{p}</nav>', p=pager) if pager else "")
    return page(ctx, "Logs", body, active="logs")
