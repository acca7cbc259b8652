"""The listening file mixed while its tracks are still being written (other threads, small
writer buffers so the mix really waits on them): the same samples as numpy's own placement and
sum, and a track that fails wakes the mix instead of hanging it."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from recorder.catalog.base import Product
from recorder.officer.bundle import listening, wavio
from recorder.officer.bundle.wavio import TrackAbandoned, TrackProgress, WavWriter

pytestmark = pytest.mark.timeout(60)
RATE = 8000


def write_track(
    path: Path, samples: npt.NDArray[np.int16], progress: TrackProgress, fail_at: int | None
) -> None:
    writer = WavWriter(path, sample_rate=RATE, channels=1, frames=len(samples), progress=progress)
    try:
        for start in range(0, len(samples), 999):
            if fail_at is not None and start >= fail_at:
                raise OSError("disk gone")
            writer.write(samples[start : start + 999].tobytes())
        writer.close()
    except BaseException:
        writer.abort()


def read(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(
            -1, wav.getnchannels()
        )


def mix_live(
    tmp_path: Path, product: Product, roles: dict[str, str], fail_at: int | None = None
) -> tuple[Path, dict[str, npt.NDArray[np.int16]], listening.Mixed]:
    rng = np.random.default_rng(7)
    tracks = {
        "a": (1_000, rng.integers(-20000, 20000, 30_000, dtype=np.int16)),
        "b": (1_250, rng.integers(-20000, 20000, 41_000, dtype=np.int16)),
    }
    progress = {name: TrackProgress(name) for name in tracks}
    sources = [
        listening.Source(
            name, tmp_path / f"{name}.wav", start, RATE, 0, len(pcm), listening.Side.MONO
        )
        for name, (start, pcm) in tracks.items()
    ]
    layout = listening.choose_layout(product, sources, roles)
    assert layout is not None
    mixed = listening.plan_mix(layout)
    assert mixed is not None
    threads = [
        threading.Thread(
            target=write_track,
            args=(tmp_path / f"{name}.wav", pcm, progress[name], fail_at if name == "b" else None),
        )
        for name, (_, pcm) in tracks.items()
    ]
    for thread in threads:
        thread.start()
    try:
        listening.write_listening(tmp_path / "listening.wav", layout, mixed, progress)
    finally:
        for thread in threads:
            thread.join()
    return tmp_path / "listening.wav", {n: pcm for n, (_, pcm) in tracks.items()}, mixed


@pytest.fixture(autouse=True)
def small_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wavio, "BUFFER_BYTES", 4096)
    monkeypatch.setattr(listening, "BLOCK_FRAMES", 1500)


def test_a_call_is_placed_agent_left_caller_right_while_its_legs_are_written(
    tmp_path: Path,
) -> None:
    out, pcm, mixed = mix_live(tmp_path, Product.CONTACT_CENTER, {"a": "callee", "b": "caller"})
    expected = np.zeros((mixed.frames, 2), dtype=np.int16)
    for name, side in (("a", 0), ("b", 1)):
        at = mixed.offsets[name]
        expected[at : at + len(pcm[name]), side] = pcm[name]
    assert mixed.offsets == {"a": 0, "b": 2000}
    assert np.array_equal(read(out), expected)


def test_a_meeting_is_summed_and_clipped_while_its_speakers_are_written(tmp_path: Path) -> None:
    out, pcm, mixed = mix_live(tmp_path, Product.MEETING, {})
    acc = np.zeros(mixed.frames, dtype=np.int32)
    for name in ("a", "b"):
        at = mixed.offsets[name]
        acc[at : at + len(pcm[name])] += pcm[name]
    assert np.array_equal(read(out)[:, 0], np.clip(acc, -32768, 32767).astype(np.int16))


def test_a_track_that_fails_wakes_the_mix_with_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(TrackAbandoned, match="b: the track failed"):
        mix_live(tmp_path, Product.CONTACT_CENTER, {"a": "callee", "b": "caller"}, fail_at=9_000)
