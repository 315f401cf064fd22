"""Pieces several dashboard pages show: links between pages, a sync's status cells, a connection lookup.

Statuses come from `orchestrator.control.syncs.status`, the code path `GET /sync/status` and
`nango admin syncs status` use; this module only renders them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from orchestrator.api.keys import PLATFORM
from orchestrator.control import syncs as sync_control
from orchestrator.dashboard.frame import Ctx, NotFound
from orchestrator.dashboard.render import Safe, esc, fmt, temporal_schedule_url, url
from orchestrator.store import connections as connections_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Connection, DeployedScript

PAGE_SIZE = 25
RUNS_PAGE = 50
STATUS_CONCURRENCY = 8


def models_of(script: DeployedScript) -> list[str]:
    """The models a sync writes (nango.yaml `output`, one name or a list)."""
    raw = script.config.get("output") or []
    return [str(m) for m in (raw if isinstance(raw, list) else [raw]) if m]


def conn_href(integration: str, connection_id: str) -> str:
    return url("/dashboard/connection", integration=integration, connection=connection_id)


def sync_href(integration: str, connection_id: str, sync: str) -> str:
    return url("/dashboard/sync", integration=integration, connection=connection_id, sync=sync)


def temporal_link(ctx: Ctx, schedule_id: str) -> Safe:
    """A link to the schedule in the Temporal UI, or its id when TEMPORAL_UI_URL is not set."""
    settings = ctx.app[PLATFORM].settings
    if not settings.temporal_ui_url:
        return fmt('<span class="muted" title="Set TEMPORAL_UI_URL to link to the Temporal UI">schedule '
                   '<code>{sid}</code></span>', sid=schedule_id)
    return fmt('<a class="temporal" href="{href}" target="_blank" rel="noopener">Schedule in Temporal UI ↗</a>',
               href=temporal_schedule_url(settings.temporal_ui_url, settings.temporal_namespace, schedule_id))


async def sync_statuses(ctx: Ctx, items: list[sync_control.Target]) -> list[dict[str, Any]]:
    """sync_control.status for each target, a few at a time (one schedule describe each)."""
    gate = asyncio.Semaphore(STATUS_CONCURRENCY)

    async def one(t: sync_control.Target) -> dict[str, Any]:
        async with gate:
            return (await sync_control.status(ctx.app[PLATFORM], ctx.env, [t]))[0]
    return list(await asyncio.gather(*(one(t) for t in items)))


def frequency_cell(st: dict[str, Any]) -> Safe:
    """The interval in force, tagged when a per-connection override or a Temporal UI edit set it."""
    source = st.get("frequency_source")
    note = {"override": "per-connection override", "ui": "edited in the Temporal UI"}.get(source or "", "")
    if note:
        return fmt('{f} <span class="tag" title="{n}">{short}</span>', f=st.get("frequency") or "-", n=note,
                   short="override" if source == "override" else "UI edit")
    return esc(st.get("frequency") or "-")


def record_counts(st: dict[str, Any]) -> str:
    counts = st.get("recordCount") or {}
    return ", ".join(f"{n:,} {m}" if len(counts) > 1 else f"{n:,}" for m, n in counts.items()) or "0"


async def load_connection(ctx: Ctx, missing: str = "No such connection in this environment.",
                          ) -> tuple[Connection, list[DeployedScript]]:
    """The connection the query names (`integration`, `connection`) in this environment, with its scripts;
    the 404 page saying `missing` when there is none."""
    q = ctx.query
    async with ctx.app[PLATFORM].pool.acquire() as conn:
        found = await connections_repo.get(conn, ctx.app[PLATFORM].sealer, ctx.env.id, q.get("integration", ""),
                                           q.get("connection", ""))
        if found is None:
            raise NotFound(missing)
        scripts = await scripts_repo.list_for_integration(conn, found.integration_id)
    return found, scripts


def runs_chart_data(runs: list[Any]) -> list[tuple[int, str, datetime, datetime | None]]:
    return [(r["id"], r["status"], r["started_at"], r["ended_at"]) for r in runs]
