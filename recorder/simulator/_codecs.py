"""Encode one cycle of 16 kHz mono speech into RTMS audio payloads, one per 20 ms frame.

Rule: encoding happens once per (track, format), off the trio thread, and the result is a plain
list of ``bytes``; the per-packet hot path then only indexes, base64-encodes and sends.

Formats follow the audio matrix of rtms-protocol §6.7: L16 little-endian at 8/16/32/48 kHz mono
or interleaved stereo; G.711 A-law (PCMA) 8 kHz; G.722 16 kHz; Opus 48 kHz mono/stereo. PyAV
(FFmpeg) does the resampling and the encoding. Stereo carries the same voice on both channels.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Final

import av
import numpy as np

from recorder.errors import ConfigError
from recorder.rtms.messages import AudioParams, PayloadType, SampleRate
from recorder.simulator.program import FRAME_MS, SOURCE_RATE_HZ, Pcm, Track

#: Opus bit rate per channel; speech stays intelligible and correlates well after decoding.
OPUS_BITRATE_PER_CHANNEL: Final = 32_000


def _resampled(pcm: Pcm, rate_hz: int, channels: int) -> bytes:
    """s16 interleaved bytes of ``pcm`` at ``rate_hz`` with ``channels`` channels."""
    layout = "stereo" if channels == 2 else "mono"
    if rate_hz == SOURCE_RATE_HZ and channels == 1:
        return pcm.astype("<i2").tobytes()
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SOURCE_RATE_HZ
    resampler = av.AudioResampler(format="s16", layout=layout, rate=rate_hz)
    chunks = [out.to_ndarray().tobytes() for out in resampler.resample(frame)]
    chunks += [out.to_ndarray().tobytes() for out in resampler.resample(None)]
    data = b"".join(chunks)
    # Resampler output length can differ by a few samples: pin it to the exact duration.
    expected = len(pcm) * rate_hz // SOURCE_RATE_HZ * channels * 2
    return data[:expected].ljust(expected, b"\0")


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


def _encode_with(
    codec_name: str, pcm_bytes: bytes, rate_hz: int, channels: int, frame_samples: int
) -> list[bytes]:
    layout = "stereo" if channels == 2 else "mono"
    encoder = av.CodecContext.create(codec_name, "w")
    encoder.sample_rate = rate_hz  # type: ignore[attr-defined]
    encoder.layout = layout  # type: ignore[attr-defined]
    encoder.format = "s16"  # type: ignore[attr-defined]
    if codec_name == "libopus":
        encoder.bit_rate = OPUS_BITRATE_PER_CHANNEL * channels
        encoder.options = {"application": "voip", "frame_duration": str(FRAME_MS)}
    encoder.open()
    samples = np.frombuffer(pcm_bytes, dtype="<i2").reshape(-1, channels)
    packets: list[bytes] = []
    pts = 0
    for start in range(0, len(samples) - frame_samples + 1, frame_samples):
        chunk = np.ascontiguousarray(samples[start : start + frame_samples]).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
        frame.sample_rate = rate_hz
        frame.pts = pts
        pts += frame_samples
        packets.extend(bytes(p) for p in encoder.encode(frame))  # type: ignore[attr-defined]
    packets.extend(bytes(p) for p in encoder.encode(None))  # type: ignore[attr-defined]
    return packets


@functools.cache
def _encode_cached(
    pcm_bytes: bytes, codec: int, rate_index: int, channels: int
) -> tuple[bytes, ...]:
    pcm = np.frombuffer(pcm_bytes, dtype="<i2").astype(np.int16)
    rate_hz = SampleRate(rate_index).hz
    frames = len(pcm) // (SOURCE_RATE_HZ * FRAME_MS // 1000)
    frame_samples = rate_hz * FRAME_MS // 1000
    resampled = _resampled(pcm, rate_hz, channels)
    if codec == PayloadType.L16:
        packets = _split(resampled, frame_samples * channels * 2)
    elif codec == PayloadType.G711:
        packets = _encode_with("pcm_alaw", resampled, rate_hz, channels, frame_samples)
        packets = _split(b"".join(packets), frame_samples * channels)
    elif codec == PayloadType.G722:
        packets = _encode_with("g722", resampled, rate_hz, channels, frame_samples)
        packets = _split(b"".join(packets), frame_samples // 2 * channels)
    elif codec == PayloadType.OPUS:
        packets = _encode_with("libopus", resampled, rate_hz, channels, frame_samples)
    else:
        raise ConfigError(f"audio codec {codec} cannot be simulated")
    if len(packets) < frames:
        raise ConfigError(f"encoder produced {len(packets)} packets for {frames} frames")
    return tuple(packets[:frames])


def encode_track(pcm: Pcm, params: AudioParams) -> Sequence[bytes]:
    """One payload per 20 ms frame of ``pcm`` in the confirmed ``params``. Blocking."""
    return _encode_cached(
        pcm.astype("<i2").tobytes(), params.codec, params.sample_rate, params.channel
    )


class _PlacedPayloads(Sequence[bytes]):
    """A crowd speaker's payloads, indexed by cycle frame like a full cycle's (only the frames
    of its one window are ever asked for)."""

    __slots__ = ("_payloads", "_start")

    def __init__(self, payloads: Sequence[bytes], start: int) -> None:
        self._payloads = payloads
        self._start = start

    def __len__(self) -> int:
        return self._start + len(self._payloads)

    def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
        if index < self._start:
            raise IndexError(f"frame {index} is before this speaker's utterance")
        return self._payloads[index - self._start]


def encode_program_track(track: Track, params: AudioParams) -> Sequence[bytes]:
    """``encode_track`` of a program track; a crowd speaker encodes only its utterance."""
    if track.clip is None:
        return encode_track(track.pcm, params)
    return _PlacedPayloads(encode_track(track.clip, params), track.clip_start)
