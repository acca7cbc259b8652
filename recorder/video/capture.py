"""The trio shell around ``VideoTrack``: one recording's video and screen share, from the
client's video channel (``RtmsStream.video_events``) to sealed, encrypted MP4 segments.

Muxing, segment opens, seals and checkpoints are blocking: they run in worker threads under
the process-wide segment I/O limiter, one batch of frames per hop (a batch is whatever the
channel holds, up to ``batch``), so the trio thread only moves references. Checkpoints run at
least every ``checkpoint_interval_s`` while frames flow, so a crash loses about that much plus
the MP4 fragment being built. Sealed segments go to ``on_sealed`` in seal order. The finaliser
seals every open segment under a shielded, time-bounded scope; a cancelled capture marks its
last segments ``interrupted``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import trio

from recorder.capture.actions import segment_io_limiter
from recorder.errors import VideoError
from recorder.rtms._video_outlet import VideoEvent, VideoLoss
from recorder.sink import SealedSegment, SinkFactory
from recorder.video.track import (
    SealedVideo,
    VideoGap,
    VideoSegmentEntry,
    VideoTrack,
    VideoTrackConfig,
)

logger = logging.getLogger(__name__)

OnVideoSealed = Callable[[SealedSegment, VideoSegmentEntry], Awaitable[None]]
#: Gaps no segment carries (a track that never got a keyframe, a trailing gap).
OnVideoGaps = Callable[[str, list[VideoGap]], Awaitable[None]]


@dataclass(slots=True)
class VideoCaptureConfig:
    #: Nominal fps per kind (the confirmed ``media_params``).
    fps: Mapping[str, int] = field(default_factory=lambda: {"video": 5, "deskshare": 5})
    segment_ms: int = 60_000
    checkpoint_interval_s: float = 1.0
    finalize_timeout_s: float = 10.0
    #: Frames muxed per worker-thread hop at most.
    batch: int = 32
    #: The lease epoch's first segment index (``EPOCH_INDEX_STRIDE``), as for audio.
    first_segment_index: int = 0


@dataclass(slots=True)
class VideoOutcome:
    segments: list[VideoSegmentEntry] = field(default_factory=list)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    outcome: str = "ended"


async def run_video_capture(
    events: trio.MemoryReceiveChannel[VideoEvent],
    sinks: SinkFactory,
    *,
    recording_id: str,
    config: VideoCaptureConfig | None = None,
    on_sealed: OnVideoSealed | None = None,
    on_gaps: OnVideoGaps | None = None,
    keep_entries: bool = True,
) -> VideoOutcome:
    """Record until the channel closes; returns what was sealed (entries if ``keep_entries``)."""
    cfg = config or VideoCaptureConfig()
    tracks: dict[str, VideoTrack] = {}
    out = VideoOutcome()
    limiter = segment_io_limiter()

    def track_of(kind: str) -> VideoTrack:
        track = tracks.get(kind)
        if track is None:
            track = tracks[kind] = VideoTrack(
                recording_id,
                kind,
                sinks,
                VideoTrackConfig(fps=cfg.fps.get(kind, 5), segment_ms=cfg.segment_ms),
                first_segment_index=cfg.first_segment_index,
            )
        return track

    def feed(batch: list[VideoEvent], checkpoint: bool) -> list[SealedVideo]:
        sealed: list[SealedVideo] = []
        for event in batch:
            if isinstance(event, VideoLoss):
                track_of(event.kind).note_cause(event.cause)
                continue
            try:
                sealed += track_of(event.kind).feed(event.timestamp_ms, event.payload)
            except VideoError as exc:
                # The muxer refused a frame the parser accepted: this frame is lost, noted.
                logger.warning("video frame refused recording_id=%s: %s", recording_id, exc)
                track_of(event.kind).counters["mux_error"] += 1
        if checkpoint:
            for track in tracks.values():
                track.checkpoint()
        return sealed

    async def hand_on(sealed: list[SealedVideo]) -> None:
        for seal, entry in sealed:
            if keep_entries:
                out.segments.append(entry)
            if on_sealed is not None:
                await on_sealed(seal, entry)

    async def finish(interrupted: bool) -> None:
        def seal_all() -> list[SealedVideo]:
            sealed: list[SealedVideo] = []
            for track in tracks.values():
                sealed += track.finish(interrupted=interrupted)
            return sealed

        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + cfg.finalize_timeout_s
            sealed = await trio.to_thread.run_sync(seal_all, limiter=limiter)
            await hand_on(sealed)
            for kind, track in tracks.items():
                out.counters[kind] = dict(track.counters)
                if track.pending_gaps and on_gaps is not None:
                    await on_gaps(kind, track.pending_gaps)
            if scope.cancelled_caught:
                out.outcome = "finalize_timed_out"

    next_checkpoint = trio.current_time() + cfg.checkpoint_interval_s
    try:
        async for first in events:
            batch: list[VideoEvent] = [first]
            while len(batch) < cfg.batch:
                try:
                    batch.append(events.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            due = trio.current_time() >= next_checkpoint
            if due:
                next_checkpoint = trio.current_time() + cfg.checkpoint_interval_s
            sealed = await trio.to_thread.run_sync(feed, batch, due, limiter=limiter)
            await hand_on(sealed)
    except BaseException:
        out.outcome = "cancelled"
        await finish(interrupted=True)
        raise
    await finish(interrupted=False)
    return out


__all__ = ["VideoCaptureConfig", "VideoOutcome", "run_video_capture"]
