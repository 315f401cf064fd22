"""The sandboxed child: load one script from its bundle and call its entry point.

Started as `python -I -S -B -c <boot> <fd> <filter> <nice> <models 0|1> <import paths...>` (see sandbox.py), with
the RPC socket on <fd>; child_boot.py lowers its CPU priority and imports this module. Its first act
is to load its own seccomp filter (<filter>, base64: the denylist plus execve/execveat, stacked on
bwrap's), so nothing after the interpreter's start can create or replace a process. It then imports
the SDK (and pydantic, when the host asks: its recent runs imported it) and sends a `ready` frame
(the host hands out only a warm child that said so), then waits for its init frame, so a pre-started
"warm" child answers a run in a few milliseconds. Its `done` frame says whether the run imported
pydantic, which decides whether the host's next boots preload it.
After the init frame it applies the limits, writes the bundle sent by the host under its private
/tmp, installs the import guard and calls the script's entry point. No bytecode is written.
Before its `done` frame it flushes stdout/stderr and writes the run's end mark on both, so the
host knows it has every line and can return the result without waiting for this process to exit
(the host kills it: a child serves one run only).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import faulthandler
import importlib
import importlib.util
import os
import socket
import sys
import traceback
import types
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.sdk import contract, wire

RPC_FD = 3
BUNDLE_PACKAGE = "_bundle"
PRIVATE_BUNDLE_DIR = "/tmp/bundle"


class ScriptImportError(ImportError):
    pass


class InputValidationError(ValueError):
    pass


class OutputValidationError(ValueError):
    pass


def _install_import_guard() -> None:
    """The contract's import allow-list, enforced at run time (`nango compile` checks the same list).

    The bundle's own modules may also be named absolutely here (the bundle folder is on sys.path);
    compile insists on the relative form, which is what keeps a script's imports inside its folder.
    """
    real_import = builtins.__import__

    def guarded(name: str, globals: dict[str, Any] | None = None, locals: Any = None,
                fromlist: Any = (), level: int = 0) -> types.ModuleType:
        importer = (globals or {}).get("__name__", "") or ""
        from_script = (importer == "models" or importer.startswith(BUNDLE_PACKAGE) or importer == "__main__"
                       or importer.split(".")[0] in _bundle_modules)
        if from_script and level == 0:
            top = name.split(".")[0]
            names = [str(f) for f in fromlist] if fromlist else None
            allowed = (
                top == BUNDLE_PACKAGE
                or contract.import_kind(name, names, _bundle_modules) in ("stdlib", "models", "sdk", "folder")
                or (top in contract.MODELS_MAY_IMPORT and importer in ("models", BUNDLE_PACKAGE + ".models"))
            )
            if not allowed:
                raise ScriptImportError(contract.forbidden_import(name, names))
            if top == "pydantic":
                _used["pydantic"] = True
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded


_bundle_modules: set[str] = set()
# what the run used that a warm boot can preload, told to the host in `done` so that its next boots do (or don't)
_used: dict[str, bool] = {"pydantic": False}


def _write_bundle(files: dict[str, str], target: str) -> str:
    root = Path(target)
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        dest = (root / rel).resolve()
        if not dest.is_relative_to(root.resolve()):
            raise ValueError(f"bundle entry {rel!r} escapes the bundle folder")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    return str(root)


def _load_script(bundle_dir: str, module_path: str) -> types.ModuleType:
    package = types.ModuleType(BUNDLE_PACKAGE)
    package.__path__ = [bundle_dir]  # type: ignore[attr-defined]
    package.__package__ = BUNDLE_PACKAGE
    sys.modules[BUNDLE_PACKAGE] = package
    sys.path.insert(0, bundle_dir)
    for entry in Path(bundle_dir).iterdir():
        if entry.suffix == ".py" or entry.is_dir():
            _bundle_modules.add(entry.stem if entry.suffix == ".py" else entry.name)
    module_name = BUNDLE_PACKAGE + "." + module_path.removesuffix(".py").replace("/", ".")
    return importlib.import_module(module_name)


def _sendable(text: str) -> str:
    """Lone surrogates cannot cross the channel (UTF-8): an error holding one is sent with their escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(exc: BaseException, kind: str | None = None) -> dict[str, Any]:
    from orchestrator.sdk.errors import ActionError

    tb = _sendable("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    out: dict[str, Any] = {"type": kind or type(exc).__name__, "message": _sendable(str(exc) or type(exc).__name__),
                           "traceback": tb}
    if isinstance(exc, ActionError):
        out["type"] = "action_error"
        out["payload"] = exc.payload
    return out


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", by_alias=True) if callable(dump) else value


async def _run(init: dict[str, Any], channel: Any, bundle_dir: str) -> dict[str, Any]:
    from orchestrator.sdk.nango import NangoAction, NangoSync, RunContext

    kind = init["kind"]
    ctx = RunContext(
        connection_id=init["connection_id"], provider_config_key=init["provider_config_key"],
        provider=init.get("provider", ""), environment=init.get("environment", ""),
        variant=init.get("variant", "base"), job_id=init.get("job_id"),
        last_sync_date=datetime.fromisoformat(init["last_sync_date"]) if init.get("last_sync_date") else None,
        pagination=init.get("pagination") or {}, sync_name=init.get("script_name"),
        full_resync=bool(init.get("full_resync")), action_name=init.get("script_name") if kind == "action" else None,
    )
    nango = NangoSync(channel, ctx) if kind in contract.SYNC_KINDS else NangoAction(channel, ctx)
    try:
        module = _load_script(bundle_dir, init["module_path"])
    except BaseException as exc:
        return {"ok": False, "error": _error(exc, "ScriptLoadError")}
    entry_name = contract.entry_point(kind).name
    entry = getattr(module, entry_name, None)
    if not callable(entry):
        return {"ok": False, "error": {"type": "ScriptLoadError", "traceback": "",
                                       "message": f"{init['module_path']} has no function {entry_name}()"}}
    try:
        channel.notify("entry", {})
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


def _describe_validation(exc: Exception, what: str, model_name: str) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"{what} does not match model {model_name}: {exc}"
    parts = []
    for err in errors()[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"field '{loc}': {err.get('msg')}")
    return f"{what} does not match model {model_name}: " + "; ".join(parts)


def _action_input(init: dict[str, Any]) -> Any:
    model = _model(init.get("input_model"))
    raw = init.get("input")
    if model is not None:
        try:
            return model.model_validate(raw)
        except Exception as exc:
            raise InputValidationError(_describe_validation(exc, "action input", model.__name__)) from None
    return raw


def _action_output(init: dict[str, Any], result: Any) -> Any:
    model = _model(init.get("output_model"))
    if model is not None and not isinstance(result, model):
        try:
            result = model.model_validate(_jsonable(result))
        except Exception as exc:
            raise OutputValidationError(_describe_validation(exc, "action output", model.__name__)) from None
    return _jsonable(result)


def _apply_limits(limits: dict[str, int]) -> None:
    """rlimits again from inside (lowering only: prlimit set them at launch); the host owns the wall clock."""
    import resource

    table = {"memory_bytes": resource.RLIMIT_AS, "cpu_seconds": resource.RLIMIT_CPU,
             "open_files": resource.RLIMIT_NOFILE, "file_size_bytes": resource.RLIMIT_FSIZE}
    for key, which in table.items():
        value = limits.get(key)
        if not value:
            continue
        _soft, hard = resource.getrlimit(which)
        if key == "cpu_seconds":  # CPU already used by the imports counts against the limit
            value += int(resource.getrusage(resource.RUSAGE_SELF).ru_utime + 1)
            new_hard = hard if hard != resource.RLIM_INFINITY else value + 1
        else:
            new_hard = value if hard == resource.RLIM_INFINITY else min(value, hard)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard - 1 if key == "cpu_seconds" else hard)
        try:
            resource.setrlimit(which, (value, new_hard))
        except (ValueError, OSError):
            pass


def _warm_imports(models: bool) -> None:
    """What every run needs, imported before the init frame arrives (that is what makes a child warm), and
    what generated models need when the host says the recent runs used them."""
    import orchestrator.sdk  # noqa: F401
    from orchestrator.sdk import channel  # noqa: F401

    if not models:
        return
    try:
        _warm_models()
    except Exception:  # a warm-up only: the script's own import reports any real problem
        pass


def _warm_models() -> None:
    """What a generated models.py needs, paid here instead of on the run's path: `from pydantic import
    BaseModel, ConfigDict, Field` (~90 ms of CPU on a small VM) and the first model class, which builds
    pydantic's schema machinery (~40 ms; later classes cost ~1 ms). Nearly every real script imports models;
    a boot for a script that does not would spend that CPU beside the runs in flight for nothing."""
    from pydantic import BaseModel, ConfigDict, Field

    class _Warm(BaseModel):
        model_config = ConfigDict(extra="allow", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

        value: int | None = Field(None, alias="v")
        tags: list[str] = []

    _Warm.model_validate({"v": 1, "tags": ["a"], "other": {"nested": True}}).model_dump(by_alias=True)


async def main(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=wire.MAX_FRAME)
    # imports done and filter loaded: from now on this child can start a run in a few milliseconds
    writer.write(wire.encode({"method": "ready", "params": {}}))
    await writer.drain()
    init = await wire.read_frame(reader)
    if not isinstance(init, dict):
        return 2
    _apply_limits(init.get("limits") or {})
    from orchestrator.sdk.channel import Channel

    channel = Channel(reader, writer)
    channel.start()
    try:
        if init.get("bundle_files") is not None:
            bundle_dir = _write_bundle(init["bundle_files"], init.get("bundle_target") or PRIVATE_BUNDLE_DIR)
        else:
            bundle_dir = init["bundle_dir"]
        os.chdir(bundle_dir)
    except (OSError, ValueError) as exc:
        outcome: dict[str, Any] = {"ok": False, "error": _error(exc, "ScriptLoadError")}
    else:
        _install_import_guard()
        outcome = await _run(init, channel, bundle_dir)
    try:
        encoded = wire.encode({"method": "done", "params": {**outcome, "used": _used}})
    except (TypeError, ValueError, wire.FrameError) as exc:
        encoded = wire.encode({"method": "done", "params": {"ok": False, "error": {
            "type": "OutputError", "message": f"the script's result cannot be sent: {exc}", "traceback": ""}}})
    _end_output(init.get("end_mark"))
    channel.flush()
    writer.write(encoded)
    await writer.drain()
    # Stay until the host hangs up: it may still be answering calls that were in flight when the script
    # ended, and a child gone early turns those replies into broken pipes on the host.
    await channel.close(linger=10)
    writer.close()
    try:  # close() flushes what is still buffered; exiting before that would lose the done frame
        await asyncio.wait_for(writer.wait_closed(), 30)
    except (OSError, TimeoutError):
        pass
    return 0


def _end_output(mark: Any) -> None:
    """Flush what print() buffered, then write the host's end mark on stdout and stderr.

    Both reach the pipes before the done frame is sent, so the host, once it has read both marks,
    has every line the script wrote and returns the result without waiting for this process to exit.
    """
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            stream.flush()
        except Exception:  # the script may have replaced or closed sys.stdout: the mark still goes to the fd
            pass
        if isinstance(mark, str) and mark:
            try:
                os.write(fd, mark.encode() + b"\n")
            except OSError:
                pass


def _load_filter(child_filter: str) -> None:
    """Load the child's own seccomp filter, or end the process: a child never runs unconfined by accident."""
    sys.dont_write_bytecode = True  # bundle folders never get __pycache__ (also -B on the command line)
    if child_filter in ("", "-"):
        return  # RUNNER_ALLOW_UNSANDBOXED without libseccomp: the host logged it
    from orchestrator.runner import seccomp_child

    try:
        seccomp_child.load(base64.b64decode(child_filter))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"sandbox: the child's seccomp filter could not be loaded: {exc}\n")
        sys.stderr.flush()
        os._exit(3)


def probe(child_filter: str) -> None:
    """The sandbox's self-check at worker start (sandbox.probe_bwrap): prints `ok` only if it confines."""
    import resource
    import threading

    _load_filter(child_filter)
    failures = process_and_socket_allowed()
    if child_filter in ("", "-"):
        failures.append("no seccomp filter")
    if os.getpid() > 8:  # bwrap is pid 1 of the sandbox's pid namespace and the child pid 2
        failures.append(f"not in its own pid namespace (pid {os.getpid()})")
    for which, what in ((resource.RLIMIT_AS, "memory"), (resource.RLIMIT_FSIZE, "file size")):
        if resource.getrlimit(which)[0] == resource.RLIM_INFINITY:
            failures.append(f"no {what} limit")
    ran: list[bool] = []
    thread = threading.Thread(target=lambda: ran.append(True))
    thread.start()
    thread.join()
    if not ran:
        failures.append("threads do not start")
    import orchestrator.sdk  # noqa: F401

    say_ok_unless(failures)


def process_and_socket_allowed() -> list[str]:
    """What a confined process is wrongly allowed of fork() and socket() (a self-check's first part)."""
    failures: list[str] = []
    try:
        pid = os.fork()
    except PermissionError:
        pass
    else:
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        failures.append("fork() is not refused")
    try:
        socket.socket().close()
        failures.append("socket() is not refused")
    except PermissionError:
        pass
    return failures


def say_ok_unless(failures: list[str]) -> None:
    """Print the self-check's verdict: `ok` only without failures and if exec is refused too (tried last: if it
    worked, this process is replaced and says so)."""
    if failures:
        print("unconfined: " + ", ".join(failures), flush=True)
        return
    try:
        os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", "print('unconfined: execve() is not refused')"])
    except PermissionError:
        print("ok", flush=True)


def entry(fd: int = RPC_FD, child_filter: str = "-", models: bool = False) -> None:
    _load_filter(child_filter)
    faulthandler.enable()  # a crash (SIGSEGV, SIGBUS...) leaves the Python traceback in the job's logs
    _warm_imports(models)
    sys.exit(asyncio.run(main(fd)))


if __name__ == "__main__":
    entry(int(sys.argv[1]) if len(sys.argv) > 1 else RPC_FD, sys.argv[2] if len(sys.argv) > 2 else "-")
