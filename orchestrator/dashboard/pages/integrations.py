"""The Integrations page: each integration's deployed scripts, and the switch that enables or disables
one (through `orchestrator.control.scripts`, as `PATCH /scripts/{integration}/{name}` does)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.control import scripts as scripts_control
from orchestrator.control.reconcile import deployed_frequency
from orchestrator.dashboard import queries
from orchestrator.dashboard.forms import post_form, submit
from orchestrator.dashboard.frame import Ctx, Router, flash_back, page, safe_next
from orchestrator.dashboard.parts import models_of
from orchestrator.dashboard.render import Safe, badge, fmt, join, table, url, when
from orchestrator.errors import OrchestratorError
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import DeployedScript

routes = web.RouteTableDef()
route = Router(routes)


def _endpoints(config: dict[str, Any]) -> list[str]:
    raw = config.get("endpoints") or config.get("endpoint") or []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(f"{item.get('method', 'GET')} {item.get('path', '')}".strip())
        elif item:
            out.append(str(item))
    return out


@route.page("/dashboard/integrations")
async def integrations_page(ctx: Ctx) -> web.Response:
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        summaries = await queries.integration_summaries(conn, ctx.env.id)
        scripts = await scripts_repo.list_for_environment(conn, ctx.env.id)
    by_integration: dict[int, list[DeployedScript]] = {}
    for s in scripts:
        by_integration.setdefault(s.integration_id, []).append(s)
    cards = []
    for integ in summaries:
        rows = []
        for s in by_integration.get(integ["id"], []):
            cfg = s.config
            detail = []
            if s.kind == "sync":
                detail.append(f"{cfg.get('sync_type') or 'full'}")
                if cfg.get("track_deletes"):
                    detail.append("track deletes")
                if cfg.get("auto_start") is False:
                    detail.append("auto_start off")
            models = ", ".join(models_of(s)) if s.kind == "sync" else \
                " → ".join(str(x) for x in (cfg.get("input"), cfg.get("output")) if x)
            rows.append((fmt('<strong>{n}</strong><div class="muted small">{d}</div>', n=s.name,
                             d=cfg.get("description") or ""),
                         badge(s.kind), _script_switch(ctx, s), fmt('v{v}', v=s.version),
                         deployed_frequency(s) if s.kind == "sync" else "-",
                         ", ".join(detail) or "-", models or "-",
                         join((fmt('<code>{e}</code>', e=e) for e in _endpoints(cfg)), " ") or "-",
                         fmt('<span title="{full}">{short}</span>', full=s.bundle_sha256, short=s.bundle_sha256[:10]),
                         when(s.deployed_at)))
        cards.append(fmt(
            '<section class="card" data-integration="{key}"><div class="card-head"><h2>{key}</h2>'
            '<span class="muted">provider {provider}</span><span class="right"><a href="{endpoints}" '
            'class="endpoints-link">Endpoints →</a> · <a href="{href}">{n} connection{plural} →</a></span></div>'
            '{table}</section>',
            key=integ["unique_key"], provider=integ["provider"], n=f"{integ['connections']:,}",
            plural="" if integ["connections"] == 1 else "s",
            href=url("/dashboard/connections", integration=integ["unique_key"]),
            endpoints=url("/dashboard/endpoints", integration=integ["unique_key"]),
            table=table(["Script", "Type", "Enabled", "Version", "Schedule", "Mode", "Models", "Endpoints", "Bundle",
                         "Deployed"], rows, cls="scripts", empty="No scripts deployed.")))
    body = join(cards) or Safe('<p class="card muted">No integration yet: run <code>nango deploy</code>.</p>')
    return page(ctx, "Integrations", body, active="integrations")


def _script_switch(ctx: Ctx, script: DeployedScript) -> Safe:
    """The enabled badge and the enable/disable button of a deployed sync or action."""
    if script.kind not in scripts_control.KINDS:
        return Safe('<span class="muted">-</span>')
    op, label, cls = ("disable", "Disable", "warn") if script.enabled else ("enable", "Enable", "primary")
    confirm = ""
    if script.enabled:
        confirm = (f"Disable sync {script.name}? Its schedules are removed for every connection until it is "
                   "enabled again." if script.kind == "sync"
                   else f"Disable action {script.name}? Triggering it answers 404 until it is enabled again.")
    fields = {"op": op, "integration": script.integration_key, "name": script.name, "kind": script.kind,
              "next": "/dashboard/integrations"}
    return fmt('<div class="switch">{badge}{form}</div>', badge=badge("enabled" if script.enabled else "disabled"),
               form=post_form(ctx.session.csrf, "/dashboard/script", fields,
                              submit(label, cls, op=op, script=script.name, confirm=confirm)))


@route.form("/dashboard/script")
async def script_switch(ctx: Ctx, form: Any) -> web.StreamResponse:
    """Enable or disable a deployed sync or action, as `PATCH /scripts/{integration}/{name}` does."""
    op = str(form.get("op", ""))
    integration, name = str(form.get("integration", "")), str(form.get("name", ""))
    kind = str(form.get("kind", "")) or None
    back = safe_next(str(form.get("next", "")) or "/dashboard/integrations")
    message, failed = "", False
    if op not in ("enable", "disable"):
        message, failed = f"Unknown control {op!r}.", True
    else:
        try:
            result = await scripts_control.switch(ctx.app[PLATFORM], ctx.env, integration, name, op == "enable", kind)
        except OrchestratorError as exc:
            message, failed = exc.message, True
        else:
            what = f"{result.kind} {result.name}"
            if not result.changed:
                message = f"{what[0].upper()}{what[1:]} was already {'enabled' if result.enabled else 'disabled'}."
            elif result.enabled:
                n = len(result.schedules_created)
                message = f"Enabled {what}." + (f" {n} schedule{'' if n == 1 else 's'} created." if n else "")
            else:
                n = len(result.schedules_deleted)
                message = f"Disabled {what}." + (f" {n} schedule{'' if n == 1 else 's'} removed." if n else "")
    raise flash_back(ctx, back, message, failed)
