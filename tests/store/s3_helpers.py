"""Buckets on moto's server for the S3 tests."""

from __future__ import annotations

import secrets

from recorder.store.s3 import S3Config, S3Store, build_s3_client


def s3_config(endpoint: str, bucket: str, **overrides: object) -> S3Config:
    settings: dict[str, object] = {
        "verify_tls": False,
        "max_attempts": 2,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 10.0,
        **overrides,
    }
    return S3Config(bucket=bucket, endpoint_url=endpoint, **settings)  # type: ignore[arg-type]


def new_locked_bucket(endpoint: str, prefix: str = "conf") -> str:
    """A fresh bucket with Object Lock (and so versioning) enabled, no default retention."""
    bucket = f"{prefix}-{secrets.token_hex(6)}"
    client = build_s3_client(s3_config(endpoint, bucket))
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


def s3_store(endpoint: str, bucket: str, **overrides: object) -> S3Store:
    config = s3_config(endpoint, bucket, **overrides)
    return S3Store(config, build_s3_client(config))
