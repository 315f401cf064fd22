"""The script contract, defined once: entry points, the import allow-list and the record rules.

Pure functions and constants (no I/O), imported by everything that runs or checks a script: the
sandboxed child (so only the standard library here, orjson when present), `nango compile`'s
static checks, the in-process `nango test`/`nango_mock`, the dry-run host and the record store.
A rule changed here changes for all of them at once, so a script that passes offline behaves the
same in production.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the child without site-packages never encodes records
    _orjson = None  # type: ignore[assignment]

# ---- entry points ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryPoint:
    """The function a script of one kind must define, and what it is called with."""

    kind: str
    name: str
    params: tuple[str, ...]
    signature: str

    def typed(self, input_type: str = "dict", output_type: str = "None") -> str:
        """The signature with an action's input and output types filled in (what `nango generate` writes)."""
        return self.signature.replace(": Input)", f": {input_type})").replace("-> Output", f"-> {output_type}")


ENTRY_POINTS: dict[str, EntryPoint] = {
    "sync": EntryPoint("sync", "fetch_data", ("nango",), "async def fetch_data(nango: NangoSync) -> None"),
    "action": EntryPoint("action", "run_action", ("nango", "input"),
                         "async def run_action(nango: NangoAction, input: Input) -> Output"),
    "webhook": EntryPoint("webhook", "on_webhook", ("nango", "payload"),
                          "async def on_webhook(nango: NangoSync, payload: dict) -> None"),
    "event": EntryPoint("event", "on_event", ("nango",), "async def on_event(nango: NangoAction) -> None"),
}
SYNC_KINDS = frozenset({"sync", "webhook"})  # these get a NangoSync; the others a NangoAction


def entry_point(kind: str) -> EntryPoint:
    """The entry point of a script kind (sync, action, webhook, event)."""
    try:
        return ENTRY_POINTS[kind]
    except KeyError:
        raise ValueError(f"unknown script kind {kind!r}: expected one of {', '.join(ENTRY_POINTS)}") from None


# ---- imports -----------------------------------------------------------------------------------------

STDLIB = frozenset(sys.stdlib_module_names)
MODELS_MODULE = "models"
SDK_PACKAGE = "orchestrator.sdk"
# The generated models.py (and only it) may import pydantic and what pydantic imports.
MODELS_MAY_IMPORT = frozenset({"pydantic", "typing_extensions", "pydantic_core", "annotated_types",
                               "typing_inspection"})
ALLOWED_IMPORTS = ("the standard library, models, orchestrator.sdk and modules of the integrations folder "
                   "(imported relatively)")


def import_kind(module: str, names: Iterable[str] | None = None,
                folder_modules: Iterable[str] = ()) -> str:
    """What an absolute `import module` / `from module import names` reaches.

    One of: "stdlib", "models", "sdk", "platform" (orchestrator outside the SDK), "folder" (a
    top-level module of the integrations folder, named absolutely) or "other". Relative imports
    stay inside the folder and are always allowed.
    """
    top = module.split(".")[0]
    if top in STDLIB:
        return "stdlib"
    if top == MODELS_MODULE:
        return "models"
    if module == SDK_PACKAGE or module.startswith(SDK_PACKAGE + "."):
        return "sdk"
    if top == "orchestrator":
        listed = list(names or ())
        return "sdk" if module == "orchestrator" and listed and all(n == "sdk" for n in listed) else "platform"
    if top in set(folder_modules):
        return "folder"
    return "other"


def forbidden_import(module: str, names: Iterable[str] | None = None) -> str:
    """The message for an import scripts may not make (same words at compile time and run time)."""
    listed = list(names) if names is not None else None
    if import_kind(module, listed) == "platform":
        shown = module if listed is None or module != "orchestrator" else f"orchestrator.{', '.join(listed)}"
        return f"import of '{shown}' is not allowed: scripts may use only orchestrator.sdk from the platform"
    return f"import of '{module}' is not allowed: scripts may import only {ALLOWED_IMPORTS}"


# ---- records -----------------------------------------------------------------------------------------

MAX_ID_LENGTH = 255
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
Item = tuple[str, Any, int]  # (id, record, index in the caller's batch)


class InvalidRecord(ValueError):
    """A record breaks the rules; the message names it (its index in the batch, its id when known)."""

    code = "invalid_record"

    def __init__(self, message: str, *, model: str, index: int | None = None, record_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = {"model": model}
        if index is not None:
            self.details["index"] = index
        if record_id is not None:
            self.details["record_id"] = record_id


def check_batch(records: Any, model: str) -> None:
    """A batch is a list (or tuple) of records."""
    if not isinstance(records, list | tuple):
        raise InvalidRecord(f"records of model '{model}' must be a list of objects, got {type(records).__name__}",
                            model=model)


def record_id(record: Any, index: int, model: str) -> str:
    """The record's id as stored: a non-empty str or an int (0 included), as a string.

    Missing, empty, None, bool and float ids are refused, as are ids over 255 characters or
    holding NUL; the error names the record by its index in the batch.
    """
    if not isinstance(record, dict):
        raise InvalidRecord(f"record #{index} of model '{model}' is a {type(record).__name__}, not an object",
                            model=model, index=index)
    rid = record.get("id")
    if rid is None or isinstance(rid, bool) or not isinstance(rid, str | int) or rid == "":
        raise InvalidRecord(
            f"record #{index} of model '{model}' has no usable 'id' (got {rid!r}); "
            "ids must be non-empty strings or integers", model=model, index=index)
    sid = str(rid)
    if len(sid) > MAX_ID_LENGTH:
        raise InvalidRecord(f"record #{index} of model '{model}' has an id of {len(sid)} characters "
                            f"('{sid[:40]}...'); the limit is {MAX_ID_LENGTH}", model=model, index=index,
                            record_id=sid[:64])
    if "\x00" in sid:
        raise InvalidRecord(f"record #{index} of model '{model}' has a NUL character in its id {sid!r}",
                            model=model, index=index, record_id=sid[:64])
    return sid


def encode_record(record: dict[str, Any], rid: str, index: int, model: str) -> bytes:
    """The record as stored: JSON with sorted keys. Refuses what is not JSON or holds NUL in text."""
    if _orjson is None:  # pragma: no cover
        raise RuntimeError("encoding records needs orjson")
    try:
        body = _orjson.dumps(record, option=_orjson.OPT_SORT_KEYS | _orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise InvalidRecord(f"record #{index} (id '{rid}') of model '{model}' is not JSON: {exc}", model=model,
                            index=index, record_id=rid) from None
    check_body(body, rid, index, model)
    return body


def check_body(body: bytes, rid: str, index: int, model: str) -> None:
    """Refuse an encoded record holding NUL in text (PostgreSQL cannot store it)."""
    if b"\\u0000" in body and _NUL_ESCAPE.search(body):
        raise InvalidRecord(f"record #{index} (id '{rid}') of model '{model}' contains a NUL character "
                            "(\\u0000), which PostgreSQL cannot store in JSON", model=model, index=index,
                            record_id=rid)


MAX_RECORDS_PER_BATCH = 10_000  # RUNNER_MAX_RECORDS_PER_BATCH's default: above the SDK's 5,000 per call
MAX_RECORD_BYTES = 1024 * 1024  # RUNNER_MAX_RECORD_BYTES's default


def check_quota(records: Any, model: str, method: str, *, max_records: int = MAX_RECORDS_PER_BATCH,
                max_bytes: int | None = MAX_RECORD_BYTES) -> None:
    """A batch within the per-call quotas: at most `max_records` records, each at most `max_bytes` as JSON.

    Checked by the host before anything is written (and by `nango_mock` alike), so a hostile or
    careless script cannot make the worker and PostgreSQL hold one giant batch or record. A
    record that is not JSON is left to `encode_record`, which names the problem.
    """
    quota_bodies(records, model, method, max_records=max_records, max_bytes=max_bytes)


def quota_bodies(records: Any, model: str, method: str, *, max_records: int = MAX_RECORDS_PER_BATCH,
                 max_bytes: int | None = MAX_RECORD_BYTES) -> list[bytes | None] | None:
    """`check_quota`, returning what it encoded: each record's stored JSON (sorted keys) by position, None for
    one that is not JSON (left to `encode_record`). The store takes these bytes instead of encoding again.
    None when sizes are not checked."""
    check_batch(records, model)
    if len(records) > max_records:
        raise InvalidRecord(f"{method}({model}): {len(records)} records in one call; the limit is {max_records} "
                            "records per call (RUNNER_MAX_RECORDS_PER_BATCH)", model=model)
    if max_bytes is None or _orjson is None:
        return None
    option = _orjson.OPT_SORT_KEYS | _orjson.OPT_NON_STR_KEYS
    dumps = _orjson.dumps
    try:  # every record JSON (the usual case): one comprehension, then one pass over the sizes
        encoded = [dumps(record, option=option) for record in records]
    except TypeError:
        pass
    else:
        if max(map(len, encoded), default=0) <= max_bytes:
            return list(encoded)
    bodies: list[bytes | None] = []
    for index, record in enumerate(records):
        try:
            body = _orjson.dumps(record, option=option)
        except TypeError:
            bodies.append(None)
            continue
        bodies.append(body)
        size = len(body)
        if size > max_bytes:
            rid = record.get("id") if isinstance(record, dict) else None
            named = f" (id '{str(rid)[:64]}')" if rid is not None else ""
            raise InvalidRecord(f"record #{index}{named} of model '{model}' is {size} bytes as JSON; the limit is "
                                f"{max_bytes} bytes per record (RUNNER_MAX_RECORD_BYTES)", model=model, index=index,
                                record_id=str(rid)[:64] if rid is not None else None)
    return bodies


def dedupe(records: Sequence[Any], model: str) -> tuple[list[Item], list[str]]:
    """Check every id and fold duplicates: the last record wins, at the position of its last occurrence.

    Returns the items and the duplicated ids (for the warning: overlapping pages are common, so
    duplicates are not an error).
    """
    check_batch(records, model)
    ids = _plain_ids(records)
    if ids is not None and len(set(ids)) == len(ids):  # no duplicates: the items as they come
        return list(zip(ids, records, range(len(ids)), strict=True)), []
    by_id: dict[str, Item] = {}
    dupes: list[str] = []
    for index, record in enumerate(records):
        rid = record_id(record, index, model)
        if rid in by_id:
            dupes.append(rid)
            del by_id[rid]
        by_id[rid] = (rid, record, index)
    return list(by_id.values()), list(dict.fromkeys(dupes))


def _plain_ids(records: Sequence[Any]) -> list[str] | None:
    """The ids as stored when every record is a plain dict whose id is a str or an int that `record_id` accepts,
    checked in a few passes over the whole batch rather than one call per record. None when any record needs
    `record_id`'s own check (which also names the first record that breaks a rule)."""
    if set(map(type, records)) != {dict}:
        return None
    raw = [record.get("id") for record in records]
    kinds = set(map(type, raw))
    if kinds == {str}:
        ids = raw
    elif kinds <= {str, int}:
        ids = list(map(str, raw))
    else:
        return None
    if min(map(len, ids)) == 0 or max(map(len, ids)) > MAX_ID_LENGTH or "\x00" in "".join(ids):
        return None
    return ids


def unique_ids(records: Sequence[Any], model: str) -> list[str]:
    """The ids of a batch (batch_delete), checked, each once, in first-seen order."""
    check_batch(records, model)
    return list(dict.fromkeys(record_id(r, i, model) for i, r in enumerate(records)))


def deep_merge(base: Any, patch: Any) -> Any:
    """batch_update's merge: objects merge recursively, anything else (arrays included) is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return patch


def merge_patches(records: Sequence[Any], model: str) -> dict[str, dict[str, Any]]:
    """batch_update's patches by id, checked (id and JSON) before anything is written; several
    patches of one id in one call merge in order."""
    check_batch(records, model)
    patches: dict[str, dict[str, Any]] = {}
    for index, record in enumerate(records):
        rid = record_id(record, index, model)
        encode_record(record, rid, index, model)
        patches[rid] = deep_merge(patches[rid], record) if rid in patches else record
    return patches


def _listed(ids: Sequence[str], limit: int = 20) -> str:
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def duplicate_ids_warning(model: str, ids: Sequence[str]) -> str:
    """The warning a batch_save with duplicate ids logs, naming them."""
    return f"batch_save({model}): duplicate ids in one batch, the last record of each was kept: {_listed(ids)}"


def missing_ids_warning(model: str, ids: Sequence[str]) -> str:
    """The warning a batch_update logs for ids that are not stored (nothing is created for them)."""
    return f"batch_update({model}): no stored record with id {', '.join(ids[:20])}; nothing updated for them"
