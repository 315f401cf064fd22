"""`nango templates`, `nango init --template NAME` and `nango add NAME`: ready integrations to start from.

A template is a folder of `orchestrator/templates/` with a nango.yaml (its first comment line describes
it), the integration's scripts, saved responses under `<integration>/mocks/` and offline tests under
`tests/` (run with `pytest`, through the `nango_mock` fixture, or with `nango test`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from orchestrator.cli.common import discover_folder, fail, shown, writing

ROOT = Path(__file__).resolve().parent.parent / "templates"
_SKIP = {"__pycache__", "models.py", "nango.yaml", "dist", ".env"}


def available() -> dict[str, Path]:
    return {p.name: p for p in sorted(ROOT.iterdir())
            if p.is_dir() and p.name != "init" and (p / "nango.yaml").is_file()}


def describe(folder: Path) -> str:
    first = folder.joinpath("nango.yaml").read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").strip()


def get(name: str) -> Path:
    found = available()
    if name not in found:
        import difflib

        hint = difflib.get_close_matches(name, list(found), n=1)
        fail(f"no template {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
             + f" (available: {', '.join(found)})")
    return found[name]


def _files(template: Path) -> list[tuple[Path, str]]:
    return [(f, f.relative_to(template).as_posix()) for f in sorted(template.rglob("*"))
            if f.is_file() and not (_SKIP & set(f.relative_to(template).parts)) and f.suffix != ".pyc"]


def merge_yaml(current: dict[str, Any], incoming: dict[str, Any], *, force: bool) -> tuple[dict[str, Any], list[str]]:
    """`incoming`'s integrations, scripts and models added to `current`; conflicts listed (replaced with force)."""
    merged = dict(current or {})
    conflicts: list[str] = []
    integrations = dict(merged.get("integrations") or {})
    for key, spec in (incoming.get("integrations") or {}).items():
        have = dict(integrations.get(key) or {})
        for section, entries in spec.items():
            if not isinstance(entries, dict):
                have.setdefault(section, entries)
                continue
            target = dict(have.get(section) or {})
            for name, value in entries.items():
                if name in target and target[name] != value:
                    conflicts.append(f"{key} {section} {name}")
                    if not force:
                        continue
                target[name] = value
            have[section] = target
        integrations[key] = have
    merged["integrations"] = integrations
    models = dict(merged.get("models") or {})
    for name, value in (incoming.get("models") or {}).items():
        if name in models and models[name] != value:
            conflicts.append(f"model {name}")
            if not force:
                continue
        models[name] = value
    merged["models"] = models
    return merged, conflicts


def add_template(folder: Path, template: Path, *, force: bool) -> list[str]:
    """Copy a template's files into `folder` and merge its nango.yaml; returns what was written."""
    files = _files(template)
    existing = [rel for src, rel in files if (folder / rel).exists()
                and (folder / rel).read_bytes() != src.read_bytes()]
    yaml_path = folder / "nango.yaml"
    current = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) if yaml_path.is_file() else {}
    merged, conflicts = merge_yaml(current or {}, yaml.safe_load(template.joinpath("nango.yaml").read_text()),
                                   force=force)
    if (existing or conflicts) and not force:
        fail("would overwrite " + ", ".join(existing + conflicts) + " (pass --force to replace them)")
    written = []
    for source, rel in files:
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and dest.read_bytes() == source.read_bytes():
            continue
        shutil.copyfile(source, dest)
        written.append(rel)
    if merged != current:
        header = "# Integrations and the models they sync, in Nango's format (merged by `nango add`).\n"
        yaml_path.write_text(header + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True), encoding="utf-8")
        written.append("nango.yaml")
    return written


def init_from_template(path: Path, name: str) -> list[str]:
    """A new folder from a template, plus the .gitignore and .env example of `nango init`."""
    from orchestrator.cli.scaffold import DOTFILES, TEMPLATE

    template = get(name)
    clashes = [rel for _, rel in _files(template) if (path / rel).exists()]
    clashes += [n for n in ("nango.yaml", "models.py") if (path / n).exists()]
    if clashes:
        fail(f"{shown(path)} already has {', '.join(clashes)}; nothing written (choose an empty or new folder, "
             f"or `nango add {name}` inside an existing one)")
    written = []
    for source, rel in _files(template):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path / rel)
        written.append(rel)
    shutil.copyfile(template / "nango.yaml", path / "nango.yaml")
    written.append("nango.yaml")
    for source, rel in DOTFILES.items():  # the dotfiles of `nango init`
        if (TEMPLATE / source).is_file() and not (path / rel).exists():
            shutil.copyfile(TEMPLATE / source, path / rel)
            written.append(rel)
    return written


def templates(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """List the templates `nango init --template` and `nango add` start from."""
    found = available()
    if as_json:
        typer.echo(json.dumps([{"name": n, "description": describe(p)} for n, p in found.items()], indent=2))
        return
    width = max(len(n) for n in found)
    for name, folder in found.items():
        typer.echo(f"{name:<{width}}  {describe(folder)}")


def add(
    name: Annotated[str, typer.Argument(help="The template to add (see `nango templates`).")],
    force: Annotated[bool, typer.Option("--force", help="Replace scripts, models and files that differ.")] = False,
    path: Annotated[Path | None, typer.Option(
        "--path", help="The integrations folder (default: found from the current folder upwards).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Add a template's integration to an existing folder (merging nango.yaml, never overwriting without --force)."""
    from orchestrator.cli.scaffold import write_models
    from orchestrator.config.nango_yaml import ConfigError, load_config

    folder = discover_folder(path)
    template = get(name)
    with writing(folder.path):
        written = add_template(folder.path, template, force=force)
        try:
            write_models(folder.path, load_config(folder.yaml))
        except ConfigError as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"template": name, "written": written}, indent=2))
        return
    for rel in written:
        typer.echo(f"{'updated' if rel == 'nango.yaml' else 'created'} {shown(folder.path / rel)}")
    typer.echo(f"template {name!r} added; try `nango test --integration {name}`")
