"""Retry policies for every activity the workflows run, and the error types no retry can fix.

Workflow modules import this inside their sandbox, so it imports only `datetime` and
`temporalio.common`: nothing that does I/O and nothing from the rest of the platform.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# The platform's terminal errors: every OrchestratorError subclass with `terminal = True` (and the root).
# Activities raise them as ApplicationError(type=<class name>, non_retryable=True) at their boundary
# (activities/boundary.py); listing the names here as well keeps them terminal even where an error
# arrives without the flag. Written out rather than derived because some of these classes live in
# modules a workflow must not import (providers.credentials pulls aiohttp and asyncpg);
# tests/test_workflows.py checks the list against the classes.
NON_RETRYABLE: tuple[str, ...] = (
    "BundleError",
    "BundleLimitError",
    "ClientRefusedError",
    "ConfigError",
    "DatabaseError",
    "DependencyUnavailableError",
    "DryRunError",
    "EncryptionKeyMismatchError",
    "EnvironmentExistsError",
    "EnvironmentNotEmptyError",
    "InvalidInputError",
    "IsolationUnavailableError",
    "KeyRotationError",
    "NotFoundError",
    "OrchestratorError",
    "RecordError",
    "RefreshError",
    "ScheduleError",
    "ScriptCheckError",
    "ScriptError",
    "SecretRequiredError",
    "SignatureError",
    "StackError",
    "TemporalSettingsError",
    "TokenRefusedError",
    "TracingSettingsError",
)

# Sync activities: infrastructure faults (database, bundle store, a lost worker) retry with backoff
# until the activity's own timeouts end them; a script's error or bad config never retries.
INFRA_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                          maximum_interval=timedelta(minutes=1), maximum_attempts=0,
                          non_retryable_error_types=list(NON_RETRYABLE))

# The sync-result webhook: notify.py retries each delivery itself, so the activity gets few attempts.
NOTIFY_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=list(NON_RETRYABLE))


# An environment's share of a worker's slots is full: a script job's workflow waits on a timer and runs the
# job again (workflows/scripts.py), so the wait never spends one of the attempts the caller allowed.
ENVIRONMENT_BUSY = "EnvironmentBusyError"
BUSY_FIRST_WAIT = timedelta(seconds=1)
BUSY_MAX_WAIT = timedelta(seconds=15)


def attempts(count: int) -> RetryPolicy:
    """Script jobs and their bookkeeping: at most `count` attempts (at least one), infra faults only."""
    return RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                       maximum_attempts=max(1, count),
                       non_retryable_error_types=[*NON_RETRYABLE, ENVIRONMENT_BUSY])
