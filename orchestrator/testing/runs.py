"""Run a script in-process against a `NangoMock`, and compare a rerun with its saved run (`nango test`).

The script is imported the way the runner's child imports it: the integrations folder is the import
root (`models` and relative imports such as `from ..mappers import x` work), each folder under its own
package name so several folders can be loaded in one process.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import importlib
import json
import sys
import traceback
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.config.code_first import has_code_models
from orchestrator.sdk import contract
from orchestrator.testing import nango_recorded
from orchestrator.testing.mocks import HTTP_FILE, OUTPUT_FILE, RECORDS_FILE, RUN_FILE, ResponseBook, mocks_dir
from orchestrator.testing.nango_mock import NangoMock


class SavedRunError(Exception):
    """A user error: no folder, no such script, no saved run..."""


def find_integrations_folder(start: Path | None = None) -> Path | None:
    """The folder holding nango.yaml or code-first models.py: `start` (default: cwd) or one of its parents."""
    here = (start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for candidate in (here, *here.parents):
        if (candidate / "nango.yaml").is_file() or has_code_models(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class ScriptRef:
    integration: str
    kind: str
    name: str
    module_path: str
    input_model: str | None = None
    output_model: str | None = None
    models: tuple[str, ...] = ()  # a sync's output models


def declared(folder: Path) -> list[ScriptRef]:
    from orchestrator.authoring.checks import declared_scripts
    from orchestrator.config.project import load_project

    config = load_project(folder)
    out = []
    for s in declared_scripts(config):
        input_model = output_model = None
        models: tuple[str, ...] = ()
        if s.kind == "sync":
            models = tuple(config.integrations[s.integration].syncs[s.name].output)
        if s.kind == "action":
            action = config.integrations[s.integration].actions[s.name]
            input_model = action.input if action.input in config.models else None
            output_model = action.output if action.output in config.models else None
        out.append(ScriptRef(s.integration, s.kind, s.name, s.module_path, input_model, output_model, models))
    return out


def resolve(folder: Path, name: str, integration: str | None = None) -> ScriptRef:
    scripts = [s for s in declared(folder) if integration is None or s.integration == integration]
    found = [s for s in scripts if s.name == name]
    if not found:
        hint = difflib.get_close_matches(name, sorted({s.name for s in scripts}), n=1)
        raise SavedRunError(f"no sync, action or event script named {name!r} in {folder / 'nango.yaml'}"
                            + (f"; did you mean {hint[0]!r}?" if hint else ""))
    if len({s.integration for s in found}) > 1:
        raise SavedRunError(f"{name!r} exists in several integrations: choose one with --integration")
    return found[0]


# --------------------------------------------------------------------------- loading


def _package_name(folder: Path) -> str:
    return "_nango_" + hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]


def load_module(folder: Path, module_path: str) -> tuple[types.ModuleType, types.ModuleType | None]:
    """(the script module, the folder's models module) imported fresh from `folder`."""
    folder = folder.resolve()
    package = _package_name(folder)
    for key in [k for k in sys.modules if k == package or k.startswith(package + ".")]:
        del sys.modules[key]
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(folder)]  # type: ignore[attr-defined]
    pkg.__package__ = package
    sys.modules[package] = pkg
    shadowed = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "models"}
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(package + "." + module_path.removesuffix(".py").replace("/", "."))
        models = sys.modules.get("models")
    finally:
        sys.path.remove(str(folder))
        for key in set(sys.modules) - before:  # top-level modules of this folder stay private to it
            file = getattr(sys.modules[key], "__file__", None) or ""
            if not key.startswith(package) and file and Path(file).resolve().is_relative_to(folder):
                del sys.modules[key]
        sys.modules.update(shadowed)
    return module, models


# --------------------------------------------------------------------------- running


@dataclass
class ScriptResult:
    script: ScriptRef
    mock: NangoMock
    ok: bool
    output: Any = None
    error: str | None = None

    @property
    def records(self) -> dict[str, dict[str, list[Any]]]:
        return self.mock.records


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", by_alias=True) if callable(dump) else value


def _run_file(directory: Path) -> dict[str, Any]:
    file = directory / RUN_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def _variant(script: ScriptRef, variant: str | None) -> str:
    """The variant a script runs as (None: base); only a sync has variants."""
    try:
        name = nango_recorded.check_variant(variant)
    except nango_recorded.RecordedMockError as exc:
        raise SavedRunError(str(exc)) from None
    if name != nango_recorded.BASE_VARIANT and script.kind != "sync":
        raise SavedRunError(f"variants are for syncs; {script.name!r} is an {script.kind}")
    return name


def _as_variant(mock: NangoMock, variant: str) -> NangoMock:
    """The script sees `nango.variant` as it does in a run of that variant."""
    mock.context.variant = variant
    mock.nango.variant = variant
    return mock


def recorded_by_nango(folder: Path, script: ScriptRef, variant: str | None = None) -> bool:
    """The script's saved run is one Nango's CLI recorded (none of our own files beside it); for a variant, its
    own recording or the base one."""
    directory = mocks_dir(folder, script.integration, script.name)
    if any((directory / name).is_file() for name in (RUN_FILE, HTTP_FILE, RECORDS_FILE)):
        return False
    return nango_recorded.detect(folder / script.integration, script.name, _variant(script, variant)) is not None


def _recorded_mock(recorded: nango_recorded.Recorded, script: ScriptRef, overrides: dict[str, Any]) -> NangoMock:
    kwargs: dict[str, Any] = {
        "kind": script.kind, "provider": recorded.provider or script.integration,
        "provider_config_key": script.integration, "connection_id": recorded.connection_id or "test-connection",
        "metadata": recorded.metadata, "connection_config": recorded.connection_config, "script_name": script.name,
    }
    kwargs.update(overrides)
    responses = kwargs.pop("responses", None)
    return _as_variant(NangoMock(recorded.book if responses is None else responses, **kwargs), recorded.asked)


def _load_recorded(folder: Path, script: ScriptRef, variant: str) -> nango_recorded.Recorded:
    try:
        return nango_recorded.load(folder / script.integration, script.name, variant)
    except nango_recorded.RecordedMockError as exc:
        raise SavedRunError(str(exc)) from None


def make_mock(folder: Path, script: ScriptRef, *, saved: bool = True, variant: str | None = None,
              **overrides: Any) -> NangoMock:
    """A mock for `script`, with its saved responses and run settings (metadata, dates) when `saved`:
    ours, or the mocks Nango's CLI recorded (for a sync's `variant`: its own recording, else the base one)."""
    variant = _variant(script, variant)
    if saved and recorded_by_nango(folder, script, variant):
        return _recorded_mock(_load_recorded(folder, script, variant), script, overrides)
    directory = mocks_dir(folder, script.integration, script.name)
    run = _run_file(directory) if saved else {}
    last = overrides.pop("last_sync_date", run.get("last_sync_date"))
    if isinstance(last, str):
        last = datetime.fromisoformat(last)
        last = last if last.tzinfo else last.replace(tzinfo=UTC)
    kwargs: dict[str, Any] = {
        "kind": script.kind, "provider": run.get("provider") or script.integration,
        "provider_config_key": script.integration, "connection_id": run.get("connection_id") or "test-connection",
        "metadata": run.get("metadata"), "connection_config": run.get("connection_config"),
        "last_sync_date": last, "script_name": script.name,
    }
    kwargs.update(overrides)
    responses = kwargs.pop("responses", None)
    if responses is None:
        responses = ResponseBook.load(directory) if saved else ResponseBook()
    return _as_variant(NangoMock(responses, **kwargs), variant)  # our saved run is the one for every variant


def ensure_models(folder: Path) -> None:
    """models.py is generated from nango.yaml: (re)write it when missing or out of date. A code-first models.py is
    the definition itself: never regenerated."""
    from orchestrator.config.codegen import generate_models_py
    from orchestrator.config.project import load_project

    if has_code_models(folder):
        return
    source = generate_models_py(load_project(folder))
    target = folder / "models.py"
    if not target.is_file() or target.read_text(encoding="utf-8") != source:
        target.write_text(source, encoding="utf-8")


async def run_async(folder: Path, script: ScriptRef, mock: NangoMock, input: Any = None,
                    payload: Any = None) -> ScriptResult:
    try:
        ensure_models(folder)
        module, models = load_module(folder, script.module_path)
    except Exception as exc:
        return ScriptResult(script, mock, ok=False, error="cannot load " + script.module_path + ":\n"
                            + "".join(traceback.format_exception(exc)))
    kind = "webhook" if payload is not None and script.kind == "sync" else script.kind
    entry_name = contract.entry_point(kind).name
    entry = getattr(module, entry_name, None)
    if not callable(entry):
        return ScriptResult(script, mock, ok=False, error=f"{script.module_path} has no {entry_name}()")
    try:
        if kind == "action":
            model = getattr(models, script.input_model, None) if script.input_model and models else None
            arg = model.model_validate(input) if model is not None and not isinstance(input, model) else input
            result = await entry(mock.nango, arg)
            out_model = getattr(models, script.output_model, None) if script.output_model and models else None
            if out_model is not None and not isinstance(result, out_model):
                result = out_model.model_validate(_jsonable(result))
            output = _jsonable(result)
        elif kind == "webhook":
            await entry(mock.nango, payload)
            output = None
        else:
            await entry(mock.nango)
            output = None
    except Exception as exc:
        unexpected = mock.book.unexpected
        message = str(unexpected[0]) if unexpected else "".join(traceback.format_exception(exc))
        return ScriptResult(script, mock, ok=False, error=message)
    if mock.book.unexpected:
        return ScriptResult(script, mock, ok=False, output=output, error=str(mock.book.unexpected[0]))
    return ScriptResult(script, mock, ok=True, output=output)


def run(folder: Path, script: ScriptRef, mock: NangoMock, input: Any = None, payload: Any = None) -> ScriptResult:
    return asyncio.run(run_async(folder, script, mock, input, payload))


# --------------------------------------------------------------------------- saved-run comparison


@dataclass
class SavedCheck:
    script: ScriptRef
    ok: bool
    diff: list[str] = field(default_factory=list)
    error: str | None = None
    requests: int = 0
    recorded_by: str | None = None  # which of Nango's layouts the saved run came in; None: ours

    def as_dict(self) -> dict[str, Any]:
        return {"integration": self.script.integration, "kind": self.script.kind, "name": self.script.name,
                "ok": self.ok, "diff": self.diff, "error": self.error, "requests": self.requests,
                "recorded_by": self.recorded_by}


def has_saved_run(folder: Path, script: ScriptRef, variant: str | None = None) -> bool:
    directory = mocks_dir(folder, script.integration, script.name)
    return ((directory / RECORDS_FILE).is_file() or (directory / OUTPUT_FILE).is_file()
            or recorded_by_nango(folder, script, variant))


def _pretty(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str).splitlines()


def _canonical_records(records: dict[str, Any]) -> dict[str, Any]:
    """Per model and kind, records in produced order; empty kinds and models dropped."""
    out: dict[str, Any] = {}
    for model, kinds in sorted(records.items()):
        kept = {k: v for k, v in sorted(kinds.items()) if v}
        if kept:
            out[model] = kept
    return out


def _compared(script: ScriptRef, expected: Any, actual: Any, label: str, requests: int, source: str,
              notes: list[str] | None = None) -> SavedCheck:
    if expected == actual:
        return SavedCheck(script, ok=True, requests=requests)
    diff = list(difflib.unified_diff(_pretty(expected), _pretty(actual), fromfile=f"{source} {label}",
                                     tofile=f"produced {label}", lineterm="", n=2))
    return SavedCheck(script, ok=False, diff=[*(notes or []), *diff], requests=requests)


def _by_id(records: list[Any]) -> list[Any] | None:
    if not all(isinstance(r, dict) and "id" in r for r in records):
        return None
    return sorted(records, key=lambda r: json.dumps(r["id"], default=str))


def _recorded_records(recorded: nango_recorded.Recorded, produced: dict[str, dict[str, list[Any]]]
                      ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(expected, produced, notes) per model as Nango compares them: batchSave and batchDelete, in order."""
    expected: dict[str, Any] = {}
    actual: dict[str, Any] = {}
    notes = []
    for model in sorted({*recorded.saves, *recorded.deletes, *produced}):
        for kind, sent, wanted in (("batchSave", "save", recorded.saves), ("batchDelete", "delete", recorded.deletes)):
            got = produced.get(model, {}).get(sent) or []
            if model in wanted:
                expected.setdefault(model, {})[kind] = wanted[model]
            if model in wanted or got:
                actual.setdefault(model, {})[kind] = got
            mine = nango_recorded.align(wanted.get(model), got)
            if model in wanted and mine != wanted[model] and _by_id(mine) is not None and _by_id(mine) == _by_id(
                    wanted[model]):
                notes.append(f"{model} {kind}: the same records in another order (Nango compares them in order)")
    return expected, nango_recorded.align(expected, actual), notes


async def _check_recorded(folder: Path, script: ScriptRef, variant: str) -> SavedCheck:
    """Rerun `script` against what Nango's CLI recorded and compare as Nango's generated tests do."""
    try:
        recorded = nango_recorded.load(folder / script.integration, script.name, variant)
    except nango_recorded.RecordedMockError as exc:
        check = SavedCheck(script, ok=False, error=str(exc))
        check.recorded_by = nango_recorded.detect(folder / script.integration, script.name, variant)
        return check
    check = await _check_recorded_run(folder, script, recorded)
    check.recorded_by = recorded.label
    return check


async def _check_recorded_run(folder: Path, script: ScriptRef, recorded: nango_recorded.Recorded) -> SavedCheck:
    if script.kind == "action" and script.input_model and recorded.input is None:
        return SavedCheck(script, ok=False, error=f"no recorded input for action {script.name!r} (its input is "
                                                  f"{script.input_model}): expected {recorded.place(None, 'input')}")
    mock = _recorded_mock(recorded, script, {})
    result = await run_async(folder, script, mock, input=recorded.input)
    requests = len(mock.book.requests)
    if not result.ok:
        return SavedCheck(script, ok=False, error=result.error, requests=requests)
    source = f"recorded ({recorded.layout})"
    if script.kind == "action":
        if not recorded.has_output:
            where = (recorded.where if recorded.layout == nango_recorded.UNIFIED
                     else recorded.place(None, "output"))
            return SavedCheck(script, ok=False, requests=requests,
                              error=f"no recorded output for action {script.name!r}: expected it in {where}")
        output = json.loads(json.dumps(result.output, default=str))
        return _compared(script, recorded.output, nango_recorded.align(recorded.output, output), "output", requests,
                         source)
    missing = [m for m in script.models if m not in recorded.saves]
    if missing:
        places = ", ".join(recorded.place(m, "batchSave") for m in missing)
        return SavedCheck(script, ok=False, requests=requests,
                          error=f"no recorded batchSave for output model(s) {', '.join(missing)}: expected {places}")
    produced = json.loads(json.dumps(result.records, default=str))
    expected, actual, notes = _recorded_records(recorded, produced)
    return _compared(script, expected, actual, "records", requests, source, notes)


async def check_saved_async(folder: Path, script: ScriptRef, variant: str | None = None) -> SavedCheck:
    """Rerun `script` (as a sync's `variant`) against its saved run and compare what it produces."""
    directory = mocks_dir(folder, script.integration, script.name)
    variant = _variant(script, variant)
    if recorded_by_nango(folder, script, variant):
        return await _check_recorded(folder, script, variant)
    if not has_saved_run(folder, script):
        raise SavedRunError(f"no saved run for {script.kind} {script.name!r} in {directory} "
                            f"(record one with `nango dryrun {script.name} <connection-id> --save-responses`)")
    run_info = _run_file(directory)
    mock = make_mock(folder, script, variant=variant)
    result = await run_async(folder, script, mock, input=run_info.get("input"))
    requests = len(mock.book.requests)
    if not result.ok:
        return SavedCheck(script, ok=False, error=result.error, requests=requests)
    if script.kind == "action":
        expected = json.loads((directory / OUTPUT_FILE).read_text(encoding="utf-8")).get("output")
        actual = result.output
        label = "output"
    else:
        expected = _canonical_records(json.loads((directory / RECORDS_FILE).read_text(encoding="utf-8")))
        actual = _canonical_records(json.loads(json.dumps(result.records, default=str)))
        label = "records"
    return _compared(script, expected, actual, label, requests, "saved")


def check_saved(folder: Path, script: ScriptRef, variant: str | None = None) -> SavedCheck:
    return asyncio.run(check_saved_async(folder, script, variant))


def _delegate(name: str) -> Any:
    def method(self: ScriptResult, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.mock, name)(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = getattr(NangoMock, name).__doc__
    return method


for _name in ("assert_saved", "assert_updated", "assert_deleted", "assert_logged", "assert_requested",
              "assert_all_responses_used", "saved", "updated", "deleted"):
    setattr(ScriptResult, _name, _delegate(_name))


def _assert_ok(self: ScriptResult) -> ScriptResult:
    """Raise AssertionError with the script's error when the run failed."""
    if not self.ok:
        raise AssertionError(f"{self.script.kind} {self.script.name!r} failed: {self.error}")
    return self


ScriptResult.assert_ok = _assert_ok  # type: ignore[attr-defined]
ScriptResult.logs = property(lambda self: self.mock.logs)  # type: ignore[attr-defined]
