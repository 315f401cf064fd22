"""Offline testing of integration scripts: saved responses, an in-memory `nango`, the pytest plugin."""

from orchestrator.testing.mocks import Exchange, ResponseBook, UnexpectedRequest
from orchestrator.testing.nango_mock import NangoMock

__all__ = ["Exchange", "NangoMock", "ResponseBook", "UnexpectedRequest"]
