"""``S3Store``: the fleet object store on S3 (boto3), with Object Lock, legal hold and checksums.

Rules:

1. Every boto3 call runs in ``trio.to_thread.run_sync`` under the store's ``CapacityLimiter``;
   botocore exceptions are translated right there (``_translate``) and never escape this module.
2. Objects up to ``multipart_threshold_bytes`` go in one PUT; larger ones in parts sized by
   ``PartSizer``. The abort is armed right after CreateMultipartUpload (s3transfer), so any later
   failure, cancellation included, aborts the upload under a shielded, bounded scope.
3. Every upload carries ``ChecksumSHA256`` (whole object for PUT, per part for multipart) computed
   from the local bytes, after checking they hash to the SHA-256 the caller expects. Multipart
   objects also carry ``recorder-sha256`` metadata; their ``head`` says the digest is not
   store-verified (S3 keeps only a composite checksum), so a verifier re-reads the bytes.
4. Object Lock mode and retain-until are set per object; after a multipart upload they are
   (re)applied explicitly, which S3 allows for the same or a later date.
5. ``delete`` without a version id deletes the *current version* permanently (a delete marker
   would hide the object without removing it, which is not what retention asks for).
6. ``put`` never creates a second version: PutObject and CompleteMultipartUpload carry
   ``If-None-Match: *``, so of two racing writers exactly one creates the object and the other
   gets 412. The loser then judges the existing object by its SHA-256: the same bytes are an
   idempotent success (returning *that* version), different bytes a named ``ObjectExists``
   conflict. A check-then-put would let both win and leave two versions.
7. ``put`` returns the version id S3 assigned; callers read back, verify and export *that*
   version, so a later version written by anyone else cannot change what the catalog points to.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, Literal, TypeVar

import boto3
import trio
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from recorder.errors import (
    DigestMismatch,
    ObjectExists,
    ObjectLocked,
    ObjectNotFound,
    StorageError,
    StoreMisconfigured,
    StoreUnavailable,
    UploadFailed,
)
from recorder.store._parts import PartSizer
from recorder.store.base import (
    READ_CHUNK_BYTES,
    LockMode,
    ObjectInfo,
    PutResult,
    StorePolicy,
    normalize_sha256,
    round_up_to_second,
    sha256_of_file,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

logger: Final = logging.getLogger(__name__)

#: Metadata keys (S3 sends them as ``x-amz-meta-*``).
META_SHA256: Final = "recorder-sha256"
META_PARTS: Final = "recorder-parts"
#: Bound on the shielded abort of a failed multipart upload, in seconds.
ABORT_TIMEOUT_S: Final = 30.0
_NOT_FOUND_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion"})
_CONDITIONAL_WRITES: Final = frozenset({"PutObject", "CompleteMultipartUpload"})
_BUCKET_OPERATIONS: Final = frozenset({"HeadBucket", "GetBucketConfiguration", "ListObjectsV2"})
_RETRYABLE_CODES: Final = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
    }
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    #: ``None``: AWS's regional endpoint. Tests point this at moto on 127.0.0.1.
    endpoint_url: str | None = None
    region: str = "us-east-1"
    #: TLS certificate verification. Only tests against a local http endpoint turn it off.
    verify_tls: bool = True
    multipart_threshold_bytes: int = 64 * 2**20  # 64 MiB
    part_sizer: PartSizer = field(default_factory=PartSizer)
    #: botocore "standard" retry mode attempts per call (connection errors, throttling, 5xx).
    max_attempts: int = 5
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    #: boto3 calls in flight at once for this store (worker threads and pooled connections).
    io_threads: int = 8
    #: ``self_check`` refuses a bucket whose lock/versioning differ from policy. Tests only: False.
    verify_bucket_config: bool = True
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    #: ``[storage.s3] prefix``: prepended to every key on the wire; callers never see it.
    key_prefix: str = ""


def build_s3_client(config: S3Config) -> S3Client:
    """A boto3 S3 client for ``config``. Blocking (loads service models): call from a thread."""
    botocore_config = Config(
        region_name=config.region,
        retries={"max_attempts": config.max_attempts, "mode": "standard"},
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
        max_pool_connections=config.io_threads,
        # We send ChecksumSHA256 ourselves; no second CRC32 pass over every body.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": config.addressing_style},
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=config.endpoint_url,
        verify=config.verify_tls,
        config=botocore_config,
    )


async def open_s3_store(config: S3Config) -> S3Store:
    """Build the client in a worker thread and return the store."""
    client = await trio.to_thread.run_sync(build_s3_client, config)
    return S3Store(config, client)


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value.split("-", 1)[0], validate=True).hex()


def _hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()


def _hash_parts(source: Path, spans: list[tuple[int, int]]) -> tuple[str, list[str]]:
    """Whole-file SHA-256 hex and each part's SHA-256 (base64), in one pass. Blocking."""
    whole = hashlib.sha256()
    part_digests: list[str] = []
    with source.open("rb") as reader:
        for _offset, length in spans:
            part = hashlib.sha256()
            remaining = length
            while remaining:
                chunk = reader.read(min(READ_CHUNK_BYTES, remaining))
                if not chunk:
                    raise StorageError(f"{source} shrank while being read")
                whole.update(chunk)
                part.update(chunk)
                remaining -= len(chunk)
            part_digests.append(base64.b64encode(part.digest()).decode())
        if reader.read(1):
            raise StorageError(f"{source} grew while being read")
    return whole.hexdigest(), part_digests


def _read_span(opener: Callable[[Path], BinaryIO], source: Path, offset: int, length: int) -> bytes:
    with opener(source) as reader:
        reader.seek(offset)
        data = reader.read(length)
    if len(data) != length:
        raise StorageError(f"{source} shrank while being uploaded")
    return data


class _AlreadyExists(ObjectExists):
    """A conditional write (``If-None-Match: *``) found the key taken; ``put`` judges it."""


class S3Store:
    """An ``ObjectStore`` on one S3 bucket with Object Lock enabled."""

    def __init__(
        self,
        config: S3Config,
        client: S3Client,
        *,
        limiter: trio.CapacityLimiter | None = None,
        source_opener: Callable[[Path], BinaryIO] = _open_binary,
    ) -> None:
        self.config = config
        self._client = client
        self._bucket = config.bucket
        self._prefix = config.key_prefix
        self._limiter = limiter or trio.CapacityLimiter(config.io_threads)
        # A seam for tests that need a source failing mid-upload; production opens the path.
        self._open_source = source_opener

    def _wire(self, key: str) -> str:
        """The S3 key of the store key ``key`` (``key_prefix`` in front)."""
        return self._prefix + key

    # --- the one place boto3 is called --------------------------------------------------------

    async def _call(self, operation: str, key: str, fn: Callable[[], _T]) -> _T:
        return await trio.to_thread.run_sync(
            partial(self._translated, operation, key, fn), limiter=self._limiter
        )

    def _translated(self, operation: str, key: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except ClientError as exc:
            raise _translate_client_error(exc, operation, key, self._bucket) from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise StoreUnavailable(
                f"S3 {operation} {key!r}: cannot reach the endpoint ({type(exc).__name__})"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {operation} {key!r} failed: {type(exc).__name__}") from exc
        except OSError as exc:
            raise StorageError(f"S3 {operation} {key!r}: local I/O failed: {exc.strerror}") from exc

    # --- ObjectStore --------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        source: Path,
        *,
        sha256: str,
        retain_until: datetime | None,
        lock_mode: LockMode = LockMode.COMPLIANCE,
        legal_hold: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        expected = normalize_sha256(sha256)
        until = round_up_to_second(retain_until) if retain_until is not None else None
        size = await trio.to_thread.run_sync(lambda: source.stat().st_size)
        lock: dict[str, object] = {}
        if until is not None:
            lock["ObjectLockMode"] = lock_mode.value
            lock["ObjectLockRetainUntilDate"] = until
        lock["ObjectLockLegalHoldStatus"] = "ON" if legal_hold else "OFF"
        meta = dict(metadata or {})
        try:
            if size <= self.config.multipart_threshold_bytes:
                version_id = await self._put_single(key, source, expected, lock, meta)
            else:
                version_id = await self._put_multipart(key, source, size, expected, lock, meta)
                await self._ensure_locks(key, version_id, until, lock_mode, legal_hold)
        except _AlreadyExists:
            # The conditional write lost (a retry of our own upload, or a racing writer).
            existing = await self.head(key)
            return await self._reput(existing, expected, until, lock_mode, legal_hold)
        return PutResult(key, version_id, size, expected)

    async def _put_single(
        self, key: str, source: Path, expected: str, lock: dict[str, object], meta: dict[str, str]
    ) -> str | None:
        actual, _size = await trio.to_thread.run_sync(sha256_of_file, source)
        if not hmac.compare_digest(actual, expected):
            raise DigestMismatch(f"put {key!r}: source bytes do not match the given sha256")

        def put_object() -> str | None:
            with self._open_source(source) as body:
                response = self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._wire(key),
                    Body=body,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_hex_to_b64(expected),
                    Metadata=meta,
                    IfNoneMatch="*",
                    **lock,  # type: ignore[arg-type]
                )
            return response.get("VersionId")

        return await self._call("PutObject", key, put_object)

    async def _put_multipart(
        self,
        key: str,
        source: Path,
        size: int,
        expected: str,
        lock: dict[str, object],
        meta: dict[str, str],
    ) -> str | None:
        spans = self.config.part_sizer.parts(size)
        actual, part_digests = await trio.to_thread.run_sync(_hash_parts, source, spans)
        if not hmac.compare_digest(actual, expected):
            raise DigestMismatch(f"put {key!r}: source bytes do not match the given sha256")
        meta = {**meta, META_SHA256: expected, META_PARTS: str(len(spans))}
        # A cheap look before sending many parts: a resumed job usually finds its object there.
        # Only an optimisation; the conditional CompleteMultipartUpload below decides races.
        try:
            await self.head(key)
        except ObjectNotFound:
            pass
        else:
            raise _AlreadyExists(key)
        created = await self._call(
            "CreateMultipartUpload",
            key,
            lambda: self._client.create_multipart_upload(
                Bucket=self._bucket,
                Key=self._wire(key),
                ChecksumAlgorithm="SHA256",
                Metadata=meta,
                **lock,  # type: ignore[arg-type]
            ),
        )
        upload_id = created["UploadId"]
        # From here on, any failure (cancellation too) aborts: no orphaned parts (s3transfer).
        try:
            completed: list[CompletedPartTypeDef] = []
            for number, ((offset, length), digest) in enumerate(
                zip(spans, part_digests, strict=True), start=1
            ):
                etag = await self._call(
                    "UploadPart",
                    key,
                    partial(
                        self._upload_part, key, upload_id, number, source, offset, length, digest
                    ),
                )
                completed.append({"PartNumber": number, "ETag": etag, "ChecksumSHA256": digest})
            done = await self._call(
                "CompleteMultipartUpload",
                key,
                lambda: self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._wire(key),
                    UploadId=upload_id,
                    MultipartUpload={"Parts": completed},
                    IfNoneMatch="*",
                ),
            )
        except BaseException:
            await self._abort(key, upload_id)
            raise
        return done.get("VersionId")

    def _upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        source: Path,
        offset: int,
        length: int,
        digest: str,
    ) -> str:
        data = _read_span(self._open_source, source, offset, length)
        if not hmac.compare_digest(
            base64.b64encode(hashlib.sha256(data).digest()).decode(), digest
        ):
            raise DigestMismatch(f"put {key!r}: part {number} changed since it was hashed")
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._wire(key),
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=digest,
        )
        return response["ETag"]

    async def _abort(self, key: str, upload_id: str) -> None:
        with trio.move_on_after(ABORT_TIMEOUT_S, shield=True) as scope:
            try:
                await self._call(
                    "AbortMultipartUpload",
                    key,
                    lambda: self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=self._wire(key), UploadId=upload_id
                    ),
                )
            except StorageError as exc:
                logger.error("multipart abort failed key=%s: %s", key, exc)
                return
        if scope.cancelled_caught:
            logger.error("multipart abort timed out key=%s", key)

    async def _ensure_locks(
        self,
        key: str,
        version_id: str | None,
        until: datetime | None,
        lock_mode: LockMode,
        legal_hold: bool,
    ) -> None:
        info = await self.head(key, version_id=version_id)
        if until is not None and (info.retain_until is None or info.retain_until < until):
            await self._put_retention(key, version_id, lock_mode, until)
        if legal_hold and not info.legal_hold:
            await self.set_legal_hold(key, True, version_id=version_id)

    async def _reput(
        self,
        existing: ObjectInfo,
        expected: str,
        until: datetime | None,
        lock_mode: LockMode,
        legal_hold: bool,
    ) -> PutResult:
        if not hmac.compare_digest(existing.sha256, expected):
            raise ObjectExists(
                f"put s3://{self._bucket}/{existing.key}: conflict, version "
                f"{existing.version_id} holds different bytes (sha256 {existing.sha256[:12]}..., "
                f"ours {expected[:12]}...); objects are never overwritten"
            )
        mode = existing.lock_mode or lock_mode
        await self._ensure_locks(existing.key, existing.version_id, until, mode, legal_hold)
        return PutResult(existing.key, existing.version_id, existing.size, existing.sha256)

    async def _put_retention(
        self, key: str, version_id: str | None, mode: LockMode, until: datetime
    ) -> None:
        def put_retention() -> None:
            kwargs: dict[str, str] = {"VersionId": version_id} if version_id else {}
            self._client.put_object_retention(
                Bucket=self._bucket,
                Key=self._wire(key),
                Retention={"Mode": mode.value, "RetainUntilDate": until},
                **kwargs,  # type: ignore[arg-type]
            )

        await self._call("PutObjectRetention", key, put_retention)

    async def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        def head_object() -> ObjectInfo:
            kwargs: dict[str, str] = {"VersionId": version_id} if version_id else {}
            response = self._client.head_object(
                Bucket=self._bucket,
                Key=self._wire(key),
                ChecksumMode="ENABLED",
                **kwargs,  # type: ignore[arg-type]
            )
            metadata = dict(response.get("Metadata", {}))
            checksum = response.get("ChecksumSHA256")
            if META_PARTS in metadata or checksum is None:
                sha256 = metadata.get(META_SHA256)
                verified = False
            else:
                try:
                    sha256 = _b64_to_hex(checksum)
                except (binascii.Error, ValueError) as exc:
                    raise StorageError(f"S3 HeadObject {key!r}: unreadable checksum") from exc
                verified = True
            if sha256 is None:
                raise StorageError(f"S3 HeadObject {key!r}: the object carries no SHA-256")
            mode = response.get("ObjectLockMode")
            until = response.get("ObjectLockRetainUntilDate")
            return ObjectInfo(
                key=key,
                size=response["ContentLength"],
                sha256=sha256,
                version_id=response.get("VersionId"),
                retain_until=until.astimezone(UTC) if until else None,
                lock_mode=LockMode(mode) if mode else None,
                legal_hold=response.get("ObjectLockLegalHoldStatus") == "ON",
                metadata=metadata,
                sha256_verified_by_store=verified,
            )

        return await self._call("HeadObject", key, head_object)

    @asynccontextmanager
    async def open(
        self, key: str, *, version_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        def get_object() -> object:
            kwargs: dict[str, str] = {"VersionId": version_id} if version_id else {}
            return self._client.get_object(
                Bucket=self._bucket,
                Key=self._wire(key),
                **kwargs,  # type: ignore[arg-type]
            )["Body"]

        body = await self._call("GetObject", key, get_object)

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await self._call(
                "GetObject",
                key,
                partial(body.read, READ_CHUNK_BYTES),  # type: ignore[attr-defined]
            ):
                yield chunk

        iterator = chunks()
        try:
            yield iterator
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]
            body.close()  # type: ignore[attr-defined]

    async def set_legal_hold(self, key: str, on: bool, *, version_id: str | None = None) -> None:
        def put_legal_hold() -> None:
            kwargs: dict[str, str] = {"VersionId": version_id} if version_id else {}
            self._client.put_object_legal_hold(
                Bucket=self._bucket,
                Key=self._wire(key),
                LegalHold={"Status": "ON" if on else "OFF"},
                **kwargs,  # type: ignore[arg-type]
            )

        await self._call("PutObjectLegalHold", key, put_legal_hold)

    async def extend_retention(
        self, key: str, until: datetime, *, version_id: str | None = None
    ) -> None:
        until = round_up_to_second(until)
        info = await self.head(key, version_id=version_id)
        # S3 itself refuses to shorten COMPLIANCE (and GOVERNANCE without bypass); checking here
        # too gives the same answer on every S3 implementation and a clear message.
        if info.retain_until is not None and until < info.retain_until:
            raise ObjectLocked(f"retention of {key!r} can only be extended, not shortened")
        await self._put_retention(
            key, info.version_id, info.lock_mode or LockMode.COMPLIANCE, until
        )

    async def delete(self, key: str, *, version_id: str | None = None) -> None:
        info = await self.head(key, version_id=version_id)

        def delete_object() -> None:
            kwargs: dict[str, str] = {"VersionId": info.version_id} if info.version_id else {}
            self._client.delete_object(
                Bucket=self._bucket,
                Key=self._wire(key),
                **kwargs,  # type: ignore[arg-type]
            )

        await self._call("DeleteObject", key, delete_object)

    async def list_versions(self, key: str) -> builtins.list[str | None]:
        """Version ids of every stored version of ``key`` (delete markers excluded), oldest last."""

        def list_object_versions() -> builtins.list[str | None]:
            versions: builtins.list[str | None] = []
            paginator = self._client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=key):
                versions.extend(
                    item.get("VersionId") for item in page.get("Versions", []) if item["Key"] == key
                )
            return versions

        return await self._call("ListObjectVersions", key, list_object_versions)

    async def list(self, prefix: str = "") -> list[str]:
        def list_keys() -> list[str]:
            keys: list[str] = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._wire(prefix)):
                keys.extend(item["Key"][len(self._prefix) :] for item in page.get("Contents", []))
            return sorted(keys)

        return await self._call("ListObjectsV2", prefix, list_keys)

    async def check_ready(self) -> None:
        # A one-key listing under our prefix rather than HeadBucket: both need s3:ListBucket on
        # real S3, but this one is the request the shipped IAM policy is written around, and
        # emulators (moto) that invent an s3:HeadBucket action answer it the same way.
        await self._call(
            "ListObjectsV2",
            "",
            lambda: self._client.list_objects_v2(
                Bucket=self._bucket, Prefix=self._prefix, MaxKeys=1
            ),
        )

    async def self_check(self, policy: StorePolicy) -> None:
        # Reachable and listable under our key prefix (what HEAD of a missing key relies on).
        await self.check_ready()
        problems = await self._call(
            "GetBucketConfiguration", "", partial(self._differences, policy)
        )
        if not problems:
            return
        message = f"S3 bucket {self._bucket!r} does not match the policy: " + "; ".join(problems)
        if not self.config.verify_bucket_config:
            logger.warning("%s (accepted: verify_bucket_config is off)", message)
            return
        raise StoreMisconfigured(message)

    def _differences(self, policy: StorePolicy) -> builtins.list[str]:
        problems: builtins.list[str] = []
        versioning = self._client.get_bucket_versioning(Bucket=self._bucket).get("Status", "off")
        if policy.require_versioning and versioning != "Enabled":
            problems.append(f"versioning is {versioning}, policy requires Enabled")
        try:
            lock = self._client.get_object_lock_configuration(Bucket=self._bucket)[
                "ObjectLockConfiguration"
            ]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                raise
            lock = {}
        if policy.require_object_lock and lock.get("ObjectLockEnabled") != "Enabled":
            problems.append("Object Lock is disabled, policy requires it")
        default = lock.get("Rule", {}).get("DefaultRetention", {})
        mode = default.get("Mode")
        expected_mode = policy.lock_mode.value if policy.lock_mode else None
        if policy.default_retention_days is not None and mode != expected_mode:
            problems.append(
                f"default retention mode is {mode or 'unset'}, policy says {expected_mode}"
            )
        # S3 returns either Days or Years (moto returns both, the unused one as 0).
        days: int | None = default.get("Days") or None
        if days is None and default.get("Years"):
            days = default["Years"] * 365
        if days != policy.default_retention_days:
            problems.append(
                f"default retention is {_or_unset(days)} days, "
                f"policy says {_or_unset(policy.default_retention_days)}"
            )
        return problems


def _or_unset(days: int | None) -> str:
    return "unset" if days is None else str(days)


def _translate_client_error(exc: ClientError, operation: str, key: str, bucket: str) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    where = f"S3 {operation} s3://{bucket}/{key}"
    if code == "NoSuchBucket" or (operation in _BUCKET_OPERATIONS and status == 404):
        return StoreMisconfigured(f"S3 {operation}: bucket {bucket!r} does not exist")
    if operation in _CONDITIONAL_WRITES and (code == "PreconditionFailed" or status == 412):
        return _AlreadyExists(f"{where}: the key exists already (conditional write refused)")
    if code == "ConditionalRequestConflict":
        # S3: a concurrent conditional write to the same key was in flight; retry later.
        return StoreUnavailable(f"{where}: {code}")
    if code in _NOT_FOUND_CODES or status == 404:
        return ObjectNotFound(f"{where}: no such object")
    if code == "AccessDenied" and operation in ("DeleteObject", "PutObjectRetention"):
        return ObjectLocked(f"{where}: refused by Object Lock (retention or legal hold)")
    if code in _RETRYABLE_CODES or (isinstance(status, int) and status >= 500):
        return StoreUnavailable(f"{where}: {code}")
    if operation in ("PutObject", "UploadPart", "CompleteMultipartUpload"):
        return UploadFailed(f"{where}: {code}")
    return StorageError(f"{where}: {code}")
