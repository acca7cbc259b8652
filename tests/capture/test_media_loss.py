"""Audio that Zoom could not buffer across an interruption: the recording must show exactly
where it is missing and why, with silence only there (invariant 4)."""

from __future__ import annotations

import numpy as np
import pytest

from recorder.audio.manifest import SegmentManifestEntry
from recorder.rtms.events import AudioCodec, GapCause
from recorder.simulator import Action, Step

from .test_end_to_end import meeting, record

RATE = 16_000


@pytest.mark.parametrize("codec", [AudioCodec.L16, AudioCodec.OPUS])
async def test_a_lossy_two_second_media_drop_is_a_gap_at_its_place(codec: AudioCodec) -> None:
    drop_at_s, lost_s = 2.0, 2.0
    scenario = meeting(6.0, steps=(Step(drop_at_s, Action.DROP_MEDIA, {"lose_s": lost_s}),))
    sim_rate = 48_000 if codec is AudioCodec.OPUS else RATE
    rec = await record(scenario, codec, sim_rate)
    assert rec.engagement.stats.lost_frames == round(lost_s * 50)
    entries = [e for _, e in rec.sealed if isinstance(e, SegmentManifestEntry)]
    gaps = [g for e in entries if e.track == "mixed" for g in e.gaps]
    interrupted = [g for g in gaps if g.cause == GapCause.MEDIA_INTERRUPTED.value]
    assert len(interrupted) == 1, gaps
    [gap] = interrupted
    assert (gap.end_sample - gap.start_sample) / RATE == pytest.approx(lost_s, abs=0.02)
    assert gap.start_sample / RATE == pytest.approx(drop_at_s, abs=0.04)
    assert gap.end_ms - gap.start_ms == pytest.approx(lost_s * 1000, abs=20)
    audio = rec.audio("mixed")[:, 0]
    assert not audio[gap.start_sample : gap.end_sample].any()
    # Speech on both sides of the gap: only the lost span is silent.
    assert np.abs(audio[gap.start_sample - 8_000 : gap.start_sample]).max() > 0
    assert np.abs(audio[gap.end_sample : gap.end_sample + 16_000]).max() > 0
    assert len(audio) / RATE == pytest.approx(6.0, abs=0.05)
