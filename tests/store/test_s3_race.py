"""Racing writers on moto's S3 server: conditional writes, versions, and reading by version.

moto 5.2.5 honours ``If-None-Match: *`` on PutObject and on CompleteMultipartUpload (412
PreconditionFailed when the key has a current version), as S3 does.
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

from recorder.errors import ObjectExists
from recorder.officer.verify import fetch_to
from recorder.spool.spool import Spool
from recorder.spool.uploader import Backoff, UploaderStats, run_uploader
from recorder.store.base import PutResult
from recorder.store.s3 import S3Store

from ..spool.helpers import Uploaded, sealed_file
from .s3_helpers import new_locked_bucket, s3_store

MiB = 2**20


def _file(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _versions(store: S3Store, key: str) -> list[str]:
    listed = store._client.list_object_versions(Bucket=store.config.bucket, Prefix=key)
    return [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key]


def _until() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


async def test_racing_writers_with_different_bytes_one_wins_the_other_is_a_named_conflict(
    tmp_path: Path, moto_endpoint: str
) -> None:
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint, "race")
    stores = [s3_store(moto_endpoint, bucket), s3_store(moto_endpoint, bucket)]
    sources = [_file(tmp_path, f"w{i}", os.urandom(4096)) for i in range(2)]
    outcomes: list[PutResult | ObjectExists] = []

    async def write(store: S3Store, source: Path, sha: str) -> None:
        try:
            outcomes.append(await store.put("k/seg", source, sha256=sha, retain_until=_until()))
        except ObjectExists as exc:
            outcomes.append(exc)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for store, (source, sha) in zip(stores, sources, strict=True):
                nursery.start_soon(write, store, source, sha)
    [won] = [o for o in outcomes if isinstance(o, PutResult)]
    [lost] = [o for o in outcomes if isinstance(o, ObjectExists)]
    assert "conflict" in str(lost)
    assert "k/seg" in str(lost)
    assert _versions(stores[0], "k/seg") == [won.version_id]
    info = await stores[0].head("k/seg")
    assert (info.version_id, info.sha256) == (won.version_id, won.sha256)


async def test_racing_writers_with_the_same_bytes_both_succeed_on_one_version(
    tmp_path: Path, moto_endpoint: str
) -> None:
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint, "race")
    store = s3_store(moto_endpoint, bucket)
    source, sha = _file(tmp_path, "same", os.urandom(4096))
    results: list[PutResult] = []

    async def write() -> None:
        results.append(await store.put("k/same", source, sha256=sha, retain_until=_until()))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(write)
    versions = _versions(store, "k/same")
    assert len(results) == 4
    assert {r.version_id for r in results} == set(versions)
    # S3 makes ``If-None-Match: *`` atomic, so there it is one version. moto 5.2.5 checks for a
    # current version and then writes, unlocked, in its server's threads: two writers can both
    # pass (CI saw 2 versions). What is ours to hold either way: every writer succeeds on a
    # version that holds exactly these bytes.
    for version_id in versions:
        sink = io.BytesIO()
        assert await fetch_to(store, "k/same", sink, version_id=version_id) == sha


async def test_a_writer_racing_a_multipart_upload_makes_it_a_conflict_and_leaves_no_parts(
    tmp_path: Path, moto_endpoint: str
) -> None:
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint, "race")
    store = s3_store(moto_endpoint, bucket, multipart_threshold_bytes=5 * MiB)
    big, big_sha = _file(tmp_path, "big", os.urandom(11 * MiB))
    small, small_sha = _file(tmp_path, "small", b"the racer's bytes")
    racer = s3_store(moto_endpoint, bucket)
    raced: list[PutResult] = []

    def opener(path: Path) -> BinaryIO:
        # The racer's object lands after our parts started and before we complete.
        if not raced:
            raced.append(
                trio.from_thread.run(
                    lambda: racer.put("k/big", small, sha256=small_sha, retain_until=_until())
                )
            )
        return io.BytesIO(path.read_bytes())

    store._open_source = opener
    with trio.fail_after(60), pytest.raises(ObjectExists, match="conflict"):
        await store.put("k/big", big, sha256=big_sha, retain_until=_until())
    assert _versions(store, "k/big") == [raced[0].version_id]
    uploads = store._client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []


async def test_an_unconditional_racer_after_our_put_cannot_change_what_we_verify(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """The uploader reads back and catalogs the version its PUT created; a second version put
    by anyone else (an old recorder, a hostile writer) neither fails the genuine upload as
    corrupt nor stands in for it when an officer fetches the cataloged version."""
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint, "race")
    store = s3_store(moto_endpoint, bucket)
    spool = Spool(tmp_path / "spool")
    source, job = sealed_file(tmp_path / "out", 0)
    genuine = source.read_bytes()
    await spool.enqueue(source, job)

    class RacedStore:
        """The real S3Store; right after our PUT a racer writes without a condition."""

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        async def put(self, key: str, path: Path, **kwargs: object) -> PutResult:
            result = await store.put(key, path, **kwargs)  # type: ignore[arg-type]
            await trio.to_thread.run_sync(
                lambda: store._client.put_object(Bucket=bucket, Key=key, Body=b"forged")
            )
            return result

    uploaded = Uploaded()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    spool,
                    RacedStore(),  # type: ignore[arg-type]
                    on_uploaded=uploaded,
                    backoff=Backoff(initial_s=0.01, max_s=0.05),
                    task_status=task_status,
                )
            )
            await stats.wait_until(lambda s: s.uploaded + s.integrity_failures >= 1)
            nursery.cancel_scope.cancel()
    assert (stats.uploaded, stats.integrity_failures) == (1, 0)
    [(_, result)] = uploaded.results
    versions = _versions(store, job.object_key)
    assert len(versions) == 2
    assert result.version_id in versions
    current = store._client.head_object(Bucket=bucket, Key=job.object_key)
    assert current["VersionId"] != result.version_id  # the forgery is the current version
    sink = io.BytesIO()
    digest = await fetch_to(store, job.object_key, sink, version_id=result.version_id)
    assert digest == job.sha256 == hashlib.sha256(genuine).hexdigest()
    assert sink.getvalue() == genuine
