"""Holds and retention on moto's S3 server: legal hold on every version, deletion of every one."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from recorder.catalog import AsyncCatalog
from recorder.retention.apply import RetentionContext, run_retention
from recorder.retention.assign import assign_policy
from recorder.retention.holds import hold_drift, place_holds, release_hold, sync_store_holds
from recorder.retention.policy import load_policies
from recorder.store.s3 import S3Store, build_s3_client
from tests.retention.helpers import DAY_MS, T0, Clock, make_recording
from tests.retention.test_policy import DEFAULT, write
from tests.store.s3_helpers import new_locked_bucket, s3_config, s3_store

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    return new_locked_bucket(moto_endpoint, prefix="ret")


def versions(client: object, bucket: str, key: str) -> list[str]:
    listed = client.list_object_versions(Bucket=bucket, Prefix=key)  # type: ignore[attr-defined]
    return [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key]


def legal_holds(client: object, bucket: str, key: str) -> list[str]:
    """Each version's legal hold status; a version that never had one reads OFF."""
    statuses = []
    for version in versions(client, bucket, key):
        try:
            answer = client.get_object_legal_hold(Bucket=bucket, Key=key, VersionId=version)  # type: ignore[attr-defined]
        except ClientError:
            answer = {}
        statuses.append(answer.get("LegalHold", {}).get("Status", "OFF"))
    return statuses


async def test_hold_mirrors_to_every_version_and_survives_a_run(
    catalog: AsyncCatalog, moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    store: S3Store = s3_store(moto_endpoint, bucket)
    client = build_s3_client(s3_config(moto_endpoint, bucket))
    held = await make_recording(catalog, store, tmp_path, lock_days=None)
    free = await make_recording(catalog, store, tmp_path, lock_days=None)
    # A second version of an object (written around the recorder, as a replica might).
    for made in (held, free):
        body = b"another version"
        client.put_object(
            Bucket=bucket,
            Key=made.keys[0],
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
        )
        assert len(versions(client, bucket, made.keys[0])) == 2

    placed = []
    for matter in ("matter-a", "matter-b"):
        placed += await place_holds(
            catalog,
            store,
            matter=matter,
            reason="litigation",
            actor="os:counsel",
            recording_ids=[held.recording_id],
            now_ms=T0,
        )
    first, second = placed
    for key in held.keys:
        assert set(legal_holds(client, bucket, key)) == {"ON"}
    for key in free.keys:
        assert set(legal_holds(client, bucket, key)) == {"OFF"}
    assert await hold_drift(catalog, store, held.recording_id) == []

    policies = load_policies(write(tmp_path / "p", default=DEFAULT))
    for made in (held, free):
        await assign_policy(catalog, policies, made.recording_id, T0)
    clock = Clock(T0 + 400 * DAY_MS)
    ctx = RetentionContext(
        catalog=catalog,
        store=store,
        policies=policies,
        shredder=None,
        operator="os:tester",
        now_ms=clock.now_ms,
    )
    report = await run_retention(ctx)
    assert [(o.recording_id, o.result) for o in report.outcomes] == [
        (free.recording_id, "destroyed")
    ]
    for key in free.keys:
        assert versions(client, bucket, key) == []  # every version, not just the current one
    for key in held.keys:
        assert versions(client, bucket, key)

    # Releasing one of two holds keeps the store hold; releasing the last clears it.
    await release_hold(catalog, store, first.hold_id, actor="os:counsel", reason="a", now_ms=T0)
    for key in held.keys:
        assert set(legal_holds(client, bucket, key)) == {"ON"}
    await release_hold(catalog, store, second.hold_id, actor="os:counsel", reason="b", now_ms=T0)
    for key in held.keys:
        assert set(legal_holds(client, bucket, key)) == {"OFF"}

    # Drift (a version's hold changed behind the catalog's back) is named, then repaired.
    version = versions(client, bucket, held.keys[0])[0]
    client.put_object_legal_hold(
        Bucket=bucket, Key=held.keys[0], VersionId=version, LegalHold={"Status": "ON"}
    )
    drift = await hold_drift(catalog, store, held.recording_id)
    assert drift == [
        f"{held.keys[0]} version {version}: store legal hold on, catalog says not held"
    ]
    assert await sync_store_holds(catalog, store) == 1
    assert await hold_drift(catalog, store, held.recording_id) == []
