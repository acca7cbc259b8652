"""Issue 13's Opus decision, held to real speech: the recorder's Opus path (FFmpeg's native
decoder at 48 kHz, then swresample to 16 kHz mono) is within 1 LSB of the plain PyAV pipeline
written out here independently, and the manifests' decoder version names that path."""

from __future__ import annotations

import av
import numpy as np
import pytest
from av.audio.resampler import AudioResampler

from recorder.audio.decoder import VOICE, decoder_version, make_decoder
from recorder.rtms.events import AudioCodec, AudioFormat
from recorder.testing.audio_source import encode_speech


def plain_pyav(packets: list[bytes], channels: int) -> np.ndarray:
    context = av.CodecContext.create("opus", "r")
    context.sample_rate = 48_000
    context.layout = "mono" if channels == 1 else "stereo"
    context.open()
    resampler = AudioResampler(format="s16", layout="mono", rate=16_000)
    out = []
    for payload in packets:
        for frame in context.decode(av.Packet(payload)):
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("speaker", ["a", "b", "c"])
def test_the_opus_path_is_within_one_lsb_of_plain_pyav_on_speech(
    speaker: str, channels: int
) -> None:
    fmt = AudioFormat(AudioCodec.OPUS, 48_000, channels)
    packets = list(encode_speech(speaker, fmt).packets)
    decoder = make_decoder(fmt, VOICE)
    recorded = np.frombuffer(
        b"".join([decoder.decode(p) for p in packets] + [decoder.flush()]), "<i2"
    )
    reference = plain_pyav(packets, channels)
    assert len(recorded) == len(reference) == len(packets) * 320
    difference = np.abs(recorded.astype(np.int32) - reference.astype(np.int32))
    assert difference.max() <= 1
    # Real speech, not silence: the comparison means something.
    assert np.abs(reference.astype(np.int32)).max() > 1_000
    assert "opus=ffmpeg-native-48k-swresample" in decoder_version()
