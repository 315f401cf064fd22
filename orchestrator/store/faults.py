"""Which database errors a retry can fix.

A connection that dropped, a server that is starting or shutting down, a deadlock or a
serialization failure: retrying helps, and the activity's retry policy does it. Anything else
PostgreSQL or asyncpg refuses (a value it cannot store, a constraint, a bad statement) fails the
same way every time, so retrying it only holds a run RUNNING forever: it must end the run instead.
"""

from __future__ import annotations

import asyncpg

from orchestrator.store.text import clean

# SQLSTATE classes of availability faults: connection exception, transaction rollback (deadlock,
# serialization), insufficient resources, operator intervention (shutdown, cannot connect now), system error.
TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError)


def is_transient(exc: BaseException) -> bool:
    """True for faults a retry may fix: the network, the pool, the server's availability."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (getattr(exc, "sqlstate", None) or "")[:2] in TRANSIENT_CLASSES
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg's client-side DataError (a value it cannot encode) is also a ValueError; the rest of
        # InterfaceError is a closed connection or pool
        return not isinstance(exc, ValueError)
    return False


def is_deterministic(exc: BaseException) -> bool:
    """A database error that will fail the same way on every retry."""
    return is_database_error(exc) and not is_transient(exc)


def describe(exc: BaseException) -> str:
    """`Type: message` of a database error, in one line, safe to store."""
    return clean(f"{type(exc).__name__}: {exc}".replace("\n", " "))[:2000]
