"""`nango test`: rerun scripts offline against their saved responses and compare with the saved result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import discover_folder, fail, load, shown


def test(
    name: Annotated[str | None, typer.Argument(help="One script (default: every script with a saved run).",
                                               show_default=False)] = None,
    integration: Annotated[str | None, typer.Option(
        "--integration", help="Only this integration's scripts.", show_default=False)] = None,
    path: Annotated[Path | None, typer.Option(
        "--path", help="The integrations folder (default: found from the current folder upwards).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document with every result.")] = False,
    variant: Annotated[str | None, typer.Option(
        "--variant", help="Run syncs as this variant: against its own Nango recording, else the base one.",
        show_default=False)] = None,
) -> None:
    """Rerun scripts offline (no network, no server) against <integration>/mocks/<script>/ and diff the result.

    Mocks recorded by Nango's own CLI are replayed too: its 0.6x files under <integration>/mocks/ or its 0.7x
    <integration>/tests/<script>.test.json; with --variant, a sync variant's recording (0.6x:
    mocks/<script>/<variant>/)."""
    from orchestrator.testing.runs import SavedRunError, check_saved, declared, has_saved_run, resolve

    folder = discover_folder(path)
    load(folder, warnings=not as_json)
    root = folder.path.resolve()
    try:
        if name is not None:
            scripts = [resolve(root, name, integration)]
        else:  # with --variant: the syncs, the only scripts with variants
            scripts = [s for s in declared(root) if (integration is None or s.integration == integration)
                       and (variant is None or s.kind == "sync") and has_saved_run(root, s, variant)]
            if integration is not None and not any(s.integration == integration for s in declared(root)):
                fail(f"no integration {integration!r} in {shown(folder.yaml)}")
            if not scripts:
                fail(f"no saved runs under {shown(folder.path)}/<integration>/mocks/ nor Nango-recorded "
                     "<integration>/tests/<script>.test.json (record one with "
                     "`nango dryrun NAME CONNECTION --save-responses`)")
        results = []
        for index, script in enumerate(scripts, 1):
            check = check_saved(root, script, variant)
            results.append(check)
            if as_json:
                continue
            label = f"{script.integration}/{script.name}"
            if check.recorded_by:
                label += f" ({check.recorded_by})"
            if check.ok:
                typer.echo(f"[{index}/{len(scripts)}] PASS {label} ({check.requests} request(s))")
                continue
            typer.secho(f"[{index}/{len(scripts)}] FAIL {label}", fg=typer.colors.RED)
            for line in (check.error or "").splitlines() or []:
                typer.echo(f"  {line}")
            for line in check.diff:
                color = typer.colors.GREEN if line.startswith("+") else (
                    typer.colors.RED if line.startswith("-") else None)
                typer.secho(f"  {line}", fg=color)
    except SavedRunError as exc:
        fail(str(exc))
    failed = [r for r in results if not r.ok]
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "results": [r.as_dict() for r in results]}, indent=2))
    else:
        typer.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)
