"""Video and screen-share tracks as ``recorder show`` lists them (from the catalog only: no
decrypt). A video track is the ``records`` rows of kind ``video`` / ``deskshare`` (one sealed MP4
segment each) and the ``gaps`` rows under the same track name; a resolution change is a
zero-length gap of cause ``resolution_change`` whose detail says ``WxH -> WxH``.
"""

from __future__ import annotations

from collections.abc import Callable

from recorder.catalog.base import RecordingDetail
from recorder.video.track import RESOLUTION_CHANGE, VIDEO_RECORD_KINDS


def video_facts(detail: RecordingDetail) -> list[dict[str, object]]:
    """``show --json``'s ``video_tracks`` (see docs/officer.md)."""
    out: list[dict[str, object]] = []
    for track in sorted({r.kind for r in detail.records if r.kind in VIDEO_RECORD_KINDS}):
        rows = sorted((r for r in detail.records if r.kind == track), key=lambda r: r.record_index)
        gaps = sorted((g for g in detail.gaps if g.track == track), key=lambda g: g.start_ms)
        changes = [g for g in gaps if g.cause == RESOLUTION_CHANGE]
        missing = [g for g in gaps if g.cause != RESOLUTION_CHANGE]
        span_ms = max(r.end_ms for r in rows) - min(r.start_ms for r in rows)
        covered_ms = sum(r.end_ms - r.start_ms for r in rows)
        gap_ms = sum(g.end_ms - g.start_ms for g in missing)
        out.append(
            {
                "track": track,
                "format": "mp4-h264",
                "segments": [
                    {
                        "index": r.record_index,
                        "start_ms": r.start_ms,
                        "end_ms": r.end_ms,
                        "bytes": r.plaintext_size,
                        "upload_state": r.upload_state.value,
                        "verified_ms": r.verified_ms,
                        "recovered": r.recovered,
                    }
                    for r in rows
                ],
                "start_ms": min(r.start_ms for r in rows),
                "end_ms": max(r.end_ms for r in rows),
                "duration_ms": span_ms,
                "covered_ms": covered_ms,
                "gap_ms": gap_ms,
                "resolution_changes": [{"at_ms": g.start_ms, "change": g.detail} for g in changes],
                "gaps": [
                    {
                        "start_ms": g.start_ms,
                        "end_ms": g.end_ms,
                        "cause": g.cause,
                        "detail": g.detail,
                    }
                    for g in missing
                ],
            }
        )
    return out


def render_video(tracks: list[dict[str, object]], t: Callable[[object], str]) -> list[str]:
    """The text lines of ``recorder show`` for ``video_facts``."""
    if not tracks:
        return []
    lines = ["video:"]
    for tr in tracks:
        segments = tr["segments"]
        assert isinstance(segments, list)
        changes = tr["resolution_changes"]
        gaps = tr["gaps"]
        assert isinstance(changes, list)
        assert isinstance(gaps, list)
        name = "camera" if tr["track"] == "video" else "screen share"
        lines.append(
            f"  {tr['track']} ({name}): {len(segments)} segment(s), H.264 MP4, "
            f"{_s(tr['duration_ms'])} from {t(tr['start_ms'])} to {t(tr['end_ms'])}, "
            f"gaps {_s(tr['gap_ms'])}, {len(changes)} resolution change(s)"
        )
        for seg in segments:
            lines.append(
                f"    #{seg['index']} {t(seg['start_ms'])} .. {t(seg['end_ms'])} "
                f"{seg['upload_state']}" + (" recovered" if seg["recovered"] else "")
            )
        for change in changes:
            lines.append(f"    resolution {change['change'] or 'changed'} at {t(change['at_ms'])}")
        for g in gaps:
            length = (int(g["end_ms"]) - int(g["start_ms"])) / 1000
            lines.append(
                f"    gap {t(g['start_ms'])} .. {t(g['end_ms'])} ({length:.2f} s): {g['cause']}"
            )
    return lines


def _s(ms: object) -> str:
    return f"{int(ms) / 1000:.1f} s" if isinstance(ms, int) else "-"


__all__ = ["render_video", "video_facts"]
