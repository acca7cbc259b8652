"""The service's Prometheus registry: names from compliance.md, fixed label sets, no ids."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

from recorder.rtms.events import GapCause
from recorder.rtms.webhook import WebhookKind
from recorder.service.metrics import RecorderMetrics


def value(metrics: RecorderMetrics, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", metrics.render().decode(), re.MULTILINE)
    assert match, f"{series} missing"
    return float(match.group(1))


def test_capture_figures_move() -> None:
    m = RecorderMetrics()
    m.engagement_started()
    m.engagement_started()
    m.engagement_ended()
    m.add_capture(expected_s=10.0, captured_s=9.5)
    m.add_gap(GapCause.MEDIA_INTERRUPTED, 0.5)
    m.add_dropped_frames(GapCause.BACKPRESSURE, 3)
    m.add_paused(2.0)
    m.add_reconnect(GapCause.FAILOVER)
    m.set_spool(pending_bytes=1234, oldest_pending_age_s=7.5)
    m.upload_failed()
    m.upload_succeeded()
    assert value(m, "rtmsrec_active_engagements") == 1
    assert value(m, "rtmsrec_capture_expected_seconds_total") == 10.0
    assert value(m, "rtmsrec_capture_captured_seconds_total") == 9.5
    assert value(m, 'rtmsrec_capture_gap_seconds_total{cause="media_interrupted"}') == 0.5
    assert value(m, 'rtmsrec_capture_gap_seconds_total{cause="lost_packets"}') == 0
    assert value(m, 'rtmsrec_capture_frames_dropped_total{cause="backpressure"}') == 3
    assert value(m, "rtmsrec_capture_paused_seconds_total") == 2.0
    assert value(m, 'rtmsrec_rtms_reconnects_total{cause="failover"}') == 1
    assert value(m, "rtmsrec_upload_spool_bytes") == 1234
    assert value(m, "rtmsrec_upload_spool_oldest_pending_age_seconds") == 7.5
    assert value(m, "rtmsrec_upload_failures_total") == 1
    assert value(m, "rtmsrec_uploads_total") == 1


def test_label_values_outside_the_fixed_sets_fold_into_other() -> None:
    m = RecorderMetrics()
    m.webhook_rejected("609340fb2a7946909659956c8aa9250c")
    m.add_gap("engagement-LjjdDBo5SkGneP8qY4SvuQ", 1.0)
    m.webhook_rejected("bad_signature")
    m.webhook_received(WebhookKind.STARTED)
    text = m.render().decode()
    assert "609340fb" not in text
    assert "LjjdDBo5" not in text
    assert value(m, 'rtmsrec_webhook_rejections_total{reason="other"}') == 1
    assert value(m, 'rtmsrec_capture_gap_seconds_total{cause="other"}') == 1
    assert value(m, 'rtmsrec_webhook_rejections_total{reason="bad_signature"}') == 1
    assert value(m, 'rtmsrec_webhooks_received_total{kind="started"}') == 1


def test_each_service_owns_its_registry() -> None:
    a, b = RecorderMetrics(), RecorderMetrics()
    a.upload_failed()
    assert value(a, "rtmsrec_upload_failures_total") == 1
    assert value(b, "rtmsrec_upload_failures_total") == 0
    assert "rtmsrec_upload_failures_total" not in {
        sample.name for family in REGISTRY.collect() for sample in family.samples
    }


def test_negative_or_zero_amounts_are_ignored() -> None:
    m = RecorderMetrics()
    m.add_capture(expected_s=-1, captured_s=0)
    m.add_gap(GapCause.LOST_PACKETS, -2)
    m.add_dropped_frames(GapCause.LOST_PACKETS, 0)
    m.set_spool(pending_bytes=0, oldest_pending_age_s=-5)
    assert value(m, "rtmsrec_capture_expected_seconds_total") == 0
    assert value(m, "rtmsrec_upload_spool_oldest_pending_age_seconds") == 0
