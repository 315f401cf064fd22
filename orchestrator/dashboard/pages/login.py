"""Signing in and out: a secret key selects its environment; the dashboard password (an admin session)
picks any environment from a list. Failed sign-ins are throttled per client address."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from orchestrator.api import frontend
from orchestrator.api.keys import PLATFORM
from orchestrator.crypto import hash_secret_key
from orchestrator.dashboard import queries
from orchestrator.dashboard import session as sessions
from orchestrator.dashboard.forms import post_form, submit
from orchestrator.dashboard.frame import (
    THROTTLE,
    Ctx,
    PageError,
    Router,
    bare_page,
    checked_form,
    int_param,
    read_session,
    redirect,
    safe_next,
)
from orchestrator.dashboard.render import Safe, fmt, join, url
from orchestrator.dashboard.throttle import request_client
from orchestrator.store import environments as environments_repo

routes = web.RouteTableDef()
route = Router(routes)


@route.public("GET", "/")
async def root(request: web.Request) -> web.StreamResponse:
    if frontend.wants_socket(request):  # Nango's frontend SDK opens its WebSocket at the host's root by default
        return await frontend.socket(request)
    raise redirect(request, "/dashboard")


@route.page("/dashboard")
@route.page("/dashboard/")
async def home(ctx: Ctx) -> web.StreamResponse:
    raise redirect(ctx.request, "/dashboard/connections")


def _login_form(request: web.Request, message: str = "") -> Safe:
    has_password = bool(request.app[PLATFORM].settings.dashboard_password.get_secret_value())
    hint = ("your environment's secret key, or the dashboard password" if has_password
            else "your environment's secret key")
    error = fmt('<p class="flash error" role="alert">{m}</p>', m=message) if message else Safe("")
    return fmt('<form method="post" action="/dashboard/login" class="card login-card">'
               '<h1>Sign in</h1><p class="muted">Use {hint}.</p>{error}'
               '<label for="secret">Secret key</label>'
               '<input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>'
               '<input type="hidden" name="next" value="{next}">'
               '<button type="submit" class="primary">Sign in</button></form>',
               hint=hint, error=error, next=safe_next(request.query.get("next")))


@route.public("GET", "/dashboard/login")
async def login_page(request: web.Request) -> web.Response:
    reason = "Your session has ended; sign in again." if request.query.get("reason") == "expired" else ""
    return bare_page("Sign in", _login_form(request, reason))


@route.public("POST", "/dashboard/login")
async def login(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise PageError(403, "cross-site login refused")
    client = request_client(request)  # behind an ingress: from trusted proxies' X-Forwarded-For
    wait = request.app[THROTTLE].blocked_for(client)
    if wait:
        return bare_page("Sign in", _login_form(
            request, f"Too many failed sign-ins from this address; try again in {int(wait) + 1} s."), status=429)
    form = await request.post()
    secret = str(form.get("secret", "")).strip()
    target = safe_next(str(form.get("next", "")))
    password = request.app[PLATFORM].settings.dashboard_password.get_secret_value()
    if password and secret and hmac.compare_digest(secret.encode(), password.encode()):
        raise redirect(request, "/dashboard/environments", sessions.Session(environment_id=None, admin=True))
    env = None
    if secret:
        async with request.app[PLATFORM].pool.acquire() as conn:
            env = await environments_repo.by_secret_key(conn, secret)
            row = await queries.environment_row(conn, env.id) if env else None
    if env is None or row is None:
        request.app[THROTTLE].failed(client)
        return bare_page("Sign in", _login_form(request, "That key is not valid."), status=401)
    if not hmac.compare_digest(row["secret_key_hash"], hash_secret_key(secret)):
        # a rotated-out key still in its grace period: the API takes it until then, but a session made with it
        # would carry the current key's fingerprint and outlive the grace period by its own twelve hours
        request.app[THROTTLE].failed(client)
        return bare_page("Sign in", _login_form(request, "That key has been rotated; sign in with the "
                                                "environment's current key."), status=401)
    raise redirect(request, target, sessions.Session(environment_id=env.id,
                                                     key_fp=sessions.key_fingerprint(row["secret_key_hash"])))


@route.form("/dashboard/logout")
async def logout(ctx: Ctx, form: Any) -> web.StreamResponse:
    resp = redirect(ctx.request, "/dashboard/login")
    resp.del_cookie(sessions.COOKIE, path="/")
    raise resp


@route.public("GET", "/dashboard/environments")
async def environments_page(request: web.Request) -> web.Response:
    session = read_session(request)
    if session is None or not session.admin:
        raise redirect(request, url("/dashboard/login", next="/dashboard/environments"))
    search = request.query.get("q", "").strip() or None
    async with request.app[PLATFORM].pool.acquire() as conn:
        rows = await queries.environments(conn, search)
    items = join(fmt('<li>{form}</li>', form=post_form(session.csrf, "/dashboard/environments", {"id": r["id"]},
                                                       submit(r["name"], "env-pick"), cls=None)) for r in rows)
    body = fmt('<div class="card login-card"><h1>Choose an environment</h1>'
               '<form method="get" class="search"><input name="q" value="{q}" placeholder="Filter environments">'
               '</form><ul class="env-list">{items}</ul>{empty}</div>', q=search or "", items=items,
               empty=Safe('<p class="muted">No environment matches.</p>') if not rows else "")
    return bare_page("Choose an environment", body)


@route.public("POST", "/dashboard/environments")
async def choose_environment(request: web.Request) -> web.StreamResponse:
    session = read_session(request)
    if session is None or not session.admin:
        raise redirect(request, "/dashboard/login")
    form = await checked_form(request, session, "This form has expired; reload the page.")
    env_id = int_param(str(form.get("id", "")))
    async with request.app[PLATFORM].pool.acquire() as conn:
        env = await environments_repo.by_id(conn, env_id) if env_id else None
    if env is None:
        raise PageError(404, "no such environment")
    session.environment_id = env.id
    raise redirect(request, "/dashboard/connections", session)
