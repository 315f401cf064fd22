"""Every nango.yaml of the corpus converts to code-first and back, and each form deploys the same manifest
(issue 22's proof): the folder with nango.yaml and stub scripts, its `migrate-to-code` conversion (no
nango.yaml left) and that one's `export-yaml` compile to identical manifests; the converted models.py
imports and its pydantic classes build; the manifest's canonical models give the same JSON schemas."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from orchestrator.authoring.compile import compile_project
from orchestrator.authoring.migrate import to_code, to_yaml
from orchestrator.cli.scaffold import generate_stubs, write_models
from orchestrator.config.canonical import canonical_body
from orchestrator.config.jsonschema import all_model_schemas, parse_models
from orchestrator.config.nango_yaml import load_config

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "nango-yaml"
FILES = sorted(CORPUS.glob("*.yaml"))


def declared(folder: Path) -> dict[str, Any]:
    out = {}
    for bundle in compile_project(folder):
        manifest = {k: v for k, v in bundle.manifest.items() if k != "files"}
        manifest["scripts"] = [{k: v for k, v in s.items() if k != "sha256"} for s in manifest["scripts"]]
        out[bundle.integration] = manifest
    return out


def test_the_corpus_is_all_there() -> None:
    assert len(FILES) == 51


@pytest.mark.parametrize("source", FILES, ids=[f.stem for f in FILES])
def test_round_trip_gives_the_same_manifest(source: Path, tmp_path: Path) -> None:
    folder = tmp_path / "yaml"
    folder.mkdir()
    shutil.copy(source, folder / "nango.yaml")
    config = load_config(folder / "nango.yaml")
    write_models(folder, config)
    generate_stubs(folder, config)
    expected = declared(folder)

    # the manifest's canonical models mean what nango.yaml's own text means to their readers (the API's schemas)
    canonical = {n: canonical_body(m, config.models) for n, m in config.models.items()}
    raw = {n: m.raw for n, m in config.models.items()}
    assert all_model_schemas(parse_models(canonical)) == all_model_schemas(parse_models(raw))

    to_code(folder, tmp_path / "code")
    code = tmp_path / "code"
    assert not (code / "nango.yaml").exists()
    assert declared(code) == expected

    to_yaml(code, tmp_path / "back")
    assert declared(tmp_path / "back") == expected

    name = f"code_first_models_{source.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, code / "models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        classes = [c for c in vars(module).values()
                   if isinstance(c, type) and issubclass(c, BaseModel) and c.__module__ == name]
        assert len(classes) == len(config.models)
        for cls in classes:
            cls.model_rebuild()
            cls.model_json_schema()
    finally:
        del sys.modules[name]
