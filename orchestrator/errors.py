"""One exception root for the platform.

Errors cross process boundaries (runner pipe, Temporal payloads, API responses), so every
subclass keeps its data as attributes, builds its message from them and stays picklable.
`terminal` says whether retrying can help: activities map terminal errors to non-retryable
Temporal failures in one place.
"""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    """Root of our errors; fields are attributes so errors pickle and render as JSON."""

    terminal: bool = True
    code: str = "error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))


def _rebuild(cls: type[OrchestratorError], message: str, fields: dict[str, Any]) -> OrchestratorError:
    err = cls.__new__(cls)
    OrchestratorError.__init__(err, message, **fields)
    return err


class TransientError(OrchestratorError):
    """An infrastructure fault that a retry may fix (database, bundle store, network)."""

    terminal = False
    code = "transient_error"


class NotFoundError(OrchestratorError):
    code = "not_found"


class InvalidInputError(OrchestratorError):
    """A caller sent something we cannot use; the message names what was wrong."""

    code = "invalid_request"


class RecordError(InvalidInputError):
    """A record a script tried to save is unusable (no id, too long id, not JSON)."""

    code = "invalid_record"


class BundleError(OrchestratorError):
    code = "bundle_error"


class BundleLimitError(BundleError):
    """A bundle goes past a size limit (zip bomb or not): fields name the integration, the setting and its value."""

    code = "bundle_limit_exceeded"


class DatabaseError(OrchestratorError):
    """PostgreSQL refused a statement for a reason a retry cannot fix (a value it cannot store, a constraint).

    Connection and availability errors stay transient; see store/faults.py."""

    code = "database_error"


class ScriptError(OrchestratorError):
    """The user's script raised: the job fails with its traceback, nothing is retried."""

    code = "script_error"
