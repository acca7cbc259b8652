"""The media program of a scenario: who says what, when, on which audio track.

Rule: the program is a pure function of the scenario. Speakers take turns saying their speech
fixture, with ``utterance_gap_s`` of silence between, and the whole round repeats until the call
ends. Time is counted in 20 ms *frames* from the stream's t0; frame ``k`` has RTMS timestamp
``t0_ms + 20 k``. Each track is one cycle of 16 kHz mono PCM, looped; tests compare what a client
decoded against ``Track.pcm`` to prove the audio survived the wire.

* ``mixed``: one track, ``user_id`` 0, every frame sent (silence included).
* ``per_speaker``: one track per speaker, frames sent only while that speaker talks (Zoom sends
  nothing for silent participants, rtms-protocol §5.15).
* ``channels`` (ZCC): one track per SIP channel, every frame sent, each with its party's voice.

A *crowd* (more speakers than Zoom carries at once, speaking strictly in turn, e.g. 300 who each
speak once) keeps per-speaker tracks small: each keeps only its one utterance (``Track.clip``,
a view of the fixture) and where it starts, never a cycle-long array of silence.
"""

from __future__ import annotations

import functools
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from recorder.errors import ConfigError
from recorder.simulator.scenario import (
    FIXTURE_TEXT,
    MAX_SPEAKERS,
    AudioLayout,
    Scenario,
    Speaker,
)

#: Every RTMS audio packet covers a multiple of 20 ms (rtms-protocol §5.3).
FRAME_MS: Final = 20
SOURCE_RATE_HZ: Final = 16_000
SAMPLES_PER_FRAME: Final = SOURCE_RATE_HZ * FRAME_MS // 1000

DATA_DIR: Final = Path(__file__).parent / "data"

Pcm = npt.NDArray[np.int16]


@functools.cache
def load_fixture(name: str) -> Pcm:
    """The 16 kHz mono s16 samples of a speech fixture, padded to whole 20 ms frames."""
    path = DATA_DIR / f"{name}.wav"
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (
                SOURCE_RATE_HZ,
                1,
                2,
            ):
                raise ConfigError(f"speech fixture {name} is not 16 kHz mono s16")
            raw = wav.readframes(wav.getnframes())
    except (OSError, wave.Error) as exc:
        raise ConfigError(f"cannot read speech fixture {name}: {exc}") from exc
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    pad = (-len(samples)) % SAMPLES_PER_FRAME
    samples = np.concatenate([samples, np.zeros(pad, dtype=np.int16)])
    samples.setflags(write=False)
    return samples


@dataclass(frozen=True, slots=True)
class Utterance:
    speaker: Speaker
    #: Frame offsets inside one cycle: [start_frame, end_frame).
    start_frame: int
    end_frame: int
    text: str


@dataclass(frozen=True, slots=True)
class Track:
    """One audio packet sequence as RTMS tags it."""

    #: ``mixed``, ``user-<id>`` or ``channel-<id>`` (as in ``recorder.rtms.events``).
    name: str
    #: One cycle of 16 kHz mono PCM (length ``cycle_frames * 320``).
    pcm: Pcm
    user_id: str | None = None
    user_name: str | None = None
    channel_id: str | None = None
    #: Per-speaker tracks send only inside these cycle-frame windows; None = always.
    windows: tuple[tuple[int, int], ...] | None = None
    #: A crowd speaker's one utterance, starting at cycle frame ``clip_start`` (``pcm`` is then
    #: empty: ``cycle_pcm`` builds it on demand).
    clip: Pcm | None = None
    clip_start: int = 0

    def cycle_pcm(self, cycle_frames: int) -> Pcm:
        """One cycle of this track's PCM, silence included."""
        if self.clip is None:
            return self.pcm
        pcm = np.zeros(cycle_frames * SAMPLES_PER_FRAME, dtype=np.int16)
        start = self.clip_start * SAMPLES_PER_FRAME
        pcm[start : start + len(self.clip)] = self.clip
        return pcm

    def sends(self, cycle_frame: int) -> bool:
        if self.windows is None:
            return True
        return any(start <= cycle_frame < end for start, end in self.windows)


@dataclass(frozen=True, slots=True)
class Program:
    cycle_frames: int
    utterances: tuple[Utterance, ...]
    tracks: tuple[Track, ...]

    def track(self, name: str) -> Track:
        for track in self.tracks:
            if track.name == name:
                return track
        raise KeyError(name)

    def utterances_ending(self, frame: int) -> Sequence[Utterance]:
        """Utterances whose last frame is ``frame - 1``: their transcript is due at ``frame``."""
        cycle_frame = frame % self.cycle_frames
        if cycle_frame == 0 and frame > 0:
            cycle_frame = self.cycle_frames
        return [u for u in self.utterances if u.end_frame == cycle_frame]

    def active_speaker(self, frame: int) -> Speaker | None:
        cycle_frame = frame % self.cycle_frames
        for u in self.utterances:
            if u.start_frame <= cycle_frame < u.end_frame:
                return u.speaker
        return None


def build_program(scenario: Scenario) -> Program:
    """Lay the speakers' fixtures out in turns and derive the tracks of the scenario's layout.

    Programs are cached by what they depend on, so a benchmark's hundreds of engagements share
    one set of PCM arrays (and therefore one set of encoded payloads).
    """
    return _build(
        scenario.layout, scenario.speakers, scenario.utterance_gap_s, scenario.utterance_s
    )


@functools.lru_cache(maxsize=64)
def _build(
    layout: AudioLayout,
    speakers: tuple[Speaker, ...],
    utterance_gap_s: float,
    utterance_s: float = 0.0,
) -> Program:
    # A negative gap makes the next speaker start before the previous one ends (cross-talk):
    # that is how per-speaker audio gets two or three packets in the same 20 ms.
    gap_frames = round(utterance_gap_s * 1000 / FRAME_MS)
    utterances: list[Utterance] = []
    cursor = max(gap_frames, 0)
    cut_frames = round(utterance_s * 1000 / FRAME_MS) if utterance_s > 0 else None
    for speaker in speakers:
        frames = len(load_fixture(speaker.fixture)) // SAMPLES_PER_FRAME
        if cut_frames is not None:
            frames = max(1, min(frames, cut_frames))
        utterances.append(
            Utterance(speaker, cursor, cursor + frames, FIXTURE_TEXT[speaker.fixture])
        )
        cursor = max(cursor + frames + gap_frames, 0)
    cycle_frames = max([u.end_frame for u in utterances] + [1]) + max(gap_frames, 0)
    total = cycle_frames * SAMPLES_PER_FRAME

    def placed(selected: Sequence[Utterance]) -> Pcm:
        mix = np.zeros(total, dtype=np.int32)
        for u in selected:
            speech = load_fixture(u.speaker.fixture)[
                : (u.end_frame - u.start_frame) * SAMPLES_PER_FRAME
            ]
            start = u.start_frame * SAMPLES_PER_FRAME
            mix[start : start + len(speech)] += speech
        pcm = np.clip(mix, -32768, 32767).astype(np.int16)
        pcm.setflags(write=False)
        return pcm

    tracks: list[Track]
    if layout is AudioLayout.MIXED:
        tracks = [Track(name="mixed", pcm=placed(utterances), user_id="0")]
    elif layout is AudioLayout.PER_SPEAKER and len(speakers) > MAX_SPEAKERS:
        # A crowd, strictly in turn: one utterance per speaker, kept as a view of its fixture.
        empty = np.zeros(0, dtype=np.int16)
        tracks = [
            Track(
                name=f"user-{u.speaker.user_id}",
                pcm=empty,
                user_id=u.speaker.user_id,
                user_name=u.speaker.user_name,
                windows=((u.start_frame, u.end_frame),),
                clip=load_fixture(u.speaker.fixture)[
                    : (u.end_frame - u.start_frame) * SAMPLES_PER_FRAME
                ],
                clip_start=u.start_frame,
            )
            for u in utterances
        ]
    elif layout is AudioLayout.PER_SPEAKER:
        tracks = [
            Track(
                name=f"user-{s.user_id}",
                pcm=placed([u for u in utterances if u.speaker is s]),
                user_id=s.user_id,
                user_name=s.user_name,
                windows=tuple((u.start_frame, u.end_frame) for u in utterances if u.speaker is s),
            )
            for s in speakers
        ]
    else:
        tracks = [
            Track(
                name=f"channel-{s.channel_id}",
                pcm=placed([u for u in utterances if u.speaker is s]),
                channel_id=s.channel_id,
            )
            for s in speakers
        ]
    return Program(cycle_frames=cycle_frames, utterances=tuple(utterances), tracks=tuple(tracks))
