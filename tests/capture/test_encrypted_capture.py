"""The pipeline through the real encrypting sink (recorder.crypto): what an officer decrypts is a
valid WAV/BWF for `wave` and PyAV, and every manifest hash is the hash of that plaintext. Also:
finalisation stays time-bounded when a sink hangs."""

from __future__ import annotations

import hashlib
import io
import threading
import wave
from pathlib import Path

import av
import numpy as np
import trio

from recorder.audio.manifest import ManifestEntry, SegmentManifestEntry
from recorder.capture.core import CaptureConfig
from recorder.capture.pipeline import run_capture
from recorder.crypto import (
    DirectoryRecordingKeyStore,
    RecordingKeyring,
    SpoolSinkFactory,
    digest_segment,
    iter_plaintext,
)
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.rtms.events import (
    AudioCodec,
    AudioFormat,
    AudioPacket,
    CaptureEvent,
    StreamEnded,
    TranscriptMessage,
)
from recorder.sink import SealedSegment, SegmentIdentity
from recorder.testing.audio_source import encode_speech
from recorder.testing.memory_sink import MemorySink, MemorySinkFactory

T0 = 1_763_726_400_000


async def feed(events: list[CaptureEvent]) -> trio.MemoryReceiveChannel[CaptureEvent]:
    send, receive = trio.open_memory_channel[CaptureEvent](len(events) + 1)
    async with send:
        for event in events:
            await send.send(event)
    return receive


async def test_decrypted_segments_are_valid_wavs_whose_hashes_match(tmp_path: Path) -> None:
    keyring = RecordingKeyring(
        DirectoryRecordingKeyStore(tmp_path / "recording-keys"),
        provider=LocalKeyProvider(tmp_path / "kek"),
    )
    sinks = SpoolSinkFactory(tmp_path / "spool", keyring)
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, 2)
    speech = encode_speech("a|b", fmt, seconds=5)
    events: list[CaptureEvent] = [
        AudioPacket("mixed", T0 + i * 20, payload, fmt) for i, payload in enumerate(speech.packets)
    ]
    events.append(TranscriptMessage(T0 + 1_000, "Thank you for calling.", user_name="Ada"))
    events.append(StreamEnded(T0 + 6_000, 1, "HOST_STOPPED", normal=True))
    sealed: list[tuple[SealedSegment, ManifestEntry]] = []
    records = b""

    async def on_sealed(segment: SealedSegment, entry: ManifestEntry) -> None:
        sealed.append((segment, entry))

    with trio.fail_after(30):
        manifest = await run_capture(
            await feed(events),
            sinks,
            recording_id="rec-enc",
            config=CaptureConfig(segment_seconds=2),
            on_sealed=on_sealed,
        )
    audio = manifest.audio_entries("mixed")
    assert len(audio) == 3
    for segment, entry in sealed:
        assert segment.path is not None
        assert segment.path.exists()
        raw = segment.path.read_bytes()
        assert b"RIFF" not in raw[:64]  # encrypted at rest, not a WAV on disk
        plaintext = b"".join(iter_plaintext(segment.path, keyring))
        assert hashlib.sha256(plaintext).hexdigest() == entry.sha256
        assert digest_segment(segment.path, keyring).sha256 == entry.sha256
        if isinstance(entry, SegmentManifestEntry):
            with wave.open(io.BytesIO(plaintext)) as wav:
                assert wav.getframerate() == 16_000
                assert wav.getnframes() == entry.end_sample - entry.start_sample
            with av.open(io.BytesIO(plaintext), format="wav") as container:
                decoded = np.concatenate(
                    [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
                )
            assert len(decoded) == entry.end_sample - entry.start_sample
        else:
            records += plaintext
    assert b"Thank you for calling." in records
    assert b'"type":"stream_ended"' in records


class HangingSinks(MemorySinkFactory):
    """Sinks whose close() blocks until released: a disk that stopped answering."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> MemorySink:
        sink = super().open(identity, prologue_size=prologue_size)
        plain_close = sink.close

        def close(prologue: bytes = b"") -> SealedSegment:
            self.release.wait(timeout=30)
            return plain_close(prologue)

        sink.close = close  # type: ignore[method-assign]
        return sink


async def test_finalisation_is_time_bounded_when_a_sink_hangs() -> None:
    sinks = HangingSinks()
    fmt = AudioFormat(AudioCodec.L16, 16_000, 1)
    speech = encode_speech("c", fmt, seconds=1)
    events: list[CaptureEvent] = [
        AudioPacket("mixed", T0 + i * 20, payload, fmt) for i, payload in enumerate(speech.packets)
    ]
    events.append(StreamEnded(T0 + 2_000, 1, "HOST_STOPPED", normal=True))
    try:
        with trio.fail_after(20):
            manifest = await run_capture(
                await feed(events),
                sinks,
                recording_id="rec-hang",
                config=CaptureConfig(finalize_timeout_s=0.2),
            )
    finally:
        sinks.release.set()
    # Returned within the bound (the sink would have held it for 30 s): nothing was claimed
    # sealed, and the open segment is left to crash recovery.
    assert manifest.entries == []
    assert manifest.outcome == "ended"


async def test_each_checkpoint_reports_the_rtms_time_made_durable() -> None:
    """What the service keeps in the lease row: never ahead of the audio received, never
    going back, and close behind the live edge (one checkpoint interval)."""
    fmt = AudioFormat(AudioCodec.L16, 16_000, 1)
    speech = encode_speech("a", fmt, seconds=2)
    send, receive = trio.open_memory_channel[CaptureEvent](8)
    sent_through_ms = 0
    reported: list[tuple[int, int]] = []

    def on_checkpoint(durable_ms: int) -> None:
        reported.append((durable_ms, sent_through_ms))

    async def zoom() -> None:
        nonlocal sent_through_ms
        async with send:
            for i, payload in enumerate(speech.packets):
                await send.send(AudioPacket("mixed", T0 + i * 20, payload, fmt))
                # A packet stamped ts carries the 20 ms before ts at most.
                sent_through_ms = T0 + i * 20 + 20
                await trio.sleep(0.02)  # Zoom's pace: what lets checkpoints fall mid-call
            await send.send(StreamEnded(T0 + 2_100, 1, "HOST_STOPPED", normal=True))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(zoom)
            await run_capture(
                receive,
                MemorySinkFactory(),
                recording_id="rec-cp",
                config=CaptureConfig(segment_seconds=1, checkpoint_interval_s=0.2),
                on_checkpoint=on_checkpoint,
            )
    assert len(reported) >= 3, reported
    durable = [d for d, _ in reported]
    assert durable == sorted(durable)
    assert all(T0 <= d <= sent for d, sent in reported), reported
    assert max(durable) >= T0 + 1_000, "the live edge, not the last sealed segment"
