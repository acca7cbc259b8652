"""Prometheus metrics of one recorder process, in a registry the service owns.

Rule: no label ever carries an id (engagement, stream, meeting, user, segment). Every label value
comes from a small fixed set (``GapCause``, the webhook rejection reasons, ``WebhookKind``, the
readiness check names); anything else is folded into ``other``, so a bug or a hostile request
can never blow up the series count (compliance.md, operational conventions).

Names follow Prometheus' guide: ``rtmsrec_`` prefix, base units, ``_total`` for counters (the
client library appends it), ``_seconds`` / ``_bytes`` suffixes.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from recorder.products import Product
from recorder.rtms.events import GapCause
from recorder.rtms.webhook import PayloadRejection, SignatureRejection, WebhookKind

if TYPE_CHECKING:
    from recorder.rtms.client import RtmsStats

#: The Content-Type of ``render()``'s output.
METRICS_CONTENT_TYPE: Final[str] = CONTENT_TYPE_LATEST

OTHER: Final = "other"


class IngressRejection(enum.StrEnum):
    """Webhook rejections that are not about the signature or the payload."""

    BODY_TOO_LARGE = "body_too_large"
    #: The service's hand-off queue was full: answered 503 so that Zoom retries.
    OVERLOADED = "overloaded"
    #: ``endpoint.url_validation`` with a plainToken we refuse to sign (see ingress).
    BAD_PLAIN_TOKEN = "bad_plain_token"  # noqa: S105 - a label, not a credential
    #: A lifecycle event (``rtms.start_failed``...) could not be stored: 503, Zoom retries.
    EVIDENCE_NOT_STORED = "evidence_not_stored"
    #: The webhook outbox (catalog) could not commit: answered 503 so that Zoom retries.
    CATALOG_UNAVAILABLE = "catalog_unavailable"


class LeaseLoss(enum.StrEnum):
    """Why an engagement stopped holding its stream's lease (``rtmsrec_leases_lost``)."""

    #: Another process claimed the stream (this one had stalled past its lease).
    TAKEN_OVER = "taken_over"
    #: This process could not renew in time and stopped itself (catalog unreachable).
    FENCED = "fenced"


#: Every reason a webhook can be refused for: the only values of the ``reason`` label.
WEBHOOK_REJECTION_REASONS: Final = frozenset(
    {r.value for r in SignatureRejection}
    | {r.value for r in PayloadRejection}
    | {r.value for r in IngressRejection}
)


#: The ``event`` label of lifecycle events: the name after its product prefix (``rtms.``,
#: ``meeting.rtms_``...), so ``meeting.rtms_concurrency_limited`` counts as ``concurrency_limited``.
LIFECYCLE_EVENT_LABELS: Final = frozenset(
    {"start_failed", "concurrency_limited", "concurrency_near_limit"}
)
#: The ``product`` label of a lifecycle event that names no product.
UNKNOWN_PRODUCT: Final = "unknown"
#: Why a recording key took the escrow path: the KMS/KEK could not wrap it, or the key store
#: (catalog) could not take it.
KEY_ESCROW_CAUSES: Final = frozenset({"key_service_unavailable", "key_store_unavailable"})

#: ``stage`` of ``recovery_failures``: a ``.part`` not recovered, a sealed file not requeued.
RECOVERY_STAGES: Final = frozenset({"recover", "requeue"})

#: ``frames_dropped`` cause for frames that were not valid RTMS messages.
MALFORMED: Final = "malformed"
#: ``frames_dropped`` causes the RTMS client counts itself (``RtmsStats.dropped``) and reports
#: in no event: what was offered after the stream ended. (Drops behind a full channel or control
#: backlog arrive as ``PacketsDropped`` events, cause ``backpressure``.)
CLIENT_DROP_CAUSES: Final = frozenset({"after_end"})


def _label(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else OTHER


class RecorderMetrics:
    """The capture-level figures of compliance.md, plus ingress and upload counters.

    Create one per process and pass it to the parts that report; ``render()`` is what /metrics
    serves. Each method is a couple of dict lookups: cheap enough for per-packet paths, but
    callers should still batch (count drops per burst, add seconds per segment checkpoint).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._gap_causes = frozenset(c.value for c in GapCause)
        #: Frames are also dropped before they are audio at all: malformed on the wire.
        self._drop_causes = self._gap_causes | {MALFORMED} | CLIENT_DROP_CAUSES
        self.active_engagements = Gauge(
            "rtmsrec_active_engagements",
            "Engagements (RTMS streams) this process is recording now.",
            registry=r,
        )
        self.capture_expected_seconds = Counter(
            "rtmsrec_capture_expected_seconds",
            "Seconds of media the streams should have delivered (stream time elapsed).",
            registry=r,
        )
        self.capture_captured_seconds = Counter(
            "rtmsrec_capture_captured_seconds",
            "Seconds of media actually received and written.",
            registry=r,
        )
        self.capture_gap_seconds = Counter(
            "rtmsrec_capture_gap_seconds",
            "Seconds of stream time with no media, by cause.",
            ["cause"],
            registry=r,
        )
        self.capture_paused_seconds = Counter(
            "rtmsrec_capture_paused_seconds",
            "Seconds of stream time paused by a participant or agent (not a gap).",
            registry=r,
        )
        self.frames_dropped = Counter(
            "rtmsrec_capture_frames_dropped",
            "Media frames received but not written, by cause.",
            ["cause"],
            registry=r,
        )
        self.webhooks_received = Counter(
            "rtmsrec_webhooks_received",
            "Verified webhooks, by kind (duplicates included).",
            ["kind"],
            registry=r,
        )
        self.webhook_duplicates = Counter(
            "rtmsrec_webhook_duplicates",
            "Verified webhooks dropped as retries or repeats of one already handed on.",
            registry=r,
        )
        self.webhook_rejections = Counter(
            "rtmsrec_webhook_rejections",
            "Webhooks refused (4xx/503, no side effect), by reason.",
            ["reason"],
            registry=r,
        )
        self.reconnects = Counter(
            "rtmsrec_rtms_reconnects",
            "RTMS reconnections, by cause.",
            ["cause"],
            registry=r,
        )
        self.spool_bytes = Gauge(
            "rtmsrec_upload_spool_bytes",
            "Bytes of sealed segments waiting in the local spool for a verified upload.",
            registry=r,
        )
        self.spool_oldest_pending_age_seconds = Gauge(
            "rtmsrec_upload_spool_oldest_pending_age_seconds",
            "Age of the oldest segment still waiting in the spool (0 when empty).",
            registry=r,
        )
        self.key_escrow = Counter(
            "rtmsrec_key_escrow",
            "Recording keys that took the escrow path, by cause (alerts: any increase).",
            ["cause"],
            registry=r,
        )
        self.uploads = Counter(
            "rtmsrec_uploads",
            "Segments uploaded and verified (checksum, size, retention read back).",
            registry=r,
        )
        self.upload_failures = Counter(
            "rtmsrec_upload_failures",
            "Upload attempts that failed (each is retried; the spool keeps the segment).",
            registry=r,
        )
        self.lifecycle_events = Counter(
            "rtmsrec_lifecycle_events",
            "Lifecycle webhooks stored as evidence (retries not counted), by event and product.",
            ["event", "product"],
            registry=r,
        )
        self.recovered_segments = Counter(
            "rtmsrec_recovery_segments_recovered",
            "Segments a crashed writer left behind, sealed by startup recovery.",
            registry=r,
        )
        self.recovery_corrupt_chunks = Counter(
            "rtmsrec_recovery_corrupt_chunks",
            "Sealed chunks that failed authentication at recovery (skipped, recorded as gaps).",
            registry=r,
        )
        self.upload_quarantined = Counter(
            "rtmsrec_upload_quarantined",
            "Upload jobs set aside (integrity failure, or upload_max_attempts failed attempts); "
            "their data stays in the spool until `recorder spool retry`.",
            registry=r,
        )
        self.spool_quarantined_jobs = Gauge(
            "rtmsrec_upload_spool_quarantined_jobs",
            "Upload jobs in quarantine now (readable ones; unreadable job files are logged).",
            registry=r,
        )
        self.integrity_failures = Counter(
            "rtmsrec_upload_integrity_failures",
            "Uploads whose stored copy did not match (different bytes, failed read-back): the "
            "local copy is kept aside; each one needs an operator.",
            registry=r,
        )
        self.spool_warning = Gauge(
            "rtmsrec_upload_spool_warning",
            "1 while the spool holds more than spool_warn_bytes (uploads are falling behind).",
            registry=r,
        )
        self.recovery_failures = Counter(
            "rtmsrec_recovery_failures",
            "Files startup recovery could not recover or requeue (quarantined, or left for the "
            "next start), by stage.",
            ["stage"],
            registry=r,
        )
        self.rtms_audio_slow_path = Counter(
            "rtmsrec_rtms_audio_slow_path_frames",
            "Audio frames the one-pass decoder could not take, decoded by the tolerant path "
            "instead (a rising rate means RTMS changed its frame shape).",
            registry=r,
        )
        self.rtms_media_sockets_dropped = Counter(
            "rtmsrec_rtms_media_sockets_dropped",
            "Optional (non-audio) media sockets given up after refusals; the stream went on.",
            registry=r,
        )
        self.readiness = Gauge(
            "rtmsrec_ready",
            "1 when the named readiness check passed at its last run, else 0.",
            ["check"],
            registry=r,
        )
        self.leases_lost = Counter(
            "rtmsrec_leases_lost",
            "Engagements that stopped because their lease was taken over or could not be kept.",
            ["cause"],
            registry=r,
        )
        self.catalog_intents_journaled = Counter(
            "rtmsrec_catalog_intents_journaled",
            "Catalog writes of live calls journaled locally because the catalog could not take "
            "them (reconciled later; nothing is lost).",
            registry=r,
        )
        for loss in LeaseLoss:
            self.leases_lost.labels(cause=loss.value)
        # Pre-create every labelled series so dashboards see zeros, not gaps, before the first
        # event (and rate() works from the first increment).
        for cause in self._gap_causes:
            self.capture_gap_seconds.labels(cause=cause)
        for cause in KEY_ESCROW_CAUSES:
            self.key_escrow.labels(cause=cause)
        for cause in self._drop_causes:
            self.frames_dropped.labels(cause=cause)
        for reason in WEBHOOK_REJECTION_REASONS:
            self.webhook_rejections.labels(reason=reason)
        for kind in WebhookKind:
            self.webhooks_received.labels(kind=kind.value)
        for stage in RECOVERY_STAGES:
            self.recovery_failures.labels(stage=stage)
        for event in LIFECYCLE_EVENT_LABELS:
            for product in (*(p.value for p in Product), UNKNOWN_PRODUCT):
                self.lifecycle_events.labels(event=event, product=product)

    # --- Capture ---------------------------------------------------------------------------

    def engagement_started(self) -> None:
        self.active_engagements.inc()

    def engagement_ended(self) -> None:
        self.active_engagements.dec()

    def add_capture(self, *, expected_s: float, captured_s: float) -> None:
        """Report stream time elapsed and media written since the last report."""
        if expected_s > 0:
            self.capture_expected_seconds.inc(expected_s)
        if captured_s > 0:
            self.capture_captured_seconds.inc(captured_s)

    def add_gap(self, cause: GapCause | str, seconds: float) -> None:
        if seconds > 0:
            self.capture_gap_seconds.labels(cause=_label(str(cause), self._gap_causes)).inc(seconds)

    def add_paused(self, seconds: float) -> None:
        if seconds > 0:
            self.capture_paused_seconds.inc(seconds)

    def add_dropped_frames(self, cause: GapCause | str, count: int) -> None:
        if count > 0:
            self.frames_dropped.labels(cause=_label(str(cause), self._drop_causes)).inc(count)

    def add_rtms_stream_stats(self, stats: RtmsStats) -> None:
        """The RTMS client's own counts of one stream, reported once when it ends (malformed
        frames are reported by the engagement itself)."""
        for cause in CLIENT_DROP_CAUSES:
            self.add_dropped_frames(cause, stats.dropped.get(cause, 0))
        if stats.audio_slow_path:
            self.rtms_audio_slow_path.inc(stats.audio_slow_path)
        if stats.media_sockets_dropped:
            self.rtms_media_sockets_dropped.inc(stats.media_sockets_dropped)

    def add_reconnect(self, cause: GapCause | str) -> None:
        self.reconnects.labels(cause=_label(str(cause), self._gap_causes)).inc()

    def lease_lost(self, cause: LeaseLoss) -> None:
        self.leases_lost.labels(cause=cause.value).inc()

    def intents_journaled(self, count: int) -> None:
        if count > 0:
            self.catalog_intents_journaled.inc(count)

    # --- Webhooks ------------------------------------------------------------------------------

    def webhook_received(self, kind: WebhookKind) -> None:
        self.webhooks_received.labels(kind=kind.value).inc()

    def webhook_duplicate(self) -> None:
        self.webhook_duplicates.inc()

    def webhook_rejected(self, reason: str) -> None:
        self.webhook_rejections.labels(reason=_label(reason, WEBHOOK_REJECTION_REASONS)).inc()

    def lifecycle_event(self, event: str, product: Product | None) -> None:
        """One lifecycle webhook stored (``rtms.start_failed``, ``rtms.concurrency_*``)."""
        name = event.rpartition(".")[2].removeprefix("rtms_")
        self.lifecycle_events.labels(
            event=_label(name, LIFECYCLE_EVENT_LABELS),
            product=UNKNOWN_PRODUCT if product is None else product.value,
        ).inc()

    # --- Spool and uploads -------------------------------------------------------------------

    def set_spool(self, *, pending_bytes: int, oldest_pending_age_s: float) -> None:
        self.spool_bytes.set(pending_bytes)
        self.spool_oldest_pending_age_seconds.set(max(0.0, oldest_pending_age_s))

    def key_escrowed(self, cause: str) -> None:
        """A recording key went the escrow path (``KEY_ESCROW_CAUSES``)."""
        self.key_escrow.labels(_label(cause, KEY_ESCROW_CAUSES)).inc()

    def upload_succeeded(self) -> None:
        self.uploads.inc()

    def upload_failed(self) -> None:
        self.upload_failures.inc()

    def upload_job_quarantined(self) -> None:
        self.upload_quarantined.inc()

    def set_spool_quarantined(self, jobs: int) -> None:
        self.spool_quarantined_jobs.set(jobs)

    # --- Startup recovery ----------------------------------------------------------------------

    def segment_recovered(self, *, corrupt_chunks: int = 0) -> None:
        self.recovered_segments.inc()
        if corrupt_chunks > 0:
            self.recovery_corrupt_chunks.inc(corrupt_chunks)

    def integrity_failed(self) -> None:
        self.integrity_failures.inc()

    def set_spool_warning(self, on: bool) -> None:
        self.spool_warning.set(1 if on else 0)

    # --- Keys, recovery, leases --------------------------------------------------------------

    def recovery_failed(self, stage: str) -> None:
        self.recovery_failures.labels(stage=_label(stage, RECOVERY_STAGES)).inc()

    # --- Readiness ---------------------------------------------------------------------------

    def set_ready(self, check: str, ok: bool) -> None:
        """``check`` must be a registered readiness check name (a short fixed string)."""
        self.readiness.labels(check=check).set(1 if ok else 0)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry (what /metrics serves)."""
        return generate_latest(self.registry)

    # --- Completeness (zoom-completeness): findings, auto-start, enrichment -------------------

    _completeness: tuple[Gauge, Counter, Counter] | None = None

    def _completeness_metrics(self) -> tuple[Gauge, Counter, Counter]:
        """Created on first use, in this registry (appended here to keep ``__init__`` as is)."""
        made = self._completeness
        if made is None:
            made = (
                Gauge(
                    "rtmsrec_completeness_findings",
                    "Open completeness findings (expected, not or not fully recorded)",
                    ["kind", "cause"],
                    registry=self.registry,
                ),
                Counter(
                    "rtmsrec_rtms_autostarts",
                    "RTMS start requests for expected instances, by result",
                    ["result"],
                    registry=self.registry,
                ),
                Counter(
                    "rtmsrec_enrichments",
                    "Zoom directory look-ups for enrichment, by result",
                    ["result"],
                    registry=self.registry,
                ),
            )
            self._completeness = made
        return made

    def set_findings(self, counts: Iterable[tuple[str, str, int]]) -> None:
        """Open findings per kind and cause; kinds and causes outside the fixed sets fold
        into ``other``; a kind/cause pair seen before and gone now reads 0."""
        from recorder.completeness.model import FindingCause, FindingKind

        gauge = self._completeness_metrics()[0]
        kinds = frozenset(k.value for k in FindingKind)
        causes = frozenset(c.value for c in FindingCause)
        totals = {(k, c): 0 for k in kinds | {OTHER} for c in causes | {OTHER}}
        for kind, cause, n in counts:
            key = (_label(kind, kinds), _label(cause, causes))
            totals[key] = totals.get(key, 0) + n
        for (kind, cause), n in totals.items():
            gauge.labels(kind=kind, cause=cause).set(n)

    def rtms_autostart(self, result: str) -> None:
        """``requested`` or ``failed``."""
        self._completeness_metrics()[1].labels(
            result=_label(result, frozenset({"requested", "failed"}))
        ).inc()

    def enrichment(self, result: str) -> None:
        """``enriched`` or ``failed``."""
        self._completeness_metrics()[2].labels(
            result=_label(result, frozenset({"enriched", "failed"}))
        ).inc()


# --- Video and screen share (recorder.video) --------------------------------------------------

#: ``kind`` label values of the video metrics.
VIDEO_KINDS: Final = frozenset({"video", "deskshare"})
#: ``cause`` label values of ``rtmsrec_video_gap_seconds``: the audio causes plus video's own.
VIDEO_GAP_CAUSES: Final = frozenset(
    {c.value for c in GapCause} | {"awaiting_keyframe", "resolution_change"}
)
#: ``outcome`` label values of ``rtmsrec_video_frames``: VideoTrack's counters.
VIDEO_FRAME_OUTCOMES: Final = frozenset(
    {
        "frames",
        "late_or_duplicate",
        "bad_timestamp",
        "skipped_awaiting_keyframe",
        "skipped_decode_error",
        "mux_error",
    }
)


class VideoMetrics:
    """Registered in a ``Metrics`` registry on first use (``video_metrics``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.frames = Counter(
            "rtmsrec_video_frames",
            "Video frames by kind and what became of them (frames = written to MP4)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.gap_seconds = Counter(
            "rtmsrec_video_gap_seconds",
            "Seconds of video timeline without pictures, by kind and cause",
            ["kind", "cause"],
            registry=registry,
        )
        self.segments = Counter(
            "rtmsrec_video_segments_sealed",
            "Sealed MP4 video segments handed to the spool, by kind",
            ["kind"],
            registry=registry,
        )

    def add_counters(self, kind: str, counters: dict[str, int]) -> None:
        k = _label(kind, VIDEO_KINDS)
        for outcome, count in counters.items():
            if count > 0 and outcome in VIDEO_FRAME_OUTCOMES:
                self.frames.labels(kind=k, outcome=outcome).inc(count)

    def add_gap(self, kind: str, cause: str, seconds: float) -> None:
        if seconds > 0:
            self.gap_seconds.labels(
                kind=_label(kind, VIDEO_KINDS), cause=_label(cause, VIDEO_GAP_CAUSES)
            ).inc(seconds)

    def segment_sealed(self, kind: str) -> None:
        self.segments.labels(kind=_label(kind, VIDEO_KINDS)).inc()


_VIDEO_METRICS: Final[weakref.WeakKeyDictionary[CollectorRegistry, VideoMetrics]] = (
    weakref.WeakKeyDictionary()
)


def video_metrics(registry: CollectorRegistry) -> VideoMetrics:
    """The video metrics of ``registry`` (one ``RecorderMetrics``'s), registered once."""
    found = _VIDEO_METRICS.get(registry)
    if found is None:
        found = _VIDEO_METRICS[registry] = VideoMetrics(registry)
    return found
