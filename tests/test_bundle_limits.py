"""Bundle limits, unit by unit: what a zip bomb, a path trick or a symlink meets at deploy and on the worker."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import orjson
import pytest

from orchestrator.bundles.cache import BundleCache
from orchestrator.bundles.limits import BundleLimits, inspect, unpack
from orchestrator.bundles.store import DirectoryStore, bundle_key
from orchestrator.errors import BundleError, BundleLimitError

MiB = 1024 * 1024
SMALL = BundleLimits(max_bytes=1 * MiB, max_unpacked_bytes=8 * MiB, max_files=20, max_ratio=100)


def bundle(files: dict[str, bytes], *, integration: str = "github", manifest: bool = True,
           symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if manifest:
            zf.writestr("manifest.json", orjson.dumps({"integration": integration, "scripts": []}))
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def zeros(name: str, size: int) -> bytes:
    """One entry of `size` zero bytes, written in chunks (a 1 GiB entry never sits in memory)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", orjson.dumps({"integration": "github", "scripts": []}))
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            chunk = bytes(MiB)
            for _ in range(size // MiB):
                out.write(chunk)
    return buf.getvalue()


def test_a_normal_bundle_passes_and_unpacks(tmp_path: Path) -> None:
    data = bundle({"github/syncs/issues.py": b"async def fetch_data(nango):\n    pass\n", "models.py": b"x = 1\n"})
    assert inspect(data, SMALL)["integration"] == "github"
    archive = tmp_path / "b.zip"
    archive.write_bytes(data)
    unpack(archive, tmp_path / "out", SMALL)
    assert (tmp_path / "out/github/syncs/issues.py").read_text().startswith("async def")


def test_compressed_size_limit() -> None:
    data = bundle({"noise.py": os.urandom(2 * MiB)})  # 2 MiB that does not compress
    with pytest.raises(BundleLimitError, match="BUNDLE_MAX_BYTES") as exc:
        inspect(data, BundleLimits(max_bytes=MiB))
    assert exc.value.fields["setting"] == "BUNDLE_MAX_BYTES"


def test_ratio_limit_names_the_entry_and_the_integration() -> None:
    data = zeros("github/bomb.py", 4 * MiB)  # 4 MiB of zeros: a few KiB compressed
    with pytest.raises(BundleLimitError, match="BUNDLE_MAX_RATIO") as exc:
        inspect(data, SMALL)
    assert "'github'" in exc.value.message and "github/bomb.py" in exc.value.message
    # small repetitive files are fine: the ratio applies from 1 MiB unpacked
    inspect(bundle({"models.py": b"class A: pass\n" * 10_000}), SMALL)


def test_unpacked_total_limit() -> None:
    files = {f"f{i}.py": os.urandom(MiB) for i in range(10)}  # 10 x 1 MiB, incompressible
    with pytest.raises(BundleLimitError, match="BUNDLE_MAX_UNPACKED_BYTES"):
        inspect(bundle(files), BundleLimits(max_bytes=64 * MiB, max_unpacked_bytes=8 * MiB, max_ratio=1000))


def test_a_gigabyte_of_zeros_is_refused_from_its_directory_before_any_decompression() -> None:
    data = zeros("bomb.py", 1024 * MiB)
    assert len(data) < 2 * MiB
    with pytest.raises(BundleLimitError, match="BUNDLE_MAX_UNPACKED_BYTES"):
        inspect(data, BundleLimits())


def test_file_count_limit() -> None:
    data = bundle({f"m{i}.py": b"" for i in range(30)})
    with pytest.raises(BundleLimitError, match="BUNDLE_MAX_FILES"):
        inspect(data, SMALL)


@pytest.mark.parametrize("name", ["/etc/cron.d/x", "../escape.py", "a/../../escape.py", "C:/x.py", "a\\..\\b.py"])
def test_unsafe_paths_are_refused(name: str, tmp_path: Path) -> None:
    data = bundle({name: b"x"})
    with pytest.raises(BundleError, match="unsafe path"):
        inspect(data, SMALL)
    archive = tmp_path / "b.zip"
    archive.write_bytes(data)
    with pytest.raises(BundleError):
        unpack(archive, tmp_path / "out", SMALL)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape.py").exists()


def test_symlinks_are_refused(tmp_path: Path) -> None:
    data = bundle({}, symlinks={"github/link.py": "/etc/passwd"})
    with pytest.raises(BundleError, match="symlink"):
        inspect(data, SMALL)
    archive = tmp_path / "b.zip"
    archive.write_bytes(data)
    with pytest.raises(BundleError, match="symlink"):
        unpack(archive, tmp_path / "out", SMALL)
    assert not (tmp_path / "out").exists()


def test_a_lying_directory_is_caught_while_streaming(tmp_path: Path) -> None:
    """A central directory that understates an entry's size: the stream stops at the declared size and the
    entry fails its CRC, so the lie is refused, never written whole."""
    data = bytearray(zeros("bomb.py", 4 * MiB))
    real = (4 * MiB).to_bytes(4, "little")
    cd = data.rfind(b"PK\x01\x02")  # the last central directory entry: bomb.py
    at = data.index(real, cd)
    data[at:at + 4] = (1000).to_bytes(4, "little")
    with pytest.raises(BundleError):
        inspect(bytes(data), BundleLimits())
    archive = tmp_path / "b.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(BundleError):
        unpack(archive, tmp_path / "out", BundleLimits())
    assert not (tmp_path / "out").exists()


def test_a_manifest_bomb_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", b" " * (16 * MiB))
    with pytest.raises(BundleLimitError):
        inspect(buf.getvalue(), SMALL)


def test_not_a_zip() -> None:
    with pytest.raises(BundleError, match="not a valid zip"):
        inspect(b"hello", SMALL)


async def test_the_cache_refuses_a_bomb_and_keeps_no_partial_unpack(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    cache = BundleCache(store, tmp_path / "cache", SMALL)
    for data, match in ((zeros("bomb.py", 4 * MiB), "BUNDLE_MAX_RATIO"),
                        (bundle({f"m{i}.py": b"" for i in range(30)}), "BUNDLE_MAX_FILES"),
                        (bundle({"../x.py": b"x"}), "unsafe path")):
        sha = hashlib.sha256(data).hexdigest()
        key = bundle_key("env", "github", sha)
        await store.put(key, data)
        with pytest.raises(BundleError, match=match):
            await cache.fetch(key, sha)
        assert list((tmp_path / "cache").iterdir()) == []
    big = bundle({"noise.py": os.urandom(2 * MiB)})
    sha = hashlib.sha256(big).hexdigest()
    await store.put(bundle_key("env", "github", sha), big)
    with pytest.raises(BundleLimitError, match="BUNDLE_MAX_BYTES"):
        await cache.fetch(bundle_key("env", "github", sha), sha)
    assert list((tmp_path / "cache").iterdir()) == []
    good = bundle({"github/syncs/issues.py": b"pass\n"})
    sha = hashlib.sha256(good).hexdigest()
    await store.put(bundle_key("env", "github", sha), good)
    folder = await cache.fetch(bundle_key("env", "github", sha), sha)
    assert (folder / "github/syncs/issues.py").read_text() == "pass\n"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [sha]
