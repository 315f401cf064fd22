"""The sandboxed child: load one script from its bundle and call its entry point.

Runs as `python -I -m orchestrator.runner.child` with the RPC socket on fd 3. It imports only
the standard library, `orchestrator.sdk` and this module; what the script may import is
checked by an import guard (the bundle's own modules, `models`, the SDK, the standard library).
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import importlib.util
import os
import socket
import sys
import traceback
import types
from datetime import datetime
from typing import Any

from orchestrator.runner import child_wire

RPC_FD = 3
BUNDLE_PACKAGE = "_bundle"
ENTRY_POINTS = {"sync": "fetch_data", "action": "run_action", "webhook": "on_webhook", "event": "on_event"}
ALLOWED_THIRD_PARTY = {"pydantic", "typing_extensions"}  # models.py is generated pydantic code


class ScriptImportError(ImportError):
    pass


def _install_import_guard() -> None:
    """Scripts may import the standard library, models, orchestrator.sdk and their bundle."""
    real_import = builtins.__import__
    stdlib = set(sys.stdlib_module_names)

    def guarded(name: str, globals: dict[str, Any] | None = None, locals: Any = None,
                fromlist: Any = (), level: int = 0) -> types.ModuleType:
        importer = (globals or {}).get("__name__", "")
        from_script = importer == "models" or importer.startswith(BUNDLE_PACKAGE) or importer == "__main__"
        if from_script and level == 0:
            top = name.split(".")[0]
            allowed = (
                top in stdlib or top == "models" or top == BUNDLE_PACKAGE
                or (name == "orchestrator" and all(str(f).startswith("sdk") for f in (fromlist or ())))
                or name == "orchestrator.sdk" or name.startswith("orchestrator.sdk.")
                or (top in ALLOWED_THIRD_PARTY and importer in ("models", BUNDLE_PACKAGE + ".models"))
            )
            if not allowed:
                raise ScriptImportError(
                    f"import of '{name}' is not allowed in scripts: only the standard library, models, "
                    "orchestrator.sdk and modules of the integrations folder can be imported")
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded


def _load_script(bundle_dir: str, module_path: str) -> types.ModuleType:
    package = types.ModuleType(BUNDLE_PACKAGE)
    package.__path__ = [bundle_dir]  # type: ignore[attr-defined]
    package.__package__ = BUNDLE_PACKAGE
    sys.modules[BUNDLE_PACKAGE] = package
    sys.path.insert(0, bundle_dir)
    module_name = BUNDLE_PACKAGE + "." + module_path.removesuffix(".py").replace("/", ".")
    return importlib.import_module(module_name)


def _error(exc: BaseException, kind: str | None = None) -> dict[str, Any]:
    from orchestrator.sdk.errors import ActionError

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    out: dict[str, Any] = {"type": kind or type(exc).__name__, "message": str(exc) or type(exc).__name__,
                           "traceback": tb}
    if isinstance(exc, ActionError):
        out["type"] = "action_error"
        out["payload"] = exc.payload
    return out


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", by_alias=True) if callable(dump) else value


async def _run(init: dict[str, Any], channel: Any) -> dict[str, Any]:
    from orchestrator.sdk.nango import NangoAction, NangoSync, RunContext

    kind = init["kind"]
    ctx = RunContext(
        connection_id=init["connection_id"], provider_config_key=init["provider_config_key"],
        provider=init.get("provider", ""), environment=init.get("environment", ""),
        variant=init.get("variant", "base"), job_id=init.get("job_id"),
        last_sync_date=datetime.fromisoformat(init["last_sync_date"]) if init.get("last_sync_date") else None,
        pagination=init.get("pagination") or {}, sync_name=init.get("script_name"),
        full_resync=bool(init.get("full_resync")),
    )
    nango = NangoSync(channel, ctx) if kind in ("sync", "webhook") else NangoAction(channel, ctx)
    try:
        module = _load_script(init["bundle_dir"], init["module_path"])
    except BaseException as exc:
        return {"ok": False, "error": _error(exc, "ScriptLoadError")}
    entry_name = ENTRY_POINTS[kind]
    entry = getattr(module, entry_name, None)
    if not callable(entry):
        return {"ok": False, "error": {"type": "ScriptLoadError", "traceback": "",
                                       "message": f"{init['module_path']} has no function {entry_name}()"}}
    try:
        if kind == "sync":
            result = entry(nango)
        elif kind == "action":
            result = entry(nango, _action_input(init))
        elif kind == "webhook":
            result = entry(nango, init.get("input"))
        else:
            result = entry(nango)
        if asyncio.iscoroutine(result):
            result = await result
        output = _action_output(init, result) if kind == "action" else None
        return {"ok": True, "output": output}
    except BaseException as exc:
        return {"ok": False, "error": _error(exc)}
    finally:
        await channel.drain()


def _model(name: str | None) -> Any:
    if not name:
        return None
    try:
        models = importlib.import_module("models")
    except ImportError:
        return None
    return getattr(models, name, None)


def _action_input(init: dict[str, Any]) -> Any:
    model = _model(init.get("input_model"))
    raw = init.get("input")
    if model is not None and raw is not None:
        return model.model_validate(raw)
    return raw


def _action_output(init: dict[str, Any], result: Any) -> Any:
    model = _model(init.get("output_model"))
    if model is not None and result is not None and not isinstance(result, model):
        result = model.model_validate(result)
    return _jsonable(result)


def _apply_limits(limits: dict[str, int]) -> None:
    """rlimits set before any user code runs; the host enforces the wall clock itself."""
    import resource

    table = {"memory_bytes": resource.RLIMIT_AS, "cpu_seconds": resource.RLIMIT_CPU,
             "open_files": resource.RLIMIT_NOFILE, "file_size_bytes": resource.RLIMIT_FSIZE}
    for key, which in table.items():
        value = limits.get(key)
        if value:
            resource.setrlimit(which, (value, value))


async def main() -> int:
    fd = int(sys.argv[1]) if len(sys.argv) > 1 else RPC_FD
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=child_wire.MAX_FRAME)
    init = await child_wire.read_frame(reader)
    if not isinstance(init, dict):
        return 2
    _apply_limits(init.get("limits") or {})
    from orchestrator.sdk.channel import Channel

    channel = Channel(reader, writer)
    channel.start()
    _install_import_guard()
    os.chdir(init["bundle_dir"])
    outcome = await _run(init, channel)
    try:
        encoded = child_wire.encode({"method": "done", "params": outcome})
    except (TypeError, ValueError, child_wire.FrameError) as exc:
        encoded = child_wire.encode({"method": "done", "params": {"ok": False, "error": {
            "type": "OutputError", "message": f"the script's result cannot be sent: {exc}", "traceback": ""}}})
    writer.write(encoded)
    await writer.drain()
    await channel.close()
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
