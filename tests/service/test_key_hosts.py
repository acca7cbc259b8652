"""Keys as durable as the evidence, across hosts: real ``recorder serve`` processes, PostgreSQL
catalog, moto S3 (Object Lock) and moto KMS.

* Host A records with its own state dir; officer host B (another state dir, same catalog and
  bucket, and the X25519 private key or KMS Decrypt) verifies and exports the recording, also
  after A's state dir is deleted: the recording keys live in the catalog, not on A's disk.
* An encrypt-only host A (public key only) SIGKILLed mid-call cannot decrypt its own partial
  segment after the restart; it uploads it as an opaque blob, and the officer decrypts it.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import RecordingDetail, RecordingStatus, UploadState
from recorder.config import load_config
from recorder.crypto.keys import generate_x25519_keypair, make_kms_client
from recorder.crypto.opaque import OPAQUE_PLAINTEXT_DIGEST
from recorder.officer.verify import Verdict, verify_recording
from recorder.service.components import Components, open_components
from recorder.simulator.engagement import Engagement
from recorder.simulator.simulator import open_simulator
from recorder.store.s3 import S3Config as S3StoreConfig
from recorder.store.s3 import build_s3_client
from tests.officer.support import sealed_track

from .helpers_fleet import (
    FanOut,
    FleetSecrets,
    ServeProcess,
    fleet_simulator,
    free_port,
    meeting,
    poll,
    serve_config_text,
    serve_processes,
    subprocess_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TRACK = "mixed"
SETTLE_S = 30


def locked_bucket(endpoint: str) -> str:
    bucket = f"keys-{free_port()}"
    client = build_s3_client(
        S3StoreConfig(bucket=bucket, endpoint_url=endpoint, verify_tls=False, max_attempts=1)
    )
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


def _q(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Keys:
    """The ``[keys]`` table of a recording host and of the officer host, for one key mode."""

    def __init__(self, mode: str, tmp_path: Path, moto_endpoint: str) -> None:
        self.mode = mode
        if mode == "kms":
            client = make_kms_client(region="us-east-1", endpoint_url=moto_endpoint)
            key_id = client.create_key()["KeyMetadata"]["KeyId"]
            lines = [
                'provider = "kms"',
                f"kms_key_id = {_q(key_id)}",
                'kms_region = "us-east-1"',
                f"kms_endpoint_url = {_q(moto_endpoint)}",
            ]
            # moto does not enforce IAM: the officer is the host whose role has kms:Decrypt.
            self.recorder_lines = self.officer_lines = lines
        else:
            private, public = tmp_path / "officer.x25519", tmp_path / "officer.x25519.pub"
            generate_x25519_keypair(private, public)
            self.recorder_lines = ['provider = "public"', f"public_key_path = {_q(public)}"]
            self.officer_lines = [*self.recorder_lines, f"private_key_paths = [{_q(private)}]"]


def host_config(text: str, key_lines: list[str], key_dir: Path) -> str:
    """``serve_config_text`` with its local ``[keys]`` table replaced by ``key_lines``."""
    before, after = text.split("[keys]\n", 1)
    rest = after.split("\n", 2)[2]  # drop provider = "local" and key_dir = ...
    return before + "[keys]\n" + "\n".join([*key_lines, f"key_dir = {_q(key_dir)}"]) + "\n" + rest


def make_host(
    tmp_path: Path,
    name: str,
    secrets_: FleetSecrets,
    key_lines: list[str],
    *,
    endpoint: str,
    bucket: str,
    dsn: str,
    lease_ttl_s: float = 2.0,
) -> ServeProcess:
    port = free_port()
    state = tmp_path / name
    text = serve_config_text(
        state_dir=state,
        port=port,
        key_dir=state / "keys",
        s3_endpoint=endpoint,
        s3_bucket=bucket,
        postgres_dsn=dsn,
        lease_ttl_s=lease_ttl_s,
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(host_config(text, key_lines, state / "keys"))
    env = subprocess_env(secrets_, owner=f"recorder-{name}")
    return ServeProcess(name, path, port, env, tmp_path / f"{name}.log")


@asynccontextmanager
async def officer(config_path: Path) -> AsyncIterator[Components]:
    async with open_components(load_config(config_path, {})) as c:
        yield c


async def settled(catalog: AsyncCatalog, stream_id: str) -> RecordingDetail:
    async def check() -> RecordingDetail | None:
        rows = await catalog.search(stream_id=stream_id)
        if not rows or rows[0].status is RecordingStatus.ACTIVE:
            return None
        detail = await catalog.show(rows[0].recording_id)
        assert detail is not None
        evidence = [*detail.segments, *detail.records]
        if not detail.segments or any(e.upload_state is not UploadState.VERIFIED for e in evidence):
            return None
        return detail

    with trio.fail_after(SETTLE_S):
        return await poll(check)


async def assert_officer_reads(officer_path: Path, detail: RecordingDetail) -> None:
    rid = detail.recording.recording_id
    async with officer(officer_path) as c:
        verdict = await verify_recording(c, rid, actor="officer", reason="cross-host read")
        assert verdict.ok, verdict
        # Every segment decrypted here, on a host that did not record it.
        frames = 0
        for track in {s.track for s in detail.segments}:
            _, audio = await sealed_track(c, detail, track)
            frames += len(audio)
    assert frames == sum(s.sample_count for s in detail.segments)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["kms", "x25519"])
async def test_officer_host_reads_what_another_host_recorded_after_its_disk_is_gone(
    tmp_path: Path, moto_endpoint: str, postgres_dsn: str, mode: str
) -> None:
    secrets_ = FleetSecrets()
    keys = Keys(mode, tmp_path, moto_endpoint)
    bucket = locked_bucket(moto_endpoint)
    host_a = make_host(
        tmp_path,
        "a",
        secrets_,
        keys.recorder_lines,
        endpoint=moto_endpoint,
        bucket=bucket,
        dsn=postgres_dsn,
    )
    host_b = make_host(
        tmp_path,
        "b",
        secrets_,
        keys.officer_lines,
        endpoint=moto_endpoint,
        bucket=bucket,
        dsn=postgres_dsn,
    )
    fan = FanOut([host_a.webhook_url])
    with trio.fail_after(150):
        async with serve_processes(host_a), open_simulator(fleet_simulator(fan, secrets_)) as sim:
            call = await sim.start(meeting(secrets_, name="call", seconds=4))
            await call.finished.wait()
            async with officer(host_b.config_path) as c:
                detail = await settled(c.catalog, call.scenario.rtms_stream_id)
        await fan.aclose()
        rid = detail.recording.recording_id
        if mode == "x25519":
            # The recording host itself holds only the public key: it cannot read its evidence.
            async with officer(host_a.config_path) as c:
                verdict = await verify_recording(c, rid, actor="a", reason="encrypt-only")
            assert verdict.count(Verdict.ERROR) == len(verdict.objects)
            assert all("DecryptNotPermitted" in o.detail for o in verdict.objects)
        await assert_officer_reads(host_b.config_path, detail)
        shutil.rmtree(tmp_path / "a")
        await assert_officer_reads(host_b.config_path, detail)
        async with officer(host_b.config_path) as c:
            keys_of = await c.catalog.recording_keys_of(rid)
        assert keys_of
        assert all(k.wrapped is not None for k in keys_of)


@pytest.mark.timeout(180)
async def test_encrypt_only_host_killed_mid_call_uploads_its_partial_for_the_officer(
    tmp_path: Path, moto_endpoint: str, postgres_dsn: str
) -> None:
    secrets_ = FleetSecrets()
    keys = Keys("x25519", tmp_path, moto_endpoint)
    bucket = locked_bucket(moto_endpoint)
    host_a = make_host(
        tmp_path,
        "a",
        secrets_,
        keys.recorder_lines,
        endpoint=moto_endpoint,
        bucket=bucket,
        dsn=postgres_dsn,
        lease_ttl_s=30.0,
    )
    officer_path = make_host(
        tmp_path,
        "b",
        secrets_,
        keys.officer_lines,
        endpoint=moto_endpoint,
        bucket=bucket,
        dsn=postgres_dsn,
    ).config_path
    fan = FanOut([host_a.webhook_url])
    with trio.fail_after(150):
        async with (
            serve_processes(host_a),
            open_simulator(fleet_simulator(fan, secrets_)) as sim,
            officer(officer_path) as c,
        ):
            call: Engagement = await sim.start(meeting(secrets_, name="call", seconds=10))
            stream_id = call.scenario.rtms_stream_id

            async def sealed_until() -> int | None:
                rows = await c.catalog.search(stream_id=stream_id)
                detail = await c.catalog.show(rows[0].recording_id) if rows else None
                if detail is None or not detail.segments:
                    return None
                return max(s.end_ms for s in detail.segments)

            until = await poll(sealed_until)
            await call.wait_for(lambda s: (s.track(TRACK).last_timestamp_ms or 0) >= until + 1000)
            host_a.kill()
            await host_a.wait()
            parts = list((tmp_path / "a").rglob("*.part"))
            assert parts, "the killed writer left no partial segment"
            async with serve_processes(host_a):
                await call.finished.wait()
                detail = await settled(c.catalog, stream_id)
            assert not list((tmp_path / "a").rglob("*.part"))
            opaque = [s for s in detail.segments if s.plaintext_sha256 == OPAQUE_PLAINTEXT_DIGEST]
            assert len(opaque) == 1
            assert opaque[0].recovered
            assert opaque[0].sample_count > 0
            assert "opaque" in host_a.log_path.read_text()
    await fan.aclose()
    await assert_officer_reads(officer_path, detail)
