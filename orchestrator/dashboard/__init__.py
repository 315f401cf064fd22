"""The dashboard: server-rendered pages at `/` for integrations, connections, runs, logs and records.

`frame` holds what every page shares (session, route wrapper, layout), `forms` the one form widget,
and `pages/` one module per page, each with its own route table; `setup` registers them all.
"""

from __future__ import annotations

from aiohttp import web

from orchestrator.config.settings import Settings
from orchestrator.dashboard import assets
from orchestrator.dashboard import session as sessions
from orchestrator.dashboard.frame import ASSETS, SESSION_KEY, THROTTLE
from orchestrator.dashboard.pages import (
    actions,
    connection,
    connections,
    controls,
    endpoints,
    health,
    integrations,
    job,
    login,
    logs,
    records,
    sync,
    variables,
    webhooks,
)
from orchestrator.dashboard.throttle import LoginThrottle

PAGES = (login, integrations, endpoints, connections, connection, sync, controls, job, records, actions, webhooks,
         variables, logs, health, assets)


def setup(app: web.Application, settings: Settings) -> None:
    """Register the dashboard on the API app: its routes, its session key and its static files."""
    app[SESSION_KEY] = sessions.derive_key(settings.encryption_key_bytes())
    app[THROTTLE] = LoginThrottle()
    app[ASSETS] = assets.load()
    for module in PAGES:
        app.add_routes(module.routes)


__all__ = ["setup"]
