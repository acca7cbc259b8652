"""S3-only behaviour on moto's server mode: multipart, abort on a failing part, self-check.

Where moto 5.2.5 differs from S3 (checked by hand against this version; S3Store copes with each):

* It does not verify ``ChecksumSHA256`` against the body (a wrong value is stored). S3Store hashes
  the source itself before sending, so a mismatch is refused locally; real S3 answers BadDigest.
* It ignores the Object Lock headers of CreateMultipartUpload; S3Store re-applies retention and
  legal hold after CompleteMultipartUpload (valid on S3 too: same or later date).
* Its composite multipart checksum has no ``-N`` suffix, so S3Store marks multipart objects with
  ``recorder-parts`` metadata rather than parsing the checksum.
* GetObjectRetention fails (500) for objects locked at PUT; S3Store reads locks with HeadObject.
* PutObjectRetention accepts a shorter date; S3Store refuses shortening itself.
* A bucket default retention can only be set on an empty bucket (tests use fresh buckets).
* Retention lapsing cannot be shown without waiting in real time, so the conformance check
  ``legal_hold_outlives_retention`` runs only on stores with an injectable clock.
"""

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pytest
import trio

from recorder.errors import StorageError, StoreMisconfigured, StoreUnavailable
from recorder.store._parts import PartSizer
from recorder.store.base import LockMode, StorePolicy
from recorder.store.s3 import S3Store, build_s3_client

from .conformance import read_all
from .s3_helpers import new_locked_bucket, s3_config, s3_store

MiB = 2**20
SMALL_THRESHOLD = 5 * MiB


def _big_file(tmp_path: Path, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _pending_uploads(store: S3Store) -> list[object]:
    return list(store._client.list_multipart_uploads(Bucket=store.config.bucket).get("Uploads", []))


async def test_multipart_above_threshold_round_trips_with_locks(
    tmp_path: Path, moto_endpoint: str
) -> None:
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint)
    store = s3_store(
        moto_endpoint,
        bucket,
        multipart_threshold_bytes=SMALL_THRESHOLD,
        part_sizer=PartSizer(preferred_part_bytes=5 * MiB),
    )
    source, digest = _big_file(tmp_path, 11 * MiB + 17)
    until = datetime.now(UTC) + timedelta(days=3)
    with trio.fail_after(60):
        result = await store.put(
            "big/one", source, sha256=digest, retain_until=until, legal_hold=True
        )
        info = await store.head("big/one")
        back = await read_all(store, "big/one")
    assert info.metadata["recorder-parts"] == "3"
    assert not info.sha256_verified_by_store, "S3 keeps a composite checksum for multipart"
    assert (info.sha256, info.size, info.version_id) == (digest, 11 * MiB + 17, result.version_id)
    assert info.lock_mode is LockMode.COMPLIANCE
    assert info.retain_until is not None
    assert info.retain_until >= until
    assert info.legal_hold
    assert hashlib.sha256(back).hexdigest() == digest
    assert _pending_uploads(store) == []


class FailsOnSecondPart(io.FileIO):
    """A source whose reads fail once the upload reaches the second part."""

    def __init__(self, path: Path, part_bytes: int) -> None:
        super().__init__(path, "rb")
        self._part_bytes = part_bytes

    def read(self, size: int = -1) -> bytes:
        if self.tell() >= self._part_bytes:
            raise OSError(5, "injected read error on part 2")
        return super().read(size)


async def test_failing_part_aborts_the_upload(tmp_path: Path, moto_endpoint: str) -> None:
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint)
    config = s3_config(
        moto_endpoint,
        bucket,
        multipart_threshold_bytes=SMALL_THRESHOLD,
        part_sizer=PartSizer(preferred_part_bytes=5 * MiB),
    )

    def opener(path: Path) -> BinaryIO:
        return FailsOnSecondPart(path, 5 * MiB)

    store = S3Store(config, build_s3_client(config), source_opener=opener)
    source, digest = _big_file(tmp_path, 11 * MiB)
    with trio.fail_after(60):
        with pytest.raises(StorageError, match="injected read error"):
            await store.put(
                "big/fails", source, sha256=digest, retain_until=datetime.now(UTC) + timedelta(1)
            )
        assert await trio.to_thread.run_sync(_pending_uploads, store) == []
        assert await store.list("big/") == []


async def test_cancelled_multipart_upload_is_aborted(tmp_path: Path, moto_endpoint: str) -> None:
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint)
    gate = trio.Event()
    token = trio.lowlevel.current_trio_token()
    config = s3_config(
        moto_endpoint,
        bucket,
        multipart_threshold_bytes=SMALL_THRESHOLD,
        part_sizer=PartSizer(preferred_part_bytes=5 * MiB),
    )

    def opener(path: Path) -> BinaryIO:
        handle = path.open("rb")
        # Tell the test a part is being read, so it cancels while the upload is under way.
        token.run_sync_soon(gate.set)
        return handle

    store = S3Store(config, build_s3_client(config), source_opener=opener)
    source, digest = _big_file(tmp_path, 11 * MiB)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def upload() -> None:
                await store.put("big/cancelled", source, sha256=digest, retain_until=None)

            nursery.start_soon(upload)
            await gate.wait()
            nursery.cancel_scope.cancel()
        assert await trio.to_thread.run_sync(_pending_uploads, store) == []
        assert await store.list("big/") == []


async def test_self_check_refuses_a_bucket_without_lock_or_versioning(moto_endpoint: str) -> None:
    bucket = "plain-" + os.urandom(4).hex()
    store = s3_store(moto_endpoint, bucket)
    await trio.to_thread.run_sync(lambda: store._client.create_bucket(Bucket=bucket))
    with trio.fail_after(20):
        with pytest.raises(StoreMisconfigured) as refused:
            await store.self_check(StorePolicy())
        message = str(refused.value)
        assert "Object Lock is disabled" in message
        assert "versioning is off" in message
        lenient = s3_store(moto_endpoint, bucket, verify_bucket_config=False)
        await lenient.self_check(StorePolicy())


async def test_self_check_names_differing_default_retention(moto_endpoint: str) -> None:
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint)
    store = s3_store(moto_endpoint, bucket)

    def set_default() -> None:
        store._client.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 7}},
            },
        )

    await trio.to_thread.run_sync(set_default)
    with trio.fail_after(20):
        with pytest.raises(StoreMisconfigured) as refused:
            await store.self_check(
                StorePolicy(lock_mode=LockMode.COMPLIANCE, default_retention_days=30)
            )
        message = str(refused.value)
        assert "mode is GOVERNANCE, policy says COMPLIANCE" in message
        assert "7 days, policy says 30" in message
        await store.self_check(StorePolicy(lock_mode=LockMode.GOVERNANCE, default_retention_days=7))


async def test_unreachable_endpoint_is_store_unavailable(tmp_path: Path) -> None:
    store = s3_store("http://127.0.0.1:9", "nowhere", max_attempts=1, connect_timeout_s=1.0)
    source = tmp_path / "x"
    source.write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    with trio.fail_after(30):
        with pytest.raises(StoreUnavailable):
            await store.check_ready()
        with pytest.raises(StoreUnavailable):
            await store.put("k", source, sha256=digest, retain_until=None)


def test_part_sizer_fits_s3_limits() -> None:
    sizer = PartSizer(preferred_part_bytes=1 * MiB)
    assert sizer.part_size(100 * MiB) == 5 * MiB  # never below S3's minimum
    huge = 200 * 2**30
    size = sizer.part_size(huge)
    assert -(-huge // size) <= 10_000
    assert size >= 5 * MiB
    spans = PartSizer().parts(20 * MiB + 3)
    assert [length for _offset, length in spans] == [8 * MiB, 8 * MiB, 4 * MiB + 3]
    assert spans[1][0] == 8 * MiB
    assert PartSizer().parts(0) == [(0, 0)]
    with pytest.raises(StorageError):
        PartSizer().part_size(6 * 2**40)


async def test_missing_bucket_is_a_misconfiguration(moto_endpoint: str) -> None:
    store = s3_store(moto_endpoint, "never-created-" + os.urandom(4).hex())
    with trio.fail_after(20), pytest.raises(StoreMisconfigured, match="does not exist"):
        await store.check_ready()
