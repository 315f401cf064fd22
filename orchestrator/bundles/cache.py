"""Worker-side cache of bundles, unpacked once per sha256 and verified against it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

from orchestrator.bundles.store import BundleStore
from orchestrator.errors import BundleError


class BundleCache:
    def __init__(self, store: BundleStore, root: Path) -> None:
        self.store = store
        self.root = root
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
            data = await self.store.get(key)
            if hashlib.sha256(data).hexdigest() != sha256:
                raise BundleError(f"bundle {key} does not match its sha256 {sha256}")
            await asyncio.to_thread(self._unpack, data, target)
        return target

    def _unpack(self, data: bytes, target: Path) -> None:
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():
                dest = (tmp / name).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise BundleError(f"bundle entry {name!r} escapes the bundle folder")
            zf.extractall(tmp)
        (tmp / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
