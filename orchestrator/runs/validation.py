"""Records checked against their nango.yaml model when a script saves them (an environment's
`record_validation`: off, warn or reject).

Off costs nothing: `for_run` loads no model then and the host skips the check. On, the run's models are parsed
and each compiled on first use (config/record_schema.py, which says what a model allows); a batch's problems
are logged up to `MAX_LOGGED` with one line counting the rest, so a script that gets a field wrong on every
record does not fill its job's log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from orchestrator.bundles.build import MANIFEST
from orchestrator.config.jsonschema import parse_models
from orchestrator.config.record_schema import Mismatch, RecordSchema
from orchestrator.store.types import Environment

MAX_LOGGED = 20  # problems logged per batch; the rest are counted in one more line


@dataclass
class Problem:
    """One record that does not match its model: the record's id (None when it has none) and what is wrong."""
    record_id: str | None
    field: str
    message: str


def describe(model: str, record: Any, index: int, mismatch: Mismatch) -> Problem:
    """`record 'abc' of model Issue: field 'number' should be integer, got string`."""
    rid = record.get("id") if isinstance(record, dict) else None
    record_id = None if rid is None or isinstance(rid, dict | list) else str(rid)
    who = f"record {record_id!r} of model {model}" if record_id is not None else \
        f"record #{index + 1} of model {model} in this batch (no id)"
    path, what = mismatch
    path = path if len(path) <= 200 else path[:197] + "..."   # a key of the record's own making may be long
    return Problem(record_id, path, f"{who}: field {path!r} {what}" if path else f"{who}: {what}")


class Checked(NamedTuple):
    """One batch checked: the records to write (in warn mode all of them, in reject mode those that match), the
    problems (at most `MAX_LOGGED`, then one counting the rest), and the ids of the records reject mode did not
    keep: still seen by the run, so a full sync's deletion tracking must not take their stored version."""
    kept: list[Any]
    problems: list[Problem]
    refused: list[str]


@dataclass
class RecordCheck:
    """The models of one run (as the manifest carries them, or already parsed: `schema`), checked per batch."""
    mode: Literal["warn", "reject"]
    models: dict[str, Any] = field(default_factory=dict)
    schema: RecordSchema | None = None
    _unchecked: set[str] = field(default_factory=set, repr=False)  # models said to have no definition

    def check(self, model: str, records: Sequence[Any]) -> Checked:
        if self.schema is None:
            self.schema = RecordSchema(parse_models(self.models))
        if not self.schema.has(model):
            if model in self._unchecked:
                return Checked(list(records), [], [])
            self._unchecked.add(model)
            return Checked(list(records), [Problem(None, "", f"model {model} has no definition in the deployed "
                                                             "nango.yaml: its records are saved unchecked")], [])
        kept: list[Any] = []
        problems: list[Problem] = []
        refused: list[str] = []
        invalid = found = 0
        for index, record in enumerate(records):
            mismatches = self.schema.check(model, record)
            if not mismatches:
                kept.append(record)
                continue
            invalid += 1
            found += len(mismatches)
            if self.mode == "warn":
                kept.append(record)
            elif isinstance(record, dict) and type(record.get("id")) in (str, int):
                refused.append(str(record["id"]))
            for mismatch in mismatches[:max(0, MAX_LOGGED - len(problems))]:
                problems.append(describe(model, record, index, mismatch))
        if found > len(problems):
            outcome = "were not saved" if self.mode == "reject" else "were saved anyway"
            problems.append(Problem(None, "", f"model {model}: {found - len(problems)} more problems in this batch "
                                              f"not logged; {invalid} of {len(records)} records do not match the "
                                              f"model and {outcome}"))
        return Checked(kept, problems, refused)


async def manifest_models(bundle_dir: Path) -> dict[str, Any]:
    """The models of a run's unpacked bundle, as its manifest carries them (`config.models`: what nango.yaml
    declares for the integration's scripts); a deployed script's row keeps only its own config, not these."""
    try:
        manifest = orjson.loads(await asyncio.to_thread((bundle_dir / MANIFEST).read_bytes))
    except (OSError, orjson.JSONDecodeError):
        return {}
    models = (manifest.get("config") or {}).get("models") if isinstance(manifest, dict) else None
    return models if isinstance(models, dict) else {}


async def for_run(env: Environment, load_models: Callable[[], Awaitable[dict[str, Any]]]) -> RecordCheck | None:
    """The check for a run in `env`; None (and nothing loaded) when the environment's validation is off."""
    if env.record_validation == "off":
        return None
    models = await load_models()
    return RecordCheck(env.record_validation, models, RecordSchema(await asyncio.to_thread(parse_models, models)))
