"""Sealed video segments into the catalog and the spool, like every other piece of evidence.

A video segment is a record file of kind ``video`` or ``deskshare`` (the ``records`` table:
one row per sealed MP4, ``start_ms``..``end_ms`` on the RTMS clock, uploaded, verified, held
and retained exactly like transcript records), stored as ``.mp4.rec``. Its gaps go into the
``gaps`` table under the same track name, so ``show`` and the export account for the video
timeline as they do for audio. Nothing here waits for the catalog: the stream's evidence
recorder applies the intents in order.
"""

from __future__ import annotations

import functools
from typing import Final

from recorder.catalog.base import EvidenceKind, NewRecordFile
from recorder.service import evidence_recorder as intents
from recorder.service.evidence import retain_until, spool_sealed
from recorder.service.metrics import video_metrics
from recorder.service.observer import StreamObserver
from recorder.sink import SealedSegment
from recorder.spool.keys import object_key, segment_key
from recorder.video.track import VIDEO_RECORD_KINDS, VideoGap, VideoSegmentEntry

EXTENSION: Final = "mp4.rec"


class VideoEvidence:
    """``run_video_capture``'s ``on_sealed`` / ``on_gaps`` for a live engagement."""

    def __init__(self, observer: StreamObserver, recording_id: str) -> None:
        self._observer = observer
        self._recording_id = recording_id
        self._metrics = video_metrics(observer.c.metrics.registry)
        self.segments_sealed = 0

    def _key(self, sealed: SealedSegment) -> str:
        spec = self._observer.spec
        return object_key(
            segment_key(
                sealed.identity,
                product=spec.product.value,
                instance_id=spec.instance_id,
                rtms_stream_id=spec.rtms_stream_id,
                extension=EXTENSION,
            )
        )

    async def on_sealed(self, sealed: SealedSegment, entry: VideoSegmentEntry) -> None:
        o = self._observer
        recording_id = sealed.identity.recording_id
        retain = await retain_until(o.c, recording_id)
        key = self._key(sealed)
        intent = intents.record_file(
            NewRecordFile(
                recording_id=recording_id,
                kind=entry.track,
                record_index=entry.segment_index,
                object_key=key,
                plaintext_sha256=sealed.sha256,
                plaintext_size=sealed.plaintext_size,
                stored_size=sealed.stored_size,
                start_ms=entry.start_ms,
                end_ms=entry.end_ms,
                key_id=sealed.key_id,
                retain_until_ms=int(retain.timestamp() * 1000),
                recovered=sealed.recovered,
                stored_sha256=sealed.stored_sha256,
            )
        )
        o.evidence.submit(
            intent,
            functools.partial(
                spool_sealed, o.c, sealed, EvidenceKind.RECORD, key=key, retain=retain
            ),
            holds=sealed.path,
        )
        await self.on_gaps(entry.track, list(entry.gaps))
        self.segments_sealed += 1
        self._metrics.segment_sealed(entry.track)

    def frames_done(self, counters: dict[str, dict[str, int]]) -> None:
        """The capture ended: what became of each kind's frames, for /metrics."""
        for kind, values in counters.items():
            self._metrics.add_counters(kind, values)

    async def on_gaps(self, track: str, gaps: list[VideoGap]) -> None:
        o = self._observer
        for gap in gaps:
            o.evidence.submit(
                intents.gap(
                    self._recording_id,
                    track,
                    start_ms=gap.start_ms,
                    end_ms=gap.end_ms,
                    cause=gap.cause,
                    detail=gap.detail,
                )
            )
            self._metrics.add_gap(track, gap.cause, (gap.end_ms - gap.start_ms) / 1000)


__all__ = ["EXTENSION", "VIDEO_RECORD_KINDS", "VideoEvidence"]
