"""`nango migrate-to-code` and `nango export-yaml`: convert a folder between nango.yaml and code-first.

Each conversion is made in a scratch copy first and kept only if the converted folder compiles to the
same manifest (every integration's declared scripts and config) as the original; else nothing is written
and the error says what differs. In place, the file the other form replaces is kept beside it (`.bak`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.authoring.compile import manifest_config, script_entries
from orchestrator.config.code_first import has_code_models, read_code, script_files
from orchestrator.config.codegen import generate_models_py
from orchestrator.config.convert import ConvertError, add_definition, definition, models_source, strip_definitions
from orchestrator.config.convert import yaml_source as render_yaml
from orchestrator.config.nango_yaml import NangoConfig, script_module_path
from orchestrator.config.project import load_project

IGNORED = shutil.ignore_patterns("dist", "__pycache__", ".git", "node_modules")


def manifests(config: NangoConfig) -> dict[str, Any]:
    """What a deploy of `config` declares, per integration (the bundles without their files)."""
    return {key: {"scripts": [vars(e) for e in script_entries(config, key)], "config": manifest_config(config, key)}
            for key in config.integrations}


def to_code(folder: Path, out: Path | None = None) -> list[str]:
    """Convert a nango.yaml folder to code-first (into `out`, else in place); returns the files written."""
    config = load_project(folder)
    code = read_code(folder, folder, set(config.models))
    if not code.empty:
        raise ConvertError(f"{folder.as_posix()} already has code-first definitions; migrate-to-code converts "
                           "what only nango.yaml declares (export-yaml first to start over)")
    files: dict[str, str] = {"models.py": models_source(config)}
    for rel, source in _scripts_with_definitions(folder, config).items():
        files[rel] = source
    return _apply(folder, out, config, files, remove="nango.yaml", backup=["nango.yaml"])


def to_yaml(folder: Path, out: Path | None = None) -> list[str]:
    """Write nango.yaml from the folder's definitions (both forms), take the decorators off the scripts and
    generate models.py again (into `out`, else in place); returns the files written."""
    config = load_project(folder)
    files: dict[str, str] = {"nango.yaml": render_yaml(config), "models.py": generate_models_py(config)}
    for script in code_scripts(folder):
        source = (folder / script).read_text(encoding="utf-8")
        stripped = strip_definitions(source)
        if stripped != source:
            files[script] = stripped
    backup = ["models.py"] if has_code_models(folder) else []
    if (folder / "nango.yaml").is_file():
        backup.append("nango.yaml")
    return _apply(folder, out, config, files, remove=None, backup=backup)


def code_scripts(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in script_files(folder)]


def _scripts_with_definitions(folder: Path, config: NangoConfig) -> dict[str, str]:
    out: dict[str, str] = {}
    problems: list[str] = []
    for key, integration in config.integrations.items():
        items: list[tuple[str, str, str, Any]] = []
        items += [("sync", "syncs", name, sync) for name, sync in integration.syncs.items()]
        items += [("action", "actions", name, action) for name, action in integration.actions.items()]
        events: dict[str, list[str]] = {}
        for event, names in integration.on_events.items():
            for name in names:
                events.setdefault(name, []).append(event)
        items += [("on_event", "on-events", name, evs) for name, evs in events.items()]
        for kind, section, name, item in items:
            rel = script_module_path(key, section, name)  # type: ignore[arg-type]
            path = folder / rel
            if not path.is_file():
                problems.append(f"{rel}: missing; write the script (or `nango generate` a stub) before migrating")
                continue
            deco = definition(kind, name, Path(rel).stem, config, item)
            try:
                out[rel] = add_definition(path.read_text(encoding="utf-8"), rel, kind, deco)
            except ConvertError as exc:
                problems.append(str(exc))
            except SyntaxError as exc:
                problems.append(f"{rel}:{exc.lineno}: syntax error: {exc.msg}")
    if problems:
        raise ConvertError("nothing converted:\n" + "\n".join(problems))
    return out


def _apply(folder: Path, out: Path | None, config: NangoConfig, files: dict[str, str], *, remove: str | None,
           backup: list[str]) -> list[str]:
    """Write `files` into a scratch copy, check it declares what `config` does, then write them for real."""
    if out is not None and out.exists() and any(out.iterdir()):
        raise ConvertError(f"{out.as_posix()} is not empty: give a new or empty folder")
    with tempfile.TemporaryDirectory(prefix="nango-convert-") as tmp:
        scratch = Path(tmp) / "folder"
        shutil.copytree(folder, scratch, ignore=IGNORED)
        for rel, text in files.items():
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            (scratch / rel).write_text(text, encoding="utf-8")
        if remove is not None:
            (scratch / remove).unlink(missing_ok=True)
        converted = load_project(scratch)
        _same(manifests(config), manifests(converted))
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            shutil.copytree(scratch, out, dirs_exist_ok=True)
            return sorted(files)
    taken = [f"{rel}.bak" for rel in backup if (folder / f"{rel}.bak").exists()]
    if taken:
        raise ConvertError(f"{', '.join(taken)} already exist(s) in {folder.as_posix()}: move it away first")
    for rel in backup:
        shutil.copy2(folder / rel, folder / f"{rel}.bak")
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    if remove is not None:
        (folder / remove).unlink(missing_ok=True)
    return sorted(files)


def _same(before: dict[str, Any], after: dict[str, Any], where: str = "") -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted({*before, *after}, key=str):
            if before.get(key) != after.get(key):
                _same(before.get(key), after.get(key), f"{where}/{key}")  # type: ignore[arg-type]
    raise ConvertError(f"the converted folder would declare something else at {where or '/'}: "
                       f"{before!r} became {after!r}; nothing converted")
