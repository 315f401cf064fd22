"""Static checks of an integrations folder's scripts, run by `nango compile` before bundling.

Everything here reads source with `ast`, never imports it: a script is checked without running
any of its code. Entry points and the import allow-list come from `orchestrator.sdk.contract`,
the definition the runner's child enforces at run time, so a mistake shows up as `path:LINE:COL:
message` on the author's machine instead of as a failed run after a deploy. Every problem is
reported, not only the first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.bundles.build import module_file, resolve_relative
from orchestrator.config.nango_yaml import NangoConfig, ScriptKind, script_module_path
from orchestrator.errors import InvalidInputError
from orchestrator.sdk import contract
from orchestrator.sdk.contract import EntryPoint

SYNC = contract.entry_point("sync")
ACTION = contract.entry_point("action")
WEBHOOK = contract.entry_point("webhook")
EVENT = contract.entry_point("event")


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in a script; `path` is relative to the integrations folder (POSIX)."""

    path: str
    line: int
    col: int
    message: str

    def render(self, root: str | Path = ".") -> str:
        shown = (Path(root) / self.path).as_posix() if str(root) not in ("", ".") else self.path
        return f"{shown}:{self.line}:{self.col}: {self.message}"


class ScriptCheckError(InvalidInputError):
    """Scripts of the folder have problems; carries all of them."""

    code = "invalid_scripts"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(p.render() for p in self.problems))

    def __reduce__(self) -> tuple[type[ScriptCheckError], tuple[list[Problem]]]:
        return (type(self), (self.problems,))

    def render(self, root: str | Path = ".") -> str:
        return "\n".join(p.render(root) for p in self.problems)


@dataclass(frozen=True)
class Script:
    """A script nango.yaml declares, with the entry points its module must define."""

    integration: str
    kind: str  # sync | action | event
    name: str
    module_path: str
    entries: tuple[EntryPoint, ...]

    @property
    def owner(self) -> str:
        return f"{self.kind} {self.name!r} of integration {self.integration!r}"


def declared_scripts(config: NangoConfig, integrations: Iterable[str] | None = None) -> list[Script]:
    """Every script of the config (or of the given integrations), in declaration order."""
    out: list[Script] = []
    keys = list(integrations) if integrations is not None else list(config.integrations)
    for key in keys:
        integration = config.integrations[key]

        def path(kind: ScriptKind, name: str, key: str = key) -> str:
            return script_module_path(key, kind, name)

        for name, sync in integration.syncs.items():
            entries = (SYNC, WEBHOOK) if sync.webhook_subscriptions else (SYNC,)
            out.append(Script(key, "sync", name, path("syncs", name), entries))
        for name in integration.actions:
            out.append(Script(key, "action", name, path("actions", name), (ACTION,)))
        for names in integration.on_events.values():
            for name in names:
                if not any(s.kind == "event" and s.name == name and s.integration == key for s in out):
                    out.append(Script(key, "event", name, path("on-events", name), (EVENT,)))
    return out


def check_project(root: Path, config: NangoConfig, integrations: Iterable[str] | None = None) -> list[Problem]:
    """All problems of the scripts of `config` (or of the given integrations) and of every module
    of the folder they import, transitively; sorted by file and line."""
    checker = _Checker(root.resolve())
    for script in declared_scripts(config, integrations):
        checker.check_script(script)
    return sorted(set(checker.problems))


def raise_on_problems(root: Path, config: NangoConfig, integrations: Iterable[str] | None = None) -> None:
    problems = check_project(root, config, integrations)
    if problems:
        raise ScriptCheckError(problems)


# --------------------------------------------------------------------------- internals


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that can run: anything but the body of `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
            return
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Checker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.trees: dict[Path, ast.Module | None] = {}
        self.checked: set[Path] = set()

    def add(self, file: Path, line: int, col: int, message: str) -> None:
        self.problems.append(Problem(file.relative_to(self.root).as_posix(), line, col, message))

    def parse(self, file: Path) -> ast.Module | None:
        if file in self.trees:
            return self.trees[file]
        tree: ast.Module | None = None
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        except SyntaxError as exc:
            self.add(file, exc.lineno or 1, exc.offset or 1, f"syntax error: {exc.msg}")
        except UnicodeDecodeError as exc:
            self.add(file, 1, 1, f"not UTF-8 text: {exc.reason}")
        except ValueError as exc:  # e.g. null bytes
            self.add(file, 1, 1, f"cannot parse: {exc}")
        except OSError as exc:
            self.add(file, 1, 1, f"cannot read: {exc.strerror or exc}")
        self.trees[file] = tree
        return tree

    # ---------------------------------------------------------------- scripts

    def check_script(self, script: Script) -> None:
        file = self.root / script.module_path
        if not file.is_file():
            self.add(file, 1, 1, f"{script.owner} has no script: create {script.module_path} "
                                 "(`nango generate` writes a stub)")
            return
        tree = self.parse(file)
        if tree is None:
            return
        for entry in script.entries:
            self.check_entry(file, tree, script, entry)
        self.check_module(file)

    def check_entry(self, file: Path, tree: ast.Module, script: Script, entry: EntryPoint) -> None:
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == entry.name]
        if not defs:
            if entry is WEBHOOK:
                self.add(file, 1, 1, f"sync {script.name!r} has webhook-subscriptions, so its module needs "
                                     f"'{entry.signature}'")
            else:
                self.add(file, 1, 1, f"{script.kind} {script.name!r} needs the entry point '{entry.signature}'")
            return
        node = defs[-1]  # the last definition is the one that counts
        if isinstance(node, ast.FunctionDef):
            self.add(file, node.lineno, node.col_offset + 1,
                     f"'{entry.name}' must be a coroutine function: '{entry.signature}'")
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        required = len(positional) - len(args.defaults)
        wanted = len(entry.params)
        takes = (required <= wanted and (len(positional) >= wanted or args.vararg is not None)
                 and all(default is not None for default in args.kw_defaults))
        if not takes:
            self.add(file, node.lineno, node.col_offset + 1,
                     f"'{entry.name}' must take {_plural(wanted, 'argument')} ({', '.join(entry.params)}): "
                     f"'{entry.signature}'")

    # ---------------------------------------------------------------- imports

    def check_module(self, file: Path) -> None:
        """Imports of `file` and, transitively, of the folder's modules it imports."""
        todo = [file]
        while todo:
            current = todo.pop()
            if current in self.checked:
                continue
            self.checked.add(current)
            if current == self.root / "models.py":
                continue  # generated; imports pydantic (contract.MODELS_MAY_IMPORT: for models only)
            tree = self.parse(current)
            if tree is None:
                continue
            for node in _imports(tree):
                todo.extend(self.check_import(current, node))

    def check_import(self, file: Path, node: ast.Import | ast.ImportFrom) -> list[Path]:
        """Report a forbidden or broken import; returns the folder's modules it loads."""
        line, col = node.lineno, node.col_offset + 1
        if isinstance(node, ast.ImportFrom) and node.level:
            names = [alias.name for alias in node.names]
            resolved = resolve_relative(self.root, file, node.level, node.module, names)
            written = "." * node.level + (node.module or "")
            if resolved.escapes:
                self.add(file, line, col, f"relative import '{written}' goes above the integrations folder")
            for missing in resolved.missing:
                self.add(file, line, col, f"cannot import '{written}': there is no {missing}.py "
                                          "in the integrations folder")
            return resolved.files
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            problem = self.absolute_problem(file, module, [alias.name for alias in node.names])
            if problem:
                self.add(file, line, col, problem)
        else:
            for alias in node.names:
                problem = self.absolute_problem(file, alias.name, None)
                if problem:
                    self.add(file, line, col, problem)
        if self.imports_models(node) and (models := module_file(self.root / "models")) is not None:
            return [models]
        return []

    @staticmethod
    def imports_models(node: ast.Import | ast.ImportFrom) -> bool:
        if isinstance(node, ast.ImportFrom):
            return (node.module or "").split(".")[0] == "models"
        return any(alias.name.split(".")[0] == "models" for alias in node.names)

    def absolute_problem(self, file: Path, module: str, names: list[str] | None) -> str | None:
        """Why `import module` / `from module import names` is not allowed (None when it is)."""
        top = module.split(".")[0]
        in_folder = module_file(self.root / top) is not None or (self.root / top).is_dir()
        kind = contract.import_kind(module, names, [top] if in_folder else [])
        if kind in ("stdlib", "sdk"):
            return None
        if kind == "models":
            if module_file(self.root / "models") is None:
                return "models.py is missing from the integrations folder: run `nango generate`"
            return None
        if kind == "folder":  # the runner would load it, but only the relative form stays inside the folder
            return (f"'{top}' is a module of the integrations folder: import it relatively, as "
                    f"'{self.relative_form(file, module, names)}'")
        return contract.forbidden_import(module, names)

    def relative_form(self, file: Path, module: str, names: list[str] | None) -> str:
        dots = "." * len(file.relative_to(self.root).parts)
        if names is not None:
            return f"from {dots}{module} import {', '.join(names)}"
        head, _, last = module.rpartition(".")
        return f"from {dots}{head} import {last}"
