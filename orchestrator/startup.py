"""Waiting for PostgreSQL and Temporal at start-up, instead of exiting with a traceback.

A worker or API pod often starts before its database or Temporal answers (a cluster coming up, a
restart). `wait_for` retries the connection with backoff and logs what it waits for, up to
STARTUP_WAIT_MAX_S (0: forever), and gives up at once when the process is asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import structlog
from temporalio.service import RPCError

from orchestrator.errors import OrchestratorError

log = structlog.get_logger(__name__)
T = TypeVar("T")

BACKOFF_MAX_S = 30.0  # the longest pause between two start-up connection attempts


class StartupAborted(Exception):
    """SIGTERM (or SIGINT) arrived while the process waited for PostgreSQL or Temporal."""


class DependencyUnavailableError(OrchestratorError):
    code = "dependency_unavailable"
    terminal = True


def address(url: str, default_port: int) -> str:
    """host:port of a URL or address, without its credentials (safe to log)."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    return f"{parts.hostname or 'localhost'}:{port}"


def reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words ('connection refused', 'name or service not known', the server's
    own message), for a one-line error instead of a traceback."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    text = str(exc).removeprefix("Failed client connect: ")
    if found := re.search(r'(?:message|error): "([^"]+)"', text):  # Temporal's Rust client nests the cause
        text = found.group(1)[:1].lower() + found.group(1)[1:]  # 'Connection refused' as the OS says it
    return (text.strip().splitlines() or [""])[0][:300] or type(exc).__name__


def unreachable(what: str, where: str, setting: str, exc: BaseException) -> DependencyUnavailableError:
    """The error a process ends with when a service does not answer (or answers no: a role, a password, a
    database it does not have): where it looked and the setting to change."""
    if isinstance(exc, OSError | RuntimeError):  # the network; Temporal's client says RuntimeError for it
        message = f"cannot reach {what} at {where} ({setting}): {reason(exc)}"
    else:
        message = f"{what} at {where} ({setting}) refused the connection: {reason(exc)}"
    return DependencyUnavailableError(message, dependency=what, address=where, setting=setting)


async def reach(what: str, where: str, setting: str, attempt: Callable[[], Awaitable[T]],
                failed: Callable[[BaseException], bool]) -> T:
    """`attempt()` once; an error `failed` recognises as a failed connection becomes `unreachable(...)`."""
    try:
        return await attempt()
    except Exception as exc:
        if not failed(exc):
            raise
        raise unreachable(what, where, setting, exc) from None


def temporal_retryable(exc: BaseException) -> bool:
    """Client.connect raises RuntimeError('Failed client connect: ...') when the server does not answer."""
    return isinstance(exc, OSError | TimeoutError | RuntimeError | RPCError)


async def wait_for(what: str, where: str, attempt: Callable[[], Awaitable[T]], *, max_wait_s: float,
                   retryable: Callable[[BaseException], bool], stop: asyncio.Event | None = None) -> T:
    """Call `attempt` until it succeeds, pausing 1 s, 2 s, 4 s ... up to BACKOFF_MAX_S between tries and
    logging "waiting for <what> at <where> (attempt n, next in s)"; an error `retryable` refuses is raised at
    once. Gives up after `max_wait_s` (0: never) with DependencyUnavailableError, or when `stop` is set with
    StartupAborted."""
    delay, n, started = 1.0, 0, time.monotonic()
    while True:
        n += 1
        try:
            return await attempt()
        except Exception as exc:
            if not retryable(exc):
                raise
            waited = time.monotonic() - started
            if max_wait_s and waited + delay > max_wait_s:
                raise DependencyUnavailableError(
                    f"{what} at {where} did not answer within STARTUP_WAIT_MAX_S={max_wait_s:g} s "
                    f"({n} attempts; last error: {type(exc).__name__})") from None
            log.warning(f"waiting for {what} at {where} (attempt {n}, next in {delay:g} s)", event_name=(
                "waiting_for_dependency"), dependency=what, address=where, attempt=n, next_in_s=delay,
                error=type(exc).__name__)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                raise StartupAborted(f"stopped while waiting for {what} at {where}")
        delay = min(delay * 2, BACKOFF_MAX_S)
