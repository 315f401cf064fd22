"""What `nango init` and `nango generate` write: the example folder, models.py and script stubs."""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.authoring.checks import Script, declared_scripts
from orchestrator.config.code_first import has_code_models
from orchestrator.config.codegen import generate_models_py
from orchestrator.config.nango_yaml import NangoConfig
from orchestrator.sdk import contract

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "init"
# Package data skips dotfiles, so the template stores them without the dot.
DOTFILES = {"gitignore": ".gitignore", "env.example": ".env.example"}


class FilesExist(Exception):
    """`nango init` would overwrite these files (relative paths, comma-separated in the message)."""


def write_models(folder: Path, config: NangoConfig) -> bool:
    """(Re)write models.py from nango.yaml; False when it was already up to date, or when it is the
    folder's code-first models (written by hand: the definition itself, never overwritten)."""
    target = folder / "models.py"
    if has_code_models(folder):
        return False
    source = generate_models_py(config)
    if target.is_file() and target.read_text(encoding="utf-8") == source:
        return False
    target.write_text(source, encoding="utf-8")
    return True


def template_files() -> list[tuple[Path, str]]:
    """(template file, path inside the new folder) for every file of the init template."""
    out: list[tuple[Path, str]] = []
    for file in sorted(TEMPLATE.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
            rel = file.relative_to(TEMPLATE).as_posix()
            out.append((file, DOTFILES.get(rel, rel)))
    return out


def init_folder(target: Path) -> list[str]:
    """Copy the example into `target` (new or without any of its files); returns what was written.
    Raises FilesExist naming the files that are already there."""
    files = template_files()
    clashes = [rel for _, rel in files if (target / rel).exists()]
    if (target / "models.py").exists():
        clashes.append("models.py")
    if clashes:
        raise FilesExist(", ".join(clashes))
    written: list[str] = []
    for source, rel in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        written.append(rel)
    return written


# --------------------------------------------------------------------------- stubs


def _model(config: NangoConfig, expr: str | None) -> str | None:
    """The model an input/output expression names, when it is exactly one model."""
    if expr and expr.strip() in config.models:
        return expr.strip()
    return None


def stub_source(config: NangoConfig, script: Script) -> str:
    integration = config.integrations[script.integration]
    if script.kind == "sync":
        sync = integration.syncs[script.name]
        about = sync.description
        imports = sorted(set(sync.output))
        first = sync.output[0]
        body = [
            f"{contract.entry_point('sync').signature}:",
            "    # Fetch from the provider's API and save what it returns, for example:",
            '    #     async for page in nango.paginate("/items", retries=3):',
            f'    #         await nango.batch_save([{first}.model_validate(item) for item in page], "{first}")',
            f'    raise NotImplementedError("sync {script.name!r} is not written yet")',
        ]
        if sync.webhook_subscriptions:
            body += [
                "",
                "",
                f"{contract.entry_point('webhook').signature}:",
                f"    # Called with each incoming webhook of: {', '.join(sync.webhook_subscriptions)}",
                f'    raise NotImplementedError("on_webhook of sync {script.name!r} is not written yet")',
            ]
        sdk = "NangoSync"
    elif script.kind == "action":
        action = integration.actions[script.name]
        about = action.description
        in_model, out_model = _model(config, action.input), _model(config, action.output)
        imports = sorted({m for m in (in_model, out_model) if m})
        out_type = out_model or ("dict" if action.output else "None")
        body = [
            f"{contract.entry_point('action').typed(in_model or 'dict', out_type)}:",
            f'    raise NotImplementedError("action {script.name!r} is not written yet")',
        ]
        sdk = "NangoAction"
    else:
        events = [e for e, names in integration.on_events.items() if script.name in names]
        about = f"runs on {', '.join(events)}"
        imports = []
        body = [
            f"{contract.entry_point('event').signature}:",
            f'    raise NotImplementedError("event script {script.name!r} is not written yet")',
        ]
        sdk = "NangoAction"
    title = f"{script.kind.capitalize()} {script.name!r} of integration {script.integration!r}"
    if about:
        title += ": " + " ".join(about.split()).replace("\\", "/").replace('"', "'")
    lines = [f'"""{title.rstrip(".")}."""', ""]
    if imports:
        lines += [f"from models import {', '.join(imports)}", ""]
    lines += [f"from orchestrator.sdk import {sdk}", "", "", *body]
    return "\n".join(lines) + "\n"


def generate_stubs(folder: Path, config: NangoConfig) -> list[str]:
    """A stub for each declared script without a module; existing files are never touched."""
    created: list[str] = []
    for script in declared_scripts(config):
        target = folder / script.module_path
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(stub_source(config, script), encoding="utf-8")
        created.append(script.module_path)
    return created
