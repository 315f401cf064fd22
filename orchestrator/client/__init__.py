"""A typed async client for the platform's API, for apps written in Python and for the CLI."""

from orchestrator.client.api import ApiError, NangoClient
from orchestrator.client.types import ProxyResponse

__all__ = ["ApiError", "NangoClient", "ProxyResponse"]
