"""One spelling for what a model or a type expression means, whichever form declared it.

nango.yaml lets one meaning be written many ways (`varchar` or `string`, `x: T | undefined` or `x?: T`,
`open | closed` or `'open' | 'closed'`), and code-first models (pydantic classes) have spellings of their
own. The deployed manifest carries this form, so the same definitions give the same manifest from either
form; it is still nango.yaml syntax, which the manifest's readers parse again (`config/jsonschema.py`).
"""

from __future__ import annotations

from typing import Any

from orchestrator.config.nango_yaml import ModelDef, ModelField, TypeAtom, parse_type


def canonical_atoms(atoms: list[TypeAtom]) -> tuple[list[TypeAtom], bool]:
    """(alternatives in canonical order, whether `undefined` was one): duplicates dropped, literals of one
    list depth together at the first one's place, `integer` dropped beside `number` (it adds nothing)."""
    undefined = any(a.kind == "undefined" for a in atoms)
    kept = [a for a in atoms if a.kind != "undefined"]
    numbers = {a.array for a in kept if a.kind == "alias" and a.value == "number"}
    kept = [a for a in kept if not (a.kind == "alias" and a.value == "integer" and a.array in numbers)]
    out: list[TypeAtom] = []
    seen: set[tuple[object, ...]] = set()
    for atom in kept:
        key = (atom.kind, type(atom.value), atom.value, atom.array)  # the literal `true` is not the literal `1`
        if key in seen:
            continue
        seen.add(key)
        if atom.kind == "literal":
            group = [a for a in out if a.kind == "literal" and a.array == atom.array]
            if group:
                out.insert(out.index(group[-1]) + 1, atom)
                continue
        out.append(atom)
    return out, undefined


def render_atom(atom: TypeAtom) -> str:
    if atom.kind == "literal":
        value = atom.value
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            quote = '"' if "'" in str(value) else "'"
            text = f"{quote}{value}{quote}"
    elif atom.kind in ("null", "undefined"):
        text = atom.kind
    else:
        text = str(atom.value)
    return text + "[]" * atom.array


def render_atoms(atoms: list[TypeAtom]) -> str:
    return " | ".join(render_atom(a) for a in atoms) or "undefined"


def canonical_type(expr: str, models: set[str] | dict[str, Any]) -> str:
    """A type expression (an input or output) in canonical form."""
    atoms, undefined = canonical_atoms(parse_type(expr, models))
    return render_atoms(atoms + ([TypeAtom("undefined", None)] if undefined and not atoms else []))


def canonical_field(fdef: ModelField, models: set[str] | dict[str, Any]) -> tuple[bool, Any]:
    """(optional, value) of a field: `undefined` among the alternatives makes it optional."""
    if fdef.nested_model is not None:
        body = canonical_body(fdef.nested_model, models)
        return fdef.optional, [body] if fdef.type.endswith("[]") else body
    atoms, undefined = canonical_atoms(parse_type(fdef.type, models))
    if not atoms:  # only `undefined`: an optional field of no declared type
        return True, "any"
    return fdef.optional or undefined, render_atoms(atoms)


def canonical_body(mdef: ModelDef, models: set[str] | dict[str, Any]) -> dict[str, Any]:
    """A model's mapping as nango.yaml would write it: `__extends` first, then fields, then `__string`."""
    out: dict[str, Any] = {}
    if mdef.extends:
        out["__extends"] = ", ".join(mdef.extends)
    for fdef in mdef.fields:
        optional, value = canonical_field(fdef, models)
        out[fdef.name + ("?" if optional else "")] = value
    if mdef.string_map is not None:
        out["__string"] = canonical_field(mdef.string_map, models)[1]
    return out
