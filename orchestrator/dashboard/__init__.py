"""The dashboard: server-rendered pages at `/` for integrations, connections, runs, logs and records."""

from orchestrator.dashboard.views import setup

__all__ = ["setup"]
