"""WAV/BWF segments through the sink seam: valid for `wave` and PyAV, rotated exactly, gaps
mapped, hashes matching, and headers rebuildable from metadata for crash recovery."""

from __future__ import annotations

import hashlib
import io
import wave

import av
import numpy as np
import pytest

from recorder.audio.manifest import Participant
from recorder.audio.segments import PendingAudioSeal, SealedAudio, SegmentWriter, TrackFormat
from recorder.audio.timeline import Audio, Gap, SpanKind
from recorder.audio.wav import (
    HEADER_SIZE,
    MAX_DATA_LENGTH,
    BextInfo,
    build_wav_header,
    build_wav_prologue,
    parse_bext,
)
from recorder.errors import LocalProtocolError
from recorder.rtms.events import GapCause
from recorder.testing.memory_sink import MemorySinkFactory

T0_MS = 1_763_726_400_250  # 2025-11-21 12:00:00.250 UTC
RATE = 16_000


def fmt(channels: int = 1, track: str = "mixed") -> TrackFormat:
    return TrackFormat(
        track=track,
        sample_rate=RATE,
        channels=channels,
        source="OPUS 48000 stereo",
        decoder_version="pyav=test",
        participant=Participant(user_id="16778240", user_name="John Smith"),
    )


def writer(sinks: MemorySinkFactory, **kwargs: object) -> SegmentWriter:
    options: dict[str, object] = {
        "recording_id": "rec-1",
        "originator_reference": "engagement-" + "x" * 40,
        "fmt": fmt(),
        "sample_to_ms": lambda sample: T0_MS + sample * 1000 // RATE,
        "now_ms": lambda: 1_000,
    }
    options.update(kwargs)
    return SegmentWriter(sinks, **options)  # type: ignore[arg-type]


def _sealed(pending: PendingAudioSeal | None) -> SealedAudio | None:
    """The writer only detaches a segment; sealing it is the caller's (blocking) step."""
    return pending.seal() if pending is not None else None


def tone(start: int, samples: int, channels: int = 1) -> bytes:
    values = (np.arange(start, start + samples) % 20_000 + 1).astype("<i2")
    return np.repeat(values, channels).tobytes()


def test_a_segment_is_a_valid_bwf_for_wave_and_pyav() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks)
    w.write(Audio(0, tone(0, 8_000)))
    w.write(Gap(8_000, 24_000, SpanKind.GAP, GapCause.MEDIA_INTERRUPTED))
    w.write(Audio(24_000, tone(24_000, 8_000)))
    result = _sealed(w.close())
    assert result is not None
    plaintext = sinks.sinks[0].plaintext
    assert hashlib.sha256(plaintext).hexdigest() == result.entry.sha256
    assert result.entry.plaintext_size == len(plaintext)

    with wave.open(io.BytesIO(plaintext)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert len(frames) == 32_000
    assert np.array_equal(frames[:8_000], np.frombuffer(tone(0, 8_000), "<i2"))
    assert not frames[8_000:24_000].any()
    assert np.array_equal(frames[24_000:], np.frombuffer(tone(24_000, 8_000), "<i2"))

    with av.open(io.BytesIO(plaintext), format="wav") as container:
        decoded = np.concatenate(
            [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
        )
    assert np.array_equal(decoded, frames)

    entry = result.entry
    assert (entry.start_sample, entry.end_sample) == (0, 32_000)
    assert (entry.start_ms, entry.end_ms) == (T0_MS, T0_MS + 2_000)
    assert [(g.cause, g.segment_start_sample, g.segment_end_sample) for g in entry.gaps] == [
        ("media_interrupted", 8_000, 24_000)
    ]
    assert entry.gaps[0].start_ms == T0_MS + 500
    assert entry.participant.user_name == "John Smith"
    assert entry.originator_reference == "engagement-" + "x" * 40


def test_bext_carries_reference_origination_time_reference_and_history() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks)
    w.write(Audio(0, tone(0, 320)))
    _sealed(w.close())
    bext = parse_bext(sinks.sinks[0].plaintext[:HEADER_SIZE])
    assert bext.originator == "rtms-recorder"
    assert bext.originator_reference == ("engagement-" + "x" * 40)[:32]
    assert (bext.origination_date, bext.origination_time) == ("2025-11-21", "12:00:00")
    assert bext.time_reference == (12 * 3600 * 1000 + 250) * RATE // 1000
    assert bext.version == 2
    assert bext.coding_history.startswith("A=PCM,F=16000,W=16,M=mono,T=rtms-recorder;")
    assert "source=OPUS 48000 stereo" in bext.coding_history
    assert bext.coding_history.endswith("\r\n")


def test_segments_rotate_at_the_configured_duration_and_abut() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks, segment_seconds=1.0)
    sealed = []
    position = 0
    # 3.5 s in 300 ms items (not aligned to the 1 s boundary) with a gap crossing a boundary.
    while position < 56_000:
        if 20_000 <= position < 36_000:
            sealed += [
                p.seal()
                for p in w.write(Gap(position, position + 4_800, SpanKind.PAUSE, None, "agent"))
            ]
        else:
            sealed += [p.seal() for p in w.write(Audio(position, tone(position, 4_800)))]
        position += 4_800
    last = _sealed(w.close())
    assert last is not None
    entries = [s.entry for s in sealed] + [last.entry]
    assert [(e.start_sample, e.end_sample) for e in entries] == [
        (0, 16_000),
        (16_000, 32_000),
        (32_000, 48_000),
        (48_000, 57_600),
    ]
    assert [e.segment_index for e in entries] == [0, 1, 2, 3]
    pauses = [(p.start_sample, p.end_sample) for e in entries for p in e.pauses]
    assert pauses[:3] == [(24_000, 28_800), (28_800, 32_000), (32_000, 33_600)]
    assert entries[1].pauses[0].segment_start_sample == 8_000
    assert entries[2].pauses[0].start_sample == 32_000
    assert all(p.actor == "agent" for e in entries for p in e.pauses)
    whole = b"".join(sink.plaintext[HEADER_SIZE:] for sink in sinks.sinks)
    signal = np.frombuffer(whole, "<i2")
    assert len(signal) == 57_600
    assert not signal[24_000:38_400].any()
    assert np.array_equal(signal[:24_000], np.frombuffer(tone(0, 24_000), "<i2"))
    for sink, entry in zip(sinks.sinks, entries, strict=True):
        with wave.open(io.BytesIO(sink.plaintext)) as wav:
            assert wav.getnframes() == entry.end_sample - entry.start_sample
        assert sink.identity.metadata["start_sample"] == entry.start_sample


def test_the_size_cap_rotates_before_riff_could_overflow() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks, fmt=fmt(channels=2), max_data_length=1_000)  # 250 stereo frames
    sealed = [p.seal() for p in w.write(Audio(0, tone(0, 1_000, channels=2)))]
    last = _sealed(w.close())
    assert last is not None
    lengths = [s.entry.data_length for s in sealed] + [last.entry.data_length]
    assert lengths == [1_000, 1_000, 1_000, 1_000]
    for sink in sinks.sinks:
        with wave.open(io.BytesIO(sink.plaintext)) as wav:
            assert wav.getnframes() == 250


def test_the_riff_limit_itself_is_enforced_in_the_header_builder() -> None:
    bext = BextInfo("ref", T0_MS)
    header = build_wav_header(sample_rate=RATE, channels=2, data_length=MAX_DATA_LENGTH, bext=bext)
    riff_size = int.from_bytes(header[4:8], "little")
    assert riff_size <= 2**32 - 1
    with pytest.raises(LocalProtocolError):
        build_wav_header(sample_rate=RATE, channels=2, data_length=MAX_DATA_LENGTH + 4, bext=bext)


def test_recovery_rebuilds_the_exact_header_from_metadata() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks, fmt=fmt(channels=2))
    w.write(Audio(0, tone(0, 1_234, channels=2)))
    _sealed(w.close())
    sink = sinks.sinks[0]
    body = sink.plaintext[HEADER_SIZE:]
    assert build_wav_prologue(sink.identity.metadata, len(body)) == sink.plaintext[:HEADER_SIZE]
    # A crash mid-frame: the header describes whole frames only and stays readable.
    torn = build_wav_prologue(sink.identity.metadata, len(body) - 3)
    with wave.open(io.BytesIO(torn + body[:-3])) as wav:
        assert wav.getnframes() == 1_233


def test_metadata_without_wav_fields_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        build_wav_prologue({"wav.rate": 16_000}, 100)


def test_nothing_written_means_no_segment_and_items_must_be_contiguous() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks)
    assert w.close() is None
    assert sinks.sinks == []
    w.write(Audio(0, tone(0, 100)))
    with pytest.raises(LocalProtocolError):
        w.write(Audio(200, tone(200, 100)))


def test_a_long_gap_is_streamed_as_silence_without_a_big_buffer() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks, segment_seconds=600)
    w.write(Gap(0, RATE * 300, SpanKind.GAP, GapCause.SIGNALING_INTERRUPTED))
    result = _sealed(w.close(interrupted=True))
    assert result is not None
    assert result.entry.interrupted
    assert result.entry.data_length == RATE * 300 * 2
    assert len(result.entry.gaps) == 1


def test_a_later_owner_numbers_segments_from_its_first_index() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks, segment_seconds=1.0, first_index=200_000)
    sealed = [p.seal() for p in w.write(Audio(0, tone(0, 24_000)))]
    last = _sealed(w.close())
    assert last is not None
    indexes = [s.entry.segment_index for s in sealed] + [last.entry.segment_index]
    assert indexes == [200_000, 200_001]
    assert [sink.identity.segment_index for sink in sinks.sinks] == [200_000, 200_001]
    assert w.segments_sealed == 2


def test_the_next_segment_is_pre_opened_and_adopted_at_the_rotation() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks, segment_seconds=1, preopen_s=0.25)
    # 0.75 s written: the next segment is opened now, a quarter of a second ahead.
    assert w.write(Audio(0, tone(0, 12_000))) == []
    assert [s.identity.segment_index for s in sinks.sinks] == [0, 1]
    assert sinks.sinks[1].identity.metadata["start_sample"] == RATE
    assert sinks.sinks[1].spare, "opened where crash recovery does not look"
    done = [p.seal() for p in w.write(Audio(12_000, tone(12_000, 8_000)))]
    # The rotation opened nothing: it adopted the spare (segment 1 holds only 0.25 s, too
    # little to pre-open segment 2).
    assert [s.identity.segment_index for s in sinks.sinks] == [0, 1]
    assert not sinks.sinks[1].spare
    last = _sealed(w.close())
    assert last is not None
    first = done[0].entry
    assert (first.end_sample, first.end_ms) == (last.entry.start_sample, last.entry.start_ms)
    assert last.entry.segment_index == 1


def test_an_unneeded_spare_is_discarded_and_its_index_reused() -> None:
    sinks = MemorySinkFactory()
    w = writer(sinks, segment_seconds=1, preopen_s=0.25)
    w.write(Audio(0, tone(0, 13_000)))
    assert len(sinks.sinks) == 2
    sealed = _sealed(w.close())
    assert sealed is not None
    assert [s.identity.segment_index for s in sinks.sinks] == [0]
    assert w.next_index == 1
    assert w.segments_sealed == 1
