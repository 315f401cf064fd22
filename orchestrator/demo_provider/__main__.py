"""``python -m orchestrator.demo_provider --host 127.0.0.1 --port 3100``: run the demo provider standalone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import structlog

from orchestrator.demo_provider.app import DemoState, serve
from orchestrator.logging import configure_logging


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.demo_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100)
    parser.add_argument("--seed-issues", type=int, default=25)
    parser.add_argument("--webhook-url", default=None, help="POST GitHub-style issues events here")
    parser.add_argument("--webhook-secret", default="demo-webhook-secret")
    parser.add_argument("--client-id", default="demo-client-id")
    parser.add_argument("--client-secret", default="demo-client-secret")
    parser.add_argument("--token-ttl-seconds", type=int, default=3600)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    log = structlog.get_logger("orchestrator.demo_provider")
    state = DemoState(
        seed_issues=args.seed_issues, webhook_secret=args.webhook_secret, webhook_url=args.webhook_url,
        client_id=args.client_id, client_secret=args.client_secret, token_ttl_seconds=args.token_ttl_seconds,
    )
    runner = await serve(args.host, args.port, state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        host = f"[{args.host}]" if ":" in args.host else args.host
        log.info("demo_provider_started", url=f"http://{host}:{args.port}", webhook_url=args.webhook_url)
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("demo_provider_stopped")


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    configure_logging(args.log_level)
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
