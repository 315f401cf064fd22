"""JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it) from nango.yaml models and type expressions.

Deploy manifests carry the raw model definitions (`config.models`); they are parsed again with the
nango.yaml parser so aliases, literals, `__extends`, `__string` and nested mappings mean exactly
what they mean to `nango generate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from orchestrator.config.nango_yaml import ConfigError, ModelDef, ModelField, NangoConfig, parse_config, parse_type

Ref = Callable[[str], str]

_ALIASES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date-time"},
    "object": {"type": "object"},
    "any": {},
}


def parse_models(raw: dict[str, Any]) -> NangoConfig:
    """The models of a manifest's `config.models` as the parser reads them ({} when unreadable)."""
    text = yaml.safe_dump({"integrations": {}, "models": raw or {}}, sort_keys=False, allow_unicode=True)
    try:
        return parse_config(text, "manifest models")
    except ConfigError:
        return NangoConfig()


def _default_ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def type_schema(expr: str, models: set[str] | dict[str, Any], ref: Ref = _default_ref) -> dict[str, Any]:
    """The schema of a type expression ("string | null", "Issue[]", "'open' | 'closed'")."""
    alternatives: list[dict[str, Any]] = []
    for atom in parse_type(expr, models):
        if atom.kind == "undefined":
            continue
        if atom.kind == "alias":
            schema: dict[str, Any] = dict(_ALIASES.get(str(atom.value), {}))
        elif atom.kind == "model":
            schema = {"$ref": ref(str(atom.value))}
        elif atom.kind == "null":
            schema = {"type": "null"}
        else:
            schema = {"const": atom.value}
        for _ in range(atom.array):
            schema = {"type": "array", "items": schema}
        if schema not in alternatives:
            alternatives.append(schema)
    if not alternatives:
        return {}
    if len(alternatives) == 1:
        return alternatives[0]
    if all(set(a) == {"const"} for a in alternatives):
        return {"enum": [a["const"] for a in alternatives]}
    return {"anyOf": alternatives}


def _optional(fdef: ModelField, models: set[str]) -> bool:
    return fdef.optional or any(a.kind == "undefined" for a in parse_type(fdef.type, models))


def field_schema(fdef: ModelField, models: set[str], ref: Ref = _default_ref) -> dict[str, Any]:
    if fdef.nested_model is not None:
        inner = _object_schema(fdef.nested_model.fields, fdef.nested_model.string_map, models, ref)
        return {"type": "array", "items": inner} if fdef.type.endswith("[]") else inner
    return type_schema(fdef.type, models, ref)


def _object_schema(fields: list[ModelField], string_map: ModelField | None, models: set[str],
                   ref: Ref) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object",
                              "properties": {f.name: field_schema(f, models, ref) for f in fields}}
    required = [f.name for f in fields if not _optional(f, models)]
    if required:
        schema["required"] = required
    if string_map is not None:
        schema["additionalProperties"] = field_schema(string_map, models, ref)
    return schema


def model_schema(config: NangoConfig, name: str, ref: Ref = _default_ref) -> dict[str, Any]:
    """One model as an object schema, `__extends` resolved (parents' fields first)."""
    models = set(config.models)
    mdef: ModelDef = config.models[name]
    schema = _object_schema(config.model_fields_of(name), config.string_map_of(name), models, ref)
    schema["title"] = name
    if mdef.extends:
        schema["x-nango-extends"] = list(mdef.extends)
    return schema


def all_model_schemas(config: NangoConfig, ref: Ref = _default_ref) -> dict[str, dict[str, Any]]:
    return {name: model_schema(config, name, ref) for name in config.models}
