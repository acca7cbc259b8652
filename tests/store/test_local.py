"""LocalStore-only behaviour: path safety, read-only files, full disk, missing lock records."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from recorder.errors import DiskFull, ObjectLocked, ObjectNotFound, StorageError
from recorder.store.base import LocalObjects
from recorder.store.local import LocalStore

HOSTILE_KEYS = [
    "../../etc/passwd",
    "/absolute/path",
    "a/../../../b",
    ".",
    "..",
    "",
    "a//b",
    "trailing/",
    "x/%meta",
    "x%tmp-1",
    "meeting/4444AAAiAAAAAiAiAiiAii==/+/=",
    "ünïcødé/\N{PILE OF POO}",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_any_key_stays_inside_root_and_round_trips(tmp_path: Path, key: str) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    source = tmp_path / "src"
    source.write_bytes(b"evidence")
    digest = hashlib.sha256(b"evidence").hexdigest()
    with trio.fail_after(10):
        await store.put(key, source, sha256=digest, retain_until=None)
        assert await store.list() == [key]
        assert (await store.head(key)).sha256 == digest
    _assert_only_under(tmp_path, root, allowed={source})


def _assert_only_under(top: Path, root: Path, allowed: set[Path]) -> None:
    outside = [p for p in top.rglob("*") if not p.is_relative_to(root) and p not in allowed]
    assert outside == []
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root.resolve())
        assert not path.name.startswith(".")


async def test_objects_and_lock_records_are_read_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "src"
    source.write_bytes(b"evidence")
    digest = hashlib.sha256(b"evidence").hexdigest()
    with trio.fail_after(10):
        await store.put("a/b.seg", source, sha256=digest, retain_until=datetime.now(UTC))
    files = sorted((tmp_path / "store" / "a").iterdir())
    assert [f.name for f in files] == ["b.seg", "b.seg%meta"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o444 for f in files)


async def test_object_without_lock_record_is_never_deleted(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "src"
    source.write_bytes(b"evidence")
    digest = hashlib.sha256(b"evidence").hexdigest()
    with trio.fail_after(10):
        await store.put("k", source, sha256=digest, retain_until=None)
        (tmp_path / "store" / "k%meta").unlink()
        with pytest.raises(ObjectLocked):
            await store.delete("k")
        with pytest.raises(StorageError):
            await store.head("k")
    assert (tmp_path / "store" / "k").read_bytes() == b"evidence"


async def test_stale_temp_files_are_removed_by_self_check(tmp_path: Path) -> None:
    from recorder.store.base import StorePolicy

    root = tmp_path / "store"
    root.mkdir()
    stale = root / "k%tmp-0123"
    fresh = root / "j%tmp-4567"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    old = (datetime.now(UTC) - timedelta(days=1)).timestamp()
    os.utime(stale, (old, old))
    with trio.fail_after(10):
        await LocalStore(root).self_check(StorePolicy())
    assert not stale.exists()
    assert fresh.exists()


async def test_full_disk_is_disk_full_and_leaves_no_temp(
    tmp_path: Path, tiny_filesystem: Path
) -> None:
    store = LocalStore(tiny_filesystem / "store")
    data = os.urandom(1024 * 1024)
    source = tmp_path / "big"
    source.write_bytes(data)
    with trio.fail_after(10):
        with pytest.raises(DiskFull) as full:
            await store.put(
                "big", source, sha256=hashlib.sha256(data).hexdigest(), retain_until=None
            )
        assert str(tiny_filesystem / "store") in str(full.value)
        assert await store.list() == []
    assert [p.name for p in (tiny_filesystem / "store").iterdir()] == []


async def test_open_file_reads_the_object_itself_and_refuses_what_open_refuses(
    tmp_path: Path,
) -> None:
    """``open_file`` (``LocalObjects``): the object's own bytes through ``readinto``, and the same
    errors as ``open`` for a missing key, a version the directory does not keep, and an object
    whose lock record is missing."""
    store = LocalStore(tmp_path / "store")
    assert isinstance(store, LocalObjects)
    payload = bytes(range(256)) * 5000
    source = tmp_path / "src"
    source.write_bytes(payload)
    with trio.fail_after(10):
        await store.put(
            "a/b.seg", source, sha256=hashlib.sha256(payload).hexdigest(), retain_until=None
        )
        handle = await store.open_file("a/b.seg")
        with handle:
            buffer = bytearray(100_000)
            parts = []
            while count := handle.readinto(buffer):
                parts.append(bytes(buffer[:count]))
        assert b"".join(parts) == payload
        with pytest.raises(ObjectNotFound):
            await store.open_file("a/none.seg")
        with pytest.raises(ObjectNotFound):
            await store.open_file("a/b.seg", version_id="v1")
        record = tmp_path / "store" / "a" / "b.seg%meta"
        os.chmod(record.parent, 0o700)
        record.unlink()
        with pytest.raises(StorageError, match="no lock record"):
            await store.open_file("a/b.seg")
