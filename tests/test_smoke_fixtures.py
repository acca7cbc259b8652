from __future__ import annotations

import boto3
import psycopg


def test_moto_serves_s3_over_http(moto_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="smoke", ObjectLockEnabledForBucket=True)
    assert "smoke" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_postgres_schema_is_isolated(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("CREATE TABLE t (x int)")
        (schema,) = conn.execute("SELECT current_schema()").fetchone() or ("",)
    assert schema.startswith("t_")
