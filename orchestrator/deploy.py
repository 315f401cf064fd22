"""Server side of `nango deploy`: store bundles, record deployed scripts, reconcile schedules.

A deploy is planned first (what is added, updated, removed) and applied only when it removes
nothing or the caller confirmed the removals, so a typo in nango.yaml never silently deletes a
sync and its schedules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from temporalio.client import Client

from orchestrator.bundles.build import read_manifest
from orchestrator.bundles.store import BundleStore, bundle_key
from orchestrator.crypto import Sealer
from orchestrator.errors import InvalidInputError
from orchestrator.providers import store as providers_repo
from orchestrator.providers.catalog import Provider, find_provider
from orchestrator.reconcile import reconcile_integration
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Environment

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
    def parse(cls, data: bytes) -> UploadedBundle:
        manifest = read_manifest(data)
        if not isinstance(manifest.get("integration"), str) or not isinstance(manifest.get("scripts"), list):
            raise InvalidInputError("bundle manifest lacks 'integration' or 'scripts'")
        return cls(data, manifest, hashlib.sha256(data).hexdigest())


def _label(kind: str, name: str) -> str:
    return f"{kind}:{name}"


async def plan(conn: asyncpg.Connection, env: Environment, bundle: UploadedBundle) -> IntegrationPlan:
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
        before = existing.get(ident)
        if before is None:
            result.added.append(_label(*ident))
        elif (before.bundle_sha256 == bundle.sha256
              and before.config == configs.get(f"{script['kind']}:{script['name']}", {})):
            result.unchanged.append(_label(*ident))
        else:
            result.updated.append(_label(*ident))
    result.removed = [_label(*ident) for ident in existing if ident not in seen]
    return result


async def deploy(
    pool: asyncpg.Pool, sealer: Sealer, store: BundleStore, client: Client, env: Environment,
    bundles: list[UploadedBundle], *, allow_removal: bool = False, task_queue_prefix: str = "",
    providers: dict[str, Provider] | None = None,
) -> DeployResult:
    async with pool.acquire() as conn:
        plans = [await plan(conn, env, b) for b in bundles]
    if any(p.removed for p in plans) and not allow_removal:
        return DeployResult(applied=False, plans=plans, needs_confirmation=True)
    if providers:  # custom providers (the folder's providers.yaml) first: the integrations may use them
        async with pool.acquire() as conn, conn.transaction():
            for custom in providers.values():
                await providers_repo.upsert(conn, env.id, custom)
        log.info("providers_deployed", providers=sorted(providers))
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
                await scripts_repo.upsert(
                    conn, environment_id=env.id, integration_id=integration.id, name=script["name"],
                    kind=script["kind"], bundle_sha256=bundle.sha256, bundle_key=skey,
                    module_path=script["module_path"], config=configs.get(f"{script['kind']}:{script['name']}", {}))
            for label in integration_plan.removed:
                kind, name = label.split(":", 1)
                old = await scripts_repo.get(conn, integration.id, kind, name)
                if old:
                    await scripts_repo.delete(conn, old.id)
        await reconcile_integration(pool, sealer, client, integration, task_queue_prefix=task_queue_prefix)
        changes = {k: v for k, v in integration_plan.as_dict().items() if k != "integration"}
        log.info("deployed", integration=key, sha256=bundle.sha256, **changes)
    return DeployResult(applied=True, plans=plans, providers=sorted(providers or {}))
