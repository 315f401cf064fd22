"""Worker-side cache of bundles, unpacked once per sha256 and verified against it.

A bundle is downloaded to a scratch file in chunks (never whole in memory), checked against its
sha256 and unpacked within the bundle limits (bundles/limits.py) into a scratch folder that is
renamed into place only when complete. Whatever fails, the scratch file and folder are removed:
the cache never holds a partial unpack.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

from orchestrator.bundles.limits import BundleLimits, unpack
from orchestrator.bundles.store import BundleStore
from orchestrator.errors import BundleError


class BundleCache:
    def __init__(self, store: BundleStore, root: Path, limits: BundleLimits | None = None) -> None:
        self.store = store
        self.root = root
        self.limits = limits or BundleLimits()
        self._locks: dict[str, asyncio.Lock] = {}

    async def fetch(self, key: str, sha256: str) -> Path:
        """The unpacked bundle folder; downloaded and checked only on first use."""
        target = self.root / sha256
        if (target / ".complete").exists():
            return target
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            if (target / ".complete").exists():
                return target
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
            archive = self.root / f"{sha256}.zip.download{os.getpid()}"
            try:
                await self.store.download(key, archive, max_bytes=self.limits.max_bytes)
                if await asyncio.to_thread(_sha256_of, archive) != sha256:
                    raise BundleError(f"bundle {key} does not match its sha256 {sha256}")
                await asyncio.to_thread(self._unpack, archive, target, _integration_of(key))
            finally:
                await asyncio.to_thread(archive.unlink, missing_ok=True)
        return target

    def _unpack(self, archive: Path, target: Path, integration: str) -> None:
        tmp = target.with_name(f"{target.name}.partial{os.getpid()}")  # per process: workers may share a cache
        shutil.rmtree(tmp, ignore_errors=True)
        unpack(archive, tmp, self.limits, integration)  # removes tmp itself when it fails
        try:
            (tmp / ".complete").touch()
            if (target / ".complete").exists():  # another worker on this host finished it first
                return
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _integration_of(key: str) -> str:
    """bundles/<env>/<integration>/<sha256>.zip -> <integration> (for error messages)."""
    parts = key.split("/")
    return parts[-2] if len(parts) >= 3 else "?"
