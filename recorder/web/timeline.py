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


#: Events and chat messages the player lists at most (a webinar can have thousands of joins).
MAX_EVENTS: Final = 2_000


def _when_ms(record: dict[str, object]) -> int | None:
    for key in ("ts_ms", "wall_ms"):
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _people(record: dict[str, object]) -> str:
    people = record.get("participants")
    if isinstance(people, list):
        names = [
            str(p.get("user_name") or p.get("user_id") or "?")
            for p in people
            if isinstance(p, dict)
        ]
        return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return str(record.get("user_name") or record.get("user_id") or "")


def describe_record(record: dict[str, object]) -> str:
    """One line for an event record (``recorder.audio.records``): what, who, why."""
    kind = str(record.get("type", "event"))
    what = record.get("event") or record.get("state_name") or record.get("cause") or ""
    who = _people(record)
    why = record.get("reason_name") or record.get("reason") or record.get("detail") or ""
    parts = [kind.replace("_", " "), str(what), who, str(why) if why else ""]
    return " · ".join(p for p in parts if p and p != "None")


def record_lines(records: list[object], zero_ms: int) -> list[dict[str, object]]:
    """Events or chat as ``{at_s, kind, text}``, in time order, at most ``MAX_EVENTS``."""
    lines: list[tuple[float | None, str, str]] = []
    for record in records[:MAX_EVENTS]:
        if not isinstance(record, dict):
            continue
        at = _when_ms(record)
        kind = str(record.get("type", "event"))
        if kind == "chat":
            text = f"{_people(record) or 'unknown'}: {record.get('text', '')}"
        else:
            text = describe_record(record)
        lines.append((None if at is None else seconds(at - zero_ms), kind, text))
    lines.sort(key=lambda line: (line[0] is None, line[0] or 0.0))
    return [{"at_s": at_s, "kind": kind, "text": text} for at_s, kind, text in lines]


def timeline(
    detail: RecordingDetail,
    cues: list[Cue],
    urls: dict[str, tuple[str, str]],
    events: list[object] | None = None,
    chat: list[object] | None = None,
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
        "events": record_lines(events or [], zero),
        "chat": record_lines(chat or [], zero),
    }
