"""A bundle's WAV writer: whatever the sizes of what arrives, the file is the header and the
bytes in order, its digest is the file's and the progress never runs ahead of the file; a write
the disk refuses names the file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.errors import BundleWriteFailed
from recorder.officer.bundle import wavio
from recorder.officer.bundle.wavio import (
    PLAIN_HEADER_SIZE,
    TrackProgress,
    WavWriter,
    wav_header,
)
from tests.conftest import dirty_pages
from tests.officer.support import file_size_limit

pytestmark = pytest.mark.timeout(120)

RATE = 8000
BLOCK = 4096

#: ("write", bytes), ("place", bytes) through reserve/commit, ("silence", frames)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.binary(min_size=0, max_size=3 * BLOCK).map(lambda b: b[: len(b) - len(b) % 2]),
        ),
        st.tuples(
            st.just("place"),
            st.binary(min_size=2, max_size=3 * BLOCK).map(lambda b: b[: len(b) - len(b) % 2]),
        ),
        st.tuples(st.just("silence"), st.integers(0, 3 * BLOCK)),
    ),
    max_size=20,
)


def _audio(operations: list[tuple[str, object]]) -> bytes:
    out = bytearray()
    for kind, value in operations:
        out += bytes(2 * value) if kind == "silence" else value  # type: ignore[operator]
    return bytes(out)


def _feed(writer: WavWriter, operations: list[tuple[str, object]]) -> None:
    for kind, value in operations:
        if kind == "write":
            writer.write(value)  # type: ignore[arg-type]
        elif kind == "place":
            data = value
            assert isinstance(data, bytes)
            writer.reserve(len(data))[:] = data
            writer.commit(len(data))
        else:
            assert isinstance(value, int)
            writer.write_silence(value)


class Recorded(TrackProgress):
    """Every ``flushed`` call, to check the progress never runs ahead of the file."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = path
        self.reports: list[tuple[int, int]] = []

    def flushed(self, audio_bytes: int) -> None:
        self.reports.append((audio_bytes, os.stat(self.path).st_size))
        super().flushed(audio_bytes)


@pytest.fixture
def small_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wavio, "BUFFER_BYTES", 2 * BLOCK)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
@pytest.mark.usefixtures("small_buffers")
def test_the_file_is_the_header_and_the_bytes_in_order_and_its_digest_is_the_files(
    tmp_path: Path, operations: list[tuple[str, object]]
) -> None:
    audio = _audio(operations)
    path = tmp_path / f"t{len(os.listdir(tmp_path))}.wav"
    progress = Recorded("t", path)
    writer = WavWriter(
        path, sample_rate=RATE, channels=1, frames=len(audio) // 2, progress=progress
    )
    _feed(writer, operations)
    digest, size = writer.close()
    data = path.read_bytes()
    assert data == wav_header(sample_rate=RATE, channels=1, frames=len(audio) // 2) + audio
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # Progress: increasing, never past what the file holds, ending at all of it.
    reported = [audio_bytes for audio_bytes, _ in progress.reports]
    assert reported == sorted(reported)
    assert all(
        PLAIN_HEADER_SIZE + audio_bytes <= on_disk for audio_bytes, on_disk in progress.reports
    )
    if audio:
        assert reported[-1] == len(audio)


def test_a_write_the_disk_refuses_names_the_bundle_file_and_leaves_the_writer_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real refusal by the kernel: a file size limit (``EFBIG``), met in the middle of the
    file."""
    monkeypatch.setattr(wavio, "BUFFER_BYTES", 4 * BLOCK)
    path = tmp_path / "t.wav"
    audio = bytes(64 * BLOCK)
    writer = WavWriter(path, sample_rate=RATE, channels=1, frames=len(audio) // 2)
    with file_size_limit(10 * BLOCK), pytest.raises(BundleWriteFailed) as caught:
        writer.write(audio)
    writer.abort()
    assert str(caught.value) == f"{path}: cannot write: File too large"
    assert writer._fd == -1


def test_what_the_writer_has_written_is_already_on_its_way_to_the_disk_before_the_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So the ``fsync`` at the end of a two-hour track waits for one buffer, not the file."""
    monkeypatch.setattr(wavio, "BUFFER_BYTES", 4 * BLOCK)
    audio = bytes(range(256)) * (64 * BLOCK // 256)
    writer = WavWriter(tmp_path / "t.wav", sample_rate=RATE, channels=1, frames=len(audio) // 2)
    writer.write(audio)
    try:
        assert os.fstat(writer._fd).st_size >= 60 * BLOCK
        assert dirty_pages(writer._fd) == 0
    finally:
        writer.close()
