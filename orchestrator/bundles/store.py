"""Where bundles live: MinIO/S3 in production, a local directory for `nango dev`.

Keys are content-addressed (`bundles/<env>/<integration>/<sha256>.zip`), so a stored bundle
never changes and any cache of it stays valid forever.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import urllib3
from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError as Urllib3Error

from orchestrator.bundles.limits import BundleLimits, check_size
from orchestrator.config.settings import Settings
from orchestrator.errors import BundleError, NotFoundError, TransientError


def bundle_key(environment: str, integration: str, sha256: str) -> str:
    return f"bundles/{environment}/{integration}/{sha256}.zip"


class BundleStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def download(self, key: str, dest: Path, *, max_bytes: int) -> int: ...
    async def exists(self, key: str) -> bool: ...
    def describe(self) -> str: ...


class DirectoryStore:
    """Bundles as files under one folder; writes are atomic renames."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise BundleError(f"invalid bundle key {key!r}")
        return path

    async def put(self, key: str, data: bytes) -> None:
        def write() -> None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            raise NotFoundError(f"bundle {key} is not in the bundle store {self.root}") from None

    async def download(self, key: str, dest: Path, *, max_bytes: int) -> int:
        """Copy the bundle to `dest` in chunks; refused (BundleLimitError) past `max_bytes`."""
        def copy() -> int:
            try:
                with open(self._path(key), "rb") as src:
                    return _copy_capped(iter(lambda: src.read(_CHUNK), b""), dest, key, max_bytes)
            except FileNotFoundError:
                raise NotFoundError(f"bundle {key} is not in the bundle store {self.root}") from None
        return await asyncio.to_thread(copy)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    def describe(self) -> str:
        return f"directory {self.root}"


class S3Store:
    """Bundles in a MinIO/S3 bucket. The minio client blocks, so every call runs in a thread."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, secure: bool = False,
                 region: str = "us-east-1") -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        # Fail fast (a few quick retries, short timeouts): Temporal retries the activity with backoff.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60), maxsize=10,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]))
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region,
                             http_client=http)
        self._bucket_ready = False

    async def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        def ensure() -> None:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        await self._call(ensure)
        self._bucket_ready = True

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        try:
            return await asyncio.to_thread(fn, *args)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise NotFoundError(f"bundle store: {exc.code} for {exc.resource}") from None
            raise TransientError(f"bundle store {self.endpoint}: {exc.code}: {exc.message}") from None
        except (Urllib3Error, OSError) as exc:
            raise TransientError(f"bundle store {self.endpoint} unreachable: {exc}") from None

    async def put(self, key: str, data: bytes) -> None:
        await self._ensure_bucket()
        digest = hashlib.sha256(data).hexdigest()
        await self._call(lambda: self._client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type="application/zip",
            metadata={"sha256": digest}))

    async def get(self, key: str) -> bytes:
        def fetch() -> bytes:
            resp = self._client.get_object(self.bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()
        return await self._call(fetch)

    async def download(self, key: str, dest: Path, *, max_bytes: int) -> int:
        """Stream the object to `dest` in chunks; refused (BundleLimitError) past `max_bytes`."""
        def fetch() -> int:
            size = self._client.stat_object(self.bucket, key).size
            if size is not None and size > max_bytes:
                _too_large(key, size, max_bytes)
            resp = self._client.get_object(self.bucket, key)
            try:
                return _copy_capped(resp.stream(_CHUNK), dest, key, max_bytes)
            finally:
                resp.close()
                resp.release_conn()
        return await self._call(fetch)

    async def exists(self, key: str) -> bool:
        await self._ensure_bucket()
        try:
            await self._call(self._client.stat_object, self.bucket, key)
            return True
        except NotFoundError:
            return False

    def describe(self) -> str:
        return f"s3 {self.endpoint}/{self.bucket}"


_CHUNK = 64 * 1024


def _too_large(key: str, size: int, max_bytes: int) -> None:
    check_size(size, BundleLimits(max_bytes=max_bytes), key.split("/")[-2] if key.count("/") >= 2 else key)


def _copy_capped(chunks: Iterable[bytes], dest: Path, key: str, max_bytes: int) -> int:
    """Write chunks to `dest`, stopping (and removing it) once more than `max_bytes` arrived."""
    written = 0
    try:
        with open(dest, "wb") as out:
            for chunk in chunks:
                written += len(chunk)
                if written > max_bytes:
                    _too_large(key, written, max_bytes)
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return written


def store_from_settings(settings: Settings) -> BundleStore:
    if settings.minio_endpoint:
        return S3Store(settings.minio_endpoint, settings.minio_access_key.get_secret_value(),
                       settings.minio_secret_key.get_secret_value(), settings.minio_bucket,
                       secure=settings.minio_secure, region=settings.minio_region)
    return DirectoryStore(settings.bundle_dir)
