"""Local stand-in for a slice of GitHub's REST API, used by tests and ``make run``."""

from orchestrator.demo_provider.app import (
    STATE,
    DemoGone,
    DemoNotFound,
    DemoState,
    DemoValidationError,
    WebhookEvent,
    create_app,
    serve,
    sign_webhook,
)

__all__ = [
    "STATE",
    "DemoGone",
    "DemoNotFound",
    "DemoState",
    "DemoValidationError",
    "WebhookEvent",
    "create_app",
    "serve",
    "sign_webhook",
]
