"""Real speech, encoded the way RTMS sends it: per-packet audio payloads for every codec and layout.

The simulator streams these packets and the capture tests compare what was recorded against
``EncodedSpeech.pcm``, the exact PCM the packets were made from.

Sources are the committed fixtures ``recorder/simulator/data/speech_{a,b,c}.wav`` (16 kHz mono
s16, about 6 s each, see ``make_speech.sh`` beside them). A *speaker* argument is one of:

* ``"a"``, ``"b"``, ``"c"``: that fixture. In stereo it is the same speech on both channels
  (what a mixed stereo stream of one talker looks like).
* ``"a|b"`` (any two, ``left|right``): the first speaker on the left channel, the second on the
  right, the shorter one padded with digital silence; a dual-channel agent/customer call. Mono
  formats refuse it.

Layout of one result (the invariant callers can rely on)::

    len(packets) * samples_per_packet * channels * 2 == len(pcm)

``pcm`` is the source resampled with PyAV to the codec's rate and channel count, looped or cut
to ``seconds`` when given, padded with digital silence to whole packets and, for codecs whose
encoder has a lookahead (Opus 312 samples at 48 kHz, G.722 22 samples), followed by one extra
packet of silence so that the encoder's tail is flushed into the last packet rather than into a
short extra one. Decoding the packets therefore yields ``pcm`` delayed by the codec delay, and
the delayed-out tail is silence.

Encoding runs once per (speaker, format, seconds) and is cached: a test suite that asks for the
same stream many times pays once. ``cycle_packets`` loops a short clip forever without holding a
long call in memory.
"""

from __future__ import annotations

import functools
import itertools
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext

from recorder.errors import ConfigError
from recorder.rtms.events import AudioCodec, AudioFormat

#: Where the committed real-speech fixtures live.
SPEECH_DIR: Final = Path(__file__).resolve().parent.parent / "simulator" / "data"
#: Rate and layout of the committed fixtures.
FIXTURE_RATE: Final = 16_000
SPEAKERS: Final = ("a", "b", "c")

#: Opus bitrate per channel for the simulated streams (bits/s): speech-grade, like Zoom's.
OPUS_BITRATE_PER_CHANNEL: Final = 32_000


class G711Law:
    """Names for the two G.711 companding laws; RTMS codec 2 is A-law (rtms-protocol §6.3)."""

    ALAW: Final = "alaw"
    MULAW: Final = "mulaw"


@dataclass(frozen=True, slots=True)
class EncodedSpeech:
    """One speaker's speech as a list of RTMS audio payloads, plus the PCM they encode."""

    speaker: str
    format: AudioFormat
    #: One payload per RTMS packet (what goes base64 into ``content.data``).
    packets: tuple[bytes, ...]
    #: Milliseconds per packet (``send_rate``); the RTMS timestamp advances by this much.
    packet_ms: int
    #: s16 little-endian interleaved PCM at the codec's rate and channels (see module doc).
    pcm: bytes
    #: Samples per channel carried by each packet.
    samples_per_packet: int
    #: Samples per channel by which a decoder's output lags the packets (encoder lookahead).
    encoder_delay: int
    #: ``alaw`` or ``mulaw`` for G.711, else empty.
    g711_law: str = ""

    @property
    def sample_rate(self) -> int:
        return self.format.sample_rate

    @property
    def channels(self) -> int:
        return self.format.channels

    @property
    def duration_ms(self) -> int:
        return len(self.packets) * self.packet_ms

    def pcm_array(self) -> npt.NDArray[np.int16]:
        """``pcm`` as an int16 array of shape (samples, channels)."""
        return np.frombuffer(self.pcm, dtype="<i2").reshape(-1, self.channels)


def cycle_packets(speech: EncodedSpeech) -> Iterator[bytes]:
    """Loop the packets forever; memory stays that of the clip, whatever the call length.

    The loop is seamless for L16 and G.711. For Opus and G.722 each loop restarts an encoded
    stream without resetting the peer's decoder, which is harmless for load and memory tests
    but not bit-comparable; compare short, non-looped clips instead.
    """
    return itertools.cycle(speech.packets)


def encode_speech(
    speaker: str,
    fmt: AudioFormat,
    *,
    seconds: float | None = None,
    g711_law: str = G711Law.ALAW,
) -> EncodedSpeech:
    """Encode real speech as RTMS packets in ``fmt`` (codec, rate, channels, packet_ms).

    Args:
        speaker: ``"a"``, ``"b"``, ``"c"`` or ``"left|right"`` (see module doc).
        fmt: The negotiated audio format; ``fmt.packet_ms`` is the send rate.
        seconds: Loop or cut the speech to this length; ``None`` keeps the clip's own length.
        g711_law: For ``AudioCodec.G711``: ``"alaw"`` (what RTMS sends) or ``"mulaw"``.

    Raises:
        ConfigError: a combination RTMS does not allow, or an unknown speaker.
    """
    _check_format(fmt, g711_law)
    return _encode_cached(speaker, fmt, seconds, g711_law if fmt.codec == AudioCodec.G711 else "")


def source_pcm(speaker: str, sample_rate: int, channels: int) -> bytes:
    """The speaker's clip resampled to ``sample_rate``/``channels``: no looping, no padding."""
    return _resampled(speaker, sample_rate, channels).tobytes()


# --- internals ---------------------------------------------------------------------------------

_CODEC_NAMES: Final = {
    AudioCodec.G722: "g722",
    AudioCodec.OPUS: "libopus",
}


def _check_format(fmt: AudioFormat, g711_law: str) -> None:
    codec = fmt.codec
    if fmt.channels not in (1, 2):
        raise ConfigError(f"channels must be 1 or 2, not {fmt.channels}")
    if codec == AudioCodec.L16:
        if fmt.sample_rate not in (8_000, 16_000, 32_000, 48_000):
            raise ConfigError(f"L16 rate {fmt.sample_rate} is not one RTMS offers")
        if fmt.packet_ms % 20 or not 20 <= fmt.packet_ms <= 1000:
            raise ConfigError(f"L16 send_rate must be 20..1000 ms in steps of 20: {fmt.packet_ms}")
        return
    if fmt.packet_ms != 20:
        raise ConfigError(f"{codec.name} is sent in 20 ms packets, not {fmt.packet_ms}")
    expected_rate = {AudioCodec.G711: 8_000, AudioCodec.G722: 16_000, AudioCodec.OPUS: 48_000}
    if fmt.sample_rate != expected_rate[codec]:
        raise ConfigError(f"{codec.name} runs at {expected_rate[codec]} Hz, not {fmt.sample_rate}")
    if codec != AudioCodec.OPUS and fmt.channels != 1:
        raise ConfigError(f"{codec.name} is mono only")
    if codec == AudioCodec.G711 and g711_law not in (G711Law.ALAW, G711Law.MULAW):
        raise ConfigError(f"unknown G.711 law {g711_law!r}")


def _speaker_names(speaker: str) -> list[str]:
    names = speaker.split("|")
    if len(names) > 2 or any(name not in SPEAKERS for name in names):
        raise ConfigError(f"unknown speaker {speaker!r}: use a, b, c or left|right")
    return names


@functools.lru_cache(maxsize=16)
def _fixture(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SPEECH_DIR / f"speech_{name}.wav"), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (FIXTURE_RATE, 1, 2):
            raise ConfigError(f"speech_{name}.wav is not 16 kHz mono s16")
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()


@functools.lru_cache(maxsize=32)
def _resampled_mono(name: str, sample_rate: int) -> npt.NDArray[np.int16]:
    source = _fixture(name)
    if sample_rate == FIXTURE_RATE:
        return source
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    frame = av.AudioFrame.from_ndarray(source.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = FIXTURE_RATE
    frame.pts = 0
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    # The resampler holds back its filter tail until told the input is over.
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.int16)


def _resampled(speaker: str, sample_rate: int, channels: int) -> npt.NDArray[np.int16]:
    """Shape (samples, channels). Mono-to-stereo duplicates rather than letting swresample
    mix, because its upmix attenuates by 3 dB and the copy would no longer match the source."""
    names = _speaker_names(speaker)
    if channels == 1:
        if len(names) != 1:
            raise ConfigError(f"{speaker!r} needs two channels")
        return _resampled_mono(names[0], sample_rate).reshape(-1, 1)
    left = _resampled_mono(names[0], sample_rate)
    right = _resampled_mono(names[-1], sample_rate)
    length = max(len(left), len(right))
    stereo = np.zeros((length, 2), dtype=np.int16)
    stereo[: len(left), 0] = left
    stereo[: len(right), 1] = right
    return stereo


def _fit_length(samples: npt.NDArray[np.int16], wanted: int) -> npt.NDArray[np.int16]:
    if wanted <= len(samples):
        return samples[:wanted]
    repeats = -(-wanted // len(samples))
    return np.tile(samples, (repeats, 1))[:wanted]


@functools.lru_cache(maxsize=64)
def _encode_cached(
    speaker: str, fmt: AudioFormat, seconds: float | None, g711_law: str
) -> EncodedSpeech:
    rate, channels = fmt.sample_rate, fmt.channels
    per_packet = rate * fmt.packet_ms // 1000
    samples = _resampled(speaker, rate, channels)
    if seconds is not None:
        samples = _fit_length(samples, round(seconds * rate))
    packet_count = -(-len(samples) // per_packet)
    encoder_delay = _ENCODER_DELAY.get(fmt.codec, 0)
    if encoder_delay:
        packet_count += 1
    padded = np.zeros((packet_count * per_packet, channels), dtype=np.int16)
    padded[: len(samples)] = samples
    packets = _encode_packets(padded, fmt, per_packet, g711_law)
    if len(packets) != packet_count:
        raise ConfigError(f"encoder produced {len(packets)} packets, expected {packet_count}")
    return EncodedSpeech(
        speaker=speaker,
        format=fmt,
        packets=tuple(packets),
        packet_ms=fmt.packet_ms,
        pcm=padded.astype("<i2").tobytes(),
        samples_per_packet=per_packet,
        encoder_delay=encoder_delay,
        g711_law=g711_law,
    )


#: Encoder lookahead in samples per channel at the codec rate, as PyAV reports it through the
#: first packet's negative pts (checked in tests/testing).
_ENCODER_DELAY: Final = {AudioCodec.OPUS: 312, AudioCodec.G722: 22}


def _encode_packets(
    samples: npt.NDArray[np.int16], fmt: AudioFormat, per_packet: int, g711_law: str
) -> list[bytes]:
    if fmt.codec == AudioCodec.L16:
        raw = samples.astype("<i2").tobytes()
        size = per_packet * fmt.channels * 2
        return [raw[i : i + size] for i in range(0, len(raw), size)]
    if fmt.codec == AudioCodec.G711:
        codec_name = "pcm_alaw" if g711_law == G711Law.ALAW else "pcm_mulaw"
    else:
        codec_name = _CODEC_NAMES[fmt.codec]
    layout = "mono" if fmt.channels == 1 else "stereo"
    encoder = av.CodecContext.create(codec_name, "w")
    assert isinstance(encoder, AudioCodecContext)
    encoder.sample_rate = fmt.sample_rate
    encoder.layout = layout
    encoder.format = "s16"
    if fmt.codec == AudioCodec.OPUS:
        encoder.bit_rate = OPUS_BITRATE_PER_CHANNEL * fmt.channels
    encoder.open()
    packets: list[bytes] = []
    for index in range(len(samples) // per_packet):
        block = samples[index * per_packet : (index + 1) * per_packet]
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(block).reshape(1, -1), format="s16", layout=layout
        )
        frame.sample_rate = fmt.sample_rate
        frame.pts = index * per_packet
        packets.extend(bytes(packet) for packet in encoder.encode(frame))
    # Anything the encoder still holds is its lookahead over the trailing silence packet: the
    # caller already accounted for it, so a flushed remainder is dropped on purpose.
    encoder.encode(None)
    return packets
