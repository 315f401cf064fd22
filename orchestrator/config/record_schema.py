"""Records checked against their nango.yaml model, compiled once into plain Python checks.

What a model means is what `nango generate` and Nango's JSON Schema make of it: `?` and `| undefined` make a
field optional, `__extends` adds the parents' fields, `A | B` is a union, `T[]` an array, a nested mapping an
object, `'open' | 'closed'` literals, `__string: T` the type of every key the model does not name. Two choices:

- A model is open, as in Nango (its JSON Schema sets no `additionalProperties` unless `__string` does): keys the
  model does not name are kept and not checked, except under `__string`, where each must have its type.
- An optional field may also be null: the generated Python models write None for an unset optional field.

A model compiles to closures, once per run, so a batch of 10,000 flat records is checked in tens of
milliseconds: a field of a plain type costs one `type(v) in allowed` test, no call.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrator.config.nango_yaml import ModelDef, ModelField, NangoConfig, TypeAtom, parse_type

# (field path, what is wrong): ("labels[2]", "should be string, got integer"); a path "" is the record itself
Mismatch = tuple[str, str]
# appends the value's mismatches at `path` to the list
Check = Callable[[Any, str, list[Mismatch]], None]
# a field's check: the exact Python types a plain-typed value may have, or a Check, or None (anything goes)
FieldCheck = frozenset[type] | Check | None

_NONE = type(None)
_PLAIN: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "integer": frozenset({int}),      # bool is its own type: `type(True) is int` is False; 2.0 passes too
    "number": frozenset({int, float}),
    "boolean": frozenset({bool}),
    "object": frozenset({dict}),
}
_KINDS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean", _NONE: "null",
                           list: "array", dict: "object"}


def kind_of(value: Any) -> str:
    """The JSON name of a value's type, as the messages say it."""
    return _KINDS.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _label(atom: TypeAtom) -> str:
    if atom.kind == "literal":
        base = repr(atom.value) if isinstance(atom.value, str) else _shown(atom.value)
    elif atom.kind == "null":
        base = "null"
    else:
        base = str(atom.value)
    return base + "[]" * atom.array


def _got(value: Any, literal: bool) -> str:
    """`got string`, or with the value itself when a literal was expected: `got 'merged'`."""
    if literal and isinstance(value, str | int | float | bool):
        return f"got {_shown(value)}"
    return f"got {kind_of(value)}"


def _is_date(value: Any) -> bool:
    if type(value) is not str:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _integral(value: Any, allowed: frozenset[type]) -> bool:
    """2.0 is an integer, as JSON Schema counts (only asked once the fast type test failed)."""
    return type(value) is float and int in allowed and value.is_integer()


def run_check(check: FieldCheck, value: Any, path: str, out: list[Mismatch], label: str) -> None:
    """Apply a field's check to one present value."""
    if check is None:
        return
    if type(check) is frozenset:
        if type(value) not in check and not _integral(value, check):
            out.append((path, f"should be {label}, got {kind_of(value)}"))
        return
    check(value, path, out)  # type: ignore[operator]


class RecordSchema:
    """The checks of one config's models, each model compiled on first use and kept."""

    def __init__(self, config: NangoConfig) -> None:
        self.config = config
        self._models: dict[str, Check] = {}

    def has(self, model: str) -> bool:
        return model in self.config.models

    def check(self, model: str, record: Any) -> list[Mismatch]:
        """Every mismatch of `record` with `model` (which must exist); [] when it matches."""
        out: list[Mismatch] = []
        self._model(model)(record, "", out)
        return out

    # ---------------------------------------------------------------- compiling

    def _model(self, name: str) -> Check:
        found = self._models.get(name)
        if found is None:
            # references to models (a comment's replies: Comment[]) are looked up when checked, not compiled here
            found = self._models[name] = self._object(self.config.models[name], name)
        return found

    def _fields(self, mdef: ModelDef) -> tuple[list[ModelField], ModelField | None]:
        """A model's (or nested mapping's) fields with `__extends` resolved, and its `__string` entry."""
        if not mdef.synthetic:
            return self.config.model_fields_of(mdef.name), self.config.string_map_of(mdef.name)
        fields: dict[str, ModelField] = {}
        string_map = mdef.string_map
        for parent in mdef.extends:
            if parent in self.config.models:
                fields.update({f.name: f for f in self.config.model_fields_of(parent)})
                string_map = string_map or self.config.string_map_of(parent)
        fields.update({f.name: f for f in mdef.fields})
        return list(fields.values()), string_map

    def _object(self, mdef: ModelDef, label: str) -> Check:
        fields, string_map = self._fields(mdef)
        # (name, required, may be null, check, label) per field
        plan: list[tuple[str, bool, bool, FieldCheck, str]] = []
        for f in fields:
            check, field_label, may_be_missing = self._field(f)
            optional = f.optional or may_be_missing
            plan.append((f.name, not optional, optional, check, field_label))
        known = frozenset(f.name for f in fields)
        extra: tuple[FieldCheck, str] | None = None
        if string_map is not None:
            check, extra_label, _ = self._field(string_map)
            extra = (check, extra_label)

        def check_object(value: Any, path: str, out: list[Mismatch]) -> None:
            if type(value) is not dict:
                out.append((path, f"should be an object ({label}), got {kind_of(value)}"))
                return
            for name, required, nullable, check, field_label in plan:
                if name in value:
                    v = value[name]
                    if check is None or (v is None and nullable):
                        continue
                    if type(check) is frozenset:
                        if type(v) not in check and not _integral(v, check):
                            out.append((f"{path}.{name}" if path else name,
                                        f"should be {field_label}, got {kind_of(v)}"))
                    else:
                        check(v, f"{path}.{name}" if path else name, out)  # type: ignore[operator]
                elif required:
                    out.append((f"{path}.{name}" if path else name, "is required but missing"))
            if extra is not None and extra[0] is not None:
                for key in value.keys() - known:
                    run_check(extra[0], value[key], f"{path}.{key}" if path else key, out, extra[1])
        return check_object

    def _field(self, f: ModelField) -> tuple[FieldCheck, str, bool]:
        """A field's check, how its type reads in messages, and whether it may be missing (`| undefined`)."""
        if f.nested_model is not None:
            inner = self._object(f.nested_model, "object")
            if f.type.endswith("[]"):
                return self._array(inner, "object"), "object[]", False
            return inner, "object", False
        return self._expr(f.type)

    def _expr(self, expr: str) -> tuple[FieldCheck, str, bool]:
        atoms = parse_type(expr, self.config.models)
        may_be_missing = any(a.kind == "undefined" for a in atoms)
        atoms = [a for a in atoms if a.kind != "undefined"]
        label = " | ".join(dict.fromkeys(_label(a) for a in atoms)) or "any"
        if not atoms or any(a.kind == "alias" and a.value == "any" and a.array == 0 for a in atoms):
            return None, label, may_be_missing
        checks = [self._atom(a, label) for a in atoms]
        if all(type(c) is frozenset for c in checks):   # plain types and null only: one set test
            return frozenset().union(*checks), label, may_be_missing  # type: ignore[arg-type]
        if len(checks) == 1:
            return checks[0], label, may_be_missing
        return self._union(checks, label, any(a.kind == "literal" for a in atoms)), label, may_be_missing

    def _atom(self, atom: TypeAtom, label: str) -> FieldCheck:
        """One alternative of a type expression, `[]` included."""
        single = TypeAtom(atom.kind, atom.value, 0)
        inner: FieldCheck
        if atom.kind == "null":
            inner = frozenset({_NONE})
        elif atom.kind == "alias" and atom.value in _PLAIN:
            inner = _PLAIN[str(atom.value)]
        elif atom.kind == "alias" and atom.value == "date":
            inner = self._date()
        elif atom.kind == "alias":  # any
            inner = None
        elif atom.kind == "model":
            inner = self._ref(str(atom.value))
        else:
            inner = self._literal(atom.value, _label(single) if atom.array else label)
        if atom.array == 0:
            return inner
        check: FieldCheck = inner
        for depth in range(atom.array):
            check = self._array(check, _label(TypeAtom(atom.kind, atom.value, depth)))
        return check

    def _ref(self, name: str) -> Check:
        def check_ref(value: Any, path: str, out: list[Mismatch]) -> None:
            self._model(name)(value, path, out)
        return check_ref

    @staticmethod
    def _date() -> Check:
        def check_date(value: Any, path: str, out: list[Mismatch]) -> None:
            if not _is_date(value):
                shown = f"string {_shown(value)}" if type(value) is str else kind_of(value)
                out.append((path, f"should be date (an ISO 8601 date-time string), got {shown}"))
        return check_date

    @staticmethod
    def _literal(expected: Any, label: str) -> Check:
        kind = type(expected)

        def check_literal(value: Any, path: str, out: list[Mismatch]) -> None:
            if type(value) is not kind or value != expected:
                out.append((path, f"should be {label}, {_got(value, True)}"))
        return check_literal

    @staticmethod
    def _array(item: FieldCheck, item_label: str) -> Check:
        label = item_label + "[]"

        def check_array(value: Any, path: str, out: list[Mismatch]) -> None:
            if type(value) is not list:
                out.append((path, f"should be {label}, got {kind_of(value)}"))
                return
            if item is None:
                return
            if type(item) is frozenset:
                for i, v in enumerate(value):
                    if type(v) not in item and not _integral(v, item):
                        out.append((f"{path}[{i}]", f"should be {item_label}, got {kind_of(v)}"))
                return
            for i, v in enumerate(value):
                item(v, f"{path}[{i}]", out)  # type: ignore[operator]
        return check_array

    @staticmethod
    def _union(checks: list[FieldCheck], label: str, literal: bool) -> Check:
        """Any alternative may match. When none does and exactly one got past the value's own type (an object
        of the right model with a bad field inside), its mismatches say more than the union's label."""

        def check_union(value: Any, path: str, out: list[Mismatch]) -> None:
            deep: list[list[Mismatch]] = []
            for check in checks:
                found: list[Mismatch] = []
                run_check(check, value, path, found, label)
                if not found:
                    return
                if any(p != path for p, _ in found):
                    deep.append(found)
            if len(deep) == 1:
                out.extend(deep[0])
            else:
                out.append((path, f"should be {label}, {_got(value, literal)}"))
        return check_union
