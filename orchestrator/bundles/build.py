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

from orchestrator.bundles.limits import BundleLimits, open_bundle
from orchestrator.bundles.limits import read_manifest as limited_manifest
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


def module_file(target: Path) -> Path | None:
    """The file of a module path without suffix: `x.py` or the package `x/__init__.py`."""
    if target.with_suffix(".py").is_file():
        return target.with_suffix(".py")
    if (target / "__init__.py").is_file():
        return target / "__init__.py"
    return None


@dataclass
class RelativeImport:
    """Where a relative import lands in the integrations folder.

    `files`: modules it loads; `missing`: module paths (relative to the folder, without suffix)
    that do not exist; `escapes`: it climbs above the integrations folder."""

    files: list[Path]
    missing: list[str]
    escapes: bool = False


def resolve_relative(root: Path, source: Path, level: int, module: str | None, names: list[str]
                     ) -> RelativeImport:
    """Resolve `from <dots><module> import <names>` written in `source`. The integrations
    folder is the import root and a folder needs no `__init__.py` (a namespace package)."""
    pkg = source.parent
    for _ in range(level - 1):
        pkg = pkg.parent
    if not pkg.is_relative_to(root):
        return RelativeImport([], [], escapes=True)
    files: list[Path] = []
    missing: list[str] = []
    base = pkg.joinpath(*module.split(".")) if module else pkg
    if module:
        found = module_file(base)
        if found is not None:
            files.append(found)
        elif not base.is_dir():
            return RelativeImport([], [base.relative_to(root).as_posix()])
    elif (base / "__init__.py").is_file():
        found = base / "__init__.py"
        files.append(found)
    else:
        found = None
    for name in names:
        if name == "*":
            continue
        sub = module_file(base / name)
        if sub is not None:
            files.append(sub)
        elif found is None:  # a namespace package has no attributes, only submodules
            missing.append((base / name).relative_to(root).as_posix())
    return RelativeImport(files, missing)


def imported_files(root: Path, source: Path) -> set[Path]:
    """Files of the integrations folder that a module imports: relative imports and `models`."""
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None) or 1
        raise BundleError(f"{source.relative_to(root)}:{line}: cannot parse: {exc}") from None
    found: set[Path] = set()
    for node in ast.walk(tree):
        files: list[Path] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                resolved = resolve_relative(root, source, node.level, node.module,
                                            [alias.name for alias in node.names])
                if resolved.escapes:
                    raise BundleError(f"{source.relative_to(root)}:{node.lineno}: relative import goes "
                                      "above the integrations folder")
                files = resolved.files
            elif node.module and node.module.split(".")[0] == "models":
                files = [f for f in [module_file(root / "models")] if f]
        elif isinstance(node, ast.Import):
            if any(alias.name.split(".")[0] == "models" for alias in node.names):
                files = [f for f in [module_file(root / "models")] if f]
        for file in files:
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
    contents = {file: file.read_bytes() for file in files}
    digests = {file.relative_to(root).as_posix(): hashlib.sha256(data).hexdigest() for file, data in contents.items()}

    def script_sha256(entry: Path) -> str:
        """What one script's code is: the files it loads, transitively (a deploy can tell which changed)."""
        used = sorted(f.relative_to(root).as_posix() for f in collect(root, [entry]))
        return hashlib.sha256(orjson.dumps({rel: digests[rel] for rel in used}, option=orjson.OPT_SORT_KEYS)
                              ).hexdigest()

    manifest: dict[str, Any] = {
        "format": 1,
        "integration": integration,
        "scripts": [{"name": s.name, "kind": s.kind, "module_path": s.module_path, "sha256": script_sha256(entry)}
                    for s, entry in zip(scripts, entries, strict=True)],
        "config": config,
        "files": {},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            rel = file.relative_to(root).as_posix()
            data = contents[file]
            manifest["files"][rel] = digests[rel]
            info = zipfile.ZipInfo(rel, _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        info = zipfile.ZipInfo(MANIFEST, _EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
    data = buf.getvalue()
    return Bundle(integration=integration, data=data, sha256=hashlib.sha256(data).hexdigest(), manifest=manifest)


def read_manifest(data: bytes, limits: BundleLimits | None = None) -> dict[str, Any]:
    """The manifest only, read in chunks within the bundle limits (a stored bundle is untrusted too)."""
    with open_bundle(data, "?") as zf:
        return limited_manifest(zf, limits or BundleLimits(), "?")
