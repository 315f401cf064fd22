"""Server side of `nango deploy`: store bundles, record deployed scripts, reconcile schedules.

A deploy is planned first (what is added, updated, removed) and applied only when it removes
nothing or the caller confirmed the removals, so a typo in nango.yaml never silently deletes a
sync and its schedules.

Schedules Temporal refuses do not stop the deploy: every integration is stored and reconciled, then the
refusals are raised together (ReconcileError, each naming its connection); the maintenance loop retries them.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from orchestrator.bundles.limits import BundleLimits
from orchestrator.bundles.limits import inspect as inspect_bundle
from orchestrator.bundles.store import bundle_key
from orchestrator.control.reconcile import ReconcileError, reconcile_integration
from orchestrator.errors import InvalidInputError, NotFoundError
from orchestrator.platform import Platform
from orchestrator.providers import custom as providers_repo
from orchestrator.providers.catalog import Provider
from orchestrator.providers.custom import find_provider
from orchestrator.store import deploy_history as history_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Environment
from orchestrator.timestamps import iso

log = structlog.get_logger(__name__)


@dataclass
class IntegrationPlan:
    integration: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"integration": self.integration, "added": self.added, "updated": self.updated,
                "removed": self.removed, "unchanged": self.unchanged}


@dataclass
class DeployResult:
    applied: bool
    plans: list[IntegrationPlan]
    needs_confirmation: bool = False
    providers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "needs_confirmation": self.needs_confirmation,
                "integrations": [p.as_dict() for p in self.plans], "providers": self.providers}


@dataclass
class UploadedBundle:
    data: bytes
    manifest: dict[str, Any]
    sha256: str

    @classmethod
    def parse(cls, data: bytes, limits: BundleLimits | None = None, label: str = "?") -> UploadedBundle:
        """Check an uploaded bundle against the bundle limits (every entry decompressed, in chunks) and read
        its manifest: a zip bomb is refused here, before anything is stored. Blocking: call it in a thread."""
        manifest = inspect_bundle(data, limits or BundleLimits(), label)
        if not isinstance(manifest.get("integration"), str) or not isinstance(manifest.get("scripts"), list):
            raise InvalidInputError("bundle manifest lacks 'integration' or 'scripts'")
        return cls(data, manifest, hashlib.sha256(data).hexdigest())


def _label(kind: str, name: str) -> str:
    return f"{kind}:{name}"


async def plan(conn: asyncpg.Connection, env: Environment, bundle: UploadedBundle,
               only: set[str] | None = None) -> IntegrationPlan:
    """What applying the bundle changes; with `only` (labels like 'sync:issues'), just those scripts."""
    key = bundle.manifest["integration"]
    result = IntegrationPlan(key)
    integration = await integrations_repo.get(conn, env.id, key)
    existing = {(s.kind, s.name): s for s in (await scripts_repo.list_for_integration(conn, integration.id)
                                              if integration else [])}
    configs = bundle.manifest.get("config", {}).get("scripts", {})
    seen = set()
    for script in bundle.manifest["scripts"]:
        ident = (script["kind"], script["name"])
        seen.add(ident)
        if only is not None and _label(*ident) not in only:
            continue
        before = existing.get(ident)
        if before is None:
            result.added.append(_label(*ident))
        elif (before.config == configs.get(f"{script['kind']}:{script['name']}", {})
              and (before.bundle_sha256 == bundle.sha256
                   or (script.get("sha256") and before.script_sha256 == script.get("sha256")))):
            result.unchanged.append(_label(*ident))
        else:
            result.updated.append(_label(*ident))
    if only is None:
        result.removed = [_label(*ident) for ident in existing if ident not in seen]
    return result


async def deploy(
    platform: Platform, env: Environment, bundles: list[UploadedBundle], *, allow_removal: bool = False,
    providers: dict[str, Provider] | None = None, only: list[str] | None = None, deployed_by: str = "api",
    rollback_of: int | None = None,
) -> DeployResult:
    pool, store = platform.pool, platform.bundles
    only_set = set(only) if only else None
    if only_set:
        available = {_label(s["kind"], s["name"]) for b in bundles for s in b.manifest["scripts"]}
        missing = sorted(only_set - available)
        if missing:
            raise InvalidInputError(f"nothing to deploy for {', '.join(missing)}: not in the compiled integrations "
                                    f"(available: {', '.join(sorted(available))})")
    async with pool.acquire() as conn:
        plans = [await plan(conn, env, b, only_set) for b in bundles]
    if any(p.removed for p in plans) and not allow_removal:
        return DeployResult(applied=False, plans=plans, needs_confirmation=True)
    if providers:  # custom providers (the folder's providers.yaml) first: the integrations may use them
        async with pool.acquire() as conn, conn.transaction():
            for custom in providers.values():
                await providers_repo.upsert(conn, env.id, custom)
        log.info("providers_deployed", providers=sorted(providers))
    refused: list[ReconcileError] = []
    for bundle, integration_plan in zip(bundles, plans, strict=True):
        manifest = bundle.manifest
        key = manifest["integration"]
        provider = manifest.get("config", {}).get("provider")
        async with pool.acquire() as conn:
            integration = await integrations_repo.get(conn, env.id, key)
            known_key = integration is None and await find_provider(conn, env.id, key) is not None
        if integration is None:
            provider = provider or (key if known_key else None)
            if provider is None:
                raise InvalidInputError(
                    f"integration '{key}' does not exist in environment '{env.name}' and '{key}' is not a known "
                    "provider: create it first (POST /integrations with its provider)", integration=key)
        skey = bundle_key(env.name, key, bundle.sha256)
        if not await store.exists(skey):
            await store.put(skey, bundle.data)
        configs = manifest.get("config", {}).get("scripts", {})
        async with pool.acquire() as conn, conn.transaction():
            if integration is None:
                integration = await integrations_repo.upsert(conn, env.id, key, provider or key)
            for script in manifest["scripts"]:
                if only_set is not None and _label(script["kind"], script["name"]) not in only_set:
                    continue
                await scripts_repo.upsert(
                    conn, environment_id=env.id, integration_id=integration.id, name=script["name"],
                    kind=script["kind"], bundle_sha256=bundle.sha256, bundle_key=skey,
                    module_path=script["module_path"], config=configs.get(f"{script['kind']}:{script['name']}", {}),
                    script_sha256=script.get("sha256"))
            for label in integration_plan.removed:
                kind, name = label.split(":", 1)
                old = await scripts_repo.get(conn, integration.id, kind, name)
                if old:
                    await scripts_repo.delete(conn, old.id)
            await record_history(conn, env.id, integration.id, bundle.sha256, skey, integration_plan,
                                 deployed_by=deployed_by, only=only, rollback_of=rollback_of)
        try:
            await reconcile_integration(platform, integration)
        except ReconcileError as exc:  # stored and recorded: the other integrations still deploy
            refused.append(exc)
        changes = {k: v for k, v in integration_plan.as_dict().items() if k != "integration"}
        log.info("deployed", integration=key, sha256=bundle.sha256, **changes)
    if refused:
        raise refused[0] if len(refused) == 1 else ReconcileError(
            "the deploy was stored, but some schedules could not be updated in Temporal (retried by the "
            "maintenance loop): " + " | ".join(e.message for e in refused),
            failed=[f for e in refused for f in e.fields.get("failed", [])])
    return DeployResult(applied=True, plans=plans, providers=sorted(providers or {}))


async def record_history(conn: asyncpg.Connection, environment_id: int, integration_id: int, sha256: str,
                         key: str, integration_plan: IntegrationPlan, *, deployed_by: str,
                         only: list[str] | None, rollback_of: int | None) -> int:
    return await history_repo.add(
        conn, environment_id=environment_id, integration_id=integration_id, deployed_by=deployed_by,
        bundle_sha256=sha256, bundle_key=key,
        changes={k: v for k, v in integration_plan.as_dict().items() if k != "integration"}, only_scripts=only,
        rollback_of=rollback_of)


async def history(conn: asyncpg.Connection, env: Environment, integration: str | None = None) -> list[dict[str, Any]]:
    rows = await history_repo.list_for_environment(conn, env.id, integration)
    return [{**r, "deployed_at": iso(r["deployed_at"])} for r in rows]


async def rollback(platform: Platform, env: Environment, integration: str, version: int, *,
                   deployed_by: str = "api") -> DeployResult:
    """Re-apply the bundle and config of an earlier deploy (a new history entry says so)."""
    pool, store = platform.pool, platform.bundles
    async with pool.acquire() as conn:
        bundle_key = await history_repo.bundle_key(conn, env.id, integration, version)
    if bundle_key is None:
        raise NotFoundError(f"integration '{integration}' has no deploy version {version}")
    bundle = await asyncio.to_thread(UploadedBundle.parse, await store.get(bundle_key),
                                     BundleLimits.from_settings(platform.settings), integration)
    return await deploy(platform, env, [bundle], allow_removal=True, deployed_by=deployed_by, rollback_of=version)
