"""nango.yaml: schema, parser and validation, in Nango's format (`integrations:` + `models:`).

We walk the node tree from `yaml.compose` ourselves instead of loading plain dicts so every
problem can name its line and column, and so all problems are reported at once: a user fixing a
config should not have to run `nango validate` once per typo. Keys are read as written (YAML 1.2
style, like Nango's js-yaml): `on:` or `yes:` stay strings instead of becoming booleans.
"""

from __future__ import annotations

import difflib
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from orchestrator.config.schedule import ScheduleError, parse_schedule
from orchestrator.errors import InvalidInputError

ScriptKind = Literal["syncs", "actions", "on-events"]

TOP_KEYS = ("integrations", "models")
INTEGRATION_KEYS = ("syncs", "actions", "on-events", "post-connection-scripts")
SYNC_KEYS = (
    "runs",
    "output",
    "endpoint",
    "endpoints",
    "sync_type",
    "track_deletes",
    "auto_start",
    "input",
    "scopes",
    "version",
    "description",
    "webhook-subscriptions",
)
ACTION_KEYS = ("endpoint", "input", "output", "scopes", "version", "description")
ENDPOINT_KEYS = ("method", "path", "group")
EVENTS = ("post-connection-creation", "pre-connection-deletion", "validate-connection")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# Nango's type aliases (nango-yaml `typesAliases`), matched case-insensitively, to our canonical names.
TYPE_ALIASES: dict[str, str] = {
    "string": "string",
    "char": "string",
    "varchar": "string",
    "number": "number",
    "float": "number",
    "integer": "integer",
    "int": "integer",
    "bigint": "integer",
    "boolean": "boolean",
    "bool": "boolean",
    "date": "date",
    "object": "object",
    "any": "any",
    "array": "array",
}

_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCRIPT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_INT = re.compile(r"^-?\d+$")
# What a reference to a model looks like: a capitalised identifier with a lower-case letter.
# ALL_CAPS words (`EUR`, `ACTIVE`) are literals in the corpus, so they never count as models.
_MODEL_LIKE = re.compile(r"^[A-Z][A-Za-z0-9_]*[a-z][A-Za-z0-9_]*$")
_GENERIC = re.compile(r"^[A-Za-z]+<")
# Builtins the generated models.py uses in annotations; a class with one of these names would shadow it.
_RESERVED_MODEL_NAMES = frozenset(("str", "int", "float", "bool", "list", "dict"))


class ConfigIssue(BaseModel):
    """One problem in a config file, located like a compiler error."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(InvalidInputError):
    """nango.yaml is invalid; carries every issue found, not just the first."""

    terminal = True
    code = "invalid_config"

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[ConfigIssue]]]:
        return (type(self), (self.issues,))


class EndpointSpec(BaseModel):
    """An HTTP endpoint a sync's records or an action are served on."""

    method: str
    path: str
    group: str | None = None

    def key(self) -> str:
        return f"{self.method} {self.path}"


class SyncConfig(BaseModel):
    """A sync as declared; `runs` is kept as written, `interval_seconds` is what schedules use.
    `output` is a list because Nango lets one sync write several models (one endpoint each);
    `input` is the type of its metadata, a model name or any type expression."""

    name: str
    runs: str
    interval_seconds: int
    output: list[str]
    endpoints: list[EndpointSpec]
    sync_type: Literal["incremental", "full"] = "full"
    track_deletes: bool = False
    auto_start: bool = True
    input: str | None = None
    scopes: list[str] = []
    version: str | None = None
    description: str | None = None
    webhook_subscriptions: list[str] = []


class ActionConfig(BaseModel):
    """An action as declared; `input`/`output` are type expressions ("Issue", "Issue[]",
    "string", "A | B"); an output given as a YAML list becomes a union."""

    name: str
    input: str | None = None
    output: str | None = None
    endpoints: list[EndpointSpec] = []
    scopes: list[str] = []
    version: str | None = None
    description: str | None = None


class IntegrationConfig(BaseModel):
    """The scripts of one integration; `unique_key` is the key under `integrations:`."""

    unique_key: str
    syncs: dict[str, SyncConfig] = {}
    actions: dict[str, ActionConfig] = {}
    # event name -> script names; legacy `post-connection-scripts` land in "post-connection-creation".
    on_events: dict[str, list[str]] = {}


class ModelField(BaseModel):
    """One field of a model. `type` is the expression as written ("string | null", "Foo[]");
    a nested mapping has type "object" ("object[]" for a list of them), its raw mapping in
    `nested` and its parsed form in `nested_model`."""

    name: str
    type: str
    optional: bool = False
    nested: dict[str, Any] | None = None
    nested_model: ModelDef | None = None
    line: int = 0
    col: int = 0


class ModelDef(BaseModel):
    """A model of the `models:` section (or a nested mapping inside one, `synthetic=True`)."""

    name: str
    fields: list[ModelField] = []
    extends: list[str] = []
    # `__string: T`: any other key maps to T (TypeScript's `[key: string]: T`).
    string_map: ModelField | None = None
    raw: dict[str, Any] = {}
    line: int = 0
    synthetic: bool = False


class NangoConfig(BaseModel):
    """A parsed, validated nango.yaml."""

    integrations: dict[str, IntegrationConfig] = {}
    models: dict[str, ModelDef] = {}
    # Things Nango accepts with a warning (e.g. an undefined model name read as a string literal).
    warnings: list[ConfigIssue] = []

    def model_fields_of(self, model: str) -> list[ModelField]:
        """Fields of `model` with `__extends` resolved: parents' fields first, own fields override."""
        out: dict[str, ModelField] = {}
        seen: set[str] = set()

        def collect(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            mdef = self.models[name]
            for parent in mdef.extends:
                if parent in self.models:
                    collect(parent)
            for f in mdef.fields:
                out[f.name] = f

        if model not in self.models:
            raise KeyError(f"unknown model {model!r}")
        collect(model)
        return list(out.values())

    def string_map_of(self, model: str) -> ModelField | None:
        """The `__string` entry of `model` or of the nearest model it extends."""
        seen: set[str] = set()
        todo = [model]
        while todo:
            name = todo.pop(0)
            if name in seen or name not in self.models:
                continue
            seen.add(name)
            if self.models[name].string_map is not None:
                return self.models[name].string_map
            todo.extend(self.models[name].extends)
        return None


ModelField.model_rebuild()


@dataclass(frozen=True)
class TypeAtom:
    """One alternative of a type expression: `kind` says how to read `value`; `array` is the `[]` depth."""

    kind: Literal["alias", "model", "literal", "null", "undefined"]
    value: str | int | bool | None
    array: int = 0


def parse_type(expr: str, models: set[str] | dict[str, Any]) -> list[TypeAtom]:
    """Split a type expression into alternatives, resolved in Nango's order:
    alias, native literal (int, true/false, null/undefined), model, else string literal."""
    atoms: list[TypeAtom] = []
    for part in expr.split("|"):
        base = part.strip()
        depth = 0
        while base.endswith("[]"):
            base = base[:-2].rstrip()
            depth += 1
        low = base.lower()
        if low in TYPE_ALIASES:
            alias = TYPE_ALIASES[low]
            if alias == "array":
                atoms.append(TypeAtom("alias", "any", depth + 1))
            else:
                atoms.append(TypeAtom("alias", alias, depth))
        elif _INT.match(base):
            atoms.append(TypeAtom("literal", int(base), depth))
        elif low in ("true", "false"):
            atoms.append(TypeAtom("literal", low == "true", depth))
        elif low in ("null", "undefined"):
            atoms.append(TypeAtom("null" if low == "null" else "undefined", None, depth))
        elif base in models:
            atoms.append(TypeAtom("model", base, depth))
        elif len(base) >= 2 and base[0] == base[-1] and base[0] in "'\"":
            atoms.append(TypeAtom("literal", base[1:-1], depth))
        else:
            atoms.append(TypeAtom("literal", base, depth))
    return atoms


def script_module_path(integration: str, kind: ScriptKind, name: str) -> str:
    """Where a script lives in the integrations folder: "github/syncs/get_issue.py" for `get-issue`."""
    return f"{integration}/{kind}/{name.replace('-', '_')}.py"


def load_config(path: str | Path) -> NangoConfig:
    """Read and parse a nango.yaml; messages name the path as given."""
    return parse_config(Path(path).read_text(encoding="utf-8"), filename=str(path))


def parse_config(text: str, filename: str = "nango.yaml") -> NangoConfig:
    """Parse and validate a nango.yaml text; raises ConfigError listing every issue found."""
    ctx = Ctx(filename)
    return parse_composed(ctx, ctx.compose(text))


class SourceMark(yaml.Mark):
    """Where a node built from another file comes from (a code-first definition): issues name that file."""


def parse_composed(ctx: Ctx, root: yaml.Node | None) -> NangoConfig:
    """Validate a composed document whose issues so far are in `ctx` (nango.yaml, code-first, or both)."""
    config = NangoConfig()
    if root is not None:
        _Parser(ctx, config).run(root)
    elif not ctx.issues:
        ctx.add(None, "the file is empty; expected 'integrations' and 'models'")
    if ctx.issues:
        raise ConfigError(sorted(ctx.issues, key=lambda i: (i.file != ctx.filename, i.file, i.line, i.col)))
    config.warnings = sorted(ctx.warnings, key=lambda i: (i.file != ctx.filename, i.file, i.line, i.col))
    return config


# --------------------------------------------------------------------------- internals


def _suggest(word: str, candidates: Any) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _raw(node: yaml.Node) -> Any:
    """A node as plain data with scalars kept as the text written (type expressions stay strings)."""
    if isinstance(node, yaml.MappingNode):
        return {str(k.value): _raw(v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    if isinstance(node, yaml.SequenceNode):
        return [_raw(item) for item in node.value]
    if _is_null(node):
        return "null"
    return node.value


@dataclass
class Ctx:
    filename: str
    issues: list[ConfigIssue] = field(default_factory=list)
    warnings: list[ConfigIssue] = field(default_factory=list)

    def add(self, node: yaml.Node | None, message: str, warning: bool = False) -> None:
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (1, 1)
        mark = node.start_mark if node is not None else None
        file = mark.name if isinstance(mark, SourceMark) else self.filename
        issue = ConfigIssue(file=file, line=line, col=col, message=message)
        (self.warnings if warning else self.issues).append(issue)

    def compose(self, text: str) -> yaml.Node | None:
        # PyYAML rejects a tab inside a plain scalar where js-yaml (Nango) reads it as a space;
        # the corpus has one (google-docs). Swap each rejected tab for a space: columns stay put.
        for _ in range(10_000):
            try:
                return yaml.compose(text, Loader=yaml.SafeLoader)
            except yaml.scanner.ScannerError as exc:
                mark = exc.problem_mark
                if (
                    mark is not None
                    and "'\\t'" in str(exc.problem)
                    and text[mark.index : mark.index + 1] == "\t"
                ):
                    text = text[: mark.index] + " " + text[mark.index + 1 :]
                    continue
                self._syntax(exc)
                return None
            except yaml.MarkedYAMLError as exc:
                self._syntax(exc)
                return None
        return None

    def _syntax(self, exc: yaml.MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        detail = exc.problem or "invalid YAML"
        if exc.context:
            detail = f"{detail} ({exc.context})"
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        self.issues.append(
            ConfigIssue(file=self.filename, line=line, col=col, message=f"YAML syntax error: {detail}")
        )

    def items(self, node: yaml.Node, where: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """(key, key node, value node) of a mapping, with `<<` merges expanded and duplicates reported.
        A null value counts as an empty mapping (`syncs:` with nothing under it)."""
        if _is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            self.add(node, f"{where} must be a mapping")
            return []
        own: list[tuple[str, yaml.Node, yaml.Node]] = []
        merged: list[tuple[str, yaml.Node, yaml.Node]] = []
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    merged.extend(self.items(src, where))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.add(key_node, f"keys in {where} must be plain text")
                continue
            key = str(key_node.value)
            if key in seen:
                self.add(key_node, f"duplicate key {key!r} in {where}")
                continue
            seen[key] = key_node
            own.append((key, key_node, value_node))
        return own + [item for item in merged if item[0] not in seen]

    def check_keys(
        self, items: list[tuple[str, yaml.Node, yaml.Node]], allowed: tuple[str, ...], where: str
    ) -> None:
        for key, key_node, _ in items:
            if key not in allowed:
                self.add(key_node, f"unknown key {key!r} in {where}{_suggest(key, allowed)}")

    def text(self, node: yaml.Node, what: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and not _is_null(node):
            return str(node.value)
        self.add(node, f"{what} must be text")
        return None

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.value.lower() in ("true", "false"):
            return node.value.lower() == "true"
        shown = node.value if isinstance(node, yaml.ScalarNode) else "a " + node.id
        self.add(node, f"{what} must be true or false, got {shown!r}")
        return None

    def str_list(self, node: yaml.Node, what: str, split_commas: bool = False) -> list[str]:
        """A string or a list of strings; `split_commas` reads "a, b" as two entries (Nango's scopes)."""
        if _is_null(node):
            return []
        if isinstance(node, yaml.ScalarNode):
            values = node.value.split(",") if split_commas else [node.value]
            return [v.strip() for v in values if v.strip()]
        if isinstance(node, yaml.SequenceNode):
            out: list[str] = []
            for item in node.value:
                if isinstance(item, yaml.ScalarNode) and not _is_null(item):
                    out.append(str(item.value).strip())
                else:
                    self.add(item, f"entries of {what} must be text")
            return out
        self.add(node, f"{what} must be text or a list of text")
        return []


class _Parser:
    """One pass over a composed document; fills `config` and records issues in `ctx`."""

    def __init__(self, ctx: Ctx, config: NangoConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.model_nodes: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        self.extends_nodes: dict[str, yaml.Node] = {}

    def run(self, root: yaml.Node) -> None:
        ctx = self.ctx
        if not isinstance(root, yaml.MappingNode):
            ctx.add(root, "nango.yaml must be a mapping with 'integrations' and 'models'")
            return
        top = ctx.items(root, "the top level")
        ctx.check_keys(top, TOP_KEYS, "the top level")
        sections = {key: value for key, _, value in top}
        if "integrations" not in sections:
            ctx.add(root, "missing 'integrations' at the top level")
        if "models" in sections:
            self.parse_models(sections["models"])
        if "integrations" in sections:
            for name, key_node, value in ctx.items(sections["integrations"], "integrations"):
                self.parse_integration(name, key_node, value)

    # ------------------------------------------------------------------ models

    def parse_models(self, node: yaml.Node) -> None:
        ctx = self.ctx
        for name, key_node, value in ctx.items(node, "models"):
            if not _MODEL_NAME.match(name):
                ctx.add(
                    key_node,
                    f"model name {name!r} must be letters, digits and '_', not starting with a digit",
                )
                continue
            if keyword.iskeyword(name) or name in _RESERVED_MODEL_NAMES:
                ctx.add(key_node, f"model name {name!r} is reserved in Python; pick another name")
                continue
            self.model_nodes[name] = (key_node, value)
        names = set(self.model_nodes)
        for name, (key_node, value) in self.model_nodes.items():
            mdef = self.parse_model_body(name, value, names, synthetic=False)
            mdef.line = key_node.start_mark.line + 1
            self.config.models[name] = mdef
        self.check_extends()

    def parse_model_body(self, name: str, node: yaml.Node, names: set[str], synthetic: bool) -> ModelDef:
        ctx = self.ctx
        mdef = ModelDef(
            name=name, raw=_raw(node) if isinstance(node, yaml.MappingNode) else {}, synthetic=synthetic
        )
        where = f"model {name!r}"
        seen: dict[str, yaml.Node] = {}
        for key, key_node, value in ctx.items(node, where):
            if key == "__extends":
                text = ctx.text(value, f"__extends of {where}")
                mdef.extends = [p.strip() for p in (text or "").split(",") if p.strip()]
                self.extends_nodes[name] = value
                for parent in mdef.extends:
                    if parent not in names:
                        ctx.add(
                            value,
                            f"unknown model {parent!r} in __extends of {where}{_suggest(parent, names)}",
                        )
                continue
            optional = key.endswith("?") and key != "__string"
            field_name = key[:-1] if optional else key
            fdef = self.parse_field(name, field_name, optional, key_node, value, names)
            if fdef is None:
                continue
            if field_name == "__string":
                mdef.string_map = fdef
                continue
            if field_name in seen:
                # `options` and `options?` side by side (hubspot in the corpus): Nango keeps both
                # and TypeScript the last; so do we.
                ctx.add(
                    key_node,
                    f"field {field_name!r} of {where} is defined twice; the last one wins",
                    warning=True,
                )
                mdef.fields = [f for f in mdef.fields if f.name != field_name]
            seen[field_name] = key_node
            mdef.fields.append(fdef)
        return mdef

    def parse_field(
        self, owner: str, name: str, optional: bool, key_node: yaml.Node, value: yaml.Node, names: set[str]
    ) -> ModelField | None:
        ctx = self.ctx
        where = f"field {name!r} of model {owner!r}"
        pos = {"line": key_node.start_mark.line + 1, "col": key_node.start_mark.column + 1}
        nested_name = f"{owner}_{name[:1].upper()}{name[1:]}"
        if isinstance(value, yaml.MappingNode):
            nested = self.parse_model_body(nested_name, value, names, synthetic=True)
            return ModelField(
                name=name, type="object", optional=optional, nested=_raw(value), nested_model=nested, **pos
            )
        if isinstance(value, yaml.SequenceNode):
            if len(value.value) != 1:
                ctx.add(value, f"{where}: a list must hold exactly one item, the type of its elements")
                return None
            item = value.value[0]
            if isinstance(item, yaml.MappingNode):
                nested = self.parse_model_body(nested_name, item, names, synthetic=True)
                return ModelField(
                    name=name,
                    type="object[]",
                    optional=optional,
                    nested=_raw(item),
                    nested_model=nested,
                    **pos,
                )
            if isinstance(item, yaml.ScalarNode):
                expr = "null" if _is_null(item) else str(item.value)
                if "|" in expr:
                    ctx.add(item, f"{where}: a union inside a list is not supported; use 'A[] | B[]'")
                    return None
                self.check_type(expr, item, where, names, strict=False)
                return ModelField(name=name, type=f"{expr.strip()}[]", optional=optional, **pos)
            ctx.add(item, f"{where}: nested lists are not supported")
            return None
        expr = "null" if _is_null(value) else str(value.value)
        self.check_type(expr, value, where, names, strict=False)
        return ModelField(name=name, type=expr.strip(), optional=optional, **pos)

    def check_type(
        self, expr: str, node: yaml.Node, where: str, names: set[str] | dict[str, Any], strict: bool = True
    ) -> None:
        """Report syntax Nango rejects and references to models that do not exist. In model fields
        (`strict=False`) an unknown model is a warning, as in Nango, which reads it as a string
        literal (pennylane in the corpus relies on that); in inputs and outputs it is an error."""
        ctx = self.ctx
        parts = [p.strip() for p in expr.split("|")]
        for part in parts:
            base = part
            while base.endswith("[]"):
                base = base[:-2].rstrip()
            if not base:
                ctx.add(node, f"empty type in {where}: {expr!r}")
                return
            if _GENERIC.match(base):
                ctx.add(
                    node, f"type {part!r} in {where} is not supported; use a nested mapping or '__string'"
                )
                return
        atoms = parse_type(expr, names)
        literal_only = len(atoms) > 1 and all(a.kind == "literal" for a in atoms)
        if literal_only:
            return  # an enum of words, e.g. `Inbound | Outbound | Conference`
        for atom in atoms:
            if atom.kind == "literal" and isinstance(atom.value, str) and _MODEL_LIKE.match(atom.value):
                suffix = ", read as a string literal" if not strict else ""
                ctx.add(
                    node,
                    f"unknown model {atom.value!r} in {where}{suffix}{_suggest(atom.value, names)}",
                    not strict,
                )

    def check_extends(self) -> None:
        ctx, models = self.ctx, self.config.models
        # cycles: DFS from each model, report each cycle once at the model that closes it
        reported: set[frozenset[str]] = set()
        for start in models:
            stack: list[tuple[str, list[str]]] = [(start, [start])]
            while stack:
                current, path = stack.pop()
                for parent in models[current].extends if current in models else []:
                    if parent == start:
                        cycle = frozenset(path)
                        if cycle not in reported:
                            reported.add(cycle)
                            chain = " -> ".join([*path, start])
                            ctx.add(self.extends_nodes.get(start), f"model {start!r} extends itself: {chain}")
                    elif parent not in path and parent in models:
                        stack.append((parent, [*path, parent]))

    # ------------------------------------------------------------------ integrations

    def parse_integration(self, name: str, key_node: yaml.Node, node: yaml.Node) -> None:
        ctx = self.ctx
        where = f"integration {name!r}"
        items = ctx.items(node, where)
        ctx.check_keys(items, INTEGRATION_KEYS, where)
        sections = {key: (kn, value) for key, kn, value in items}
        integration = IntegrationConfig(unique_key=name)
        endpoints: dict[str, str] = {}
        outputs: dict[str, str] = {}
        modules: dict[str, str] = {}
        if "syncs" in sections:
            for sname, skey, svalue in ctx.items(sections["syncs"][1], f"syncs of {where}"):
                self.check_script_name(sname, skey, "syncs", modules, where)
                sync = self.parse_sync(name, sname, skey, svalue, endpoints, outputs)
                if sync is not None:
                    integration.syncs[sname] = sync
        if "actions" in sections:
            for aname, akey, avalue in ctx.items(sections["actions"][1], f"actions of {where}"):
                self.check_script_name(aname, akey, "actions", modules, where)
                action = self.parse_action(aname, akey, avalue, endpoints)
                if action is not None:
                    integration.actions[aname] = action
        if "on-events" in sections:
            for event, ekey, evalue in ctx.items(sections["on-events"][1], f"on-events of {where}"):
                if event not in EVENTS:
                    ctx.add(ekey, f"unknown key {event!r} in on-events of {where}{_suggest(event, EVENTS)}")
                    continue
                scripts = ctx.str_list(evalue, f"on-events {event!r} of {where}")
                for script in scripts:
                    self.check_script_name(script, evalue, "on-events", modules, where)
                integration.on_events[event] = scripts
        if "post-connection-scripts" in sections:
            pkey, pvalue = sections["post-connection-scripts"]
            if integration.on_events:
                ctx.add(
                    pkey,
                    f"{where} has both 'post-connection-scripts' and 'on-events'; move them to on-events",
                )
            scripts = ctx.str_list(pvalue, f"post-connection-scripts of {where}")
            for script in scripts:
                self.check_script_name(script, pvalue, "on-events", modules, where)
            integration.on_events.setdefault("post-connection-creation", []).extend(scripts)
        self.config.integrations[name] = integration

    def check_script_name(
        self, name: str, node: yaml.Node, kind: ScriptKind, modules: dict[str, str], where: str
    ) -> None:
        """Script names become Python module names: they must be importable and not collide."""
        if not _SCRIPT_NAME.match(name):
            self.ctx.add(node, f"script name {name!r} in {where} must be letters, digits, '-' and '_'")
            return
        path = f"{kind}/{name.replace('-', '_')}"
        if path in modules and modules[path] != name:
            self.ctx.add(node, f"{kind[:-1]} {name!r} and {modules[path]!r} in {where} would share {path}.py")
        modules.setdefault(path, name)

    def parse_endpoints(
        self, node: yaml.Node, default_method: str, owner: str, endpoints: dict[str, str]
    ) -> list[EndpointSpec]:
        """`endpoint:` as "GET /path", "/path", a mapping with method/path/group, or a list of those."""
        ctx = self.ctx
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: list[EndpointSpec] = []
        for item in nodes:
            method: str | None = default_method
            path: str | None = None
            group: str | None = None
            if isinstance(item, yaml.ScalarNode) and not _is_null(item):
                parts = str(item.value).split()
                if len(parts) == 1:
                    path = parts[0]
                elif len(parts) == 2:
                    method, path = parts
                else:
                    ctx.add(item, f"endpoint of {owner} must look like 'GET /path', got {item.value!r}")
                    continue
            elif isinstance(item, yaml.MappingNode):
                items = ctx.items(item, f"endpoint of {owner}")
                ctx.check_keys(items, ENDPOINT_KEYS, f"endpoint of {owner}")
                values = {k: v for k, _, v in items}
                if "method" in values:
                    method = ctx.text(values["method"], f"method of the endpoint of {owner}")
                if "group" in values:
                    group = ctx.text(values["group"], f"group of the endpoint of {owner}")
                if "path" not in values:
                    ctx.add(item, f"endpoint of {owner} is missing 'path'")
                    continue
                path = ctx.text(values["path"], f"path of the endpoint of {owner}")
            else:
                ctx.add(item, f"endpoint of {owner} must be 'METHOD /path' or a mapping with method and path")
                continue
            if method is None or path is None:
                continue
            method = method.upper()
            if method not in HTTP_METHODS:
                ctx.add(
                    item, f"unknown method {method!r} in endpoint of {owner}{_suggest(method, HTTP_METHODS)}"
                )
                continue
            if not path.startswith("/"):
                ctx.add(item, f"path {path!r} of the endpoint of {owner} must start with '/'")
                continue
            spec = EndpointSpec(method=method, path=path, group=group)
            if spec.key() in endpoints:
                ctx.add(
                    item, f"endpoint {spec.key()!r} of {owner} is already used by {endpoints[spec.key()]}"
                )
                continue
            endpoints[spec.key()] = owner
            out.append(spec)
        return out

    def parse_sync(
        self,
        integration: str,
        name: str,
        key_node: yaml.Node,
        node: yaml.Node,
        endpoints: dict[str, str],
        outputs: dict[str, str],
    ) -> SyncConfig | None:
        ctx = self.ctx
        owner = f"sync {name!r}"
        items = ctx.items(node, owner)
        ctx.check_keys(items, SYNC_KEYS, owner)
        values = {k: v for k, _, v in items}
        data: dict[str, Any] = {"name": name}
        ok = True
        for required in ("runs", "output"):
            if required not in values:
                ctx.add(key_node, f"{owner} is missing {required!r}")
                ok = False
        if "runs" in values:
            runs = ctx.text(values["runs"], f"runs of {owner}")
            if runs is None:
                ok = False
            else:
                try:
                    data["interval_seconds"] = int(parse_schedule(runs).total_seconds())
                    data["runs"] = runs
                except ScheduleError as exc:
                    ctx.add(values["runs"], str(exc))
                    ok = False
        if "output" in values:
            data["output"] = ctx.str_list(values["output"], f"output of {owner}")
            for model in data["output"]:
                self.check_sync_output(integration, model, values["output"], owner, outputs)
        if "endpoint" in values and "endpoints" in values:
            ctx.add(values["endpoints"], f"{owner} has both 'endpoint' and 'endpoints'; keep one")
        ep_node = values.get("endpoint", values.get("endpoints"))
        data["endpoints"] = [] if ep_node is None else self.parse_endpoints(ep_node, "GET", owner, endpoints)
        if ep_node is not None and data.get("output"):
            n_ep = len(ep_node.value) if isinstance(ep_node, yaml.SequenceNode) else 1
            n_out = len(data["output"])
            if n_ep != n_out:
                ctx.add(
                    ep_node,
                    f"{owner} has {n_out} output model(s) but {n_ep} endpoint(s); give one per output",
                )
        if "sync_type" in values:
            sync_type = ctx.text(values["sync_type"], f"sync_type of {owner}")
            if sync_type is not None:
                if sync_type.lower() not in ("incremental", "full"):
                    ctx.add(
                        values["sync_type"],
                        f"sync_type of {owner} must be 'incremental' or 'full', got {sync_type!r}",
                    )
                else:
                    data["sync_type"] = sync_type.lower()
        for key in ("track_deletes", "auto_start"):
            if key in values:
                flag = ctx.boolean(values[key], f"{key!r} of {owner}")
                if flag is not None:
                    data[key] = flag
        if "input" in values:
            data["input"] = self.type_expr(values["input"], f"input of {owner}")
        for key in ("version", "description"):
            if key in values:
                data[key] = self.optional_text(values[key], f"{key} of {owner}")
        if "scopes" in values:
            data["scopes"] = ctx.str_list(values["scopes"], f"scopes of {owner}", split_commas=True)
        if "webhook-subscriptions" in values:
            data["webhook_subscriptions"] = ctx.str_list(
                values["webhook-subscriptions"], f"webhook-subscriptions of {owner}"
            )
        return SyncConfig(**data) if ok else None

    def check_sync_output(
        self, integration: str, model: str, node: yaml.Node, owner: str, outputs: dict[str, str]
    ) -> None:
        ctx, models = self.ctx, self.config.models
        if model not in models:
            ctx.add(node, f"unknown model {model!r} in output of {owner}{_suggest(model, models)}")
            return
        if not any(f.name == "id" for f in self.config.model_fields_of(model)):
            ctx.add(node, f"model {model!r} (output of {owner}) has no 'id' field; records need one")
        if model in outputs:
            ctx.add(
                node,
                f"model {model!r} is already the output of {outputs[model]} in integration {integration!r}; "
                "a model can be the output of only one sync per integration",
            )
        else:
            outputs[model] = owner

    def type_expr(self, node: yaml.Node, what: str) -> str | None:
        """An input/output type: a model name or any type expression (Nango makes it an anonymous model)."""
        if isinstance(node, yaml.SequenceNode):
            parts = self.ctx.str_list(node, what)
            text = " | ".join(parts) if parts else None
        else:
            text = self.ctx.text(node, what)
        if text is None:
            return None
        self.check_type(text, node, what, self.config.models)
        return text.strip()

    def optional_text(self, node: yaml.Node, what: str) -> str | None:
        if _is_null(node):
            return None
        text = self.ctx.text(node, what)
        return text.strip() if text is not None else None

    def parse_action(
        self, name: str, key_node: yaml.Node, node: yaml.Node, endpoints: dict[str, str]
    ) -> ActionConfig | None:
        ctx = self.ctx
        owner = f"action {name!r}"
        items = ctx.items(node, owner)
        ctx.check_keys(items, ACTION_KEYS, owner)
        values = {k: v for k, _, v in items}
        data: dict[str, Any] = {"name": name}
        if "endpoint" in values:
            data["endpoints"] = self.parse_endpoints(values["endpoint"], "POST", owner, endpoints)
        for key in ("input", "output"):
            if key in values and not _is_null(values[key]):
                data[key] = self.type_expr(values[key], f"{key} of {owner}")
        for key in ("version", "description"):
            if key in values:
                data[key] = self.optional_text(values[key], f"{key} of {owner}")
        if "scopes" in values:
            data["scopes"] = ctx.str_list(values["scopes"], f"scopes of {owner}", split_commas=True)
        return ActionConfig(**data)
