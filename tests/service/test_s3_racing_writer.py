"""The assembled service on moto's S3 server: a racing writer cannot spoil the evidence.

After a call is recorded and verified, another writer puts new versions over every object key
(no condition, as an old recorder or a hostile client would). The catalog holds the version
id each upload created, so an officer's verification and export read exactly those versions:
every object still verifies and the export decrypts.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import trio

from recorder.config import S3Config, StoreKind
from recorder.officer.bundle.export import export_bundle, manifest_json
from recorder.officer.bundle.signing import generate_signing_key, load_signing_key
from recorder.officer.verify import verify_recording
from recorder.store.s3 import S3Store

from ..store.s3_helpers import new_locked_bucket
from .test_service import record_calls, service, short_config, zcc_call

pytestmark = pytest.mark.slow


async def test_a_racing_writer_on_s3_leaves_the_genuine_versions_verifiable(
    tmp_path: Path, moto_endpoint: str
) -> None:
    bucket = await trio.to_thread.run_sync(new_locked_bucket, moto_endpoint, "svc")
    base = short_config(tmp_path)
    config = replace(
        base,
        storage=replace(
            base.storage,
            store=StoreKind.S3,
            local_store_path=None,
            s3=S3Config(
                bucket=bucket, endpoint_url=moto_endpoint, verify_tls=False, retention_days=1
            ),
        ),
    )
    with trio.fail_after(120):
        async with service(config) as running:
            [eng] = await record_calls(running, config, zcc_call(config, seconds=3.0))
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
            assert detail is not None
            rows = [*detail.segments, *detail.records]
            assert rows
            assert all(r.version_id for r in rows), "every upload's version id is cataloged"
            store = c.store
            assert isinstance(store, S3Store)
            for r in rows:
                await trio.to_thread.run_sync(
                    lambda key=r.object_key: store._client.put_object(
                        Bucket=bucket, Key=key, Body=b"not the evidence"
                    )
                )
                current = await trio.to_thread.run_sync(
                    lambda key=r.object_key: store._client.head_object(Bucket=bucket, Key=key)
                )
                assert current["VersionId"] != r.version_id
            verdict = await verify_recording(c, row.recording_id, actor="officer", reason="race")
            assert verdict.ok, verdict
            generate_signing_key(tmp_path / "signing.ed25519")
            out = tmp_path / "export"
            await export_bundle(
                c,
                [row.recording_id],
                out,
                actor="officer",
                reason="race",
                signing_key=load_signing_key(tmp_path / "signing.ed25519"),
            )
            # Every genuine object went into the bundle, by the version the catalog names.
            [entry] = manifest_json(out)["recordings"]  # type: ignore[misc]
            sources = {s["object_key"]: s["version_id"] for s in entry["sources"]}
            assert sources == {r.object_key: r.version_id for r in rows}
            tracks = [f for f in entry["files"] if f["kind"] == "track"]
            assert sum(f["frames"] for f in tracks) == sum(s.sample_count for s in detail.segments)
