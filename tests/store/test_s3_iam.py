"""The shipped IAM policy (ops/iam-policy.json) against moto's IAM enforcement, and s3.prefix.

moto enforces IAM once ``INITIAL_NO_AUTH_ACTION_COUNT`` unauthenticated calls were made, so a
separate moto server process is started with that count: the setup (bucket, user, the shipped
policy, an access key) uses the free calls, everything after runs as the recorder's user.

What moto 5.2.5 models and what it does not (checked by hand):

* It checks actions and resources of identity policies (PutObject outside the prefix and
  DeleteObject are refused as on S3).
* It names the action of HeadBucket ``s3:HeadBucket``, which does not exist in AWS IAM (there,
  HeadBucket needs ``s3:ListBucket``), so S3Store's readiness probe is a one-key
  ListObjectsV2 under its prefix, which needs ``s3:ListBucket`` on both.
* It answers HEAD of a missing key 404 whether or not ``s3:ListBucket`` is granted; S3 answers
  403 without it. That rule, and S3 evaluating an ``s3:prefix`` condition as unmet for HeadObject
  and HeadBucket (they carry no prefix), are checked on the policy text instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import trio
from botocore.exceptions import ClientError

from recorder.errors import ObjectLocked, ObjectNotFound, StorageError
from recorder.store.base import LockMode, StorePolicy
from recorder.store.s3 import S3Config, S3Store, build_s3_client

OPS = Path(__file__).resolve().parents[2] / "ops"
BUCKET = "example-rtms-evidence"
#: create_bucket, create_user, put_user_policy, create_access_key.
SETUP_CALLS = 4

_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@pytest.fixture
def iam_moto() -> Iterator[str]:
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)}
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _recorder_user(endpoint: str, policy: str) -> dict[str, str]:
    """Set up the bucket and a user holding ``policy``; returns that user's credentials."""
    setup = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    boto3.client("s3", **setup).create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="recorder")
    iam.put_user_policy(UserName="recorder", PolicyName="shipped", PolicyDocument=policy)
    key = iam.create_access_key(UserName="recorder")["AccessKey"]
    # The free calls are used up: from here on moto enforces IAM.
    with pytest.raises(ClientError):
        boto3.client("s3", **setup).list_objects_v2(Bucket=BUCKET)
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def _store_as(
    endpoint: str, credentials: dict[str, str], monkeypatch: pytest.MonkeyPatch, **overrides: object
) -> S3Store:
    """An S3Store built the production way, with the recorder user's credentials in the env."""
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    config = S3Config(
        bucket=BUCKET,
        endpoint_url=endpoint,
        verify_tls=False,
        max_attempts=1,
        **overrides,  # type: ignore[arg-type]
    )
    return S3Store(config, build_s3_client(config))


def _shipped_policy() -> str:
    return (OPS / "iam-policy.json").read_text()


def _until() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


async def test_the_recorder_works_under_the_shipped_policy(
    iam_moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = await trio.to_thread.run_sync(_recorder_user, iam_moto, _shipped_policy())
    store = _store_as(iam_moto, credentials, monkeypatch)
    with trio.fail_after(30):
        # Readiness and the bucket self-check (versioning, Object Lock configuration).
        await store.check_ready()
        await store.self_check(
            StorePolicy(lock_mode=None, require_object_lock=True, require_versioning=True)
        )
        # HEAD of a key that is not there is "not found", never "access denied".
        with pytest.raises(ObjectNotFound):
            await store.head("recordings/zcc/2026/not-there.wav.rec")
        source = tmp_path / "seg"
        source.write_bytes(b"sealed bytes")
        digest = hashlib.sha256(b"sealed bytes").hexdigest()
        put = await store.put(
            "recordings/zcc/seg",
            source,
            sha256=digest,
            retain_until=_until(),
            lock_mode=LockMode.GOVERNANCE,
        )
        info = await store.head("recordings/zcc/seg", version_id=put.version_id)
        assert info.sha256 == digest
        assert await store.list("recordings/") == ["recordings/zcc/seg"]
        # What the policy withholds stays withheld.
        with pytest.raises(StorageError):
            await store.put("elsewhere/seg", source, sha256=digest, retain_until=_until())
        with pytest.raises((ObjectLocked, StorageError)):
            await store.delete("recordings/zcc/seg")


async def test_readiness_fails_under_a_policy_without_list_bucket(
    iam_moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: drop the ListBucket statement and readiness is refused."""
    policy = json.loads(_shipped_policy())
    policy["Statement"] = [
        s for s in policy["Statement"] if "s3:ListBucket" not in json.dumps(s["Action"])
    ]
    credentials = await trio.to_thread.run_sync(_recorder_user, iam_moto, json.dumps(policy))
    store = _store_as(iam_moto, credentials, monkeypatch)
    with trio.fail_after(30), pytest.raises(StorageError, match="AccessDenied"):
        await store.check_ready()


def test_list_bucket_is_granted_without_a_prefix_condition() -> None:
    """S3 evaluates HeadBucket and HEAD of a missing key against s3:ListBucket with no s3:prefix
    in the request context: a prefix condition makes readiness fail and turns 404 into 403."""
    policy = json.loads(_shipped_policy())
    granting = [
        s
        for s in policy["Statement"]
        if s["Effect"] == "Allow" and "s3:ListBucket" in json.dumps(s["Action"])
    ]
    assert granting, "s3:ListBucket must be granted on the bucket"
    for statement in granting:
        assert "Condition" not in statement
        assert statement["Resource"] == f"arn:aws:s3:::{BUCKET}"


async def test_the_key_prefix_fronts_every_object_and_the_readiness_probe(
    iam_moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = _shipped_policy().replace(f"{BUCKET}/recordings/*", f"{BUCKET}/tenant-a/recordings/*")
    credentials = await trio.to_thread.run_sync(_recorder_user, iam_moto, policy)
    store = _store_as(iam_moto, credentials, monkeypatch, key_prefix="tenant-a/")
    source = tmp_path / "seg"
    source.write_bytes(b"prefixed")
    digest = hashlib.sha256(b"prefixed").hexdigest()
    with trio.fail_after(30):
        await store.check_ready()
        put = await store.put("recordings/x/seg", source, sha256=digest, retain_until=_until())
        assert put.key == "recordings/x/seg"
        assert (await store.head("recordings/x/seg")).sha256 == digest
        assert await store.list("recordings/") == ["recordings/x/seg"]
        raw = store._client.list_objects_v2(Bucket=BUCKET, Prefix="tenant-a/")
        assert [o["Key"] for o in raw.get("Contents", [])] == ["tenant-a/recordings/x/seg"]
        # Without the prefix the same key is outside what the policy grants.
        bare = _store_as(iam_moto, credentials, monkeypatch)
        with pytest.raises(StorageError):
            await bare.put("recordings/x/seg2", source, sha256=digest, retain_until=_until())
