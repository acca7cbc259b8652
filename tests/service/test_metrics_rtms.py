"""The RTMS client's own counts of a stream reach /metrics."""

from __future__ import annotations

from recorder.rtms.client import RtmsStats
from recorder.service.metrics import RecorderMetrics


def test_client_counts_are_rendered() -> None:
    metrics = RecorderMetrics()
    stats = RtmsStats()
    stats.dropped["after_end"] = 2
    stats.dropped["control_backlog"] = 5  # delivered as a PacketsDropped event instead
    stats.dropped["malformed"] = 7  # reported by the engagement itself, not here
    stats.audio_slow_path = 3
    stats.media_sockets_dropped = 1
    metrics.add_rtms_stream_stats(stats)
    text = metrics.render().decode()
    assert 'rtmsrec_capture_frames_dropped_total{cause="after_end"} 2.0' in text
    assert 'cause="control_backlog"' not in text
    assert 'rtmsrec_capture_frames_dropped_total{cause="malformed"} 0.0' in text
    assert "rtmsrec_rtms_audio_slow_path_frames_total 3.0" in text
    assert "rtmsrec_rtms_media_sockets_dropped_total 1.0" in text
