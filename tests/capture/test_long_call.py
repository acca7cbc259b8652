"""A one-hour call, time-accelerated by feeding events directly (no sockets, no real time):
process memory must stay flat, not grow with the length of the call."""

from __future__ import annotations

import gc
import hashlib
import json
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import trio

from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    CaptureEvent,
    GapCause,
    Interrupted,
    Recovered,
    StreamEnded,
    TranscriptMessage,
)
from recorder.sink import SealedSegment, SegmentIdentity
from recorder.testing.audio_source import cycle_packets, encode_speech

T0 = 1_763_726_400_000
HOUR_PACKETS = 3_600 * 50


class HashingSink:
    """Keeps only a running hash: the test measures the pipeline's memory, not the sink's."""

    def __init__(self, identity: SegmentIdentity, prologue_size: int) -> None:
        self._identity = identity
        self._hash = hashlib.sha256()
        self._size = 0
        self._prologue_size = prologue_size

    @property
    def identity(self) -> SegmentIdentity:
        return self._identity

    @property
    def body_size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)

    def checkpoint(self) -> None:
        return None

    def discard(self) -> None:
        assert self._size == 0

    def close(self, prologue: bytes = b"") -> SealedSegment:
        assert len(prologue) == self._prologue_size
        return SealedSegment(
            self._identity,
            None,
            self._size + len(prologue),
            self._hash.hexdigest(),
            self._size,
            "none",
        )


class HashingSinkFactory:
    def __init__(self) -> None:
        self.opened = 0

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> HashingSink:
        self.opened += 1
        return HashingSink(identity, prologue_size)


def current_rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() // 1024


def call(samples_at: dict[int, list[int]]) -> Iterator[CaptureEvent]:
    """One hour of L16 with a transcript line every 5 s and an outage every 10 minutes."""
    fmt = AudioFormat(AudioCodec.L16, 16_000, 1)
    speech = encode_speech("a", fmt)
    payloads = cycle_packets(speech)
    for index, payload in zip(range(HOUR_PACKETS), payloads, strict=False):
        ts = T0 + index * 20
        minute, rest = divmod(index, 3_000)
        if rest == 0 and minute % 10 == 5:
            yield Interrupted(ts, GapCause.MEDIA_INTERRUPTED)
            yield Recovered(ts + 1_000, ts, GapCause.MEDIA_INTERRUPTED)
        if minute % 10 == 5 and rest < 50:
            continue  # one second lost
        if index % 250 == 0:
            yield TranscriptMessage(ts, f"line {index}", user_id="1", user_name="Ada")
        if index in samples_at:
            samples_at[index].append(current_rss_kib())
        yield AudioPacket("mixed", ts, payload, fmt)
    yield StreamEnded(T0 + HOUR_PACKETS * 20, 1, "HOST_STOPPED", normal=True)


async def record_one_hour() -> dict[str, object]:
    """The hour recorded in this process; what the test asserts, as JSON-ready values."""
    checkpoints: dict[int, list[int]] = {HOUR_PACKETS // 6: [], HOUR_PACKETS - 1: []}
    sinks = HashingSinkFactory()
    send, receive = trio.open_memory_channel[CaptureEvent](256)
    config = CaptureConfig(segment_seconds=300)
    gc.collect()
    async with trio.open_nursery() as nursery:

        async def produce() -> None:
            async with send:
                for event in call(checkpoints):
                    await send.send(event)

        nursery.start_soon(produce)
        # An hour fed in seconds: far faster than any live stream, so no clock bound.
        manifest = await run_capture(
            receive, sinks, recording_id="long", config=config, clock_ms=None
        )
    audio = manifest.audio_entries("mixed")
    gaps = [gap for entry in audio for gap in entry.gaps]
    return {
        "rss_kib_at_ten_minutes": checkpoints[HOUR_PACKETS // 6][0],
        "rss_kib_at_one_hour": checkpoints[HOUR_PACKETS - 1][0],
        "segments": len(audio),
        "end_sample": audio[-1].end_sample,
        "gap_samples": sum(g.end_sample - g.start_sample for g in gaps),
        "gap_causes": sorted({g.cause for g in gaps}),
        "records_segments": len(manifest.records_entries()),
    }


async def test_an_hour_long_call_keeps_memory_flat() -> None:
    # A process of its own: a pytest worker's RSS also moves with whatever earlier tests left
    # running (CI once saw 4.03 MiB of such noise), which says nothing about this pipeline.
    with trio.fail_after(180):
        done = await trio.run_process(
            [sys.executable, __file__], capture_stdout=True, cwd=Path(__file__).parent
        )
    result = json.loads(done.stdout)
    growth = result["rss_kib_at_one_hour"] - result["rss_kib_at_ten_minutes"]
    # Keeping the call's PCM would be 16 kHz * 2 B * 3000 s = 96 MB more; allow some noise.
    assert growth < 4 * 1024, result
    assert result["segments"] == 12
    assert result["end_sample"] == 3_600 * 16_000
    assert result["gap_samples"] == 6 * 16_000
    assert result["gap_causes"] == ["media_interrupted"]
    assert result["records_segments"] >= 12


if __name__ == "__main__":
    print(json.dumps(trio.run(record_one_hour)))
