"""The video part of an export bundle (``recorder export``).

For each recording with video records:

    <recording_id>/video/<track>.mp4       one MP4 per video track across its segments
                                           (``<track>.2.mp4``... after a resolution change)
    <recording_id>/listening-video.mp4     the camera (else the screen share) with the
                                           listening audio as AAC: plays in a browser

Every segment is decrypted, its plaintext SHA-256 compared with the digest sealed at
recording, and remuxed (never re-encoded) onto the track's RTMS timeline. A decrypted segment
exists only for the moment it is remuxed, as a 0600 file inside the bundle being built (which
is removed whole if anything fails). The manifest lists each file with its start on the RTMS
clock, its frame count, size and the segments it came from, and each track's recorded gaps.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trio

from recorder.catalog.base import RecordFileRow, RecordingDetail
from recorder.durable import open_bundle_file
from recorder.errors import DigestMismatch, VideoError
from recorder.video.remux import TrackJoiner, hash_file, mux_with_audio
from recorder.video.track import VIDEO_RECORD_KINDS

#: ``with_object`` of the bundle exporter: fetch, decrypt, hand the plaintext to a thread.
Fetch = Callable[[RecordFileRow, Callable[[Iterator[bytes], str | None], None]], Awaitable[None]]
Progress = Callable[[int, str], None]


@dataclass(slots=True)
class VideoExport:
    files: list[dict[str, object]] = field(default_factory=list)
    #: The manifest's ``video`` entry of the recording; None without video.
    summary: dict[str, object] | None = None


def video_rows(detail: RecordingDetail) -> list[RecordFileRow]:
    return [r for r in detail.records if r.kind in VIDEO_RECORD_KINDS]


async def export_video(
    detail: RecordingDetail,
    root: Path,
    rdir: Path,
    fetch: Fetch,
    *,
    listening: tuple[Path, int] | None,
    progress: Progress | None = None,
) -> VideoExport:
    rows = video_rows(detail)
    out = VideoExport()
    if not rows:
        return out
    vdir = rdir / "video"
    vdir.mkdir(mode=0o700)
    tracks: dict[str, list[dict[str, object]]] = {}
    unreadable: list[dict[str, object]] = []
    first_parts: dict[str, tuple[Path, int]] = {}
    for track in sorted({r.kind for r in rows}):
        joiner = TrackJoiner(vdir, track)
        for row in sorted((r for r in rows if r.kind == track), key=lambda r: r.record_index):
            tmp = vdir / f".segment-{track}-{row.record_index}.mp4"

            def work(
                chunks: Iterator[bytes],
                expected: str | None,
                row: RecordFileRow = row,
                tmp: Path = tmp,
                joiner: TrackJoiner = joiner,
            ) -> None:
                hasher = hashlib.sha256()
                with open_bundle_file(tmp) as handle:
                    for chunk in chunks:
                        hasher.update(chunk)
                        handle.write(chunk)
                if expected is not None and not hmac.compare_digest(hasher.hexdigest(), expected):
                    raise DigestMismatch(
                        f"{row.object_key}: decrypted content differs from the digest sealed "
                        "at recording"
                    )
                joiner.add(tmp, row.start_ms, row.record_index)

            try:
                await fetch(row, work)
            except VideoError as exc:
                if not row.recovered:
                    raise
                # Crash recovery kept what a dying writer had sealed: that may end before the
                # MP4's first picture. Named, not hidden, and the rest of the track goes on.
                unreadable.append({"object_key": row.object_key, "error": str(exc)})
            finally:
                tmp.unlink(missing_ok=True)
            if progress is not None:
                progress(row.plaintext_size, row.object_key)
        await trio.to_thread.run_sync(joiner.close)
        entries = []
        for part in joiner.parts:
            sha, size = await trio.to_thread.run_sync(hash_file, part.path)
            rel = part.path.relative_to(root).as_posix()
            entry: dict[str, object] = {
                "path": rel,
                "sha256": sha,
                "size": size,
                "kind": "video",
                "track": track,
                "format": "mp4-h264",
                "start_ms": part.start_ms,
                "end_ms": part.end_ms,
                "frames": part.frames,
                "width": part.width,
                "height": part.height,
                "segments": part.segments,
            }
            out.files.append(entry)
            entries.append(entry)
        if joiner.parts:
            first_parts[track] = (joiner.parts[0].path, joiner.parts[0].start_ms)
        tracks[track] = entries
    summary: dict[str, object] = {
        "tracks": {
            track: {
                "files": [e["path"] for e in entries],
                "gaps": [
                    {
                        "start_ms": g.start_ms,
                        "end_ms": g.end_ms,
                        "cause": g.cause,
                        "detail": g.detail,
                    }
                    for g in detail.gaps
                    if g.track == track
                ],
            }
            for track, entries in tracks.items()
        },
        "with_audio": None,
        "unreadable_recovered_segments": unreadable,
    }
    chosen = "video" if "video" in first_parts else next(iter(sorted(first_parts)), None)
    if listening is not None and chosen is not None:
        video_path, video_start = first_parts[chosen]
        wav, audio_start = listening
        target = rdir / "listening-video.mp4"
        sha, size, zero = await trio.to_thread.run_sync(
            mux_with_audio, video_path, video_start, wav, audio_start, target
        )
        out.files.append(
            {
                "path": target.relative_to(root).as_posix(),
                "sha256": sha,
                "size": size,
                "kind": "listening_video",
                "track": chosen,
                "format": "mp4-h264-aac",
                "zero_ms": zero,
            }
        )
        summary["with_audio"] = target.relative_to(root).as_posix()
    out.summary = summary
    return out


__all__ = ["VideoExport", "export_video", "video_rows"]
