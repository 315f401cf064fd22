"""`nango compile`: validate nango.yaml, then build one bundle per integration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.bundles.build import Bundle, ScriptEntry, build_bundle
from orchestrator.config.nango_yaml import IntegrationConfig, NangoConfig, load_config, script_module_path


def script_entries(key: str, integration: IntegrationConfig) -> list[ScriptEntry]:
    entries = [ScriptEntry(name, "sync", script_module_path(key, "syncs", name)) for name in integration.syncs]
    entries += [ScriptEntry(name, "action", script_module_path(key, "actions", name))
                for name in integration.actions]
    for event, scripts in integration.on_events.items():
        entries += [ScriptEntry(name, "event", script_module_path(key, "on-events", name)) for name in scripts
                    if event]
    return entries


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
    used = _models_used(integration)
    return {"scripts": scripts, "models": {m: config.models[m].raw for m in sorted(used) if m in config.models}}


def _models_used(integration: IntegrationConfig) -> set[str]:
    used: set[str] = set()
    for sync in integration.syncs.values():
        used.update(sync.output)
        if sync.input:
            used.add(sync.input)
    for action in integration.actions.values():
        for expr in (action.input, action.output):
            if expr:
                used.update(p.strip().removesuffix("[]") for p in expr.split("|"))
    return used


def compile_project(root: Path, config: NangoConfig | None = None) -> list[Bundle]:
    root = root.resolve()
    config = config or load_config(root / "nango.yaml")
    return [build_bundle(root, key, script_entries(key, integration), manifest_config(config, key))
            for key, integration in config.integrations.items()]
