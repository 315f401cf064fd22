"""Converting between the two forms: nango.yaml to code-first (`nango migrate-to-code`) and back
(`nango export-yaml`), so nothing is locked in either way.

To code: models become pydantic classes in models.py (a nested mapping is a class inside its model's
class, `__extends` is inheritance, `__string: T` is `__pydantic_extra__: dict[str, T]`), and each script
gains its `@sync` / `@action` / `@on_event` definition above its entry point. Comments of nango.yaml are
not carried over. Back: nango.yaml from the definitions, the decorators taken off the scripts and
models.py generated again by `nango generate`'s codegen.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from orchestrator.config.canonical import canonical_atoms, canonical_body, canonical_type
from orchestrator.config.code_first import ENTRY, GENERATED_MARK
from orchestrator.config.nango_yaml import (
    ActionConfig,
    EndpointSpec,
    ModelDef,
    ModelField,
    NangoConfig,
    SyncConfig,
    TypeAtom,
    parse_type,
)

MODELS_DOC = '"""The models of the integrations, code-first (`nango export-yaml` writes them to nango.yaml)."""'
_CONFIG = ('ConfigDict(\n    extra="allow", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True, '
           "protected_namespaces=()\n)")
_IMPORTS = {"Any": "typing", "Literal": "typing", "BaseModel": "pydantic", "ConfigDict": "pydantic",
            "Field": "pydantic", "Date": "orchestrator.sdk", "Nullable": "orchestrator.sdk"}
_BUILTINS = {"str", "int", "float", "bool", "list", "dict", "None"}
_BASEMODEL_ATTRS = frozenset(dir(BaseModel))


def q(text: str) -> str:
    """A Python string literal (double quotes, as the project's style)."""
    return json.dumps(text, ensure_ascii=False)


@dataclass
class PyTypes:
    """nango.yaml types to Python annotations; records what the module must import."""

    models: set[str] | dict[str, Any]
    names: dict[str, str] = field(default_factory=lambda: {n: n for n in _IMPORTS})
    used: set[str] = field(default_factory=set)
    models_used: set[str] = field(default_factory=set)

    def name(self, wanted: str) -> str:
        self.used.add(wanted)
        return self.names[wanted]

    def atom(self, atom: TypeAtom) -> str:
        if atom.kind == "alias":
            base = {"string": "str", "integer": "int", "number": "int | float", "boolean": "bool",
                    "date": "", "object": "", "any": ""}[str(atom.value)]
            if atom.value == "date":
                base = self.name("Date")
            elif atom.value == "object":
                base = f"dict[str, {self.name('Any')}]"
            elif atom.value == "any":
                base = self.name("Any")
        elif atom.kind == "model":
            base = str(atom.value)
            self.models_used.add(base)
        else:
            base = "None"
        return self.wrap(base, atom.array)

    @staticmethod
    def wrap(base: str, depth: int) -> str:
        for _ in range(depth):
            base = f"list[{base}]"
        return base

    def render(self, atoms: list[TypeAtom]) -> str:
        parts: list[str] = []
        done: set[int] = set()
        for atom in atoms:
            if atom.kind != "literal":
                parts.append(self.atom(atom))
                continue
            if atom.array in done:
                continue
            done.add(atom.array)
            values = [a.value for a in atoms if a.kind == "literal" and a.array == atom.array]
            literal = f"{self.name('Literal')}[{', '.join(q(v) if isinstance(v, str) else repr(v) for v in values)}]"
            parts.append(self.wrap(literal, atom.array))
        return " | ".join(parts)

    def expr(self, expr: str) -> str:
        """An input or output type expression."""
        atoms, _ = canonical_atoms(parse_type(expr, self.models))
        return self.render(atoms)


class _Models:
    """models.py in code-first form."""

    def __init__(self, config: NangoConfig) -> None:
        self.config = config
        self.types = PyTypes(config.models)
        self.taken = set(config.models) | _BUILTINS
        for name in _IMPORTS:
            alias = name
            while alias in self.taken:
                alias = f"_{alias}"
            self.types.names[name] = alias
            self.taken.add(alias)

    def attr(self, key: str, used: set[str]) -> str:
        name = re.sub(r"[^0-9A-Za-z_]", "_", key).lstrip("_") or "field"
        if name[0].isdigit():
            name = f"field_{name}"
        while (keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in _BASEMODEL_ATTRS
               or name in self.taken or name in used):
            name = f"{name}_"
        used.add(name)
        return name

    def class_lines(self, mdef: ModelDef, name: str, indent: str) -> list[str]:
        bases = ", ".join(mdef.extends) or self.types.name("BaseModel")
        lines = [f"{indent}class {name}({bases}):", f"{indent}    model_config = _config"]
        body: list[str] = []
        nested_classes: list[str] = []
        used: set[str] = set()
        keys = [f.name for f in mdef.fields]
        plain = {k for k in keys if k.isidentifier() and k == self.attr(k, set())}
        used |= plain
        for fdef in mdef.fields:
            attr = fdef.name if fdef.name in plain else self.attr(fdef.name, used)
            annotation, optional, nested = self.field(fdef, attr, used, indent + "    ")
            nested_classes += ["", *nested] if nested else []
            args = (["None"] if optional else []) + ([f"alias={q(fdef.name)}"] if attr != fdef.name else [])
            if attr != fdef.name:
                default = f" = {self.types.name('Field')}({', '.join(args)})"
            else:
                default = " = None" if optional else ""
            body.append(f"{indent}    {attr}: {annotation}{default}")
        if mdef.string_map is not None:
            annotation, _, nested = self.field(mdef.string_map, "value", used, indent + "    ")
            nested_classes += ["", *nested] if nested else []
            body.append(f"{indent}    __pydantic_extra__: dict[str, {annotation}] = "
                        f"{self.types.name('Field')}(init=False)")
        return lines + nested_classes + ([""] if nested_classes and body else []) + body

    def field(self, fdef: ModelField, attr: str, used: set[str], indent: str) -> tuple[str, bool, list[str]]:
        """(annotation, optional, lines of a nested class to put before it)."""
        if fdef.nested_model is not None:
            cls = self.attr(attr[:1].upper() + attr[1:], used)
            lines = self.class_lines(fdef.nested_model, cls, indent)
            annotation = f"list[{cls}]" if fdef.type.endswith("[]") else cls
            return (f"{annotation} | None" if fdef.optional else annotation), fdef.optional, lines
        atoms, undefined = canonical_atoms(parse_type(fdef.type, self.config.models))
        optional = fdef.optional or undefined
        if not atoms:
            return self.types.name("Any"), True, []
        nullable = any(a.kind == "null" for a in atoms)
        if not optional:
            return self.types.render(atoms), False, []
        if nullable:
            rest = [a for a in atoms if a.kind != "null"]
            return f"{self.types.name('Nullable')}[{self.types.render(rest) or 'None'}]", True, []
        return f"{self.types.render(atoms)} | None", True, []

    def ordered(self) -> list[str]:
        out: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in out or name in path or name not in self.config.models:
                return
            for parent in self.config.models[name].extends:
                visit(parent, (*path, name))
            out.append(name)

        for name in self.config.models:
            visit(name, ())
        return out

    def render(self) -> str:
        classes: list[str] = []
        for name in self.ordered():
            classes += ["", "", *self.class_lines(self.config.models[name], name, "")]
        lines = [MODELS_DOC, "", "from __future__ import annotations", ""]
        by_module: dict[str, list[str]] = {}
        for name in ("Any", "Literal", "BaseModel", "ConfigDict", "Field", "Date", "Nullable"):
            if name in self.types.used or name == "ConfigDict":
                alias = self.types.names[name]
                by_module.setdefault(_IMPORTS[name], []).append(name if alias == name else f"{name} as {alias}")
        for module in ("typing", "pydantic"):
            if module in by_module:
                lines += [f"from {module} import {', '.join(by_module[module])}", ""]
        lines.pop()
        if "orchestrator.sdk" in by_module:
            lines += ["", f"from orchestrator.sdk import {', '.join(by_module['orchestrator.sdk'])}"]
        lines += ["", "# Unknown keys are kept; attributes named differently from their key serialise by alias.",
                  f"_config = {_CONFIG.replace('ConfigDict', self.types.names['ConfigDict'])}"]
        return "\n".join(lines + classes) + "\n"


def models_source(config: NangoConfig) -> str:
    """models.py of the code-first form: every model of `config` as a pydantic class."""
    models = _Models(config)
    models.types.used.add("BaseModel")
    return models.render()


# --------------------------------------------------------------------------- script definitions


@dataclass
class Definition:
    """The decorator a script gains, and the imports it needs."""

    lines: list[str]
    sdk: set[str]
    models: set[str]
    typing: set[str]


def _endpoint(spec: EndpointSpec) -> str:
    if spec.group is None:
        return q(f"{spec.method} {spec.path}")
    return f"Endpoint({q(spec.method)}, {q(spec.path)}, group={q(spec.group)})"


def _list(items: list[str]) -> str:
    return f"[{', '.join(items)}]"


def definition(kind: str, name: str, stem: str, config: NangoConfig,
               item: SyncConfig | ActionConfig | list[str]) -> Definition:
    types = PyTypes(config.models)
    args: list[tuple[str, str]] = []
    if name != stem:
        args.append(("name", q(name)))
    sdk: set[str] = set()
    if isinstance(item, SyncConfig):
        deco = "sync"
        args += [("frequency", q(item.runs)), ("models", _list(item.output))]
        types.models_used.update(item.output)
        if item.endpoints:
            args.append(("endpoints", _list([_endpoint(e) for e in item.endpoints])))
        if item.sync_type != "full":
            args.append(("sync_type", q(item.sync_type)))
        if item.track_deletes:
            args.append(("track_deletes", "True"))
        if not item.auto_start:
            args.append(("auto_start", "False"))
        if item.input:
            args.append(("input", types.expr(item.input)))
        endpoints = item.endpoints
    elif isinstance(item, ActionConfig):
        deco = "action"
        for key in ("input", "output"):
            expr = getattr(item, key)
            if expr:
                args.append((key, types.expr(expr)))
        if item.endpoints:
            rendered = [_endpoint(e) for e in item.endpoints]
            args.append(("endpoint", rendered[0] if len(rendered) == 1 else _list(rendered)))
        endpoints = item.endpoints
    else:
        lines = [f"@on_event({', '.join(q(e) for e in item)}{', name=' + q(name) if name != stem else ''})"]
        return Definition(lines, {"on_event"}, set(), set())
    for key in ("scopes",):
        values = getattr(item, key)
        if values:
            args.append((key, _list([q(v) for v in values])))
    for key in ("version", "description"):
        value = getattr(item, key)
        if value is not None:
            args.append((key, q(value)))
    if isinstance(item, SyncConfig) and item.webhook_subscriptions:
        args.append(("webhook_subscriptions", _list([q(v) for v in item.webhook_subscriptions])))
    sdk.add(deco)
    if any(e.group is not None for e in endpoints):
        sdk.add("Endpoint")
    sdk |= {n for n in ("Date", "Nullable") if n in types.used}
    lines = [f"@{deco}(", *(f"    {k}={v}," for k, v in args), ")"]
    return Definition(lines, sdk, types.models_used & set(config.models),
                      {n for n in ("Any", "Literal") if n in types.used})


class ConvertError(Exception):
    """A script cannot take its definition (no entry point to decorate); the message names the file."""


def add_definition(source: str, path: str, kind: str, deco: Definition) -> str:
    """The script's source with the definition above its entry point and the imports it needs."""
    tree = ast.parse(source)
    entry = ENTRY[kind]
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == entry]
    if not defs:
        raise ConvertError(f"{path}: no '{entry}' to put the definition on; add the entry point first")
    target = defs[-1]
    lines = source.splitlines(keepends=True)
    at = (target.decorator_list[0].lineno if target.decorator_list else target.lineno) - 1
    lines[at:at] = [line + "\n" for line in deco.lines]
    imports = []
    for module, names in (("typing", deco.typing), ("models", deco.models), ("orchestrator.sdk", deco.sdk)):
        if names and not _extend_import(tree, lines, module, names):
            imports.append(_import_line(module, names))
    before = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom) and n.lineno < target.lineno]
    if before:
        where = max(n.end_lineno or n.lineno for n in before)
    elif (tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant)
          and isinstance(tree.body[0].value.value, str)):
        where = tree.body[0].end_lineno or 1
        imports = ["\n", *imports]
    else:
        where = 0
    lines[where:where] = imports
    return "".join(lines)


def _import_line(module: str, names: set[str]) -> str:
    return f"from {module} import {', '.join(sorted(names, key=lambda n: (n[:1].islower(), n)))}\n"


def _extend_import(tree: ast.Module, lines: list[str], module: str, names: set[str]) -> bool:
    """Add `names` to the script's own one-line `from module import ...`, if it has one."""
    for node in tree.body:
        if (isinstance(node, ast.ImportFrom) and node.module == module and not node.level
                and node.lineno == node.end_lineno and all(a.asname is None for a in node.names)):
            have = {a.name for a in node.names}
            indent = lines[node.lineno - 1][: node.col_offset]
            lines[node.lineno - 1] = indent + _import_line(module, have | names)
            return True
    return False


def strip_definitions(source: str) -> str:
    """The script without its `@sync` / `@action` / `@on_event` decorator (its imports stay: harmless)."""
    tree = ast.parse(source)
    drop: set[int] = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name in ENTRY:
                drop.update(range(deco.lineno, (deco.end_lineno or deco.lineno) + 1))
    return "".join(line for i, line in enumerate(source.splitlines(keepends=True), 1) if i not in drop)


# --------------------------------------------------------------------------- back to nango.yaml


def _endpoints_yaml(endpoints: list[EndpointSpec]) -> list[Any]:
    return [f"{e.method} {e.path}" if e.group is None else {"method": e.method, "path": e.path, "group": e.group}
            for e in endpoints]


def yaml_source(config: NangoConfig) -> str:
    """nango.yaml of the definitions: everything the manifest carries, types in canonical form."""
    integrations: dict[str, Any] = {}
    for key, integration in config.integrations.items():
        entry: dict[str, Any] = {}
        if integration.syncs:
            entry["syncs"] = {name: _sync_yaml(s, config) for name, s in integration.syncs.items()}
        if integration.actions:
            entry["actions"] = {name: _action_yaml(a, config) for name, a in integration.actions.items()}
        if integration.on_events:
            entry["on-events"] = {event: list(names) for event, names in integration.on_events.items()}
        integrations[key] = entry
    models = {name: canonical_body(mdef, config.models) for name, mdef in config.models.items()}
    doc = {"integrations": integrations, "models": models}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def _sync_yaml(sync: SyncConfig, config: NangoConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": sync.runs, "output": list(sync.output)}
    if sync.endpoints:
        out["endpoint"] = _endpoints_yaml(sync.endpoints)
    if sync.sync_type != "full":
        out["sync_type"] = sync.sync_type
    if sync.track_deletes:
        out["track_deletes"] = True
    if not sync.auto_start:
        out["auto_start"] = False
    if sync.input:
        out["input"] = canonical_type(sync.input, config.models)
    _common(out, sync.scopes, sync.version, sync.description)
    if sync.webhook_subscriptions:
        out["webhook-subscriptions"] = list(sync.webhook_subscriptions)
    return out


def _action_yaml(action: ActionConfig, config: NangoConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("input", "output"):
        expr = getattr(action, key)
        if expr:
            out[key] = canonical_type(expr, config.models)
    if action.endpoints:
        out["endpoint"] = _endpoints_yaml(action.endpoints)
    _common(out, action.scopes, action.version, action.description)
    return out


def _common(out: dict[str, Any], scopes: list[str], version: str | None, description: str | None) -> None:
    if scopes:
        out["scopes"] = list(scopes)
    if version is not None:
        out["version"] = version
    if description is not None:
        out["description"] = description


__all__ = ["GENERATED_MARK", "ConvertError", "add_definition", "definition", "models_source", "strip_definitions",
           "yaml_source"]
