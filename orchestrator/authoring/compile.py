"""`nango compile`: validate the definitions (nango.yaml, code-first or both), check the scripts, then build
one bundle per integration."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.authoring.checks import declared_scripts, raise_on_problems
from orchestrator.bundles.build import Bundle, ScriptEntry, build_bundle
from orchestrator.config.canonical import canonical_body, canonical_type
from orchestrator.config.nango_yaml import EVENTS, IntegrationConfig, ModelDef, NangoConfig, parse_type
from orchestrator.config.project import load_project


def script_entries(config: NangoConfig, key: str) -> list[ScriptEntry]:
    """The integration's scripts, syncs then actions then event scripts, each by name: the same order
    whichever form (nango.yaml, code-first) declared them."""
    order = {"sync": 0, "action": 1, "event": 2}
    entries = [ScriptEntry(s.name, s.kind, s.module_path) for s in declared_scripts(config, [key])]
    return sorted(entries, key=lambda e: (order.get(e.kind, 3), e.name))


def manifest_config(config: NangoConfig, key: str) -> dict[str, Any]:
    """What the bundle declares: types and models in canonical form (`config/canonical.py`), so nango.yaml
    and code-first definitions of the same things give the same manifest."""
    integration = config.integrations[key]
    scripts: dict[str, Any] = {}
    for name, sync in integration.syncs.items():
        scripts[f"sync:{name}"] = _typed(sync.model_dump(mode="json"), config, ("input",))
    for name, action in integration.actions.items():
        scripts[f"action:{name}"] = _typed(action.model_dump(mode="json"), config, ("input", "output"))
    events: dict[str, list[str]] = {}
    for event in sorted(integration.on_events, key=lambda e: EVENTS.index(e) if e in EVENTS else len(EVENTS)):
        for name in integration.on_events[event]:
            events.setdefault(name, []).append(event)
    for name, listed in events.items():
        # "event" stays the first one, as manifests always had it; "events" only when the script has several
        scripts[f"event:{name}"] = {"name": name, "event": listed[0], **({"events": listed} if len(listed) > 1 else {})}
    used = models_used(config, integration)
    return {"scripts": scripts,
            "models": {m: canonical_body(config.models[m], config.models) for m in sorted(used)}}


def _typed(script: dict[str, Any], config: NangoConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    for key in keys:
        if script.get(key):
            script[key] = canonical_type(script[key], config.models)
    return script


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
    config = config or load_project(root)
    keys = list(integrations) if integrations is not None else list(config.integrations)
    raise_on_problems(root, config, keys)
    return [build_bundle(root, key, script_entries(config, key), manifest_config(config, key)) for key in keys]
