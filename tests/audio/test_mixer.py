"""The mixdown: speakers summed at their RTMS positions, holes named, late audio counted."""

from __future__ import annotations

import numpy as np

from recorder.audio.mixer import Mixer
from recorder.audio.timeline import Audio, Gap, TimelineItem
from recorder.rtms.events import GapCause

RATE = 16_000
T0 = 1_763_726_400_000


def render(items: list[TimelineItem]) -> tuple[np.ndarray, list[Gap]]:
    out, gaps, cursor = [], [], 0
    for item in items:
        assert item.start == cursor
        if isinstance(item, Audio):
            data = np.frombuffer(item.pcm, "<i2")
            out.append(data)
            cursor += len(data)
        else:
            gaps.append(item)
            out.append(np.zeros(item.samples, np.int16))
            cursor = item.end
    return np.concatenate(out), gaps


def test_two_speakers_are_summed_where_they_overlap_and_clipped() -> None:
    mixer = Mixer(sample_rate=RATE, channels=1, holdback_ms=300)
    a = np.full(32_000, 20_000, np.int16)  # 2 s
    b = np.full(32_000, 15_000, np.int16)  # 2 s, starting 1 s later
    offset_a = mixer.offset_for(T0)
    offset_b = mixer.offset_for(T0 + 1_000)
    assert (offset_a, offset_b) == (0, 16_000)
    items: list[TimelineItem] = []
    for k in range(0, 48_000, 320):  # interleaved 20 ms chunks, as they arrive
        if k < 32_000:
            items += mixer.add(offset_a + k, a[k : k + 320].tobytes())
        if k >= 16_000:
            items += mixer.add(offset_b + k - 16_000, b[k - 16_000 : k - 16_000 + 320].tobytes())
    signal, gaps = render(items + mixer.finish())
    assert len(signal) == 48_000
    assert gaps == []
    assert (signal[:16_000] == 20_000).all()
    assert (signal[16_000:32_000] == 32_767).all()  # 35000 clipped
    assert (signal[32_000:] == 15_000).all()


def test_silence_between_speakers_is_a_no_speech_gap_and_short_holes_are_audio() -> None:
    mixer = Mixer(sample_rate=RATE, channels=1, holdback_ms=300, min_gap_ms=40)
    tone = np.full(320, 1_000, np.int16).tobytes()
    items: list[TimelineItem] = []
    for k in range(50):
        items += mixer.add(k * 320, tone)
    items += mixer.add(50 * 320 + 16, tone)  # a 1 ms hole: a codec edge, not a gap
    for k in range(200, 260):  # 3 s of nobody, then speech again
        items += mixer.add(k * 320, tone)
    signal, gaps = render(items + mixer.finish())
    assert [(g.start, g.end, g.cause) for g in gaps] == [
        (51 * 320 + 16, 200 * 320, GapCause.NO_SPEECH)
    ]
    assert (signal[50 * 320 : 50 * 320 + 16] == 0).all()
    assert len(signal) == 260 * 320


def test_audio_older_than_the_emitted_mix_is_counted_late_not_mixed() -> None:
    mixer = Mixer(sample_rate=RATE, channels=1, holdback_ms=100)
    tone = np.full(320, 1_000, np.int16).tobytes()
    items: list[TimelineItem] = []
    for k in range(100):
        items += mixer.add(k * 320, tone)
    items += mixer.add(0, tone)  # a replay of the first packet, long emitted
    signal, _ = render(items + mixer.finish())
    assert mixer.late_samples == 320
    assert (signal == 1_000).all()


def test_memory_stays_fixed_over_a_long_mix() -> None:
    mixer = Mixer(sample_rate=RATE, channels=2, holdback_ms=600)
    size = mixer._acc.nbytes
    chunk = np.ones((320, 2), np.int16).tobytes()
    for k in range(30_000):  # 10 minutes
        mixer.add(k * 320, chunk)
    assert mixer._acc.nbytes == size
