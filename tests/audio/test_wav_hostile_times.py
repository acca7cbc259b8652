"""A BWF header field never raises: hostile or mis-scaled origination times seal anyway."""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.audio.segments import SegmentWriter, TrackFormat
from recorder.audio.timeline import Audio
from recorder.audio.wav import HEADER_SIZE, BextInfo, build_wav_header, parse_bext
from recorder.crypto import DirectoryRecordingKeyStore, RecordingKeyring, SpoolSinkFactory
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.reader import iter_plaintext

RATE = 16000


@given(
    origination_ms=st.integers(min_value=-(2**70), max_value=2**70),
    rate=st.sampled_from([8000, 16000, 48000, 384000]),
    description=st.text(max_size=300),
)
def test_any_origination_time_gives_a_well_formed_header(
    origination_ms: int, rate: int, description: str
) -> None:
    bext = BextInfo("ref", origination_ms, description=description)
    header = build_wav_header(sample_rate=rate, channels=1, data_length=2, bext=bext)
    assert len(header) == HEADER_SIZE
    parsed = parse_bext(header)
    with wave.open(io.BytesIO(header + b"\0\0")) as reader:
        assert reader.getframerate() == rate
    if 0 <= origination_ms <= 253_402_300_799_999:
        assert len(parsed.origination_date) == 10
        assert len(parsed.origination_time) == 8
    else:
        assert parsed.origination_date == ""
        assert parsed.origination_time == ""
        assert parsed.time_reference == 0
        assert f"origination {origination_ms} ms out of range" in parsed.description


def test_early_years_are_zero_padded() -> None:
    """strftime('%Y') gives '1' for year 1 on glibc: a field of the wrong width."""
    header = build_wav_header(
        sample_rate=RATE, channels=1, data_length=0, bext=BextInfo("r", 0, description="d")
    )
    assert parse_bext(header).origination_date == "1970-01-01"


def _keyring(root: Path) -> RecordingKeyring:
    return RecordingKeyring(
        DirectoryRecordingKeyStore(root / "recording-keys"),
        provider=LocalKeyProvider(root / "kek"),
    )


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("origin_ms", [1_763_726_400_000_000, -5_000, 2**62])
def test_the_real_writer_seals_a_segment_with_a_hostile_origin(
    tmp_path: Path, origin_ms: int
) -> None:
    keyring = _keyring(tmp_path / "keys")
    sinks = SpoolSinkFactory(tmp_path / "spool", keyring)
    writer = SegmentWriter(
        sinks,
        recording_id="rec-us",
        originator_reference="eng",
        fmt=TrackFormat("mixed", RATE, 1, "L16 16000 mono", "test"),
        sample_to_ms=lambda sample: origin_ms + sample * 1000 // RATE,
        now_ms=lambda: 1_763_726_400_000,
    )
    before = _open_fds()
    writer.write(Audio(0, b"\1\0" * RATE))
    pending = writer.close()  # detached from the writer; sealing is the shell's blocking step
    assert pending is not None
    assert not writer.is_open
    sealed = pending.seal()
    assert _open_fds() == before  # the sink's descriptor (and its lock) are released
    assert sealed.entry.start_ms == origin_ms  # the manifest keeps the true value whole
    assert sealed.sealed.path is not None
    wav = b"".join(iter_plaintext(sealed.sealed.path, keyring))
    assert parse_bext(wav[:HEADER_SIZE]).origination_date == ""
    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.getnframes() == RATE
    assert not list((tmp_path / "spool").glob("*.part"))


def test_a_failed_seal_releases_the_file_for_recovery(tmp_path: Path) -> None:
    from recorder.crypto.recovery import recover
    from recorder.errors import StorageError

    keyring = _keyring(tmp_path / "keys")
    sinks = SpoolSinkFactory(tmp_path / "spool", keyring)
    writer = SegmentWriter(
        sinks,
        recording_id="rec-fail",
        originator_reference="eng",
        fmt=TrackFormat("mixed", RATE, 1, "L16 16000 mono", "test"),
        sample_to_ms=lambda sample: 1_763_726_400_000 + sample * 1000 // RATE,
        now_ms=lambda: 1_763_726_400_000,
    )
    before = _open_fds()
    writer.write(Audio(0, b"\1\0" * RATE))
    [part] = (tmp_path / "spool").glob("*.part")
    blocker = part.with_name(part.name.removesuffix(".part"))
    blocker.mkdir()  # the rename at seal fails
    pending = writer.close()
    assert pending is not None
    assert not writer.is_open
    with pytest.raises(StorageError):
        pending.seal()
    assert _open_fds() == before  # nothing leaked: descriptor and flock are gone
    blocker.rmdir()
    report = recover(part, keyring)  # would be refused as "held by a live writer" on a leak
    assert report.was_complete


def test_a_seal_that_fails_while_the_file_is_held_releases_it_for_recovery(
    tmp_path: Path,
) -> None:
    """The last record cannot be written (the file may not grow: a full disk, a quota). The
    descriptor, and the lock it carries, are still held at that point: the failed seal must
    release them, or recovery refuses the ``.part`` as held by a live writer."""
    import resource
    import signal

    from recorder.crypto.recovery import recover
    from recorder.errors import StorageError

    keyring = _keyring(tmp_path / "keys")
    sinks = SpoolSinkFactory(tmp_path / "spool", keyring)
    writer = SegmentWriter(
        sinks,
        recording_id="rec-full",
        originator_reference="eng",
        fmt=TrackFormat("mixed", RATE, 1, "L16 16000 mono", "test"),
        sample_to_ms=lambda sample: 1_763_726_400_000 + sample * 1000 // RATE,
        now_ms=lambda: 1_763_726_400_000,
    )
    before = _open_fds()
    writer.write(Audio(0, b"\1\0" * RATE))
    [part] = (tmp_path / "spool").glob("*.part")
    pending = writer.close()
    assert pending is not None
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (part.stat().st_size, limits[1]))
    try:
        with pytest.raises(StorageError):
            pending.seal()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert _open_fds() == before  # the descriptor and its flock are gone
    assert part.exists()  # left for recovery, not sealed under its final name
    report = recover(part, keyring)  # refused as "held by a live writer" on a leak
    assert report.sealed.path is not None
    assert report.sealed.path.exists()
