"""The Endpoints page: the unified endpoints the environment's syncs and actions declare, with their
models; the same document `GET /v1/openapi.json` serves (`orchestrator.api.unified.environment_reference`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.api import unified
from orchestrator.api.keys import PLATFORM
from orchestrator.dashboard import queries
from orchestrator.dashboard.frame import Ctx, Router, not_found, page
from orchestrator.dashboard.render import Safe, badge, fmt, join, link, pretty_json, short_json, table, url
from orchestrator.errors import OrchestratorError

routes = web.RouteTableDef()
route = Router(routes)


def _json_schema(content: dict[str, Any] | None) -> Any:
    return ((content or {}).get("content") or {}).get("application/json", {}).get("schema")


def _refs(value: Any) -> list[str]:
    """Component names a schema refers to, in order of appearance."""
    found: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            ref = v.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in found:
                    found.append(name)
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)
    walk(value)
    return found


def _schema_anchor(name: str) -> str:
    return "schema-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _operation_card(path: str, method: str, op: dict[str, Any]) -> Safe:
    scripts = [op["x-nango"]] if "x-nango" in op else list(op.get("x-nango-scripts") or [])
    who = join((fmt('{kind} <strong>{name}</strong>{model}', kind=badge(s.get("kind")), name=s.get("script"),
                    model=fmt(' <span class="muted">→ {m}</span>', m=s["model"]) if s.get("model") else "")
                for s in scripts), " · ")
    params = [p for p in op.get("parameters") or [] if p.get("in") in ("query", "path")]
    headers = [p["name"] for p in op.get("parameters") or [] if p.get("in") == "header"]
    body = _json_schema(op.get("requestBody"))
    ok = (op.get("responses") or {}).get("200") or {}
    response = _json_schema(ok)
    request_parts = [fmt('<p class="muted small">Headers: {h}</p>', h=", ".join(headers))] if headers else []
    if params:
        request_parts.append(table(["Query parameter", "Required", "Schema"], [
            (fmt('<code>{n}</code>', n=p["name"]), "yes" if p.get("required") else "no",
             fmt('<code>{s}</code>', s=short_json(p.get("schema"), 160))) for p in params], cls="compact params"))
    if body is not None:
        request_parts.append(fmt('<h4>Body (application/json)</h4>{s}', s=pretty_json(body)))
    if not params and body is None:
        request_parts.append(Safe('<p class="muted">No input.</p>'))
    models = _refs([body, response, params])
    model_links = join((fmt('<a href="#{a}"><code>{n}</code></a>', a=_schema_anchor(n), n=n) for n in models), " ")
    return fmt(
        '<section class="card endpoint" data-method="{method}" data-path="{path}">'
        '<div class="card-head"><h2><span class="method m-{m}">{method}</span> <code>{path}</code></h2>'
        '<span class="right">{who}</span></div><p>{summary}</p>{models}'
        '<div class="grid2"><div><h3>Request</h3>{request}</div>'
        '<div><h3>Response <span class="muted small">200 · {desc}</span></h3>{response}</div></div></section>',
        method=method.upper(), m=method.lower(), path=path, who=who, summary=op.get("summary") or "",
        models=fmt('<p class="small">Models: {links}</p>', links=model_links) if models else "",
        request=join(request_parts), desc=ok.get("description") or "",
        response=pretty_json(response) if response is not None else Safe('<p class="muted">No body.</p>'))


@route.page("/dashboard/endpoints")
async def endpoints_page(ctx: Ctx) -> web.Response:
    integration = ctx.query.get("integration", "").strip() or None
    settings = ctx.app[PLATFORM].settings
    server = settings.public_url.rstrip("/") or f"{ctx.request.scheme}://{ctx.request.host}"
    try:
        doc = await unified.environment_reference(ctx.app, ctx.env, integration, server_url=server)
    except OrchestratorError as exc:
        return not_found(exc.message)
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        keys = [r["unique_key"] for r in await queries.integration_summaries(conn, ctx.env.id)]
    tabs = join([link("/dashboard/endpoints", "all", "tab active" if integration is None else "tab")]
                + [link(url("/dashboard/endpoints", integration=k), k, "tab active" if k == integration else "tab")
                   for k in keys])
    raw = url(f"{server}{unified.PREFIX}/openapi.json", provider_config_key=integration)
    curl = f"curl -H \"Authorization: Bearer $NANGO_SECRET_KEY\" '{raw}'"
    cards = [_operation_card(path, method, op) for path, methods in (doc.get("paths") or {}).items()
             for method, op in methods.items()]
    schemas = (doc.get("components") or {}).get("schemas") or {}
    used = _refs(doc.get("paths"))
    # the referenced models first, then what they refer to (NangoError and friends last)
    order = [n for n in schemas if n in used and not n.startswith("Nango")] + \
            [n for n in schemas if n not in used and not n.startswith("Nango")] + \
            [n for n in schemas if n.startswith("Nango")]
    model_cards = join(fmt('<div class="model" id="{a}"><h3><code>{n}</code></h3>{s}</div>', a=_schema_anchor(n),
                           n=n, s=pretty_json(schemas[n])) for n in order)
    body = fmt(
        '<div class="toolbar"><span class="tabs">{tabs}</span></div>'
        '<section class="card"><p>The unified endpoints the enabled syncs and actions declare (nango.yaml '
        '<code>endpoint</code>), served at <code>{prefix}/&lt;path&gt;</code> with the '
        '<code>Provider-Config-Key</code> and <code>Connection-Id</code> headers. The same reference as '
        'OpenAPI 3.1 JSON (it needs the environment\'s secret key):</p><pre class="json curl">{curl}</pre>'
        '</section>{cards}<h2>Models</h2><section class="card models">{models}</section>',
        tabs=tabs, prefix=unified.PREFIX, curl=curl,
        cards=join(cards) or Safe('<p class="card muted">No endpoint: no enabled sync or action declares '
                                  'an <code>endpoint</code>.</p>'),
        models=model_cards or Safe('<p class="muted">No model deployed.</p>'))
    title = f"Endpoints · {integration}" if integration else "Endpoints"
    return page(ctx, title, body, active="integrations", crumbs=[("Integrations", "/dashboard/integrations")])
