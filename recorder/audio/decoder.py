"""The audio decoder seam: one stateful decoder per track, RTMS payloads in, s16 PCM out.

Shaped like httpx's content decoders: ``decode(payload) -> bytes`` and ``flush() -> bytes``. The
output is always signed 16-bit little-endian, interleaved, at the decoder's *output* format
(``OutputFormat``): 16 kHz mono for voice by default, or the source's own rate and channels.

Timing contract, which the timeline relies on:

* The audio a packet carries starts at that packet's RTMS timestamp, *minus* ``delay_samples``
  (output-rate samples). Codecs with an encoder lookahead (Opus 312 samples at 48 kHz, G.722 22
  samples at 16 kHz) deliver their first ``delay_samples`` as priming, not audio; without a
  container there is no OpusHead pre-skip, so the decoder reports the delay and the timeline
  places every chunk ``delay_samples`` earlier and trims what lands before sample 0.
* A resampling decoder may hold back a few samples (its filter tail) from one call to the next;
  the resampler stays time-aligned, so this shows up only as a chunk shorter by a few samples,
  which the timeline's jitter tolerance absorbs. ``flush()`` hands the tail out at the end.

A payload that cannot be decoded raises ``DecodeError`` and leaves the decoder usable: the
caller records a ``DECODE_ERROR`` gap over the packet's span and carries on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from recorder.errors import ConfigError
from recorder.rtms.events import AudioCodec, AudioFormat


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What the recorder writes. ``None`` keeps the source's value."""

    sample_rate: int | None = 16_000
    channels: int | None = 1
    #: False: never raise the rate above the source's (8 kHz G.711 stays 8 kHz: it carries no
    #: more, and skipping swresample makes it about 5x cheaper per message).
    upsample: bool = True

    def resolve(self, source: AudioFormat) -> tuple[int, int]:
        rate = self.sample_rate if self.sample_rate is not None else source.sample_rate
        if not self.upsample:
            rate = min(rate, source.sample_rate)
        channels = self.channels if self.channels is not None else source.channels
        if rate not in SUPPORTED_OUTPUT_RATES:
            raise ConfigError(f"output rate {rate} Hz is not one of {SUPPORTED_OUTPUT_RATES}")
        if channels not in (1, 2):
            raise ConfigError(f"output channels must be 1 or 2, not {channels}")
        return rate, channels


#: 16 kHz mono: what compliance voice recording needs, a third of the bytes of 48 kHz.
VOICE: Final = OutputFormat()
#: Keep whatever RTMS sends.
KEEP_SOURCE: Final = OutputFormat(sample_rate=None, channels=None)

SUPPORTED_OUTPUT_RATES: Final = (8_000, 16_000, 32_000, 44_100, 48_000)

#: G.711 laws. RTMS codec 2 is A-law (rtms-protocol §6.3); mu-law is offered for other sources.
ALAW: Final = "alaw"
MULAW: Final = "mulaw"


class AudioDecoder(Protocol):
    """A stateful per-track decoder (see the module docstring for the timing contract)."""

    @property
    def source(self) -> AudioFormat: ...

    @property
    def output_rate(self) -> int: ...

    @property
    def output_channels(self) -> int: ...

    @property
    def delay_samples(self) -> int:
        """Output-rate samples by which decoded audio lags the packet timestamps."""
        ...

    @property
    def description(self) -> str:
        """Source codec, rate and layout for coding history, e.g. ``OPUS 48000 stereo``."""
        ...

    def decode(self, payload: bytes) -> bytes:
        """Decode one RTMS payload. Raises ``DecodeError``; the decoder stays usable."""
        ...

    def flush(self) -> bytes:
        """Whatever the decoder still holds (resampler tail). Call once at the end."""
        ...


def make_decoder(
    source: AudioFormat, output: OutputFormat = VOICE, *, g711_law: str = ALAW
) -> AudioDecoder:
    """A decoder for ``source`` producing ``output``; passthrough for matching L16.

    Raises:
        ConfigError: a codec/rate/layout combination this recorder cannot decode.
    """
    from recorder.audio import pyav

    rate, channels = output.resolve(source)
    _check_source(source, g711_law)
    if source.codec == AudioCodec.L16:
        if (rate, channels) == (source.sample_rate, source.channels):
            return pyav.PassthroughDecoder(source)
        return pyav.L16Decoder(source, rate, channels)
    if source.codec == AudioCodec.G711:
        return pyav.G711Decoder(source, rate, channels, g711_law=g711_law)
    return pyav.CodecDecoder(source, rate, channels, g711_law=g711_law)


def describe_source(source: AudioFormat, g711_law: str = ALAW) -> str:
    """``OPUS 48000 stereo``, ``G711-ALAW 8000 mono``: for manifests and BWF coding history."""
    name = source.codec.name
    if source.codec == AudioCodec.G711:
        name = f"G711-{g711_law.upper()}"
    layout = "mono" if source.channels == 1 else "stereo"
    return f"{name} {source.sample_rate} {layout}"


def decoder_version() -> str:
    """PyAV, FFmpeg (libavcodec, libswresample) and Opus decoder versions, for manifests."""
    from recorder.audio import pyav

    return pyav.version_string()


_SOURCE_RATES: Final = {
    AudioCodec.L16: (8_000, 16_000, 32_000, 48_000),
    AudioCodec.G711: (8_000,),
    AudioCodec.G722: (16_000,),
    AudioCodec.OPUS: (48_000,),
}


def _check_source(source: AudioFormat, g711_law: str) -> None:
    rates = _SOURCE_RATES.get(source.codec)
    if rates is None or source.sample_rate not in rates:
        raise ConfigError(f"cannot decode {source.codec!r} at {source.sample_rate} Hz")
    if source.channels not in (1, 2):
        raise ConfigError(f"source channels must be 1 or 2, not {source.channels}")
    if source.codec in (AudioCodec.G711, AudioCodec.G722) and source.channels != 1:
        raise ConfigError(f"{source.codec.name} is mono only")
    if source.codec == AudioCodec.G711 and g711_law not in (ALAW, MULAW):
        raise ConfigError(f"unknown G.711 law {g711_law!r}")
