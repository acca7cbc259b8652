"""Builds the service's parts from the configuration, and closes them again.

One rule: this module only *assembles*. Every part (catalog, keyring, object store, spool, sink
factory, metrics) is built by its own package; here they are picked per configuration and given
the directories of the state dir. ``recorder serve``, ``recorder check``, ``recorder demo`` and the
officer commands all open the same ``Components``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from recorder.catalog.aio import AsyncCatalog, open_configured_async_catalog
from recorder.config import Config, KeyProviderKind, StoreKind
from recorder.config import ObjectLockMode as ConfiguredLockMode
from recorder.crypto.keyring import EscrowEvent, RecordingKeyring
from recorder.crypto.keys.fallback import FallbackAlert
from recorder.crypto.keystore import CatalogRecordingKeyStore
from recorder.crypto.setup import KeyringSettings, build_keyring
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import ConfigError
from recorder.retention.policy import BUILTIN_POLICIES, PolicySet, load_policies
from recorder.service.metrics import RecorderMetrics
from recorder.spool.spool import Spool
from recorder.store.base import LockMode, ObjectStore, StorePolicy
from recorder.store.local import LocalStore
from recorder.zoom.directory import RtmsController, ZoomDirectory

if TYPE_CHECKING:
    from recorder.completeness.pull import ZoomListing

logger = logging.getLogger(__name__)

#: Where the spool keeps its jobs, under ``[storage] spool_dir``.
SPOOL_QUEUE_DIR: Final = "queue"
#: Sealed-as-written segments live here until they move into the spool's queue.
WRITING_DIR: Final = "writing"
RECORDING_KEYS_DIR: Final = "recording-keys"
#: Recording keys the catalog could not take, kept durably until ``sync_spilled`` moves them.
#: The directory older versions kept every recording key in: synced into the catalog too.
ESCROW_SPILL_DIR: Final = RECORDING_KEYS_DIR
KEK_DIR: Final = "kek"


#: Fault injection for the fault-matrix tests: this process's wall clock runs this many ms off
#: (a host whose NTP failed). Leases must not care: they are timed by the catalog's clock.
CLOCK_OFFSET_ENV: Final = "RECORDER_FAULT_CLOCK_OFFSET_MS"
_CLOCK_OFFSET_MS: Final = int(os.environ.get(CLOCK_OFFSET_ENV, "0") or 0)


def now_ms() -> int:
    """Unix milliseconds, UTC: the unit of every time the catalog stores."""
    return time.time_ns() // 1_000_000 + _CLOCK_OFFSET_MS


@dataclass(frozen=True, slots=True)
class Components:
    config: Config
    catalog: AsyncCatalog
    keyring: RecordingKeyring
    store: ObjectStore
    store_policy: StorePolicy
    spool: Spool
    sinks: SpoolSinkFactory
    metrics: RecorderMetrics
    writing_dir: Path
    lock_mode: LockMode
    retention_days: int
    #: Retention policies (``[retention] policies_dir``); they set each upload's retain-until.
    policies: PolicySet = BUILTIN_POLICIES
    #: Zoom's REST side (zoom-completeness): none by default, so auto-start, enrichment and
    #: ``completeness pull`` are off until an implementation is given (``ZoomParts``).
    rtms_controller: RtmsController | None = None
    zoom_directory: ZoomDirectory | None = None
    zoom_listing: ZoomListing | None = None


@dataclass(frozen=True, slots=True)
class ZoomParts:
    """Zoom REST implementations handed to ``open_components`` (the HTTP client, or fakes)."""

    rtms_controller: RtmsController | None = None
    zoom_directory: ZoomDirectory | None = None
    zoom_listing: ZoomListing | None = None


def keyring_settings(config: Config) -> KeyringSettings:
    keys = config.keys
    mode = {
        KeyProviderKind.LOCAL: "local",
        KeyProviderKind.KMS: "kms",
        KeyProviderKind.PUBLIC: "encrypt-only",
    }[keys.provider]
    return KeyringSettings(
        recording_key_dir=keys.key_dir / RECORDING_KEYS_DIR,
        mode=mode,  # type: ignore[arg-type]  # the mapping above only yields KeyMode literals
        local_key_dir=keys.key_dir / KEK_DIR,
        kms_key_id=keys.kms_key_id,
        kms_region=keys.kms_region or "us-east-1",
        kms_endpoint_url=keys.kms_endpoint_url,
        public_key_path=keys.public_key_path,
        escrow_public_key_path=keys.escrow_public_key_path,
        private_key_paths=keys.private_key_paths,
        spill_dir=keys.key_dir / ESCROW_SPILL_DIR,
    )


def _lock_mode(mode: ConfiguredLockMode) -> LockMode:
    return LockMode.COMPLIANCE if mode is ConfiguredLockMode.COMPLIANCE else LockMode.GOVERNANCE


async def open_store(config: Config) -> tuple[ObjectStore, StorePolicy, LockMode, int]:
    """The configured object store, its policy, the lock mode and retention days to apply."""
    storage = config.storage
    if storage.store is StoreKind.LOCAL:
        root = storage.local_store_path or storage.state_dir / "store"
        policy = StorePolicy(require_object_lock=False, require_versioning=False)
        # The local store records and enforces retain-until itself; seven years by default.
        return LocalStore(root), policy, LockMode.COMPLIANCE, 2557
    s3 = storage.s3
    if s3 is None:
        raise ConfigError("[storage] store = 's3' needs an [storage.s3] table")
    # boto3 is imported only when S3 is configured: the embedded default never loads it.
    from recorder.store.s3 import S3Config as S3StoreConfig
    from recorder.store.s3 import open_s3_store

    store_config = S3StoreConfig(
        bucket=s3.bucket,
        endpoint_url=s3.endpoint_url,
        region=s3.region or "us-east-1",
        verify_tls=s3.verify_tls,
        verify_bucket_config=s3.bucket_self_check,
        key_prefix=s3.prefix,
    )
    mode = _lock_mode(s3.object_lock_mode)
    policy = StorePolicy(lock_mode=mode, require_object_lock=True, require_versioning=True)
    return await open_s3_store(store_config), policy, mode, s3.retention_days


def open_keyring(
    config: Config, catalog: AsyncCatalog, metrics: RecorderMetrics
) -> RecordingKeyring:
    """The keyring on the catalog's key store, escrow alerts counted. Blocking (thread)."""

    def on_fallback(alert: FallbackAlert) -> None:
        metrics.key_escrowed("key_service_unavailable")
        logger.error(
            "ALERT key service unreachable: recording key wrapped to the escrow key "
            "recording_id=%s escrow_key_id=%s",
            alert.recording_id,
            alert.escrow_key_id,
        )

    def on_escrow(event: EscrowEvent) -> None:
        metrics.key_escrowed("key_store_unavailable")
        logger.error(
            "ALERT key store unreachable: recording key kept in the local escrow spill "
            "recording_id=%s rk_id=%s",
            event.recording_id,
            event.rk_id,
        )

    keyring = build_keyring(
        keyring_settings(config),
        store=CatalogRecordingKeyStore(catalog.sync),
        on_fallback=on_fallback,
        on_escrow=on_escrow,
    )
    moved = keyring.sync_spilled()
    if moved:
        logger.warning(
            "recording keys moved from the escrow spill into the catalog count=%d", moved
        )
    return keyring


@asynccontextmanager
async def open_components(
    config: Config, *, metrics: RecorderMetrics | None = None, zoom: ZoomParts | None = None
) -> AsyncIterator[Components]:
    """Open every part; close the catalog on the way out (the rest holds no resources)."""
    storage = config.storage
    writing_dir = storage.spool_dir / WRITING_DIR
    for directory in (storage.state_dir, storage.spool_dir, writing_dir, config.keys.key_dir):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    catalog = await open_configured_async_catalog(
        config.catalog, now_ms=now_ms(), postgres_password=config.secrets.postgres_password
    )
    try:
        metrics = metrics or RecorderMetrics()
        keyring = await trio.to_thread.run_sync(open_keyring, config, catalog, metrics)
        store, policy, lock_mode, retention_days = await open_store(config)
        spool = Spool(storage.spool_dir / SPOOL_QUEUE_DIR)
        sinks = SpoolSinkFactory(
            writing_dir, keyring, checkpoint_interval_s=config.capture.checkpoint_interval_s
        )
        yield Components(
            config=config,
            catalog=catalog,
            keyring=keyring,
            store=store,
            store_policy=policy,
            spool=spool,
            sinks=sinks,
            metrics=metrics,
            writing_dir=writing_dir,
            lock_mode=lock_mode,
            retention_days=retention_days,
            policies=load_policies(config.retention.policies_dir, builtin_days=retention_days),
            rtms_controller=None if zoom is None else zoom.rtms_controller,
            zoom_directory=None if zoom is None else zoom.zoom_directory,
            zoom_listing=None if zoom is None else zoom.zoom_listing,
        )
    finally:
        with trio.CancelScope(shield=True):
            await catalog.aclose()
