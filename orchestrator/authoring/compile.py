"""`nango compile`: validate nango.yaml, check the scripts, then build one bundle per integration."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.authoring.checks import declared_scripts, raise_on_problems
from orchestrator.bundles.build import Bundle, ScriptEntry, build_bundle
from orchestrator.config.nango_yaml import IntegrationConfig, ModelDef, NangoConfig, load_config, parse_type


def script_entries(config: NangoConfig, key: str) -> list[ScriptEntry]:
    return [ScriptEntry(s.name, s.kind, s.module_path) for s in declared_scripts(config, [key])]


def manifest_config(config: NangoConfig, key: str) -> dict[str, Any]:
    integration = config.integrations[key]
    scripts: dict[str, Any] = {}
    for name, sync in integration.syncs.items():
        scripts[f"sync:{name}"] = sync.model_dump(mode="json")
    for name, action in integration.actions.items():
        scripts[f"action:{name}"] = action.model_dump(mode="json")
    for event, names in integration.on_events.items():
        for name in names:
            scripts[f"event:{name}"] = {"name": name, "event": event}
    used = models_used(config, integration)
    return {"scripts": scripts, "models": {m: config.models[m].raw for m in sorted(used)}}


def models_used(config: NangoConfig, integration: IntegrationConfig) -> set[str]:
    """Models an integration's syncs and actions name as input or output (not their references)."""
    used: set[str] = set()
    for sync in integration.syncs.values():
        used.update(sync.output)
        if sync.input:
            used.update(_names(sync.input))
    for action in integration.actions.values():
        for expr in (action.input, action.output):
            if expr:
                used.update(_names(expr))
    return _closure(config, {m for m in used if m in config.models})


def _closure(config: NangoConfig, names: set[str]) -> set[str]:
    """The models plus every model they extend or reference, transitively."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in config.models:
            continue
        seen.add(name)
        todo.extend(_references(config, config.models[name]))
    return seen


def _references(config: NangoConfig, mdef: ModelDef) -> list[str]:
    refs = list(mdef.extends)
    fields = [*mdef.fields, *([mdef.string_map] if mdef.string_map else [])]
    for fdef in fields:
        if fdef.nested_model is not None:
            refs.extend(_references(config, fdef.nested_model))
        else:
            refs.extend(str(a.value) for a in parse_type(fdef.type, config.models) if a.kind == "model")
    return refs


def _names(expr: str) -> set[str]:
    out: set[str] = set()
    for part in expr.split("|"):
        base = part.strip()
        while base.endswith("[]"):
            base = base[:-2].rstrip()
        out.add(base)
    return out


def compile_project(root: Path, config: NangoConfig | None = None, *,
                    integrations: Iterable[str] | None = None) -> list[Bundle]:
    """Check every script (raising ScriptCheckError with all problems) and build the bundles."""
    root = root.resolve()
    config = config or load_config(root / "nango.yaml")
    keys = list(integrations) if integrations is not None else list(config.integrations)
    raise_on_problems(root, config, keys)
    return [build_bundle(root, key, script_entries(config, key), manifest_config(config, key)) for key in keys]
