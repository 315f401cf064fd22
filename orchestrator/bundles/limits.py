"""Bundle limits: what stops a zip bomb at deploy and again on the worker that unpacks it.

A bundle is untrusted input twice: `POST /deploy` receives it from a client, and a worker fetches
it from the bundle store, where anyone with store access could have put it. Both run the same
checks. The archive's directory is checked first (entry count, names, symlinks, declared sizes);
then every entry is decompressed in chunks, counting bytes as they come, and the walk stops at
the first limit: neither side ever holds a whole entry in memory, and the worker writes into a
scratch folder that is removed when anything fails.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import orjson

from orchestrator.errors import BundleError, BundleLimitError

MANIFEST = "manifest.json"
CHUNK = 64 * 1024
RATIO_FLOOR = 1024 * 1024  # entries smaller than this once unpacked are not held to the ratio
MiB = 1024 * 1024


@dataclass(frozen=True)
class BundleLimits:
    """The four limits, as set by BUNDLE_MAX_BYTES, BUNDLE_MAX_UNPACKED_BYTES, BUNDLE_MAX_FILES, BUNDLE_MAX_RATIO."""

    max_bytes: int = 20 * MiB
    max_unpacked_bytes: int = 100 * MiB
    max_files: int = 2000
    max_ratio: int = 100

    @classmethod
    def from_settings(cls, settings: Any) -> BundleLimits:
        return cls(max_bytes=settings.bundle_max_bytes, max_unpacked_bytes=settings.bundle_max_unpacked_bytes,
                   max_files=settings.bundle_max_files, max_ratio=settings.bundle_max_ratio)


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} bytes"


def _exceeded(integration: str, setting: str, limit: int, what: str) -> BundleLimitError:
    return BundleLimitError(f"bundle of integration '{integration}' {what}; the limit is {setting}={limit}",
                            integration=integration, setting=setting, limit=limit)


def check_size(size: int, limits: BundleLimits, integration: str) -> None:
    """The compressed archive itself (what is uploaded and downloaded)."""
    if size > limits.max_bytes:
        raise _exceeded(integration, "BUNDLE_MAX_BYTES", limits.max_bytes,
                        f"is {_size(size)} compressed, more than {_size(limits.max_bytes)}")


def _check_name(info: zipfile.ZipInfo, integration: str) -> None:
    name = info.filename
    path = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or path.is_absolute() or ".." in path.parts
            or (path.parts and ":" in path.parts[0])):
        raise BundleError(f"bundle of integration '{integration}' has an entry with an unsafe path {name!r} "
                          "(absolute, '..' or a drive)", integration=integration)
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
        raise BundleError(f"bundle of integration '{integration}': entry {name!r} is {kind}", integration=integration)
    if info.flag_bits & 0x1:
        raise BundleError(f"bundle of integration '{integration}': entry {name!r} is encrypted",
                          integration=integration)


def check_directory(zf: zipfile.ZipFile, limits: BundleLimits, integration: str) -> list[zipfile.ZipInfo]:
    """What the archive's directory says: count, names, entry types and declared sizes. Nothing is unpacked."""
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise _exceeded(integration, "BUNDLE_MAX_FILES", limits.max_files, f"has {len(infos)} entries")
    declared = 0
    for info in infos:
        _check_name(info, integration)
        declared += info.file_size
        if declared > limits.max_unpacked_bytes:
            raise _exceeded(integration, "BUNDLE_MAX_UNPACKED_BYTES", limits.max_unpacked_bytes,
                            f"unpacks to more than {_size(limits.max_unpacked_bytes)}")
        _check_ratio(info, info.file_size, limits, integration)
    return infos


def _check_ratio(info: zipfile.ZipInfo, unpacked: int, limits: BundleLimits, integration: str) -> None:
    if unpacked > max(RATIO_FLOOR, limits.max_ratio * max(info.compress_size, 1)):
        raise _exceeded(integration, "BUNDLE_MAX_RATIO", limits.max_ratio,
                        f"has an entry {info.filename!r} compressed more than {limits.max_ratio} times "
                        f"({_size(info.compress_size)} unpacking to {_size(unpacked)} or more)")


class _Budget:
    """Bytes unpacked so far across the archive."""

    def __init__(self, limits: BundleLimits, integration: str) -> None:
        self.limits = limits
        self.integration = integration
        self.total = 0

    def chunks(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """One entry's bytes in chunks, counted as they come; stops at the first limit."""
        done = 0
        with zf.open(info) as src:
            while chunk := src.read(CHUNK):
                done += len(chunk)
                self.total += len(chunk)
                if self.total > self.limits.max_unpacked_bytes:
                    raise _exceeded(self.integration, "BUNDLE_MAX_UNPACKED_BYTES", self.limits.max_unpacked_bytes,
                                    f"unpacks to more than {_size(self.limits.max_unpacked_bytes)}")
                _check_ratio(info, done, self.limits, self.integration)
                yield chunk


@contextlib.contextmanager
def open_bundle(source: bytes | Path | IO[bytes], integration: str) -> Iterator[zipfile.ZipFile]:
    """The archive as a ZipFile; an unreadable one is a BundleError naming the integration."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            yield zf
    except zipfile.BadZipFile as exc:
        raise BundleError(f"bundle of integration '{integration}' is not a valid zip: {exc}",
                          integration=integration) from None
    except (EOFError, NotImplementedError, ValueError) as exc:  # truncated data, unknown compression
        raise BundleError(f"bundle of integration '{integration}' cannot be read: {exc}",
                          integration=integration) from None


def read_manifest(zf: zipfile.ZipFile, limits: BundleLimits, integration: str) -> dict[str, Any]:
    """The manifest, read in chunks within the limits (a manifest can be a bomb as well)."""
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise BundleError(f"not a valid bundle: no {MANIFEST}", integration=integration) from None
    data = bytearray()
    for chunk in _Budget(limits, integration).chunks(zf, info):
        data += chunk
    try:
        manifest = orjson.loads(bytes(data))
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"not a valid bundle: {MANIFEST} is not JSON: {exc}", integration=integration) from None
    if not isinstance(manifest, dict):
        raise BundleError(f"not a valid bundle: {MANIFEST} is not an object", integration=integration)
    return manifest


def inspect(data: bytes, limits: BundleLimits, label: str = "?") -> dict[str, Any]:
    """Deploy-time check of an uploaded bundle: every limit, every entry decompressed and discarded.

    Returns the manifest. `label` names the bundle until its manifest says which integration it is.
    Blocking (decompresses up to BUNDLE_MAX_UNPACKED_BYTES): call it in a thread."""
    check_size(len(data), limits, label)
    with open_bundle(data, label) as zf:
        if len(zf.infolist()) > limits.max_files:  # before anything is read (the manifest counts too)
            check_directory(zf, limits, label)
        manifest = read_manifest(zf, limits, label)  # bounded like any entry; names the integration
        integration = manifest.get("integration") if isinstance(manifest.get("integration"), str) else label
        check_directory(zf, limits, integration)
        budget = _Budget(limits, integration)
        for info in zf.infolist():
            for _ in budget.chunks(zf, info):
                pass
    return manifest


def unpack(archive: Path, target: Path, limits: BundleLimits, integration: str = "?",
           on_progress: Callable[[int], None] | None = None) -> None:
    """Unpack `archive` into `target` (which must not exist), streaming and within the limits.

    On any failure nothing is left behind: `target` is removed. Blocking: call it in a thread."""
    check_size(archive.stat().st_size, limits, integration)
    target.mkdir(parents=True)
    try:
        root = target.resolve()
        with open_bundle(archive, integration) as zf:
            infos = check_directory(zf, limits, integration)
            budget = _Budget(limits, integration)
            for info in infos:
                dest = (root / info.filename).resolve()
                if not dest.is_relative_to(root):
                    raise BundleError(f"bundle entry {info.filename!r} escapes the bundle folder",
                                      integration=integration)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    out = open(dest, "xb")  # "x": a duplicate entry never overwrites the first
                except FileExistsError:
                    raise BundleError(f"bundle entry {info.filename!r} appears twice",
                                      integration=integration) from None
                with out:
                    for chunk in budget.chunks(zf, info):
                        out.write(chunk)
                if on_progress:
                    on_progress(budget.total)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
