"""The frame every dashboard page sits in: the session cookie, the route wrapper, the page layout.

The API's auth middleware treats dashboard paths as public, so every page checks the session itself
in the wrapper `Router` puts around it (`context`, or `posted` for a form, which also checks the
session's CSRF token). A page raises `PageError` (or `NotFound`) to end with an HTML error page; the
API's JSON error middleware never sees it. Pages are modules of `orchestrator.dashboard.pages`, each
with its own `web.RouteTableDef()`.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiMapping

from orchestrator.api.keys import PLATFORM
from orchestrator.dashboard import queries
from orchestrator.dashboard import session as sessions
from orchestrator.dashboard.forms import post_form, submit
from orchestrator.dashboard.render import Safe, fmt, join, link, url
from orchestrator.dashboard.throttle import LoginThrottle, cookie_secure
from orchestrator.store.types import Environment

SESSION_KEY = web.AppKey("dashboard_session_key", bytes)
ASSETS = web.AppKey("dashboard_assets", dict)
THROTTLE = web.AppKey("dashboard_login_throttle", LoginThrottle)

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
NAV = (("integrations", "Integrations", "/dashboard/integrations"), ("connections", "Connections",
       "/dashboard/connections"), ("actions", "Actions", "/dashboard/actions"),
       ("webhooks", "Webhooks", "/dashboard/webhooks"), ("logs", "Logs", "/dashboard/logs"),
       ("variables", "Variables", "/dashboard/variables"))


# ---- session -------------------------------------------------------------------------------------

@dataclass
class Ctx:
    """A signed-in request: its session and the environment it works in."""

    request: web.Request
    session: sessions.Session
    env: Environment
    flash_shown: bool = False

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def query(self) -> MultiMapping[str]:
        return self.request.query


def read_session(request: web.Request) -> sessions.Session | None:
    """The request's session, or None when the cookie is missing, forged or expired."""
    return sessions.load(request.app[SESSION_KEY], request.cookies.get(sessions.COOKIE))


def set_session(request: web.Request, resp: web.StreamResponse, session: sessions.Session) -> None:
    """Write the session back into its cookie (flash messages and environment choice live there); Secure over
    HTTPS, including TLS terminated by a trusted proxy (cookie_secure)."""
    resp.set_cookie(sessions.COOKIE, sessions.dump(request.app[SESSION_KEY], session), path="/", httponly=True,
                    samesite="Lax", secure=cookie_secure(request), max_age=sessions.LIFETIME_S)


def redirect(request: web.Request, location: str, session: sessions.Session | None = None) -> web.HTTPFound:
    """A 302 to raise, with the security headers and, given a session, its updated cookie."""
    exc = web.HTTPFound(location)
    if session is not None:
        set_session(request, exc, session)
    exc.headers.update(SECURITY_HEADERS)
    return exc


async def context(request: web.Request) -> Ctx:
    """The signed-in session and its environment; otherwise a redirect to sign in (or to pick one)."""
    session = read_session(request)
    if session is None:
        raise redirect(request, url("/dashboard/login", next=request.path_qs))
    if session.environment_id is None:
        if session.admin:
            raise redirect(request, "/dashboard/environments")
        raise redirect(request, "/dashboard/login")
    async with request.app[PLATFORM].pool.acquire() as conn:
        row = await queries.environment_row(conn, session.environment_id)
    if row is None or (not session.admin and not hmac.compare_digest(
            session.key_fp, sessions.key_fingerprint(row["secret_key_hash"]))):
        resp = redirect(request, url("/dashboard/login", reason="expired"))
        resp.del_cookie(sessions.COOKIE, path="/")
        raise resp
    return Ctx(request, session, Environment(id=row["id"], name=row["name"], webhook_url=row["webhook_url"]))


async def json_context(request: web.Request) -> Ctx | web.Response:
    """A dashboard JSON endpoint's signed-in context, or the 401 to answer (a script cannot follow the sign-in
    redirect a page gets)."""
    session = read_session(request)
    if session is None or session.environment_id is None:
        return web.json_response({"error": "not signed in"}, status=401, headers=SECURITY_HEADERS)
    return await context(request)


async def checked_form(request: web.Request, session: sessions.Session, expired: str) -> Any:
    """The posted form, refused with `expired` (403) unless it carries the session's CSRF token."""
    form = await request.post()
    if not session.check_csrf(str(form.get("csrf", ""))):
        raise PageError(403, expired)
    return form


async def posted(request: web.Request) -> tuple[Ctx, Any]:
    """A POST from a dashboard form: signed in and carrying the session's CSRF token."""
    ctx = await context(request)
    form = await checked_form(request, ctx.session, "This form has expired or did not come from the dashboard. "
                                                    "Reload the page and try again.")
    return ctx, form


def flash_back(ctx: Ctx, location: str, message: str, failed: bool) -> web.HTTPFound:
    """End a form: the outcome goes into the session's flash, shown once by the page it redirects to."""
    ctx.session.flash, ctx.session.flash_error = message[:500], failed
    return redirect(ctx.request, location, ctx.session)


def int_param(value: str | None) -> int | None:
    """A query or form value as an int; None when absent or not a number."""
    try:
        return int(value) if value else None
    except ValueError:
        return None


def safe_next(value: str | None) -> str:
    """Only same-site dashboard paths: never an open redirect."""
    if not value or not value.startswith("/dashboard") or value.startswith("//") or "\\" in value:
        return "/dashboard"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/dashboard"


# ---- routes --------------------------------------------------------------------------------------

class PageError(Exception):
    """Ends a dashboard request with an HTML error page (the API's error middleware never sees it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class NotFound(PageError):
    """Ends a dashboard request with the 404 page: this environment has no such thing."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PageHandler = Callable[[Ctx], Awaitable[web.StreamResponse]]
FormHandler = Callable[[Ctx, Any], Awaitable[web.StreamResponse]]


class Router:
    """Adds a page module's handlers to its route table, each wrapped the same way.

    `page` handlers get a signed-in `Ctx` (the wrapper checks the session and selects its environment),
    `form` handlers also get the posted form once its CSRF token is checked, `public` handlers get the
    bare request. Every wrapper turns `PageError` into an HTML error page. Each decorator returns the
    handler itself, so two of them stacked register one handler at two paths.
    """

    def __init__(self, table: web.RouteTableDef) -> None:
        self.table = table

    def public(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def wrapper(request: web.Request) -> web.StreamResponse:
                try:
                    return await handler(request)
                except NotFound as exc:
                    return not_found(exc.message)
                except PageError as exc:
                    return bare_page("Error", fmt('<div class="card login-card"><h1>Sorry</h1><p>{m}</p>'
                                                  '<p><a href="/dashboard">Back to the dashboard</a></p></div>',
                                                  m=exc.message), status=exc.status)
            self.table.route(method, path)(wrapper)
            return handler
        return register

    def page(self, path: str) -> Callable[[PageHandler], PageHandler]:
        def register(handler: PageHandler) -> PageHandler:
            async def signed_in(request: web.Request) -> web.StreamResponse:
                return await handler(await context(request))
            self.public("GET", path)(functools.wraps(handler)(signed_in))
            return handler
        return register

    def form(self, path: str) -> Callable[[FormHandler], FormHandler]:
        def register(handler: FormHandler) -> FormHandler:
            async def checked(request: web.Request) -> web.StreamResponse:
                return await handler(*await posted(request))
            self.public("POST", path)(functools.wraps(handler)(checked))
            return handler
        return register


# ---- layout --------------------------------------------------------------------------------------

def page(ctx: Ctx, title: str, body: Safe, *, active: str = "", crumbs: list[tuple[str, str]] | None = None,
         refresh: int = 0) -> web.Response:
    """A full page: header, navigation, environment and sign-out, breadcrumbs, the pending flash, `body`."""
    nav = join(fmt('<a href="{href}" class="{cls}">{label}</a>', href=href, label=label,
                   cls="active" if key == active else "") for key, label, href in NAV)
    switch = link("/dashboard/environments", "switch", "switch") if ctx.session.admin else Safe("")
    who = fmt('<div class="who"><span class="env" title="Environment">{env}</span>{switch}{logout}</div>',
              env=ctx.env.name, switch=switch,
              logout=post_form(ctx.session.csrf, "/dashboard/logout", {}, submit("Log out", "linkish"), cls=None))
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
        set_session(ctx.request, resp, ctx.session)
    return resp


def bare_page(title: str, body: Safe, status: int = 200) -> web.Response:
    """A page without navigation: sign-in, the environment chooser, error pages."""
    html = fmt('<!doctype html><html lang="en"><head><meta charset="utf-8">'
               '<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} · Nango</title>'
               '{head}</head><body class="bare">'
               '<main class="login"><div class="brand big"><span class="logo" aria-hidden="true"></span>Nango'
               '<span class="sub">orchestrator</span></div>{body}</main></body></html>', title=title, body=body,
               head=HEAD_LINKS)
    return web.Response(text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS)


def not_found(what: str) -> web.Response:
    """The 404 page for a thing this environment does not have."""
    return bare_page("Not found", fmt('<p>{what}</p><p><a href="/dashboard">Back to the dashboard</a></p>',
                                      what=what), status=404)
