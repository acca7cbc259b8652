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
from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from recorder.rtms.events import GapCause
from recorder.rtms.webhook import PayloadRejection, SignatureRejection, WebhookKind

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


#: ``frames_dropped`` cause for frames that were not valid RTMS messages.
MALFORMED: Final = "malformed"


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
        self._drop_causes = self._gap_causes | {MALFORMED}
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
        for cause in self._drop_causes:
            self.frames_dropped.labels(cause=cause)
        for reason in WEBHOOK_REJECTION_REASONS:
            self.webhook_rejections.labels(reason=reason)
        for kind in WebhookKind:
            self.webhooks_received.labels(kind=kind.value)

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

    # --- Spool and uploads -------------------------------------------------------------------

    def set_spool(self, *, pending_bytes: int, oldest_pending_age_s: float) -> None:
        self.spool_bytes.set(pending_bytes)
        self.spool_oldest_pending_age_seconds.set(max(0.0, oldest_pending_age_s))

    def upload_succeeded(self) -> None:
        self.uploads.inc()

    def upload_failed(self) -> None:
        self.upload_failures.inc()

    # --- Readiness ---------------------------------------------------------------------------

    def set_ready(self, check: str, ok: bool) -> None:
        """``check`` must be a registered readiness check name (a short fixed string)."""
        self.readiness.labels(check=check).set(1 if ok else 0)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry (what /metrics serves)."""
        return generate_latest(self.registry)
