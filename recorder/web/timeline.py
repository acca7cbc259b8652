"""The player's timeline: tracks with their offsets, gaps and pauses as labelled regions, and
the transcript as cues, all in seconds from the recording's start (pure; no I/O)."""

from __future__ import annotations

from typing import Final

from recorder.catalog.base import RecordingDetail
from recorder.officer.bundle.transcript import Cue, cue_end
from recorder.rtms.events import GapCause

#: What an officer reads for each gap cause (``recorder.rtms.events.GapCause``; the cause's
#: own name is shown beside it, and an unknown cause is shown as it is).
GAP_LABELS: Final = {
    GapCause.LOST_PACKETS: "lost packets",
    GapCause.LATE_PACKETS: "late packets",
    GapCause.DECODE_ERROR: "undecodable audio",
    GapCause.MEDIA_INTERRUPTED: "media connection interrupted",
    GapCause.SIGNALING_INTERRUPTED: "signaling interrupted",
    GapCause.FAILOVER: "failover to a new server",
    GapCause.RECORDER_RESTART: "recorder restart",
    GapCause.BACKPRESSURE: "recorder overloaded",
    GapCause.NO_SPEECH: "no speech",
    GapCause.CORRUPT_CHUNK: "damaged at crash recovery",
    GapCause.TIMESTAMP_DISCONTINUITY: "timestamp jump",
}


def seconds(ms: int) -> float:
    return round(ms / 1000, 3)


def gap_label(cause: str) -> str:
    known = {c.value: label for c, label in GAP_LABELS.items()}
    return known.get(cause, cause.replace("_", " "))


def timeline(
    detail: RecordingDetail, cues: list[Cue], urls: dict[str, tuple[str, str]]
) -> dict[str, object]:
    """``urls``: track -> (audio URL, peaks URL)."""
    r = detail.recording
    zero = r.started_ms
    tracks = []
    for track in sorted({s.track for s in detail.segments}):
        segs = [s for s in detail.segments if s.track == track]
        start = min(s.start_ms for s in segs)
        end = max(s.end_ms for s in segs)
        audio, peaks = urls[track]
        tracks.append(
            {
                "track": track,
                "offset_s": seconds(start - zero),
                "duration_s": seconds(end - start),
                "sample_rate": segs[0].sample_rate,
                "audio_url": audio,
                "peaks_url": peaks,
            }
        )
    end_ms = r.ended_ms or max((s.end_ms for s in detail.segments), default=zero)
    return {
        "recording_id": r.recording_id,
        "started_ms": zero,
        "duration_s": seconds(end_ms - zero),
        "tracks": tracks,
        "gaps": [
            {
                "track": g.track,
                "start_s": seconds(g.start_ms - zero),
                "end_s": seconds(g.end_ms - zero),
                "cause": g.cause,
                "label": gap_label(g.cause),
            }
            for g in sorted(detail.gaps, key=lambda g: (g.start_ms, g.track))
        ],
        "pauses": [
            {
                "start_s": seconds(p.start_ms - zero),
                "end_s": seconds((p.end_ms if p.end_ms is not None else end_ms) - zero),
                "actor": p.actor,
                "label": f"paused by {p.actor or 'unknown'}",
            }
            for p in detail.pauses
        ],
        "transcript": [
            {
                "start_s": seconds(cue.start_ms - zero),
                "end_s": seconds(cue_end(cues, i) - zero),
                "speaker": cue.speaker,
                "text": cue.text,
            }
            for i, cue in enumerate(cues)
        ],
    }
