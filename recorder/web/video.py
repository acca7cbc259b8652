"""The recording's video in the console: ``GET /recordings/{id}/video`` serves the export
bundle's ``listening-video.mp4`` (the camera, else the screen share, with the listening audio
as AAC), built in memory and served with ``Range`` support to a ``<video>`` element.

Same gate as audio plays: the ``play`` permission, the session's reason for this recording,
and one ``play`` audit event (track ``listening-video``) written before anything is decrypted.
Invariant 1: the decrypted segments, the listening WAV and the MP4 exist only in this process's
memory, never in a file; their size is bounded (``MAX_VIDEO_BYTES``: past it the console says
to export instead) and at most ``CACHED_VIDEOS`` built MP4s are kept (a player makes many
range requests), per session and recording.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Final

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from recorder.catalog.base import AuditEvent, RecordFileRow, RecordingDetail
from recorder.errors import DigestMismatch, RecorderError
from recorder.officer.bundle.export import with_object
from recorder.officer.bundle.transcript import RecordsSplitter
from recorder.officer.httprange import multipart_byteranges, parse_range, unsatisfied_content_range
from recorder.officer.listening_media import open_listening_media
from recorder.officer.media import StoreObjects
from recorder.video.memory_mux import MemoryVideo, Segment, listening_video
from recorder.video.track import VIDEO_RECORD_KINDS
from recorder.web.actions import _audit_play, _detail, _reason
from recorder.web.auth import require
from recorder.web.console import Console, console_of
from recorder.web.errors import NotFound, WebError
from recorder.web.roles import Permission

#: Decrypted video plus listening WAV one console play may hold in memory.
MAX_VIDEO_BYTES: Final = 256 * 1024 * 1024
#: Built MP4s kept per console process (the oldest is dropped first).
CACHED_VIDEOS: Final = 2
#: The ``track`` of the play audit event.
PLAY_TRACK: Final = "listening-video"
BLOCK: Final = 256 * 1024


def video_track(detail: RecordingDetail) -> str | None:
    """The track the listening video shows: the camera, else the screen share (as the export)."""
    kinds = {r.kind for r in detail.records if r.kind in VIDEO_RECORD_KINDS}
    if "video" in kinds:
        return "video"
    return min(kinds) if kinds else None


def url(recording_id: str) -> str:
    return f"/recordings/{recording_id}/video"


async def _plaintext(console: Console, row: RecordFileRow) -> bytes:
    out = io.BytesIO()

    def work(chunks: Iterator[bytes], expected: str | None) -> None:
        hasher = hashlib.sha256()
        for chunk in chunks:
            hasher.update(chunk)
            out.write(chunk)
        if expected is not None and not hmac.compare_digest(hasher.hexdigest(), expected):
            raise DigestMismatch(
                f"{row.object_key}: decrypted content differs from the digest sealed at recording"
            )

    await with_object(console.components, row, work)
    return out.getvalue()


async def _roles(console: Console, detail: RecordingDetail) -> dict[str, str]:
    """Each track's role from the recording's events (as the export lays out its sides)."""
    splitter = RecordsSplitter(io.BytesIO(), io.BytesIO())
    for row in sorted(detail.records, key=lambda r: r.record_index):
        if row.kind in VIDEO_RECORD_KINDS:
            continue

        def feed(chunks: Iterator[bytes], expected: str | None) -> None:
            pending = b""
            for chunk in chunks:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    splitter.feed(line)
            splitter.feed(pending)

        try:
            await with_object(console.components, row, feed)
        except (RecorderError, ValueError, json.JSONDecodeError):
            continue  # unreadable records: each leg goes on both sides (said by `show`)
    return dict(splitter.track_roles)


async def build(console: Console, detail: RecordingDetail, audit: AuditEvent) -> MemoryVideo:
    track = video_track(detail)
    if track is None:
        raise NotFound(f"recording {detail.recording.recording_id} has no video")
    rows = sorted((r for r in detail.records if r.kind == track), key=lambda r: r.record_index)
    budget = sum(r.plaintext_size for r in rows)
    if budget > MAX_VIDEO_BYTES:
        raise WebError(
            f"the {track} of this recording ({budget} bytes) is too large to play in the "
            "console; export the recording instead",
            status=413,
        )
    c = console.components
    wav: bytes | None = None
    audio_start = 0
    if detail.segments:
        roles = await _roles(console, detail)
        mix = await open_listening_media(
            StoreObjects(c.store, c.keyring), c.keyring, detail, audit, roles
        )
        if mix is not None:
            try:
                if budget + mix.length > MAX_VIDEO_BYTES:
                    raise WebError(
                        f"the {track} and the listening audio of this recording "
                        f"({budget + mix.length} bytes) are too large to play in the console; "
                        "export the recording instead",
                        status=413,
                    )
                buf = bytearray()
                async for block in mix.iter_range(0, mix.length):
                    buf += block
                wav = bytes(buf)
                audio_start = mix.mixed.start_ms
            finally:
                await mix.aclose()
    segments = [
        Segment(await _plaintext(console, row), row.start_ms, row.record_index, row.recovered)
        for row in rows
    ]
    return await trio.to_thread.run_sync(listening_video, segments, wav, audio_start)


async def video(request: Request) -> Response:
    """``GET /recordings/{id}/video``: the listening video (see the module doc)."""
    principal = await require(request, Permission.PLAY)
    console = console_of(request)
    recording_id = request.path_params["recording_id"]
    detail = await _detail(console, recording_id)
    if video_track(detail) is None:
        raise NotFound(f"recording {recording_id} has no video")
    reason = await _reason(console, principal, recording_id)
    event = await _audit_play(console, principal, recording_id, PLAY_TRACK, reason)
    key = (principal.session_hash, recording_id, event.audit_id)
    async with console.video_lock:  # a player's parallel range requests build it once
        built = console.videos.pop(key, None)
        if built is None:
            built = await build(console, detail, event)
        console.videos[key] = built  # most recent last
        while len(console.videos) > CACHED_VIDEOS:
            console.videos.pop(next(iter(console.videos)))
    return _ranged(built.data, built.content_type, request.headers.get("range"))


def _ranged(data: bytes, content_type: str, header: str | None) -> Response:
    total = len(data)
    headers = {"accept-ranges": "bytes", "cache-control": "no-store"}
    try:
        ranges = parse_range(header, total)
    except RecorderError as exc:
        return Response(
            str(exc), status_code=416, headers={"content-range": unsatisfied_content_range(total)}
        )
    if not ranges:
        return Response(data, media_type=content_type, headers=headers)
    if len(ranges) == 1:
        [r] = ranges
        headers["content-range"] = r.content_range(total)
        return Response(
            data[r.start : r.stop], status_code=206, media_type=content_type, headers=headers
        )
    parts = multipart_byteranges(ranges, total, content_type)

    async def read(start: int, stop: int) -> AsyncIterator[bytes]:
        for at in range(start, stop, BLOCK):
            yield data[at : min(stop, at + BLOCK)]

    headers["content-length"] = str(parts.content_length)
    return StreamingResponse(
        parts.body(read), status_code=206, media_type=parts.content_type, headers=headers
    )


__all__ = ["MAX_VIDEO_BYTES", "build", "url", "video", "video_track"]
