"""Dashboard routes: server-rendered pages at `/dashboard/...` (and `/`), plus one JSON endpoint for log tails.

The API's auth middleware treats these paths as public; every handler here checks the session
itself (`_ctx`). Controls are POST forms with the session's CSRF token, and each goes through the
code path the API and `nango admin` use: `orchestrator.control.syncs` (pause, trigger, frequency...),
`orchestrator.control.scripts` (enable/disable a sync or action) and the environment-variables store
(values sealed at rest, validated like `POST /environment-variables`). The Endpoints page renders
`orchestrator.api.unified.environment_reference`, the document `GET /v1/openapi.json` serves.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from aiohttp import web
from pydantic import ValidationError

from orchestrator.api import envvars as envvars_api
from orchestrator.api import unified
from orchestrator.api.keys import POOL, SEALER, SETTINGS, TEMPORAL
from orchestrator.control import scripts as scripts_control
from orchestrator.control import syncs as sync_control
from orchestrator.dashboard import queries
from orchestrator.dashboard import session as sessions
from orchestrator.dashboard.render import (
    Safe,
    badge,
    duration,
    duration_chart,
    esc,
    fmt,
    join,
    link,
    pretty_json,
    run_duration,
    short_json,
    table,
    temporal_schedule_url,
    url,
    when,
)
from orchestrator.dashboard.throttle import LoginThrottle
from orchestrator.errors import OrchestratorError
from orchestrator.store import connections as connections_repo
from orchestrator.store import environment_variables as envvars_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import records as records_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Connection, DeployedScript, Environment

routes = web.RouteTableDef()
SESSION_KEY = web.AppKey("dashboard_session_key", bytes)
ASSETS = web.AppKey("dashboard_assets", dict)
THROTTLE = web.AppKey("dashboard_login_throttle", LoginThrottle)

PAGE_SIZE = 25
RUNS_PAGE = 50
LOG_PAGE = 500
STATUS_CONCURRENCY = 8
CONTENT_TYPES = {".css": "text/css", ".js": "application/javascript", ".svg": "image/svg+xml"}
HEAD_LINKS = Safe('<link rel="stylesheet" href="/static/dashboard/app.css">'
              '<link rel="icon" href="/static/dashboard/favicon.svg" type="image/svg+xml">')
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                               " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def setup(app: web.Application) -> None:
    """Register the dashboard on the API app: its routes, its session key and its static files."""
    app[SESSION_KEY] = sessions.derive_key(app[SETTINGS].encryption_key_bytes())
    app[THROTTLE] = LoginThrottle()
    folder = resources.files("orchestrator.dashboard") / "static"
    app[ASSETS] = {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}
    app.add_routes(routes)


# ---- session and page frame ----------------------------------------------------------------------

@dataclass
class Ctx:
    request: web.Request
    session: sessions.Session
    env: Environment
    flash_shown: bool = False

    @property
    def app(self) -> web.Application:
        return self.request.app


def _read_session(request: web.Request) -> sessions.Session | None:
    return sessions.load(request.app[SESSION_KEY], request.cookies.get(sessions.COOKIE))


def _set_session(request: web.Request, resp: web.StreamResponse, session: sessions.Session) -> None:
    resp.set_cookie(sessions.COOKIE, sessions.dump(request.app[SESSION_KEY], session), path="/", httponly=True,
                    samesite="Lax", secure=request.secure, max_age=sessions.LIFETIME_S)


def _redirect(request: web.Request, location: str, session: sessions.Session | None = None) -> web.HTTPFound:
    exc = web.HTTPFound(location)
    if session is not None:
        _set_session(request, exc, session)
    exc.headers.update(SECURITY_HEADERS)
    return exc


async def _ctx(request: web.Request) -> Ctx:
    session = _read_session(request)
    if session is None:
        raise _redirect(request, url("/dashboard/login", next=request.path_qs))
    if session.environment_id is None:
        if session.admin:
            raise _redirect(request, "/dashboard/environments")
        raise _redirect(request, "/dashboard/login")
    async with request.app[POOL].acquire() as conn:
        row = await queries.environment_row(conn, session.environment_id)
    if row is None or (not session.admin and not hmac.compare_digest(
            session.key_fp, sessions.key_fingerprint(row["secret_key_hash"]))):
        resp = _redirect(request, url("/dashboard/login", reason="expired"))
        resp.del_cookie(sessions.COOKIE, path="/")
        raise resp
    return Ctx(request, session, Environment(id=row["id"], name=row["name"], webhook_url=row["webhook_url"]))


async def _posted(request: web.Request) -> tuple[Ctx, Any]:
    """A POST from a dashboard form: logged in and carrying the session's CSRF token."""
    ctx = await _ctx(request)
    form = await request.post()
    if not ctx.session.check_csrf(str(form.get("csrf", ""))):
        raise _error_page(403, "This form has expired or did not come from the dashboard. Reload the page and "
                               "try again.")
    return ctx, form


class PageError(Exception):
    """Ends a dashboard request with an HTML error page (the API's error middleware never sees it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error_page(status: int, message: str) -> PageError:
    return PageError(status, message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(method: str, path: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except PageError as exc:
                return _bare_page("Error", fmt('<div class="card login-card"><h1>Sorry</h1><p>{m}</p>'
                                               '<p><a href="/dashboard">Back to the dashboard</a></p></div>',
                                               m=exc.message), status=exc.status)
        routes.route(method, path)(wrapper)
        return handler
    return register


def _not_found(what: str) -> web.Response:
    return _bare_page("Not found", fmt('<p>{what}</p><p><a href="/dashboard">Back to the dashboard</a></p>',
                                       what=what), status=404)


NAV = (("integrations", "Integrations", "/dashboard/integrations"), ("connections", "Connections",
       "/dashboard/connections"), ("actions", "Actions", "/dashboard/actions"),
       ("webhooks", "Webhooks", "/dashboard/webhooks"), ("variables", "Variables", "/dashboard/variables"))


def _page(ctx: Ctx, title: str, body: Safe, *, active: str = "", crumbs: list[tuple[str, str]] | None = None,
          refresh: int = 0) -> web.Response:
    nav = join(fmt('<a href="{href}" class="{cls}">{label}</a>', href=href, label=label,
                   cls="active" if key == active else "") for key, label, href in NAV)
    switch = link("/dashboard/environments", "switch", "switch") if ctx.session.admin else Safe("")
    who = fmt('<div class="who"><span class="env" title="Environment">{env}</span>{switch}'
              '<form method="post" action="/dashboard/logout"><input type="hidden" name="csrf" value="{csrf}">'
              '<button class="linkish" type="submit">Log out</button></form></div>',
              env=ctx.env.name, switch=switch, csrf=ctx.session.csrf)
    flash = Safe("")
    if ctx.session.flash:
        flash = fmt('<div class="flash {cls}" role="status">{msg}</div>', msg=ctx.session.flash,
                    cls="error" if ctx.session.flash_error else "ok")
    trail = Safe("")
    if crumbs:
        trail = fmt('<nav class="crumbs">{c}</nav>', c=join((link(h, t) for t, h in crumbs), " / "))
    html = fmt(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>{title} · Nango</title>{head}'
        '<script src="/static/dashboard/app.js" defer></script></head>'
        '<body data-refresh="{refresh}"><header class="top"><a class="brand" href="/dashboard">'
        '<span class="logo" aria-hidden="true"></span>Nango<span class="sub">orchestrator</span></a>'
        '<nav class="main">{nav}</nav>{who}</header><main>{trail}<h1>{title}</h1>{flash}{body}</main>'
        '</body></html>',
        head=HEAD_LINKS, title=title, refresh=refresh or "", nav=nav, who=who, trail=trail, flash=flash, body=body)
    resp = web.Response(text=html, content_type="text/html", headers=SECURITY_HEADERS)
    if ctx.session.flash:
        ctx.session.flash, ctx.session.flash_error = "", False
        _set_session(ctx.request, resp, ctx.session)
    return resp


def _bare_page(title: str, body: Safe, status: int = 200) -> web.Response:
    html = fmt('<!doctype html><html lang="en"><head><meta charset="utf-8">'
               '<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} · Nango</title>'
               '{head}</head><body class="bare">'
               '<main class="login"><div class="brand big"><span class="logo" aria-hidden="true"></span>Nango'
               '<span class="sub">orchestrator</span></div>{body}</main></body></html>', title=title, body=body,
               head=HEAD_LINKS)
    return web.Response(text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS)


def _csrf_input(ctx: Ctx) -> Safe:
    return fmt('<input type="hidden" name="csrf" value="{v}">', v=ctx.session.csrf)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _safe_next(value: str | None) -> str:
    """Only same-site dashboard paths: never an open redirect."""
    if not value or not value.startswith("/dashboard") or value.startswith("//") or "\\" in value:
        return "/dashboard"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/dashboard"


# ---- login -----------------------------------------------------------------------------------------

@_route("GET", "/")
async def root(request: web.Request) -> web.StreamResponse:
    raise _redirect(request, "/dashboard")


@_route("GET", "/dashboard")
@_route("GET", "/dashboard/")
async def home(request: web.Request) -> web.StreamResponse:
    await _ctx(request)
    raise _redirect(request, "/dashboard/connections")


def _login_form(request: web.Request, message: str = "") -> Safe:
    has_password = bool(request.app[SETTINGS].dashboard_password.get_secret_value())
    hint = ("your environment's secret key, or the dashboard password" if has_password
            else "your environment's secret key")
    error = fmt('<p class="flash error" role="alert">{m}</p>', m=message) if message else Safe("")
    return fmt('<form method="post" action="/dashboard/login" class="card login-card">'
               '<h1>Sign in</h1><p class="muted">Use {hint}.</p>{error}'
               '<label for="secret">Secret key</label>'
               '<input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>'
               '<input type="hidden" name="next" value="{next}">'
               '<button type="submit" class="primary">Sign in</button></form>',
               hint=hint, error=error, next=_safe_next(request.query.get("next")))


@_route("GET", "/dashboard/login")
async def login_page(request: web.Request) -> web.Response:
    reason = "Your session has ended; sign in again." if request.query.get("reason") == "expired" else ""
    return _bare_page("Sign in", _login_form(request, reason))


@_route("POST", "/dashboard/login")
async def login(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise _error_page(403, "cross-site login refused")
    client = request.remote or "unknown"
    wait = request.app[THROTTLE].blocked_for(client)
    if wait:
        return _bare_page("Sign in", _login_form(
            request, f"Too many failed sign-ins from this address; try again in {int(wait) + 1} s."), status=429)
    form = await request.post()
    secret = str(form.get("secret", "")).strip()
    target = _safe_next(str(form.get("next", "")))
    password = request.app[SETTINGS].dashboard_password.get_secret_value()
    if password and secret and hmac.compare_digest(secret.encode(), password.encode()):
        raise _redirect(request, "/dashboard/environments", sessions.Session(environment_id=None, admin=True))
    env = None
    if secret:
        async with request.app[POOL].acquire() as conn:
            env = await environments_repo.by_secret_key(conn, secret)
            row = await queries.environment_row(conn, env.id) if env else None
    if env is None or row is None:
        request.app[THROTTLE].failed(client)
        return _bare_page("Sign in", _login_form(request, "That key is not valid."), status=401)
    raise _redirect(request, target, sessions.Session(environment_id=env.id,
                                                      key_fp=sessions.key_fingerprint(row["secret_key_hash"])))


@_route("POST", "/dashboard/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await _posted(request)
    resp = _redirect(request, "/dashboard/login")
    resp.del_cookie(sessions.COOKIE, path="/")
    raise resp


@_route("GET", "/dashboard/environments")
async def environments_page(request: web.Request) -> web.Response:
    session = _read_session(request)
    if session is None or not session.admin:
        raise _redirect(request, url("/dashboard/login", next="/dashboard/environments"))
    search = request.query.get("q", "").strip() or None
    async with request.app[POOL].acquire() as conn:
        rows = await queries.environments(conn, search)
    items = join(fmt('<li><form method="post" action="/dashboard/environments">'
                     '<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="id" value="{id}">'
                     '<button type="submit" class="env-pick">{name}</button></form></li>',
                     csrf=session.csrf, id=r["id"], name=r["name"]) for r in rows)
    body = fmt('<div class="card login-card"><h1>Choose an environment</h1>'
               '<form method="get" class="search"><input name="q" value="{q}" placeholder="Filter environments">'
               '</form><ul class="env-list">{items}</ul>{empty}</div>', q=search or "", items=items,
               empty=Safe('<p class="muted">No environment matches.</p>') if not rows else "")
    return _bare_page("Choose an environment", body)


@_route("POST", "/dashboard/environments")
async def choose_environment(request: web.Request) -> web.StreamResponse:
    session = _read_session(request)
    if session is None or not session.admin:
        raise _redirect(request, "/dashboard/login")
    form = await request.post()
    if not session.check_csrf(str(form.get("csrf", ""))):
        raise _error_page(403, "This form has expired; reload the page.")
    env_id = _int(str(form.get("id", "")))
    async with request.app[POOL].acquire() as conn:
        env = await environments_repo.by_id(conn, env_id) if env_id else None
    if env is None:
        raise _error_page(404, "no such environment")
    session.environment_id = env.id
    raise _redirect(request, "/dashboard/connections", session)


# ---- static files ---------------------------------------------------------------------------------

@_route("GET", "/static/dashboard/{name}")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = request.app[ASSETS].get(name)
    if body is None:
        raise web.HTTPNotFound()
    ext = name[name.rfind("."):]
    return web.Response(body=body, content_type=CONTENT_TYPES.get(ext, "application/octet-stream"),
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})


# ---- shared pieces -------------------------------------------------------------------------------

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


def _models(script: DeployedScript) -> list[str]:
    raw = script.config.get("output") or []
    return [str(m) for m in (raw if isinstance(raw, list) else [raw]) if m]


def _conn_href(integration: str, connection_id: str) -> str:
    return url("/dashboard/connection", integration=integration, connection=connection_id)


def _sync_href(integration: str, connection_id: str, sync: str) -> str:
    return url("/dashboard/sync", integration=integration, connection=connection_id, sync=sync)


def _temporal_link(ctx: Ctx, schedule_id: str) -> Safe:
    settings = ctx.app[SETTINGS]
    if not settings.temporal_ui_url:
        return fmt('<span class="muted" title="Set TEMPORAL_UI_URL to link to the Temporal UI">schedule '
                   '<code>{sid}</code></span>', sid=schedule_id)
    return fmt('<a class="temporal" href="{href}" target="_blank" rel="noopener">Schedule in Temporal UI ↗</a>',
               href=temporal_schedule_url(settings.temporal_ui_url, settings.temporal_namespace, schedule_id))


def _controls(ctx: Ctx, integration: str, connection_id: str, sync: str, st: dict[str, Any], back: str) -> Safe:
    def button(op: str, label: str, cls: str = "", confirm: str = "") -> Safe:
        return fmt('<form method="post" action="/dashboard/control" class="inline">{csrf}'
                   '<input type="hidden" name="op" value="{op}"><input type="hidden" name="integration" value="{i}">'
                   '<input type="hidden" name="connection" value="{c}"><input type="hidden" name="sync" value="{s}">'
                   '<input type="hidden" name="next" value="{next}">'
                   '<button type="submit" class="{cls}" data-op="{op}" data-confirm="{confirm}">{label}</button>'
                   '</form>', csrf=_csrf_input(ctx), op=op, i=integration, c=connection_id, s=sync, next=back,
                   cls=cls, confirm=confirm, label=label)

    parts = [button("resume", "Resume", "primary") if st.get("paused") else button("pause", "Pause")]
    parts.append(button("trigger", "Trigger now"))
    parts.append(button("full", "Full resync", "warn",
                        "Reset this sync's state and re-fetch everything? A running run is cancelled."))
    if st.get("status") == "RUNNING":
        parts.append(button("cancel", "Cancel run", "danger", "Cancel the running run?"))
    parts.append(fmt(
        '<form method="post" action="/dashboard/control" class="inline freq">{csrf}'
        '<input type="hidden" name="op" value="frequency"><input type="hidden" name="integration" value="{i}">'
        '<input type="hidden" name="connection" value="{c}"><input type="hidden" name="sync" value="{s}">'
        '<input type="hidden" name="next" value="{next}">'
        '<input name="frequency" aria-label="Frequency" placeholder="{ph}" size="16">'
        '<button type="submit" data-op="frequency">Set frequency</button></form>',
        csrf=_csrf_input(ctx), i=integration, c=connection_id, s=sync, next=back,
        ph=st.get("frequency") or "every 1h"))
    if st.get("frequency_source") in ("override", "ui"):
        parts.append(fmt(
            '<form method="post" action="/dashboard/control" class="inline">{csrf}'
            '<input type="hidden" name="op" value="frequency"><input type="hidden" name="integration" value="{i}">'
            '<input type="hidden" name="connection" value="{c}"><input type="hidden" name="sync" value="{s}">'
            '<input type="hidden" name="next" value="{next}"><input type="hidden" name="frequency" value="">'
            '<button type="submit" class="linkish" data-op="reset-frequency">Reset to deployed</button></form>',
            csrf=_csrf_input(ctx), i=integration, c=connection_id, s=sync, next=back))
    return fmt('<div class="controls">{p}</div>', p=join(parts))


async def _statuses(ctx: Ctx, items: list[sync_control.Target]) -> list[dict[str, Any]]:
    """sync_control.status for each target, a few at a time (one schedule describe each)."""
    gate = asyncio.Semaphore(STATUS_CONCURRENCY)

    async def one(t: sync_control.Target) -> dict[str, Any]:
        async with gate:
            return (await sync_control.status(ctx.app[POOL], ctx.app[TEMPORAL], ctx.env, [t]))[0]
    return list(await asyncio.gather(*(one(t) for t in items)))


def _frequency(st: dict[str, Any]) -> Safe:
    source = st.get("frequency_source")
    note = {"override": "per-connection override", "ui": "edited in the Temporal UI"}.get(source or "", "")
    if note:
        return fmt('{f} <span class="tag" title="{n}">{short}</span>', f=st.get("frequency") or "-", n=note,
                   short="override" if source == "override" else "UI edit")
    return esc(st.get("frequency") or "-")


def _record_counts(st: dict[str, Any]) -> str:
    counts = st.get("recordCount") or {}
    return ", ".join(f"{n:,} {m}" if len(counts) > 1 else f"{n:,}" for m, n in counts.items()) or "0"


def _count(n: int, cls: str) -> Safe:
    return fmt('<span class="{cls}">{n}</span>', cls=cls if n else "zero", n=f"{n:,}")


def _totals(counts: dict[str, dict[str, int]]) -> tuple[int, int, int]:
    return (sum(c["added"] for c in counts.values()), sum(c["updated"] for c in counts.values()),
            sum(c["deleted"] for c in counts.values()))


# ---- integrations --------------------------------------------------------------------------------

@_route("GET", "/dashboard/integrations")
async def integrations_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    async with ctx.app[POOL].acquire() as conn:
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
            schedule = cfg.get("runs") or ("-" if s.kind != "sync" else "every 1d")
            detail = []
            if s.kind == "sync":
                detail.append(f"{cfg.get('sync_type') or 'full'}")
                if cfg.get("track_deletes"):
                    detail.append("track deletes")
                if cfg.get("auto_start") is False:
                    detail.append("auto_start off")
            models = ", ".join(_models(s)) if s.kind == "sync" else \
                " → ".join(str(x) for x in (cfg.get("input"), cfg.get("output")) if x)
            rows.append((fmt('<strong>{n}</strong><div class="muted small">{d}</div>', n=s.name,
                             d=cfg.get("description") or ""),
                         badge(s.kind), _script_switch(ctx, s), fmt('v{v}', v=s.version),
                         schedule if s.kind == "sync" else "-",
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
    return _page(ctx, "Integrations", body, active="integrations")


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
    return fmt('<div class="switch">{badge}<form method="post" action="/dashboard/script" class="inline">{csrf}'
               '<input type="hidden" name="op" value="{op}"><input type="hidden" name="integration" value="{i}">'
               '<input type="hidden" name="name" value="{n}"><input type="hidden" name="kind" value="{k}">'
               '<input type="hidden" name="next" value="/dashboard/integrations">'
               '<button type="submit" class="{cls}" data-op="{op}" data-script="{n}" data-confirm="{confirm}">'
               '{label}</button></form></div>',
               badge=badge("enabled" if script.enabled else "disabled"), csrf=_csrf_input(ctx), op=op,
               i=script.integration_key, n=script.name, k=script.kind, cls=cls, confirm=confirm, label=label)


# ---- connections ---------------------------------------------------------------------------------

@_route("GET", "/dashboard/connections")
async def connections_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    search = request.query.get("q", "").strip() or None
    integration = request.query.get("integration", "").strip() or None
    page = max(_int(request.query.get("page")) or 1, 1)
    async with ctx.app[POOL].acquire() as conn:
        rows, total = await queries.connections_page(conn, ctx.env.id, search, integration, PAGE_SIZE,
                                                      (page - 1) * PAGE_SIZE)
        scripts = await scripts_repo.list_for_environment(conn, ctx.env.id)
        conns = [await connections_repo.get_by_pk(conn, ctx.app[SEALER], r["id"]) for r in rows]
    syncs: dict[str, list[DeployedScript]] = {}
    for s in scripts:
        if s.kind == "sync":
            syncs.setdefault(s.integration_key, []).append(s)
    items = [sync_control.Target(c, s) for c in conns if c is not None for s in syncs.get(c.integration_key, [])]
    statuses = {(t.connection.id, t.script.name): st for t, st in zip(items, await _statuses(ctx, items),
                                                                          strict=True)}
    body_rows: list[Safe] = []
    running = False
    for c in conns:
        if c is None:
            continue
        mine = syncs.get(c.integration_key, [])
        first = fmt('<td rowspan="{n}"><a href="{href}" class="conn"><strong>{cid}</strong></a>'
                    '<div class="muted small">{integ} · created {created}</div></td>',
                    n=max(len(mine), 1), href=_conn_href(c.integration_key, c.connection_id), cid=c.connection_id,
                    integ=c.integration_key, created=when(c.created_at))
        if not mine:
            body_rows.append(Safe(f'<tr>{first}<td colspan="6" class="muted">no syncs deployed</td></tr>'))
            continue
        for i, s in enumerate(mine):
            st = statuses[(c.id, s.name)]
            running = running or st["status"] == "RUNNING"
            cells = fmt('<td><a href="{href}">{name}</a></td><td>{status}</td><td>{last}</td><td>{next}</td>'
                        '<td>{freq}</td><td class="num">{records}</td>',
                        href=_sync_href(c.integration_key, c.connection_id, s.name), name=s.name,
                        status=badge(st["status"]), last=when(st["finishedAt"]),
                        next=when(st["nextScheduledSyncAt"]) if not st["paused"] else Safe('<span class="muted">'
                                                                                            'paused</span>'),
                        freq=_frequency(st), records=_record_counts(st))
            body_rows.append(Safe(f"<tr>{first if i == 0 else ''}{cells}</tr>"))
    if not body_rows:
        body_rows.append(Safe('<tr><td colspan="7" class="empty">No connection matches.</td></tr>'))
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    pager = _pager(page, pages, lambda p: url("/dashboard/connections", q=search, integration=integration, page=p))
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
    return _page(ctx, "Connections", body, active="connections", refresh=5 if running else 0)


def _pager(page: int, pages: int, href: Any) -> Safe:
    prev = link(href(page - 1), "← Previous") if page > 1 else Safe('<span class="muted">← Previous</span>')
    nxt = link(href(page + 1), "Next →") if page < pages else Safe('<span class="muted">Next →</span>')
    return fmt('<nav class="pager">{prev}<span>Page {p} of {n}</span>{next}</nav>', prev=prev, p=page,
               n=f"{pages:,}", next=nxt)


async def _load_connection(ctx: Ctx) -> tuple[Connection, list[DeployedScript]] | None:
    q = ctx.request.query
    async with ctx.app[POOL].acquire() as conn:
        found = await connections_repo.get(conn, ctx.app[SEALER], ctx.env.id, q.get("integration", ""),
                                           q.get("connection", ""))
        if found is None:
            return None
        scripts = await scripts_repo.list_for_integration(conn, found.integration_id)
    return found, scripts


def _runs_chart_data(runs: list[Any]) -> list[tuple[int, str, datetime, datetime | None]]:
    return [(r["id"], r["status"], r["started_at"], r["ended_at"]) for r in runs]


@_route("GET", "/dashboard/connection")
async def connection_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    loaded = await _load_connection(ctx)
    if loaded is None:
        return _not_found("No such connection in this environment.")
    c, scripts = loaded
    syncs = [s for s in scripts if s.kind == "sync"]
    items = [sync_control.Target(c, s) for s in syncs]
    statuses = await _statuses(ctx, items)
    async with ctx.app[POOL].acquire() as conn:
        runs = {s.name: await queries.recent_runs(conn, c.id, s.name, "base", limit=30) for s in syncs}
    here = request.path_qs
    cards = []
    running = False
    for s, st in zip(syncs, statuses, strict=True):
        running = running or st["status"] == "RUNNING"
        models = join((link(url("/dashboard/records", integration=c.integration_key, connection=c.connection_id,
                                model=m), f"{m} ({(st['recordCount'] or {}).get(m, 0):,})") for m in _models(s)),
                      " · ")
        cards.append(fmt(
            '<section class="card sync" data-sync="{name}"><div class="card-head"><h2><a href="{href}">{name}</a>'
            '</h2>{status}<span class="muted">{note}</span><span class="right">{temporal}</span></div>'
            '<dl class="facts"><div><dt>Last run</dt><dd>{last}</dd></div><div><dt>Next run</dt><dd>{next}</dd></div>'
            '<div><dt>Frequency</dt><dd>{freq}</dd></div><div><dt>Type</dt><dd>{type}</dd></div>'
            '<div><dt>Records</dt><dd>{models}</dd></div></dl>{error}{controls}'
            '<h3>Execution time, recent runs</h3>{chart}<p><a href="{href}">Run history →</a></p></section>',
            name=s.name, href=_sync_href(c.integration_key, c.connection_id, s.name), status=badge(st["status"]),
            note=st["note"] or "", temporal=_temporal_link(ctx, st["schedule_id"]), last=when(st["finishedAt"]),
            next=when(st["nextScheduledSyncAt"]) if not st["paused"] else "paused", freq=_frequency(st),
            type=st["type"].lower(), models=models or "-",
            error=fmt('<div class="flash error">Last run failed: {e}</div>', e=st["error"]) if st["error"] else "",
            controls=_controls(ctx, c.integration_key, c.connection_id, s.name, st, here),
            chart=duration_chart(_runs_chart_data(runs[s.name]), "/dashboard/job")))
    meta = fmt('<section class="card"><div class="grid2"><div><h3>Metadata</h3>{meta}</div>'
               '<div><h3>Connection config</h3>{cfg}</div></div><p class="muted small">Integration {integ} · provider '
               '{provider} · created {created} · updated {updated}</p></section>',
               meta=pretty_json(c.metadata), cfg=pretty_json(c.connection_config), integ=c.integration_key,
               provider=c.provider, created=when(c.created_at), updated=when(c.updated_at))
    body = join(cards) + (Safe("") if syncs else Safe('<p class="card muted">No syncs deployed.</p>')) + meta
    return _page(ctx, c.connection_id, body, active="connections",
                 crumbs=[("Connections", url("/dashboard/connections", integration=c.integration_key))],
                 refresh=4 if running else 0)


# ---- a sync's run history ------------------------------------------------------------------------

@_route("GET", "/dashboard/sync")
async def sync_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    loaded = await _load_connection(ctx)
    name = request.query.get("sync", "")
    script = next((s for s in loaded[1] if s.kind == "sync" and s.name == name), None) if loaded else None
    if loaded is None or script is None:
        return _not_found("No such sync for this connection.")
    c = loaded[0]
    before = _int(request.query.get("before"))
    st = (await _statuses(ctx, [sync_control.Target(c, script)]))[0]
    async with ctx.app[POOL].acquire() as conn:
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
        rows.append((link(url("/dashboard/job", id=r["id"]), f"#{r['id']}"), badge(r["status"]),
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
        status=badge(st["status"]), note=st["note"] or "", temporal=_temporal_link(ctx, st["schedule_id"]),
        freq=_frequency(st), next=when(st["nextScheduledSyncAt"]) if not st["paused"] else "paused",
        records=_record_counts(st), controls=_controls(ctx, c.integration_key, c.connection_id, name, st,
                                                       request.path_qs),
        chart=duration_chart(_runs_chart_data(chart_runs), "/dashboard/job", now),
        rows=join(Safe("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>") for row in rows)
        or Safe('<tr><td colspan="10" class="empty">No runs yet.</td></tr>'), more=more)
    return _page(ctx, f"{name} · {c.connection_id}", body, active="connections",
                 crumbs=[("Connections", "/dashboard/connections"),
                         (c.connection_id, _conn_href(c.integration_key, c.connection_id))],
                 refresh=4 if st["status"] == "RUNNING" else 0)


# ---- one run: details and logs -------------------------------------------------------------------

def _log_row(entry: dict[str, Any]) -> Safe:
    fields = short_json(entry.get("fields"), 400) if entry.get("fields") else ""
    return fmt('<tr data-id="{id}" class="lvl-{lvl}"><td class="ts">{ts}</td><td><span class="lvl">{lvl}</span></td>'
               '<td class="msg">{msg}{fields}</td></tr>', id=entry["id"], lvl=entry["level"],
               ts=entry["created_at"].astimezone(UTC).strftime("%H:%M:%S.%f")[:-3], msg=entry["message"],
               fields=fmt(' <span class="fields">{f}</span>', f=fields) if fields else "")


@_route("GET", "/dashboard/job")
async def job_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    job_id = _int(request.query.get("id"))
    level = request.query.get("level", "") if request.query.get("level", "") in queries.LEVELS else ""
    search = request.query.get("q", "").strip()
    async with ctx.app[POOL].acquire() as conn:
        job = await queries.job(conn, ctx.env.id, job_id) if job_id else None
        if job is None:
            return _not_found("No such run in this environment.")
        logs = await queries.logs(conn, job["id"], after=0, minimum=level or None, search=search or None,
                                  limit=LOG_PAGE)
        counts = await queries.counts_for(conn, [job["id"]])
        notes = await queries.notifications_for_job(conn, job["id"])
    integ, cid, kind = job["unique_key"], job["connection_id"], job["kind"]
    facts = [("Status", badge(job["status"])), ("Kind", kind), ("Script", job["sync_name"]),
             ("Connection", link(_conn_href(integ, cid), cid)), ("Started", when(job["started_at"])),
             ("Duration", duration(run_duration(job["started_at"], job["ended_at"])))]
    if job["attempts"] > 1:
        facts.append(("Attempts", job["attempts"]))
    settings = ctx.app[SETTINGS]
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
                          for m, v in counts.get(job["id"], {}).items()], cls="compact",
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
    crumbs = [("Connections", "/dashboard/connections"), (cid, _conn_href(integ, cid))]
    if kind == "sync":
        crumbs.append((job["sync_name"], _sync_href(integ, cid, job["sync_name"])))
    elif kind == "action":
        crumbs = [("Actions", "/dashboard/actions")]
    return _page(ctx, title, join(parts), active="actions" if kind == "action" else "connections", crumbs=crumbs)


@_route("GET", "/dashboard/job/logs.json")
async def job_logs(request: web.Request) -> web.Response:
    session = _read_session(request)
    if session is None or session.environment_id is None:
        return web.json_response({"error": "not signed in"}, status=401, headers=SECURITY_HEADERS)
    ctx = await _ctx(request)
    job_id = _int(request.query.get("id"))
    after = _int(request.query.get("after")) or 0
    level = request.query.get("level") or None
    search = request.query.get("q", "").strip() or None
    async with ctx.app[POOL].acquire() as conn:
        status = await queries.job_status(conn, ctx.env.id, job_id) if job_id else None
        if status is None:
            return web.json_response({"error": "no such run"}, status=404, headers=SECURITY_HEADERS)
        logs = await queries.logs(conn, job_id, after=after, minimum=level, search=search, limit=LOG_PAGE)
    out = [{"id": e["id"], "level": e["level"], "message": e["message"], "fields": e["fields"],
            "time": e["created_at"].astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]} for e in logs]
    body = orjson.dumps({"logs": out, "status": status, "running": status == "running",
                         "more": len(logs) == LOG_PAGE}, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, content_type="application/json", headers=SECURITY_HEADERS)


# ---- records -------------------------------------------------------------------------------------

@_route("GET", "/dashboard/records")
async def records_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    loaded = await _load_connection(ctx)
    if loaded is None:
        return _not_found("No such connection in this environment.")
    c, scripts = loaded
    models = sorted({m for s in scripts if s.kind == "sync" for m in _models(s)})
    model = request.query.get("model") or (models[0] if models else "")
    cursor = request.query.get("cursor") or None
    action = request.query.get("filter", "")
    actions = [action] if action in records_repo.ACTIONS else None
    scope = records_repo.Scope(ctx.env.id, c.id, model)
    try:
        async with ctx.app[POOL].acquire() as conn:
            page = await records_repo.read_page(conn, scope, cursor=cursor, limit=PAGE_SIZE, actions=actions)
            total = await records_repo.count(conn, scope)
    except OrchestratorError as exc:
        return _not_found(exc.message)
    rows = []
    for raw in page.records_json:
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
                              model=model, filter=action, cursor=page.next_cursor), "Next page →")
                if page.next_cursor else Safe('<span class="muted">Next page →</span>'))
    body = fmt('<div class="toolbar"><span class="tabs">{tabs}</span><span class="tabs right">{filters}</span></div>'
               '<p class="muted">{total} live record{plural} of {model}, in the order consumers read them '
               '(by cursor).</p><section class="card flush">{table}</section>{pager}',
               tabs=tabs, filters=filters, total=f"{total:,}", plural="" if total == 1 else "s", model=model,
               table=table(["Id", "Last action", "Modified", "First seen", "Deleted", "Data"], rows,
                           cls="records", empty="No records."), pager=pager)
    return _page(ctx, f"Records · {c.connection_id}", body, active="connections",
                 crumbs=[("Connections", "/dashboard/connections"),
                         (c.connection_id, _conn_href(c.integration_key, c.connection_id))])


# ---- actions and webhooks ------------------------------------------------------------------------

@_route("GET", "/dashboard/actions")
async def actions_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    before = _int(request.query.get("before"))
    async with ctx.app[POOL].acquire() as conn:
        jobs = await queries.script_jobs(conn, ctx.env.id, "action", before=before, limit=RUNS_PAGE)
    rows = []
    for j in jobs:
        result = fmt('<div class="err">{e}</div>', e=j["error"]) if j["error"] else \
            fmt('<details><summary>{s}</summary>{p}</details>', s=short_json(j["output"], 80) or "none",
                p=pretty_json(j["output"]))
        rows.append((link(url("/dashboard/job", id=j["id"]), f"#{j['id']}"), when(j["started_at"]),
                     fmt('<strong>{n}</strong>', n=j["sync_name"]),
                     link(_conn_href(j["unique_key"], j["connection_id"]), j["connection_id"]), badge(j["status"]),
                     duration(run_duration(j["started_at"], j["ended_at"])),
                     fmt('<details><summary>{s}</summary>{p}</details>', s=short_json(j["input"], 80) or "none",
                         p=pretty_json(j["input"])), result))
    more = fmt('<nav class="pager"><a href="{h}">Older →</a></nav>',
               h=url("/dashboard/actions", before=jobs[-1]["id"])) if len(jobs) == RUNS_PAGE else Safe("")
    body = fmt('<section class="card flush">{t}</section>{more}', more=more, t=table(
        ["Run", "Started", "Action", "Connection", "Status", "Duration", "Input", "Output"], rows, cls="actions",
        empty="No action has run yet."))
    return _page(ctx, "Actions", body, active="actions")


@_route("GET", "/dashboard/webhooks")
async def webhooks_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    in_before, out_before = _int(request.query.get("in_before")), _int(request.query.get("out_before"))
    async with ctx.app[POOL].acquire() as conn:
        incoming = await queries.incoming_webhooks(conn, ctx.env.id, before=in_before, limit=PAGE_SIZE)
        outgoing = await queries.outgoing_webhooks(conn, ctx.env.id, before=out_before, limit=PAGE_SIZE)
        runs = await queries.script_jobs(conn, ctx.env.id, "webhook", before=None, limit=10)
    in_rows = [(when(w["received_at"]), w["unique_key"], w["event_type"] or "-", badge(w["status"]),
                ", ".join(w["connections"]) or "-", w["error"] or "",
                fmt('<details><summary>{s}</summary><pre class="json">{b}</pre></details>',
                    s=short_json(bytes(w["body"]).decode(errors="replace"), 60),
                    b=bytes(w["body"]).decode(errors="replace"))) for w in incoming]
    out_rows = [(when(n["attempted_at"]), link(url("/dashboard/job", id=n["job_id"]), f"#{n['job_id']}"),
                 f"{n['sync_name']} · {n['connection_id']}", n["url"].split("?")[0],
                 badge(str(n["status"]) if n["status"] else "error"), n["error"] or "") for n in outgoing]
    run_rows = [(link(url("/dashboard/job", id=j["id"]), f"#{j['id']}"), when(j["started_at"]), j["sync_name"],
                 j["connection_id"], badge(j["status"]), j["error"] or "") for j in runs]

    def more(key: str, rows: list[Any], last: Any) -> Safe:
        return fmt('<nav class="pager"><a href="{h}">Older →</a></nav>',
                   h=url("/dashboard/webhooks", **{key: last})) if len(rows) == PAGE_SIZE else Safe("")

    body = fmt(
        '<h2>Incoming from providers</h2><section class="card flush">{inc}</section>{inc_more}'
        '<h2>Webhook script runs</h2><section class="card flush">{runs}</section>'
        '<h2>Outgoing to your app</h2><p class="muted">{target}</p><section class="card flush">{out}</section>'
        '{out_more}',
        inc=table(["Received", "Integration", "Event", "Status", "Connections", "Error", "Body"], in_rows,
                  empty="No webhook received yet."),
        inc_more=more("in_before", incoming, incoming[-1]["id"] if incoming else None),
        runs=table(["Run", "Started", "Script", "Connection", "Status", "Error"], run_rows,
                   empty="No webhook script has run."),
        target=f"Deliveries go to {ctx.env.webhook_url.split('?')[0]}" if ctx.env.webhook_url
        else "No webhook URL is set for this environment.",
        out=table(["Attempted", "Run", "Sync", "URL", "Status", "Error"], out_rows, empty="No delivery yet."),
        out_more=more("out_before", outgoing, outgoing[-1]["id"] if outgoing else None))
    return _page(ctx, "Webhooks", body, active="webhooks")


# ---- controls ------------------------------------------------------------------------------------

@_route("POST", "/dashboard/control")
async def control(request: web.Request) -> web.StreamResponse:
    ctx, form = await _posted(request)
    op = str(form.get("op", ""))
    integration, connection_id, sync = (str(form.get(k, "")) for k in ("integration", "connection", "sync"))
    back = _safe_next(str(form.get("next", "")))
    pool, client, env = ctx.app[POOL], ctx.app[TEMPORAL], ctx.env
    message, failed = "", False
    try:
        items = await sync_control.targets(pool, ctx.app[SEALER], env, integration, [sync], connection_id)
        if op == "pause":
            done = await sync_control.pause(client, env, items, "paused from the dashboard")
            message = f"Paused {sync}." if done else "No schedule to pause."
        elif op == "resume":
            done = await sync_control.resume(client, env, items, "resumed from the dashboard")
            message = f"Resumed {sync}." if done else "No schedule to resume."
        elif op in ("trigger", "full"):
            done = await sync_control.trigger(pool, client, env, items, full=op == "full")
            message = (f"{'Full resync' if op == 'full' else 'Run'} of {sync} started." if done
                       else "No schedule to trigger.")
        elif op == "cancel":
            stopped = await sync_control.cancel(client, env, items, "cancelled from the dashboard")
            message = f"Cancel sent to {stopped} running run(s)." if stopped else "Nothing was running."
        elif op == "frequency":
            text = await sync_control.set_frequency(pool, client, env, items,
                                                    str(form.get("frequency", "")).strip() or None)
            message = f"{sync} now runs {text}."
        else:
            message, failed = f"Unknown control {op!r}.", True
    except OrchestratorError as exc:
        message, failed = exc.message, True
    ctx.session.flash, ctx.session.flash_error = message[:500], failed
    raise _redirect(request, back, ctx.session)


@_route("POST", "/dashboard/script")
async def script_switch(request: web.Request) -> web.StreamResponse:
    """Enable or disable a deployed sync or action, as `PATCH /scripts/{integration}/{name}` does."""
    ctx, form = await _posted(request)
    op = str(form.get("op", ""))
    integration, name = str(form.get("integration", "")), str(form.get("name", ""))
    kind = str(form.get("kind", "")) or None
    back = _safe_next(str(form.get("next", "")) or "/dashboard/integrations")
    message, failed = "", False
    if op not in ("enable", "disable"):
        message, failed = f"Unknown control {op!r}.", True
    else:
        app = ctx.app
        try:
            result = await scripts_control.switch(app[POOL], app[SEALER], app[TEMPORAL], ctx.env, integration, name,
                                                  op == "enable", kind,
                                                  task_queue_prefix=app[SETTINGS].task_queue_prefix)
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
    ctx.session.flash, ctx.session.flash_error = message[:500], failed
    raise _redirect(request, back, ctx.session)


# ---- endpoints -----------------------------------------------------------------------------------

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


@_route("GET", "/dashboard/endpoints")
async def endpoints_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    integration = request.query.get("integration", "").strip() or None
    settings = ctx.app[SETTINGS]
    server = settings.public_url.rstrip("/") or f"{request.scheme}://{request.host}"
    try:
        doc = await unified.environment_reference(ctx.app, ctx.env, integration, server_url=server)
    except OrchestratorError as exc:
        return _not_found(exc.message)
    async with ctx.app[POOL].acquire() as conn:
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
    return _page(ctx, title, body, active="integrations", crumbs=[("Integrations", "/dashboard/integrations")])


# ---- environment variables -----------------------------------------------------------------------

def _masked(value: str) -> Safe:
    if not value:
        return Safe('<span class="muted">(empty)</span>')
    return fmt('<details class="reveal"><summary><span class="mask">{m}</span> <span class="muted small">reveal'
               '</span></summary><pre class="json value">{v}</pre></details>', m="•" * min(len(value), 12), v=value)


@_route("GET", "/dashboard/variables")
async def variables_page(request: web.Request) -> web.Response:
    ctx = await _ctx(request)
    async with ctx.app[POOL].acquire() as conn:
        variables = await envvars_repo.list_all(conn, ctx.app[SEALER], ctx.env.id)
    rows = [(fmt('<code>{n}</code>', n=v["name"]), _masked(v["value"]),
             fmt('<form method="post" action="/dashboard/variables" class="inline">{csrf}'
                 '<input type="hidden" name="op" value="unset"><input type="hidden" name="name" value="{n}">'
                 '<button type="submit" class="danger" data-op="unset" data-name="{n}" '
                 'data-confirm="Unset {n}? Script runs no longer receive it.">Unset</button></form>',
                 csrf=_csrf_input(ctx), n=v["name"])) for v in variables]
    body = fmt(
        '<p class="muted">Script runs read these with <code>nango.get_environment_variables()</code>; values are '
        'sealed at rest. The API equivalent is <code>GET</code>/<code>POST /environment-variables</code>.</p>'
        '<section class="card flush">{table}</section>'
        '<section class="card"><h2>Set a variable</h2><p class="muted small">Adds it, or replaces the value of '
        'the variable of that name.</p><form method="post" action="/dashboard/variables" class="setvar">{csrf}'
        '<input type="hidden" name="op" value="set">'
        '<input name="name" aria-label="Name" placeholder="NAME" required maxlength="255" '
        'pattern="[A-Za-z_][A-Za-z0-9_.\\-]*" autocomplete="off">'
        '<textarea name="value" aria-label="Value" placeholder="value" rows="2" cols="48" maxlength="{max}">'
        '</textarea><button type="submit" class="primary" data-op="set">Set</button></form></section>',
        table=table(["Name", "Value", ""], rows, cls="variables", empty="No environment variable is set."),
        csrf=_csrf_input(ctx), max=envvars_api.MAX_VALUE)
    return _page(ctx, "Environment variables", body, active="variables")


@_route("POST", "/dashboard/variables")
async def variables_change(request: web.Request) -> web.StreamResponse:
    """Set (add or replace) or unset one variable: the stored set is rewritten as `POST /environment-variables`
    does, under a lock on the environment so two edits never lose one another."""
    ctx, form = await _posted(request)
    op, name = str(form.get("op", "")), str(form.get("name", "")).strip()
    value = str(form.get("value", "")).replace("\r\n", "\n")
    message, failed = "", False
    try:
        if op not in ("set", "unset"):
            raise ValueError(f"Unknown control {op!r}.")
        checked = envvars_api.EnvironmentVariable(name=name, value=value if op == "set" else "")
        sealer = ctx.app[SEALER]
        async with ctx.app[POOL].acquire() as conn, conn.transaction():
            await queries.lock_environment(conn, ctx.env.id)
            current = [(v["name"], v["value"]) for v in await envvars_repo.list_all(conn, sealer, ctx.env.id)]
            present = any(n == checked.name for n, _ in current)
            if op == "unset":
                if not present:
                    raise ValueError(f"{checked.name} is not set.")
                updated = [(n, v) for n, v in current if n != checked.name]
                message = f"Unset {checked.name}."
            else:
                updated = [(n, checked.value if n == checked.name else v) for n, v in current]
                if not present:
                    if len(current) >= envvars_api.MAX_VARIABLES:
                        raise ValueError(f"At most {envvars_api.MAX_VARIABLES} variables.")
                    updated = sorted([*updated, (checked.name, checked.value)])
                message = f"{'Replaced' if present else 'Set'} {checked.name}."
            await envvars_repo.replace(conn, sealer, ctx.env.id, updated)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc") or ())
        message, failed = f"Invalid {where or 'variable'}: {first.get('msg')}", True
    except ValueError as exc:
        message, failed = str(exc), True
    except OrchestratorError as exc:
        message, failed = exc.message, True
    ctx.session.flash, ctx.session.flash_error = message[:500], failed
    raise _redirect(request, "/dashboard/variables", ctx.session)
