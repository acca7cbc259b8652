"""How a recording is shown to an officer (``recorder show``, the demo's summary)."""

from __future__ import annotations

import time

from recorder.catalog.base import LifecycleEventRow, RecordingDetail
from recorder.officer.verify import RecordingVerdict, Verdict
from recorder.officer.video_view import video_facts


def _ms(value: int | None) -> str:
    if value is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(value / 1000)) + f".{value % 1000:03d}Z"


def utc_time(value_ms: int | None) -> str:
    """A full UTC date and time to the millisecond, for lists that span days."""
    if value_ms is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value_ms // 1000))
    return f"{stamp}.{value_ms % 1000:03d}Z"


def describe_lifecycle_event(event: LifecycleEventRow) -> str:
    """One line per lifecycle event: when, what, which ids, why, what it belongs to."""
    if event.recording_id is not None:
        belongs = f"recording {event.recording_id}"
    elif event.stream_known:
        belongs = "known stream, no recording"
    else:
        belongs = "orphan"
    named = event.rtms_stream_id or event.instance_id or "no id"
    product = "-" if event.product is None else event.product.value
    reason = repr(event.reason) if event.reason else "no reason given"
    when = utc_time(event.received_ms)
    return f"{when}  {event.event}  {product}  {named}  {reason}  ({belongs})"


def describe(detail: RecordingDetail, verdict: RecordingVerdict) -> list[str]:
    """What an officer sees for one recording (also what ``recorder show`` prints)."""
    r = detail.recording
    duration = ((r.ended_ms or r.started_ms) - r.started_ms) / 1000
    lines = [
        f"{r.product.value} {r.instance_id}",
        f"  recording {r.recording_id}  stream {r.rtms_stream_id}",
        f"  {r.status.value}, {duration:.1f} s, ended: {r.end_reason or '-'}",
    ]
    if r.cc_queue_name or r.cc_agent_name:
        lines.append(f"  queue {r.cc_queue_name or '-'}  agent {r.cc_agent_name or '-'}")
    if detail.participants:
        names = ", ".join(
            f"{p.user_name or p.user_id}" + (f" ({p.role})" if p.role else "")
            for p in detail.participants
        )
        lines.append(f"  participants: {names}")
    tracks: dict[str, list[float]] = {}
    for seg in detail.segments:
        tracks.setdefault(seg.track, []).append(seg.sample_count / seg.sample_rate)
    for track, lengths in sorted(tracks.items()):
        codec = next(s.codec for s in detail.segments if s.track == track)
        lines.append(
            f"  track {track}: {len(lengths)} segment(s), {sum(lengths):.1f} s, source {codec}"
        )
    for gap in detail.gaps:
        lines.append(
            f"  gap {gap.track} {_ms(gap.start_ms)} .. {_ms(gap.end_ms)} "
            f"({(gap.end_ms - gap.start_ms) / 1000:.2f} s): {gap.cause}"
        )
    for pause in detail.pauses:
        lines.append(
            f"  paused {_ms(pause.start_ms)} .. {_ms(pause.end_ms)} by {pause.actor or 'unknown'}"
        )
    for video in video_facts(detail):
        changes = video["resolution_changes"]
        assert isinstance(changes, list)
        segments = video["segments"]
        assert isinstance(segments, list)
        lines.append(
            f"  video {video['track']}: {len(segments)} segment(s), "
            f"{int(str(video['duration_ms'])) / 1000:.1f} s, gaps "
            f"{int(str(video['gap_ms'])) / 1000:.1f} s, {len(changes)} resolution change(s)"
        )
    if detail.records:
        lines.append(f"  records (transcript, chat, events): {len(detail.records)} file(s)")
    for event in detail.lifecycle_events:
        label = "failed start" if event.failed else "lifecycle"
        lines.append(f"  {label}: {describe_lifecycle_event(event)}")
    counts = ", ".join(f"{verdict.count(v)} {v.value}" for v in Verdict if verdict.count(v))
    lines.append(f"  verification: {'OK' if verdict.ok else 'PROBLEM'} ({counts})")
    for obj in verdict.objects:
        if obj.verdict is not Verdict.VERIFIED:
            lines.append(
                f"    {obj.kind} {obj.name} #{obj.index}: {obj.verdict.value} {obj.detail}"
            )
    return lines
