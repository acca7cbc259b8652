"""``recorder serve``: the running service, assembled (hypercorn's ``worker_serve`` shape).

One nursery owns everything: the HTTP ingress, the uploader, the engagement supervisor and the
service loop. The service loop is what tells systemd (``WATCHDOG=1``) and ``/healthz`` that the
process is alive, so a wedged trio loop stops answering both. Shutdown (SIGTERM, SIGINT, or the
caller cancelling ``stop``): stop accepting webhooks, give open engagements
``service.drain_timeout_s``, seal what is left as interrupted, hand the leases back.
"""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import trio

from recorder.audio.decoder import OutputFormat
from recorder.capture.core import CaptureConfig
from recorder.catalog.aio import CatalogWebhookDedup
from recorder.catalog.base import EvidenceKind, EvidenceRef
from recorder.completeness.service import CompletenessService
from recorder.completeness.wiring import zoom_parts
from recorder.config import CaptureConfig as CaptureSection
from recorder.config import Config, MediaKind
from recorder.crypto.setup import key_service_probe
from recorder.errors import ConfigError, RecorderError
from recorder.rtms.client import ClientConfig, audio_params
from recorder.rtms.events import AudioCodec
from recorder.rtms.webhook import Product
from recorder.service.components import (
    Components,
    ZoomParts,
    keyring_settings,
    now_ms,
    open_components,
)
from recorder.service.evidence import EVIDENCE_KIND_KEY
from recorder.service.evidence_recorder import reconcile_journals
from recorder.service.health import Liveness, Readiness, ReadinessCheck, spool_below_limit
from recorder.service.ingress import (
    AcceptedWebhook,
    IngressApp,
    IngressSettings,
    serve_http,
)
from recorder.service.instance import lock_instance, owner_id
from recorder.service.lifecycle import CatalogLifecycleEvidence
from recorder.service.metrics import RecorderMetrics
from recorder.service.outbox import CatalogOutbox
from recorder.service.recovery import recover_at_startup, requeue_orphans
from recorder.service.supervisor import Supervisor, SupervisorSettings
from recorder.service.systemd import SystemdNotifier
from recorder.service.tree_metrics import TreeMetrics
from recorder.service.workers import WAKE_SOCKET, ParentNotifier, WorkerRole, WorkQueueSettings
from recorder.spool.spool import Spool, UploadJob
from recorder.spool.uploader import Backoff, UploaderStats, run_uploader
from recorder.store.base import PutResult

logger = logging.getLogger(__name__)

#: Webhooks accepted but not yet acted on; beyond this the ingress answers 503 and Zoom retries.
WEBHOOK_QUEUE: Final = 256
#: How often the service loop ticks (liveness, spool figures), when systemd asks for nothing.
SERVICE_TICK_S: Final = 2.0
#: After the drain, how long the uploader may go on uploading what is still spooled (what the
#: drain itself sealed, mostly) before the process exits. A few sealed files take well under a
#: second on a healthy store; the bound keeps a slow store from eating the stop margin
#: (``prefork.STOP_MARGIN_S``, systemd's ``TimeoutStopSec``). What is left stays spooled for the
#: next start.
DRAIN_UPLOAD_S: Final = 5.0


def client_config(config: Config, product: Product) -> ClientConfig:
    """The RTMS client settings for one product (audio params may differ per product)."""
    rtms = config.rtms
    audio = rtms.audio_for(product)
    return ClientConfig(
        audio=MediaKind.AUDIO in rtms.media,
        transcript=MediaKind.TRANSCRIPT in rtms.media,
        chat=MediaKind.CHAT in rtms.media,
        audio_params=audio_params(
            AudioCodec[audio.codec.name],
            audio.sample_rate_hz,
            audio.channels,
            per_speaker=audio.per_speaker,
            send_rate_ms=audio.packet_ms,
        ),
        watchdog_s=rtms.keepalive_watchdog_s,
        backoff_initial_s=rtms.backoff_initial_s,
        backoff_max_s=rtms.backoff_max_s,
        connect_timeout_s=rtms.connect_timeout_s,
        allowed_hosts=rtms.allowed_hosts,
        allow_insecure_loopback=rtms.allow_insecure_loopback,
        # Video: off unless [rtms] media asks and [video] products allows (recorder.video).
        video=MediaKind.VIDEO in rtms.media and product in config.video.products,
        deskshare=MediaKind.DESKSHARE in rtms.media and product in config.video.products,
        video_params=config.video.video_params(),
        deskshare_params=config.video.deskshare_params(),
        video_user_id=config.video.individual_user_id,
    )


def capture_config(config: Config) -> CaptureConfig:
    return capture_config_of(config.capture)


def capture_config_of(capture: CaptureSection) -> CaptureConfig:
    """The capture of every engagement, from the ``[capture]`` section (``bench fullpath``
    measures the shipped default through this too)."""
    return CaptureConfig(
        output=OutputFormat(
            sample_rate=capture.output_sample_rate_hz, channels=capture.output_channels
        ),
        segment_seconds=capture.segment_seconds,
        checkpoint_interval_s=capture.checkpoint_interval_s,
        retire_after_s=capture.retire_after_s,
    )


def credentials_for(config: Config) -> tuple[str, str, str, str] | None:
    """Client id/secret, and the Video SDK key/secret (falling back to the client's)."""
    s = config.secrets
    if s.zoom_client_id is None or s.zoom_client_secret is None:
        return None
    sdk_key = s.video_sdk_key or s.zoom_client_id
    sdk_secret = s.video_sdk_secret or s.zoom_client_secret
    return (
        s.zoom_client_id.reveal(),
        s.zoom_client_secret.reveal(),
        sdk_key.reveal(),
        sdk_secret.reveal(),
    )


def default_owner(instance_id: str) -> str:
    """This process's lease owner: unique per live process (one per state dir, which is
    locked), the same after a restart so that the restart reclaims its leases at once."""
    return owner_id(instance_id)


@dataclass(slots=True)
class RunningService:
    """Handles for the demo and tests: where it listens, what it records."""

    components: Components
    supervisor: Supervisor
    uploader: UploaderStats
    port: int
    #: Set to ask the owner of the block (``serve``) to leave it, which drains the service.
    stop: trio.Event

    async def uploads_settled(self) -> None:
        """Wait until the spool is empty (every sealed file uploaded and verified)."""
        while True:
            # Read the counter before the spool, so a job finishing in between still wakes us.
            seen = _attempts(self.uploader)
            if not (await self.components.spool.stats()).pending_count:
                return
            await self.uploader.wait_until(functools.partial(_moved_on, seen))


async def settle_uploads(spool: Spool, stats: UploaderStats, timeout_s: float) -> int | None:
    """Let the running uploader empty the spool for at most ``timeout_s``; give up at once when
    the store is unavailable (nothing would move). Returns how many jobs are still pending
    (None: the spool could not be read in time)."""
    pending: int | None = None
    with trio.move_on_after(timeout_s):
        while True:
            # Read the counter before the spool, so a job finishing in between still wakes us.
            seen = _attempts(stats)
            pending = (await spool.stats()).pending_count
            if not pending or stats.failures_in_a_row:
                return pending
            await stats.wait_until(functools.partial(_moved_on, seen))
    return pending


def _moved_on(seen: int, stats: UploaderStats) -> bool:
    return _attempts(stats) != seen


def _attempts(stats: UploaderStats) -> int:
    return stats.uploaded + stats.already_stored + stats.upload_failures + stats.integrity_failures


async def _on_uploaded(c: Components, job: UploadJob, put: PutResult) -> None:
    """The uploader verified the stored copy (size, checksum, retention) before calling this."""
    meta = job.metadata
    kind = EvidenceKind(meta.get(EVIDENCE_KIND_KEY, EvidenceKind.SEGMENT.value))
    ref = EvidenceRef(
        kind=kind,
        recording_id=meta["recording-id"],
        name=meta["track"],
        index=int(meta["segment-index"]),
    )
    now = now_ms()
    await c.catalog.mark_uploaded(
        ref, object_key=put.key, version_id=put.version_id, stored_sha256=put.sha256, now_ms=now
    )
    await c.catalog.mark_verified(ref, now)
    c.metrics.upload_succeeded()


@asynccontextmanager
async def run_service(
    config: Config,
    *,
    owner: str | None = None,
    notifier: SystemdNotifier | None = None,
    upload_backoff: Backoff | None = None,
    lease_ttl_s: float | None = None,
    rejoin_interval_s: float | None = None,
    zoom: ZoomParts | None = None,
    worker: WorkerRole | None = None,
) -> AsyncIterator[RunningService]:
    """Run the service for the lifetime of the block; leaving the block drains it.

    ``worker``: run as one worker of ``recorder serve --workers N`` (``recorder.service.workers``;
    ``config`` is already the worker's own, see ``worker_config``).

    ``lease_ttl_s`` and ``rejoin_interval_s`` override ``[service]`` of the configuration.
    Raises ``ConfigError`` before anything starts when secrets are missing, and
    ``StoreMisconfigured`` when the bucket fails its self-check.
    """
    creds = credentials_for(config)
    if creds is None:
        config.secrets.require("zoom_client_id", "zoom_client_secret")
        raise ConfigError("Zoom client credentials are missing")  # require() raised already
    client_id, client_secret, sdk_key, sdk_secret = creds
    ingress_settings = IngressSettings.from_config(config)
    if notifier is None and worker is not None and worker.status_fd is not None:
        notifier = ParentNotifier(worker.status_fd, ping_interval_s=SERVICE_TICK_S)
    notifier = notifier or SystemdNotifier.from_environ()
    metrics = RecorderMetrics()

    def credentials(product: Product) -> tuple[str, str]:
        if product is Product.SESSION:
            return sdk_key, sdk_secret
        return client_id, client_secret

    instance = lock_instance(config.storage.state_dir)
    try:
        async with (
            zoom_parts(config, zoom) as parts,
            _open_service(
                config,
                instance.instance_id,
                owner=owner,
                notifier=notifier,
                metrics=metrics,
                ingress_settings=ingress_settings,
                credentials=credentials,
                upload_backoff=upload_backoff,
                lease_ttl_s=lease_ttl_s,
                rejoin_interval_s=rejoin_interval_s,
                zoom=parts,
                worker=worker,
            ) as service,
        ):
            yield service
    finally:
        instance.release()


@asynccontextmanager
async def _open_service(
    config: Config,
    instance_id: str,
    *,
    owner: str | None,
    notifier: SystemdNotifier,
    metrics: RecorderMetrics,
    ingress_settings: IngressSettings,
    credentials: Callable[[Product], tuple[str, str]],
    upload_backoff: Backoff | None,
    lease_ttl_s: float | None,
    rejoin_interval_s: float | None,
    zoom: ZoomParts | None = None,
    worker: WorkerRole | None = None,
) -> AsyncIterator[RunningService]:
    async with open_components(config, metrics=metrics, zoom=zoom) as c:
        await c.store.self_check(c.store_policy)
        recovery = await recover_at_startup(c)
        reconciled = await reconcile_journals(c.catalog, config.storage.state_dir, now_ms())
        if reconciled:
            logger.warning("startup: %d journaled catalog intents reconciled", reconciled)
        if recovery.recovered or recovery.requeued or recovery.failed:
            logger.warning(
                "startup recovery: recovered=%d requeued=%d failed=%d",
                len(recovery.recovered),
                len(recovery.requeued),
                len(recovery.failed),
            )
        liveness = Liveness(config.service.liveness_stale_s)
        readiness = Readiness(timeout_s=config.service.readiness_check_timeout_s, metrics=metrics)
        spool_bytes = [0]
        readiness.register("catalog", _catalog_check(c))
        readiness.register("store", c.store.check_ready)
        readiness.register("keys", _keys_check(config))
        readiness.register(
            "spool",
            spool_below_limit(
                lambda: spool_bytes[0],
                config.storage.spool_limit_bytes,
                warn_bytes=config.storage.spool_warn_bytes,
            ),
        )
        send, receive = trio.open_memory_channel[AcceptedWebhook](WEBHOOK_QUEUE)
        completeness = CompletenessService(c)
        tree_metrics = (
            None
            if worker is None
            else TreeMetrics(
                metrics,
                config.storage.state_dir.parent,
                worker.index,
                stale_after_s=config.service.liveness_stale_s,
            )
        )
        app = IngressApp(
            ingress_settings,
            handoff=send,
            dedup=CatalogWebhookDedup(c.catalog, ttl_ms=config.service.dedup_retention_s * 1000),
            metrics=metrics,
            liveness=liveness,
            readiness=readiness,
            lifecycle=CatalogLifecycleEvidence(c.catalog, metrics),
            outbox=CatalogOutbox(c.catalog, dedup_ttl_ms=config.service.dedup_retention_s * 1000),
            announcements=completeness.announcements,
            metrics_page=None if tree_metrics is None else tree_metrics.render,
        )
        supervisor = Supervisor(
            c,
            SupervisorSettings(
                owner=owner or default_owner(instance_id),
                lease_ttl_s=lease_ttl_s or config.service.lease_ttl_s,
                rejoin_interval_s=rejoin_interval_s or config.service.rejoin_interval_s,
                work_queue=None
                if worker is None
                else WorkQueueSettings(
                    max_engagements=config.workers.max_engagements,
                    claim_interval_s=config.workers.claim_interval_s,
                    grace_s=config.workers.claim_grace_s,
                    wake_socket=config.storage.state_dir / WAKE_SOCKET,
                ),
            ),
            client_config=lambda product: client_config(config, product),
            capture_config=capture_config(config),
            credentials=credentials,
        )
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            uploader_stats: UploaderStats = await nursery.start(
                lambda task_status: run_uploader(
                    c.spool,
                    c.store,
                    backoff=upload_backoff or Backoff(max_s=config.storage.upload_backoff_max_s),
                    max_attempts=config.storage.upload_max_attempts,
                    on_uploaded=lambda job, put: _on_uploaded(c, job, put),
                    on_integrity_failure=lambda job, exc: _on_integrity_failure(metrics),
                    task_status=task_status,
                )
            )
            nursery.start_soon(_count_upload_failures, uploader_stats, metrics)
            await nursery.start(supervisor.run, receive)
            http_scope = trio.CancelScope()
            listen_fd = None if worker is None else worker.listen_fd
            port: int = await nursery.start(_serve_http_in, http_scope, app, config, listen_fd)
            nursery.start_soon(_service_loop, c, liveness, notifier, spool_bytes)
            nursery.start_soon(_evidence_sweep, c, supervisor)
            nursery.start_soon(completeness.run)
            if tree_metrics is not None:
                nursery.start_soon(tree_metrics.run)
            notifier.ready(status=f"listening on port {port}")
            logger.info("recorder serving port=%d owner=%s", port, supervisor.settings.owner)
            try:
                yield RunningService(c, supervisor, uploader_stats, port, stop)
            finally:
                with trio.CancelScope(shield=True):
                    notifier.stopping(status="draining")
                    http_scope.cancel()
                    await supervisor.drain(config.service.drain_timeout_s)
                    # The drain sealed the engagements' last segments and records into the
                    # spool; cancelling the uploader at once would leave them to a restart
                    # that may never come on this host (a scaled-in node, a stopped worker).
                    left = await settle_uploads(c.spool, uploader_stats, DRAIN_UPLOAD_S)
                    if left != 0:
                        logger.warning(
                            "drain: sealed files left in the spool for the next start: %s",
                            "unknown" if left is None else left,
                        )
                    if tree_metrics is not None:
                        _publish_last(tree_metrics)
                    nursery.cancel_scope.cancel()


def _publish_last(tree_metrics: TreeMetrics) -> None:
    """A stopped worker's last figures stay on its siblings' pages (tree_metrics rule 3)."""
    try:
        tree_metrics.publish()
    except OSError as exc:
        logger.warning("metrics: last figures not published: %s", exc.strerror)


async def _count_upload_failures(stats: UploaderStats, metrics: RecorderMetrics) -> None:
    """Mirror the uploader's failed attempts into /metrics as they happen (the uploader only
    counts them in its own stats; without this ``rtmsrec_upload_failures`` never moved)."""
    reported = stats.upload_failures
    quarantined = stats.quarantined + stats.integrity_failures
    while True:
        await stats.wait_until(functools.partial(_failures_differ, reported, quarantined))
        for _ in range(stats.upload_failures - reported):
            metrics.upload_failed()
        for _ in range(stats.quarantined + stats.integrity_failures - quarantined):
            metrics.upload_job_quarantined()
        reported = stats.upload_failures
        quarantined = stats.quarantined + stats.integrity_failures


def _failures_differ(reported: int, quarantined: int, stats: UploaderStats) -> bool:
    return (
        stats.upload_failures != reported
        or stats.quarantined + stats.integrity_failures != quarantined
    )


async def _serve_http_in(
    scope: trio.CancelScope,
    app: IngressApp,
    config: Config,
    listen_fd: int | None,
    *,
    task_status: trio.TaskStatus[int],
) -> None:
    with scope:
        await serve_http(
            app,
            config.service.listen_host,
            config.service.listen_port,
            bind=None if listen_fd is None else f"fd://{listen_fd}",
            task_status=task_status,
        )


async def _on_integrity_failure(metrics: RecorderMetrics) -> None:
    metrics.integrity_failed()


def _keys_check(config: Config) -> ReadinessCheck:
    """``keys``: the configured key service wraps a data key (see ``key_service_probe``)."""
    probe = key_service_probe(keyring_settings(config))

    async def check() -> None:
        await trio.to_thread.run_sync(probe)

    return check


def _catalog_check(c: Components) -> ReadinessCheck:
    async def check() -> None:
        await c.catalog.schema_version()

    return check


#: The evidence sweep runs every rejoin interval, but not more often than this.
EVIDENCE_SWEEP_MIN_S: Final = 5.0
#: A sealed file younger than this may be on its way to the spool already: the sweep waits.
ORPHAN_MIN_AGE_S: Final = 10.0


async def _evidence_sweep(c: Components, supervisor: Supervisor) -> None:
    """Reconcile evidence journals that no live engagement is writing any more (rule 2 of
    ``evidence_recorder``), then requeue sealed files nobody will hand on: a catalog outage
    that outlasted an engagement heals here, not only at the next restart."""
    interval_s = max(supervisor.settings.rejoin_interval_s, EVIDENCE_SWEEP_MIN_S)
    while True:
        await trio.sleep(interval_s)
        busy = frozenset(e.evidence.journal_path for e in supervisor.engagements.values())
        try:
            written = await reconcile_journals(
                c.catalog, c.config.storage.state_dir, now_ms(), busy=busy
            )
        except RecorderError as exc:
            logger.warning("evidence sweep failed: %s", exc)
            continue
        if written:
            logger.warning("evidence sweep: %d journaled catalog intents reconciled", written)
        held = frozenset(
            path for e in supervisor.engagements.values() for path in e.evidence.held_paths
        )
        requeued = await requeue_orphans(c, skip=held, min_age_s=ORPHAN_MIN_AGE_S)
        if requeued:
            logger.warning("evidence sweep: %d orphaned sealed segments requeued", len(requeued))


async def _service_loop(
    c: Components, liveness: Liveness, notifier: SystemdNotifier, spool_bytes: list[int]
) -> None:
    interval = min(notifier.ping_interval_s or SERVICE_TICK_S, SERVICE_TICK_S)
    warned_disk = False
    warned_spool = False
    warn_bytes = c.config.storage.spool_warn_bytes
    while True:
        liveness.tick()
        notifier.watchdog()
        try:
            stats = await c.spool.stats()
            spool_bytes[0] = stats.pending_bytes
            spool_high = stats.pending_bytes > warn_bytes
            c.metrics.set_spool_warning(spool_high)
            if spool_high and not warned_spool:
                logger.warning(
                    "spool above its warning size: uploads are falling behind "
                    "pending_bytes=%d spool_warn_bytes=%d",
                    stats.pending_bytes,
                    warn_bytes,
                )
            warned_spool = spool_high
            c.metrics.set_spool(
                pending_bytes=stats.pending_bytes,
                oldest_pending_age_s=stats.oldest_pending_age_s or 0.0,
            )
            c.metrics.set_spool_quarantined(stats.quarantined_count)
            disk = await c.spool.disk_free()
            if disk.low and not warned_disk:
                logger.error(
                    "spool disk almost full free_bytes=%d warn_below=%d",
                    disk.free_bytes,
                    disk.warn_below_bytes,
                )
            warned_disk = disk.low
        except RecorderError as exc:
            logger.warning("spool figures unavailable: %s", exc)
        await trio.sleep(interval)


async def serve(config: Config, worker: WorkerRole | None = None) -> int:
    """``recorder serve``: run until SIGTERM or SIGINT, then drain. Returns the exit code."""
    if worker is not None:
        return await _serve_worker(config, worker)
    async with run_service(config, worker=worker) as service, trio.open_nursery() as nursery:

        async def on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    logger.info("signal %s received: draining", signal.Signals(signum).name)
                    service.stop.set()
                    return

        nursery.start_soon(on_signal)
        await service.stop.wait()
        nursery.cancel_scope.cancel()
    return 0


async def _serve_worker(config: Config, worker: WorkerRole) -> int:
    """A worker of ``serve --workers N``. Its SIGTERM often comes twice (the parent forwards one;
    systemd's default ``KillMode=control-group`` sends one to every process of the unit; a
    terminal's Ctrl-C reaches the whole process group). Signals are consumed for the whole
    drain: the first one drains, later ones are ignored (a signal left unconsumed would be
    redelivered by trio when its receiver closes, and kill the process at the last moment)."""
    requested = trio.Event()

    async def absorb(signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if requested.is_set():
                logger.info("signal %s ignored: already draining", signal.Signals(signum).name)
                continue
            logger.info("signal %s received: draining", signal.Signals(signum).name)
            requested.set()

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as guard:
            guard.start_soon(absorb, signals)
            async with (
                run_service(config, worker=worker) as service,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(_set_when, requested, service.stop)
                await service.stop.wait()
                nursery.cancel_scope.cancel()
            guard.cancel_scope.cancel()
    return 0


async def _set_when(source: trio.Event, target: trio.Event) -> None:
    await source.wait()
    target.set()
