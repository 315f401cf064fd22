"""The API server: `create_app(settings)`; resources live in cleanup contexts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from temporalio.client import Client

from orchestrator import dashboard, metrics, tracing
from orchestrator.api import (
    actions,
    connect_ui,
    connections,
    deploy,
    environment,
    environments,
    envvars,
    frontend,
    health,
    integrations,
    jobs,
    mcp,
    oauth,
    openapi,
    providers,
    proxy,
    records,
    scripts,
    socket_results,
    syncs,
    unified,
    webhooks,
)
from orchestrator.api.keys import PLATFORM
from orchestrator.api.middleware import auth_middleware, context_middleware, error_middleware
from orchestrator.config.settings import Settings
from orchestrator.control import maintenance, refresher, retention
from orchestrator.platform import open_platform


def create_app(settings: Settings, *, temporal: Client | None = None) -> web.Application:
    # a span per request only where OTEL_EXPORTER_OTLP_ENDPOINT is set; outermost, so it times the whole answer
    traced = [tracing.middleware] if tracing.setup("nango-api") else []
    app = web.Application(
        middlewares=[*traced, frontend.cors_middleware, context_middleware, error_middleware, auth_middleware],
        client_max_size=64 * 1024 * 1024)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        # waits for PostgreSQL and Temporal at start-up (STARTUP_WAIT_MAX_S); SIGTERM still stops it
        async with open_platform(settings, temporal=temporal, wait=True) as platform:
            app[PLATFORM] = platform
            async with maintenance.running(platform), refresher.running(platform), retention.running(platform):
                yield

    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(actions.job_closes)  # awaited actions answer once their job row is closed
    app.cleanup_ctx.append(socket_results.socket_results)  # the frontend SDK's sockets: one poll for all
    for module in (health, records, connections, integrations, deploy, syncs, actions, webhooks, environment,
                   envvars, proxy, oauth, frontend, connect_ui, jobs, openapi):
        app.add_routes(module.routes)
    app.add_routes(providers.routes)  # issue 11: provider catalog and custom providers
    mcp.setup(app)  # issue 22: /mcp, the connection's actions as MCP tools
    app.add_routes([*environments.routes, *scripts.routes, *unified.routes])  # issue 11; /v1/* last
    if settings.metrics_enabled:  # public (middleware.PUBLIC_PATHS): counts and bounded labels, no secret
        app.router.add_get("/metrics", metrics.serve)
    dashboard.setup(app, settings)
    return app
