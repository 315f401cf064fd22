"""Build a bundle: a deterministic zip of one integration's scripts and every module they import.

Deterministic (sorted entries, fixed timestamps) so the same sources give the same sha256, and a
redeploy of unchanged code is recognised as unchanged.
"""

from __future__ import annotations

import ast
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from orchestrator.errors import BundleError

MANIFEST = "manifest.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ScriptEntry:
    name: str
    kind: str  # sync | action | event
    module_path: str  # relative to the integrations folder, e.g. github/syncs/issues.py


@dataclass(frozen=True)
class Bundle:
    integration: str
    data: bytes
    sha256: str
    manifest: dict[str, Any]


def _resolve_relative(root: Path, module_file: Path, level: int, module: str | None) -> list[Path]:
    pkg = module_file.parent
    for _ in range(level - 1):
        pkg = pkg.parent
    if not pkg.is_relative_to(root):
        raise BundleError(f"{module_file.relative_to(root)}: relative import goes above the integrations folder")
    target = pkg.joinpath(*module.split(".")) if module else pkg
    return [target]


def _module_file(target: Path) -> Path | None:
    if target.with_suffix(".py").is_file():
        return target.with_suffix(".py")
    if (target / "__init__.py").is_file():
        return target / "__init__.py"
    return None


def imported_files(root: Path, module_file: Path) -> set[Path]:
    """Files of the integrations folder that a module imports: relative imports and `models`."""
    try:
        tree = ast.parse(module_file.read_text(), filename=str(module_file))
    except SyntaxError as exc:
        raise BundleError(f"{module_file.relative_to(root)}:{exc.lineno}: syntax error: {exc.msg}") from None
    found: set[Path] = set()
    for node in ast.walk(tree):
        targets: list[Path] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                bases = _resolve_relative(root, module_file, node.level, node.module)
                for base in bases:
                    targets.append(base)
                    targets.extend(base / alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "models":
                targets.append(root / "models")
        elif isinstance(node, ast.Import):
            targets.extend(root / "models" for alias in node.names if alias.name.split(".")[0] == "models")
        for target in targets:
            file = _module_file(target)
            if file is not None:
                found.add(file)
                # packages on the way need their __init__ too
                for parent in file.parents:
                    if parent == root or not parent.is_relative_to(root):
                        break
                    if (parent / "__init__.py").is_file():
                        found.add(parent / "__init__.py")
    return found


def collect(root: Path, entries: list[Path]) -> list[Path]:
    """Every file the entry modules need, transitively."""
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        todo.extend(imported_files(root, file) - seen)
    if (root / "models.py").is_file():
        seen.add(root / "models.py")
    return sorted(seen)


def build_bundle(root: Path, integration: str, scripts: list[ScriptEntry], config: dict[str, Any]) -> Bundle:
    root = root.resolve()
    entries: list[Path] = []
    for script in scripts:
        path = root / script.module_path
        if not path.is_file():
            raise BundleError(f"{script.kind} '{script.name}' of integration '{integration}' has no script: "
                              f"expected {script.module_path}")
        entries.append(path)
    files = collect(root, entries)
    manifest: dict[str, Any] = {
        "format": 1,
        "integration": integration,
        "scripts": [{"name": s.name, "kind": s.kind, "module_path": s.module_path} for s in scripts],
        "config": config,
        "files": {},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            rel = file.relative_to(root).as_posix()
            data = file.read_bytes()
            manifest["files"][rel] = hashlib.sha256(data).hexdigest()
            info = zipfile.ZipInfo(rel, _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        info = zipfile.ZipInfo(MANIFEST, _EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
    data = buf.getvalue()
    return Bundle(integration=integration, data=data, sha256=hashlib.sha256(data).hexdigest(), manifest=manifest)


def read_manifest(data: bytes) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return orjson.loads(zf.read(MANIFEST))
    except (zipfile.BadZipFile, KeyError, orjson.JSONDecodeError) as exc:
        raise BundleError(f"not a valid bundle: {exc}") from None
