"""G.711 8 to 16 kHz: the polyphase doubler gives exactly what the plain exact filter gives.

The reference below is the doubler as it was written before the polyphase product (one
``np.convolve`` over the held-back samples and the packet, exact float64 sums, swresample's
integer rounding and clipping): the same contract, stated the slow and obvious way. The fast
path must match it bit for bit on real speech, on anything hypothesis makes of packet lengths
and code values (loud enough to clip, longer than the buffer it starts with), and keep
swresample's chunk lengths.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.audio import polyphase, pyav
from recorder.audio.decoder import ALAW, MULAW, VOICE, make_decoder
from recorder.rtms.events import AudioCodec, AudioFormat
from recorder.testing.audio_source import encode_speech
from tests.audio.support import decoded_around_a_bad_packet

G711 = AudioFormat(AudioCodec.G711, 8_000, 1)
SIDE = 16


class ExactDoubler:
    """Each odd sample: floor(sum(taps * inputs) + 1/2), clipped to s16; evens are the inputs."""

    def __init__(self, law: str) -> None:
        taps = polyphase.half_band_taps()
        assert taps is not None
        self.taps = taps
        self.table = pyav._g711_table(law).astype(np.float64)
        self.pending: npt.NDArray[np.float64] | None = None

    def push(self, payload: bytes) -> bytes:
        samples = self.table[np.frombuffer(payload, dtype=np.uint8)]
        if self.pending is None:
            ext = np.concatenate((samples[SIDE - 1 : 0 : -1], samples))
        else:
            ext = np.concatenate((self.pending, samples))
        return self._emit(ext)

    def flush(self) -> bytes:
        assert self.pending is not None
        pending = self.pending
        return self._emit(np.concatenate((pending, pending[-1 : -SIDE - 1 : -1])), final=True)

    def _emit(self, ext: npt.NDArray[np.float64], *, final: bool = False) -> bytes:
        count = len(ext) - (2 * SIDE - 1)
        self.pending = None if final else ext[count:]
        if count <= 0:
            return b""
        odd = np.clip(np.floor(np.convolve(ext, self.taps, mode="valid") + 0.5), -32768, 32767)
        out = np.empty(2 * count, dtype="<i2")
        out[0::2] = ext[SIDE - 1 : SIDE - 1 + count]
        out[1::2] = odd
        return out.tobytes()


def both(packets: list[bytes], law: str) -> tuple[list[bytes], list[bytes]]:
    decoder = make_decoder(G711, VOICE, g711_law=law)
    ours = [decoder.decode(p) for p in packets] + [decoder.flush()]
    reference = ExactDoubler(law)
    theirs = [reference.push(p) for p in packets] + [reference.flush()]
    return ours, theirs


def test_the_polyphase_doubler_is_in_use_for_voice_output() -> None:
    half_band = polyphase.half_band()
    assert half_band is not None
    assert isinstance(make_decoder(G711, VOICE)._doubler, polyphase.Doubler)  # type: ignore[attr-defined]
    # The rounding constant rides in the samples: an even output floors back to its sample.
    assert 0 <= half_band.offset < 1


@pytest.mark.parametrize("law", [ALAW, MULAW])
@pytest.mark.parametrize("speaker", ["a", "b", "c"])
def test_speech_is_bit_identical_to_the_exact_filter(speaker: str, law: str) -> None:
    packets = list(encode_speech(speaker, G711, g711_law=law).packets)
    ours, theirs = both(packets, law)
    assert [len(c) for c in ours] == [len(c) for c in theirs]
    assert b"".join(ours) == b"".join(theirs)


def loudest_codes(law: str, count: int) -> list[int]:
    table = pyav._g711_table(law).astype(np.int64)
    return [int(c) for c in np.argsort(-np.abs(table))[:count]]


@pytest.mark.parametrize("law", [ALAW, MULAW])
def test_full_scale_audio_clips_exactly_like_the_exact_filter(law: str) -> None:
    # A full-scale square wave: the half-band filter overshoots s16 at every edge.
    table = pyav._g711_table(law)
    high, low = int(np.argmax(table)), int(np.argmin(table))
    wave = bytes(([high] * 4 + [low] * 4) * 20)
    packets = [wave] * 5
    ours, theirs = both(packets, law)
    assert b"".join(ours) == b"".join(theirs)
    samples = np.frombuffer(b"".join(ours), "<i2")
    assert samples.max() == 32_767
    assert samples.min() == -32_768


@st.composite
def packet_streams(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    law = draw(st.sampled_from([ALAW, MULAW]))
    loud = loudest_codes(law, 16)
    code = st.one_of(st.integers(0, 255), st.sampled_from(loud))
    first = draw(st.binary(min_size=SIDE + 1, max_size=400))
    rest = draw(
        st.lists(
            st.one_of(
                st.binary(min_size=1, max_size=200),
                st.lists(code, min_size=1, max_size=2_000).map(bytes),
            ),
            max_size=8,
        )
    )
    return law, [first, *rest]


@settings(max_examples=150, deadline=None)
@given(packet_streams())
def test_any_packet_lengths_and_codes_match_the_exact_filter(
    stream: tuple[str, list[bytes]],
) -> None:
    law, packets = stream
    ours, theirs = both(packets, law)
    assert [len(c) for c in ours] == [len(c) for c in theirs]
    assert b"".join(ours) == b"".join(theirs)


def test_an_empty_packet_raises_and_the_doubler_carries_on_exactly() -> None:
    packets = list(encode_speech("a", G711).packets[:20])
    ours = decoded_around_a_bad_packet(make_decoder(G711, VOICE), packets, b"", at=10)
    reference = ExactDoubler(ALAW)
    theirs = [reference.push(p) for p in packets] + [reference.flush()]
    assert ours == theirs


def test_flush_then_more_audio_starts_a_new_mirrored_stream() -> None:
    packets = list(encode_speech("b", G711).packets[:6])
    decoder = make_decoder(G711, VOICE)
    first = [decoder.decode(p) for p in packets[:3]] + [decoder.flush()]
    second = [decoder.decode(p) for p in packets[3:]] + [decoder.flush()]
    assert decoder.flush() == b""
    assert first == both(packets[:3], ALAW)[1]
    assert second == both(packets[3:], ALAW)[1]
