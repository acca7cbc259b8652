"""``recorder verify`` as a process, on a real recording made through the assembled service, on
the local store and on moto's S3 (Object Lock, versions): a tampered object, a swapped version,
a truncated object, a missing object, a shortened lock and a removed legal hold each fail with
their own exit code and message; a clean run passes; every result lands in the catalog and in
``recorder show``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from recorder.catalog.base import RecordingDetail
from recorder.config import Config, StoreKind
from recorder.errors import (
    HoldDrift,
    LockMismatch,
    ObjectMissing,
    ObjectTampered,
    ObjectTruncated,
    VersionSwapped,
)
from recorder.officer import verify as officer_verify
from recorder.officer.verify_run import Failure, check_recording
from recorder.service.components import open_components
from recorder.store.local import LocalStore, encode_component
from recorder.store.s3 import S3Config as S3StoreConfig
from recorder.store.s3 import build_s3_client
from tests.conftest import fill_filesystem
from tests.officer.test_export_bundle import one_second_segments, s3_store_config
from tests.service.test_service import record_calls, service, short_config, zcc_call

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLI = [sys.executable, "-m", "recorder"]


async def make_recording(config: Config) -> RecordingDetail:
    with trio.fail_after(120):
        async with service(config) as running:
            [eng] = await record_calls(running, config, zcc_call(config, seconds=2.5))
            c = running.components
            [row] = await c.catalog.search(stream_id=eng.scenario.rtms_stream_id)
            detail = await c.catalog.show(row.recording_id)
    assert detail is not None
    assert len(detail.segments) >= 2
    return detail


class Cli:
    def __init__(self, tmp_path: Path, config_file: Path | None) -> None:
        self.env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
        self.config = [] if config_file is None else ["--config", str(config_file)]

    async def run(self, *args: str) -> tuple[int, str]:
        with trio.fail_after(120):
            done = await trio.run_process(
                [*CLI, *args, *self.config],
                env=self.env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        return done.returncode, (done.stdout + done.stderr).decode()

    async def verify(self, rid: str, *extra: str) -> tuple[int, str]:
        return await self.run("verify", rid, *extra)


async def expect(cli: Cli, rid: str, code: int, failure: str, message: str) -> None:
    got, text = await cli.verify(rid)
    assert got == code, text
    assert f"FAILED {failure}" in text, text
    assert message in text, text
    got, text = await cli.verify(rid, "--json")
    assert got == code, text
    doc = json.loads(text)
    [result] = doc["results"]
    assert (doc["schema"], doc["exit_code"], result["ok"]) == (
        "rtms-recorder.verify/1",
        code,
        False,
    )
    assert result["failures"] == [failure]


async def expect_ok(cli: Cli, rid: str) -> None:
    code, text = await cli.verify(rid)
    assert code == 0, text
    assert f"{rid}: OK" in text


async def check_holds_and_show(
    cli: Cli, rid: str, clear_one_store_hold: Callable[[], None]
) -> None:
    code, text = await cli.run(
        "hold", "place", "--matter", "M-7", "--reason", "sec", "--recording", rid
    )
    assert code == 0, text
    await expect_ok(cli, rid)
    await trio.to_thread.run_sync(clear_one_store_hold)
    await expect(
        cli, rid, HoldDrift.exit_code, "hold_drift", "store legal hold off, catalog says held"
    )
    code, text = await cli.run("show", rid, "--json", "--no-verify")
    assert code == 0, text
    verification = json.loads(text)["verification"]
    assert verification["last_result"] == {"ok": False, "failures": ["hold_drift"]}
    code, text = await cli.run("show", rid, "--no-verify")
    assert "FAILED hold_drift" in text, text


async def check_a_full_temp_dir_is_an_error_of_this_host(
    config: Config, rid: str, mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects larger than what verify holds in memory (here 1 KiB) are staged in the temporary
    directory. With no room there, each is an error of this host (its exit code), never
    tampering or truncation, and the run goes on to the legal holds: before, the ``OSError``
    ended the run (``verify --all`` from a timer) with a traceback and recorded nothing."""
    fill_filesystem(mount)
    with monkeypatch.context() as patch:
        patch.setattr(officer_verify, "IN_MEMORY_BYTES", 1024)
        patch.setattr(tempfile, "tempdir", str(mount))
        async with open_components(config) as c:
            check = await check_recording(c, rid)
            detail = await c.catalog.show(rid)
    assert detail is not None
    # (The store's legal hold cleared above still drifts: a finding of no object.)
    of_objects = [f for f in check.findings if f.object_key is not None]
    assert {f.failure for f in of_objects} == {Failure.ERROR}
    staged = [r for r in (*detail.segments, *detail.records) if r.stored_size > 1024]
    assert staged
    assert sorted(f.object_key or "" for f in of_objects) == sorted(r.object_key for r in staged)
    for finding in of_objects:
        assert finding.message == (
            f"StorageError: {finding.object_key}: cannot stage it in {mount}: "
            "No space left on device"
        ), finding.message
    assert {f.failure for f in check.findings} == {Failure.ERROR, Failure.HOLD_DRIFT}


async def test_verify_on_the_local_store(
    tmp_path: Path, tiny_filesystem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = one_second_segments(short_config(tmp_path))
    detail = await make_recording(config)
    rid = detail.recording.recording_id
    cli = Cli(tmp_path, None)
    root = config.storage.local_store_path
    assert root is not None

    def path_of(key: str) -> Path:
        return root.joinpath(*map(encode_component, key.split("/")))

    first, second = detail.segments[0], detail.segments[1]
    victim = path_of(first.object_key)
    record = victim.with_name(victim.name + "%meta")
    original, original_record = victim.read_bytes(), record.read_bytes()

    def put(path: Path, data: bytes) -> None:
        path.chmod(0o644)
        path.write_bytes(data)
        path.chmod(0o444)

    def restore() -> None:
        put(victim, original)
        put(record, original_record)

    await expect_ok(cli, rid)
    code, text = await cli.verify("--all")
    assert code == 0, text
    assert f"{rid}: OK" in text
    code, text = await cli.run("verify", "--since", "2d", "--json")
    assert code == 0, text
    assert [r["recording_id"] for r in json.loads(text)["results"]] == [rid]
    code, text = await cli.run("verify", "--since", "the day before")
    assert code != 0
    assert "cannot read 'the day before'" in text
    code, text = await cli.run("verify")
    assert code == 3, text
    assert "--all or --since" in text

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    put(victim, bytes(flipped))
    await expect(cli, rid, ObjectTampered.exit_code, "tampered", "stored SHA-256 differs")
    restore()

    put(victim, original[: len(original) // 2])
    await expect(cli, rid, ObjectTruncated.exit_code, "truncated", "bytes stored, the catalog")
    restore()

    # Another (valid, sealed) object planted under the key, its lock record rewritten to match.
    planted = path_of(second.object_key).read_bytes()
    doc = json.loads(original_record)
    doc.update(sha256=hashlib.sha256(planted).hexdigest(), size=len(planted))
    put(victim, planted)
    put(record, json.dumps(doc).encode())
    await expect(cli, rid, VersionSwapped.exit_code, "swapped_version", "another object's SHA")
    restore()

    doc = json.loads(original_record)
    doc.update(retain_until="2001-01-01T00:00:00+00:00")
    put(record, json.dumps(doc).encode())
    await expect(cli, rid, LockMismatch.exit_code, "lock_mismatch", "earlier than the catalog")
    restore()

    moved = victim.with_name("moved-away")
    victim.rename(moved)
    await expect(cli, rid, ObjectMissing.exit_code, "missing", "not in the store")
    moved.rename(victim)
    await expect_ok(cli, rid)

    store = LocalStore(root)

    def clear_hold() -> None:
        trio.run(lambda: store.set_legal_hold(first.object_key, False))

    await check_holds_and_show(cli, rid, clear_hold)
    await check_a_full_temp_dir_is_an_error_of_this_host(config, rid, tiny_filesystem, monkeypatch)


def s3_config_file(config: Config, path: Path) -> Path:
    s3 = config.storage.s3
    assert s3 is not None
    assert s3.endpoint_url is not None
    path.write_text(
        "\n".join(
            [
                "[storage]",
                f'state_dir = "{config.storage.state_dir}"',
                'store = "s3"',
                "[storage.s3]",
                f'bucket = "{s3.bucket}"',
                f'endpoint_url = "{s3.endpoint_url}"',
                'region = "us-east-1"',
                'object_lock_mode = "governance"',
                "retention_days = 1",
                "verify_tls = false",
                "[keys]",
                'provider = "local"',
                f'key_dir = "{config.keys.key_dir}"',
            ]
        )
        + "\n"
    )
    return path


def moto_version(bucket: str, key: str, version_id: str | None) -> object:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    return backend.get_object(bucket, key, version_id=version_id)


async def test_verify_on_moto_s3(tmp_path: Path, moto_endpoint: str) -> None:
    config = await trio.to_thread.run_sync(
        s3_store_config, one_second_segments(short_config(tmp_path)), moto_endpoint
    )
    assert config.storage.store is StoreKind.S3
    assert config.storage.s3 is not None
    detail = await make_recording(config)
    rid = detail.recording.recording_id
    cli = Cli(tmp_path, s3_config_file(config, tmp_path / "recorder.toml"))
    bucket = config.storage.s3.bucket
    s3 = config.storage.s3
    client = build_s3_client(
        S3StoreConfig(bucket=s3.bucket, endpoint_url=s3.endpoint_url, verify_tls=False)
    )
    first = detail.segments[0]
    assert first.version_id is not None
    wire_key = s3.prefix + first.object_key
    await expect_ok(cli, rid)

    # Storage-level damage to the cataloged version itself (the bytes behind S3's API).
    fake_key = moto_version(bucket, wire_key, first.version_id)
    original = fake_key.value  # type: ignore[attr-defined]
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    fake_key.value = bytes(flipped)  # type: ignore[attr-defined]
    await expect(cli, rid, ObjectTampered.exit_code, "tampered", "stored SHA-256 differs")
    fake_key.value = original[: len(original) // 2]  # type: ignore[attr-defined]
    await expect(cli, rid, ObjectTruncated.exit_code, "truncated", "bytes stored, the catalog")
    fake_key.value = original  # type: ignore[attr-defined]
    await expect_ok(cli, rid)

    # A newer version planted under the evidence key (what a plain GET would now return).
    body = b"planted over the evidence"
    newer = await trio.to_thread.run_sync(
        lambda: client.put_object(
            Bucket=bucket,
            Key=wire_key,
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
        )
    )
    await expect(cli, rid, VersionSwapped.exit_code, "swapped_version", newer["VersionId"])
    await trio.to_thread.run_sync(
        lambda: client.delete_object(
            Bucket=bucket,
            Key=wire_key,
            VersionId=newer["VersionId"],
            BypassGovernanceRetention=True,
        )
    )
    await expect_ok(cli, rid)

    def clear_hold() -> None:
        client.put_object_legal_hold(
            Bucket=bucket,
            Key=wire_key,
            VersionId=first.version_id,
            LegalHold={"Status": "OFF"},
        )

    await check_holds_and_show(cli, rid, clear_hold)
