"""Segment I/O off the event loop: seals and opens run in worker threads while audio goes on,
and a finaliser that runs out of time leaves nothing shared for an abandoned thread to change."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import trio
import trio.testing

from recorder.audio.manifest import EngagementManifest, ManifestEntry
from recorder.audio.wav import HEADER_SIZE
from recorder.capture.actions import segment_io_limiter
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.errors import StorageError
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    CaptureEvent,
    StreamEnded,
)
from recorder.sink import SealedSegment, SegmentIdentity
from recorder.testing.memory_sink import MemorySink, MemorySinkFactory

T0 = 1_763_726_400_000
L16 = AudioFormat(AudioCodec.L16, 16_000, 1, 20)
END = StreamEnded(T0 + 10**7, 1, "HOST_STOPPED", normal=True)


class SlowDisk:
    """A ``SinkFactory`` seam: sealing waits for the test to let it go (a disk that stalls)."""

    def __init__(self) -> None:
        self.memory = MemorySinkFactory()
        self.release = threading.Event()
        self.sealing = threading.Event()
        self.closing_threads: set[int] = set()
        self.closed = threading.Event()

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> _SlowSink:
        return _SlowSink(self, self.memory.open(identity, prologue_size=prologue_size))


class _SlowSink:
    def __init__(self, disk: SlowDisk, sink: MemorySink) -> None:
        self._disk = disk
        self._sink = sink
        self.identity = sink.identity

    @property
    def body_size(self) -> int:
        return self._sink.body_size

    def write(self, data: bytes) -> None:
        self._sink.write(data)

    def checkpoint(self) -> None:
        self._sink.checkpoint()

    def discard(self) -> None:
        self._sink.discard()

    def close(self, prologue: bytes = b"") -> SealedSegment:
        self._disk.closing_threads.add(threading.get_ident())
        self._disk.sealing.set()
        self._disk.release.wait(30)
        sealed = self._sink.close(prologue)
        self._disk.closed.set()
        return sealed


def voice(packets: int) -> list[bytes]:
    rng = np.random.default_rng(11)
    pcm = rng.integers(-20_000, 20_000, size=packets * 320, dtype=np.int16)
    return [pcm[i * 320 : (i + 1) * 320].tobytes() for i in range(packets)]


async def test_audio_keeps_flowing_into_the_next_segment_while_a_seal_stalls() -> None:
    disk = SlowDisk()
    payloads = voice(150)  # 3 s: segments of 1 s
    handled_during_seal = 0
    sealed: list[ManifestEntry] = []

    async def on_sealed(segment: SealedSegment, entry: ManifestEntry) -> None:
        sealed.append(entry)

    send, receive = trio.open_memory_channel[CaptureEvent](4)
    config = CaptureConfig(segment_seconds=1, holdback_ms=40, checkpoint_interval_s=0.05)
    manifest: EngagementManifest | None = None
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def capture() -> None:
                nonlocal manifest
                manifest = await run_capture(
                    receive, disk, recording_id="rec-io", config=config, on_sealed=on_sealed
                )

            nursery.start_soon(capture)
            async with send:
                for index, payload in enumerate(payloads):
                    await send.send(AudioPacket("mixed", T0 + index * 20, payload, L16))
                    if index == 60:
                        # Segment 0 (50 packets) is full: its seal is now stuck in a thread.
                        await trio.to_thread.run_sync(disk.sealing.wait)
                    if index == 120:
                        # 60 more packets went through a 4-deep channel while the seal was
                        # stuck: the event loop never waited for it.
                        assert sealed == []
                        assert not disk.memory.sinks[0].sealed
                        handled_during_seal = index - 60
                        disk.release.set()
                await send.send(END)
    assert manifest is not None
    assert handled_during_seal >= 60
    assert threading.get_ident() not in disk.closing_threads
    entries = manifest.audio_entries("mixed")
    assert [e.segment_index for e in entries] == [0, 1, 2]
    assert [e.segment_index for e in sealed if e.track == "mixed"] == [0, 1, 2]
    # In order, nothing lost, nothing written twice.
    bodies = [s.plaintext[HEADER_SIZE:] for s in disk.memory.sinks if s.identity.track == "mixed"]
    assert b"".join(bodies) == b"".join(payloads)


async def test_a_finaliser_out_of_time_abandons_the_seal_and_says_so() -> None:
    disk = SlowDisk()
    send, receive = trio.open_memory_channel[CaptureEvent](64)
    config = CaptureConfig(finalize_timeout_s=0.3, holdback_ms=40)
    try:
        with trio.fail_after(30):
            async with send:
                for index, payload in enumerate(voice(20)):
                    await send.send(AudioPacket("mixed", T0 + index * 20, payload, L16))
                await send.send(END)
            manifest = await run_capture(receive, disk, recording_id="rec-slow", config=config)
        assert manifest.finalize_timed_out
        assert manifest.outcome == "ended"
        assert manifest.entries == []
    finally:
        disk.release.set()
    # The abandoned thread finishes its own segment; the manifest it never had stays as it was.
    with trio.fail_after(10):
        await trio.to_thread.run_sync(disk.closed.wait)
    assert manifest.entries == []
    assert manifest.sealed_count == 0


async def test_every_engagement_shares_one_segment_io_limiter() -> None:
    assert segment_io_limiter() is segment_io_limiter()
    assert segment_io_limiter().total_tokens >= 1


class BrokenTrack:
    """A ``SinkFactory`` seam whose segments of one track cannot be sealed (a failing disk)."""

    def __init__(self, broken: str) -> None:
        self.memory = MemorySinkFactory()
        self.broken = broken

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> MemorySink:
        sink = self.memory.open(identity, prologue_size=prologue_size)
        if identity.track == self.broken:
            sink.close = _refuse_to_seal  # type: ignore[method-assign]
        return sink


def _refuse_to_seal(prologue: bytes = b"") -> SealedSegment:
    raise StorageError("cannot seal: disk full")


async def test_a_segment_that_cannot_be_sealed_does_not_keep_the_others_from_it() -> None:
    disk = BrokenTrack("user-bad")
    send, receive = trio.open_memory_channel[CaptureEvent](256)
    per_speaker = AudioFormat(AudioCodec.L16, 16_000, 1, 20, data_opt=2)
    async with send:
        for index, payload in enumerate(voice(20)):
            for track in ("user-bad", "user-good"):
                packet = AudioPacket(track, T0 + index * 20, payload, per_speaker)
                await send.send(packet)
        await send.send(END)
    with trio.fail_after(30), pytest.raises(StorageError, match="disk full"):
        await run_capture(receive, disk, recording_id="rec-broken", config=CaptureConfig())
    good = [s for s in disk.memory.sinks if s.identity.track == "user-good"]
    assert [s.sealed is not None for s in good] == [True]
    assert good[0].plaintext[HEADER_SIZE:] == b"".join(voice(20))


async def test_a_slow_catalog_holds_up_no_segment_open() -> None:
    """``on_sealed`` (the catalog and spool) stalls on the first sealed segment; a speaker who
    starts meanwhile still gets a segment opened, and nothing is handed on out of order."""
    sinks = MemorySinkFactory()
    catalog_free = trio.Event()
    handed_on: list[tuple[str, int]] = []

    async def on_sealed(segment: SealedSegment, entry: ManifestEntry) -> None:
        await catalog_free.wait()
        handed_on.append((entry.track, entry.segment_index))

    per_speaker = AudioFormat(AudioCodec.L16, 16_000, 1, 20, data_opt=2)
    send, receive = trio.open_memory_channel[CaptureEvent](256)
    config = CaptureConfig(segment_seconds=1, holdback_ms=40)
    manifest: EngagementManifest | None = None
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def capture() -> None:
                nonlocal manifest
                manifest = await run_capture(
                    receive, sinks, recording_id="rec-cat", config=config, on_sealed=on_sealed
                )

            nursery.start_soon(capture)
            for index, payload in enumerate(voice(60)):
                await send.send(AudioPacket("user-a", T0 + index * 20, payload, per_speaker))
            # user-a's first segment is sealed and stuck in on_sealed; user-b starts talking.
            for index, payload in enumerate(voice(20)):
                await send.send(
                    AudioPacket("user-b", T0 + 1_200 + index * 20, payload, per_speaker)
                )
            while not any(s.identity.track == "user-b" for s in sinks.sinks):
                await trio.testing.wait_all_tasks_blocked()
            assert handed_on == []
            catalog_free.set()
            await send.send(END)
    assert manifest is not None
    assert handed_on[0] == ("user-a", 0)
    assert sorted(handed_on) == sorted((e.track, e.segment_index) for e in manifest.entries)
