"""Issue 9 defect 9: a dead owner's partial segment, recovered after the new owner wrote its
``recorder_restart`` gap, covers part of that gap. The gap row stays as written (append-only);
``show`` presents the gap trimmed or split by what the recovery brought back."""

from __future__ import annotations

import dataclasses

import trio

from recorder.catalog import AsyncCatalog, NewSegment, Product, RecordingStart
from recorder.catalog._evidence import _RECORDER_RESTART
from recorder.rtms.events import GapCause
from tests.catalog.support import T0


def segment(
    recording_id: str, index: int, start_s: float, end_s: float, **changes: object
) -> NewSegment:
    base = NewSegment(
        recording_id=recording_id,
        track="mixed",
        segment_index=index,
        object_key=f"rec/{recording_id}/mixed/{index:06d}.wav.rec",
        plaintext_sha256=f"{index:064x}",
        plaintext_size=1000,
        stored_size=1100,
        start_ms=T0 + int(start_s * 1000),
        end_ms=T0 + int(end_s * 1000),
        start_sample=int(start_s * 16000),
        sample_count=int((end_s - start_s) * 16000),
        sample_rate=16000,
        codec="L16",
        key_id="k",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_the_catalog_names_the_cause_the_capture_writes() -> None:
    assert str(GapCause.RECORDER_RESTART) == _RECORDER_RESTART


async def test_late_recovery_trims_and_splits_the_takeover_gap(catalog: AsyncCatalog) -> None:
    with trio.fail_after(20):
        rec = await catalog.upsert_recording(
            RecordingStart("s-1", Product.MEETING, "m-1", started_ms=T0), T0
        )
        rid = rec.recording_id
        await catalog.add_segment(segment(rid, 0, 0, 10), T0)
        # The new owner (epoch 2) accounts for 10 s .. 20 s that nobody kept.
        await catalog.add_gap(
            rid,
            "mixed",
            start_ms=T0 + 10_000,
            end_ms=T0 + 20_000,
            cause=_RECORDER_RESTART,
            detail="ownership epoch 2 began",
        )
        await catalog.add_gap(
            rid, "mixed", start_ms=T0 + 30_000, end_ms=T0 + 31_000, cause="signaling_interrupted"
        )
        # A segment that is not a recovery covers nothing.
        await catalog.add_segment(segment(rid, 100_000, 20, 30), T0)
        detail = await catalog.show(rid)
        assert detail is not None
        assert [(g.start_ms - T0, g.end_ms - T0) for g in detail.gaps] == [
            (10_000, 20_000),
            (30_000, 31_000),
        ]

        # The dead owner restarts: its .part held 10 s .. 13.5 s.
        await catalog.add_segment(segment(rid, 1, 10, 13.5, recovered=True), T0 + 1)
        detail = await catalog.show(rid)
        assert detail is not None
        restart = [g for g in detail.gaps if g.cause == _RECORDER_RESTART]
        assert [(g.start_ms - T0, g.end_ms - T0) for g in restart] == [(13_500, 20_000)]
        assert "recovered segment(s) 1" in restart[0].detail
        assert "ownership epoch 2 began" in restart[0].detail
        # Other causes are never covered by a recovery.
        assert [(g.start_ms - T0) for g in detail.gaps if g.cause != _RECORDER_RESTART] == [30_000]

        # Another recovered piece in the middle splits what is left; re-adding is idempotent.
        for _ in range(2):
            await catalog.add_segment(segment(rid, 2, 15, 16, recovered=True), T0 + 2)
        detail = await catalog.show(rid)
        assert detail is not None
        restart = [g for g in detail.gaps if g.cause == _RECORDER_RESTART]
        assert [(g.start_ms - T0, g.end_ms - T0) for g in restart] == [
            (13_500, 15_000),
            (16_000, 20_000),
        ]
        assert all(g.start_sample is None for g in restart)

        # Recovery that covers all of it leaves no restart gap at all.
        await catalog.add_segment(segment(rid, 3, 13.5, 20, recovered=True), T0 + 3)
        detail = await catalog.show(rid)
        assert detail is not None
        assert [g.cause for g in detail.gaps] == ["signaling_interrupted"]
