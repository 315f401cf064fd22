"""An integrations folder's definitions: nango.yaml, code-first Python, or both, as one NangoConfig.

The code-first definitions (`config/code_first.py`) are added to nango.yaml's node tree before the
nango.yaml parser validates it, so everything downstream (compile, deploy, dryrun, test, dev) sees one
NangoConfig whichever form declared what. A name defined in both forms is an error naming both places.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.config.code_first import CodeDefinitions, Located, mapping, read_code, scalar
from orchestrator.config.nango_yaml import ConfigError, Ctx, NangoConfig, parse_composed


def load_project(folder: Path, yaml_file: Path | None = None) -> NangoConfig:
    """Parse and validate the folder's definitions (nango.yaml: `yaml_file`, else the folder's); raises
    ConfigError listing every issue found. Messages name files as `folder` is given."""
    yaml_file = yaml_file if yaml_file is not None else folder / "nango.yaml"
    ctx = Ctx(str(yaml_file))
    root: yaml.Node | None = None
    has_yaml = yaml_file.is_file()
    if has_yaml:
        root = ctx.compose(yaml_file.read_text(encoding="utf-8"))
        if root is None and ctx.issues:
            raise ConfigError(ctx.issues)
    code = read_code(folder, folder, _yaml_model_names(root))
    if code.issues:
        raise ConfigError(sorted(code.issues, key=lambda i: (i.file, i.line, i.col)))
    if not has_yaml or (root is None and not code.empty):
        root = mapping([], yaml.Mark(ctx.filename, 0, 0, 0, None, None))
    if isinstance(root, yaml.MappingNode) and not code.empty:
        _Merge(ctx, root).add(code)
    if root is not None and not has_yaml and not _has_key(root, "integrations"):
        root.value.append((scalar("integrations", root.start_mark), mapping([], root.start_mark)))
    return parse_composed(ctx, root)


def _has_key(node: yaml.MappingNode, key: str) -> bool:
    return any(isinstance(k, yaml.ScalarNode) and k.value == key for k, _ in node.value)


def _yaml_model_names(root: yaml.Node | None) -> set[str]:
    if not isinstance(root, yaml.MappingNode):
        return set()
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "models" and isinstance(value, yaml.MappingNode):
            return {str(k.value) for k, _ in value.value if isinstance(k, yaml.ScalarNode)}
    return set()


def _where(node: yaml.Node, default: str) -> str:
    mark = node.start_mark
    return f"{mark.name if mark.name.endswith('.py') else default}:{mark.line + 1}"


class _Merge:
    """Adds code-first nodes to nango.yaml's tree, refusing a name both define."""

    def __init__(self, ctx: Ctx, root: yaml.MappingNode) -> None:
        self.ctx = ctx
        self.root = root

    def section(self, parent: yaml.MappingNode, key: str) -> yaml.MappingNode | None:
        """The mapping under `key` (created when absent, replacing a null); None when it is something else."""
        for i, (k, v) in enumerate(parent.value):
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                if isinstance(v, yaml.MappingNode):
                    return v
                if isinstance(v, yaml.ScalarNode) and v.tag == "tag:yaml.org,2002:null":
                    node = mapping([], v.start_mark)
                    parent.value[i] = (k, node)
                    return node
                return None  # the parser reports it
        node = mapping([], parent.start_mark)
        parent.value.append((scalar(key, parent.start_mark), node))
        return node

    def add_all(self, parent: yaml.MappingNode | None, items: list[Located], what: str) -> None:
        if parent is None:
            return
        existing = {str(k.value): k for k, _ in parent.value if isinstance(k, yaml.ScalarNode)}
        for item in items:
            if item.name in existing:
                self.twice(item, what, existing[item.name])
                continue
            existing[item.name] = item.key
            parent.value.append((item.key, item.value))

    def twice(self, item: Located, what: str, other: yaml.Node) -> None:
        self.ctx.add(item.key, f"{what} {item.name!r} is defined twice: {_where(other, self.ctx.filename)} and "
                               f"{item.where}; keep one")

    def add(self, code: CodeDefinitions) -> None:
        self.add_all(self.section(self.root, "models"), code.models, "model")
        integrations = self.section(self.root, "integrations")
        if integrations is None:
            return
        for key in sorted({*code.scripts, *code.events}):
            integration = self.section(integrations, key)
            if integration is None:
                continue
            taken = self.event_scripts(integration)
            for section, items in code.scripts.get(key, {}).items():
                self.add_all(self.section(integration, section), items, section[:-1])
            events = code.events.get(key, {})
            if events:
                self.add_events(integration, events, taken)

    def event_scripts(self, integration: yaml.MappingNode) -> dict[str, yaml.Node]:
        """Event scripts nango.yaml names (on-events and post-connection-scripts), by name."""
        out: dict[str, yaml.Node] = {}
        for k, v in integration.value:
            if not (isinstance(k, yaml.ScalarNode) and k.value in ("on-events", "post-connection-scripts")):
                continue
            lists = [ev for _, ev in v.value] if isinstance(v, yaml.MappingNode) else [v]
            for node in lists:
                scalars = node.value if isinstance(node, yaml.SequenceNode) else [node]
                out.update({str(s.value): s for s in scalars if isinstance(s, yaml.ScalarNode)})
        return out

    def add_events(self, integration: yaml.MappingNode, events: dict[str, list[Located]],
                   taken: dict[str, yaml.Node]) -> None:
        section = self.section(integration, "on-events")
        if section is None:
            return
        for event, items in events.items():
            fresh = [i for i in items if i.name not in taken]
            for item in items:
                if item.name in taken:
                    self.twice(item, "event script", taken[item.name])
            if not fresh:
                continue
            for i, (k, v) in enumerate(section.value):
                if isinstance(k, yaml.ScalarNode) and k.value == event:
                    old = v.value if isinstance(v, yaml.SequenceNode) else [v]
                    section.value[i] = (k, yaml.SequenceNode("tag:yaml.org,2002:seq", [*old, *(f.value for f in fresh)],
                                                             v.start_mark, v.end_mark))
                    break
            else:
                section.value.append((scalar(event, fresh[0].key.start_mark),
                                      yaml.SequenceNode("tag:yaml.org,2002:seq", [f.value for f in fresh],
                                                        fresh[0].key.start_mark, fresh[0].key.start_mark)))

