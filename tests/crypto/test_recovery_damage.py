"""Recovery of damaged ``.part`` files: every authentic chunk kept, holes named, original kept.

The files are made by the real writer (small chunks so a few hundred bytes make many), damaged
the way disks and hostile hands damage them (bit flips in a chunk, in a frame, stray bytes),
and recovered; the result must verify with the ordinary reader.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.crypto import _format as fmt
from recorder.crypto._format import SegmentHeader
from recorder.crypto._salvage import _SCAN_BLOCK
from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.reader import digest_segment, iter_plaintext, read_header
from recorder.crypto.recovery import (
    CORRUPT_CHUNK,
    HOLES_KEY,
    QUARANTINE_DIR,
    RecoveredHole,
    RecoveryFailure,
    holes_from_metadata,
    recover,
    recover_directory,
)
from recorder.crypto.writer import SpoolSinkFactory

from .conftest import SMALL_CHUNK, make_identity, make_keyring, record_spans

CHUNKS = 10


def _zero_fill(header: SegmentHeader) -> bool:
    return True


def _no_fill(header: SegmentHeader) -> bool:
    return False


def _part_with_chunks(factory: SpoolSinkFactory, body: bytes, *, index: int = 0) -> Path:
    """A ``.part`` of full chunks as a writer killed mid-segment leaves it."""
    sink = factory.open(make_identity(segment_index=index), prologue_size=0)
    sink.write(body)
    sink.checkpoint()
    part: Path = sink.part_path
    os.close(sink._fd)
    return part


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes((byte ^ (1 << bit),)))


def test_a_bit_flip_in_chunk_2_of_10_keeps_the_nine_authentic_chunks(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    body = os.urandom(SMALL_CHUNK * CHUNKS)
    part = _part_with_chunks(factory, body)
    spans = record_spans(part)
    assert len(spans) == CHUNKS
    original = bytearray(part.read_bytes())
    chunk2_offset, chunk2_size = spans[2]
    _flip(part, chunk2_offset + fmt.FRAME_SIZE + 5, bit=3)  # inside the ciphertext
    damaged = part.read_bytes()

    report = recover(part, keyring, zero_fill_holes=_zero_fill)

    assert report.chunks_recovered == CHUNKS - 1
    assert report.body_bytes_recovered == SMALL_CHUNK * (CHUNKS - 1)
    assert report.torn_bytes_discarded == 0
    assert report.skipped_bytes == chunk2_size
    assert report.holes == (
        RecoveredHole(
            body_offset=2 * SMALL_CHUNK,
            length=SMALL_CHUNK,
            first_chunk=2,
            end_chunk=3,
            zero_filled=True,
            cause=CORRUPT_CHUNK,
        ),
    )
    # The new file verifies with the ordinary reader; the hole is zeros at its exact place.
    assert report.sealed.path is not None
    plaintext = b"".join(iter_plaintext(report.sealed.path, keyring))
    expected = body[: 2 * SMALL_CHUNK] + bytes(SMALL_CHUNK) + body[3 * SMALL_CHUNK :]
    assert plaintext == expected
    digest = digest_segment(report.sealed.path, keyring)
    assert digest.recovered
    assert digest.sha256 == report.sealed.sha256
    # The hole is in the recovered file's authenticated header, for the catalog.
    header = read_header(report.sealed.path)
    assert holes_from_metadata(header.identity.metadata[HOLES_KEY]) == report.holes
    # The original is kept, byte for byte, in quarantine; nothing was deleted.
    assert not part.exists()
    assert report.quarantined == factory.directory / QUARANTINE_DIR / part.name
    assert report.quarantined.read_bytes() == damaged
    assert damaged != bytes(original)
    # The new file shares no nonce material with the original: fresh salt, file id, prefix.
    old_header = read_header(report.quarantined)
    assert header.salt != old_header.salt
    assert header.file_id != old_header.file_id
    assert header.nonce_prefix != old_header.nonce_prefix
    assert header.wrapped_key == old_header.wrapped_key


def test_a_damaged_frame_is_skipped_by_resynchronising_on_the_next_record(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    body = os.urandom(SMALL_CHUNK * CHUNKS)
    part = _part_with_chunks(factory, body)
    spans = record_spans(part)
    _flip(part, spans[4][0] + 21)  # the frame's length field: its CRC now fails
    _flip(part, spans[5][0] + fmt.FRAME_SIZE)  # and chunk 5's ciphertext too

    report = recover(part, keyring, zero_fill_holes=_zero_fill)

    assert report.chunks_recovered == CHUNKS - 2
    assert [(h.first_chunk, h.end_chunk, h.length) for h in report.holes] == [
        (4, 6, 2 * SMALL_CHUNK)
    ]
    assert report.sealed.path is not None
    plaintext = b"".join(iter_plaintext(report.sealed.path, keyring))
    assert plaintext == body[: 4 * SMALL_CHUNK] + bytes(2 * SMALL_CHUNK) + body[6 * SMALL_CHUNK :]


def test_records_leave_holes_out_and_still_name_them(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    body = os.urandom(SMALL_CHUNK * CHUNKS)
    part = _part_with_chunks(factory, body)
    spans = record_spans(part)
    _flip(part, spans[0][0] + fmt.FRAME_SIZE + 1)
    _flip(part, spans[7][1] + spans[7][0] - 1)  # chunk 7's tag

    report = recover(part, keyring, zero_fill_holes=_no_fill)

    assert [(h.body_offset, h.first_chunk, h.zero_filled) for h in report.holes] == [
        (0, 0, False),
        (6 * SMALL_CHUNK, 7, False),
    ]
    assert report.sealed.path is not None
    plaintext = b"".join(iter_plaintext(report.sealed.path, keyring))
    assert plaintext == body[SMALL_CHUNK : 7 * SMALL_CHUNK] + body[8 * SMALL_CHUNK :]


# The scan reads 1 MiB blocks: a file id straddling a block boundary must still be found.
@pytest.mark.parametrize("stray", [77, _SCAN_BLOCK - 4, _SCAN_BLOCK + 10])
def test_stray_bytes_between_records_are_skipped_without_a_hole(
    factory: SpoolSinkFactory, keyring: RecordingKeyring, stray: int
) -> None:
    body = os.urandom(SMALL_CHUNK * 4)
    part = _part_with_chunks(factory, body)
    spans = record_spans(part)
    data = part.read_bytes()
    cut = spans[2][0]
    part.write_bytes(data[:cut] + os.urandom(stray) + data[cut:])

    report = recover(part, keyring, zero_fill_holes=_zero_fill)

    assert report.holes == ()
    assert report.skipped_bytes == stray
    assert report.chunks_recovered == 4
    assert report.sealed.path is not None
    assert b"".join(iter_plaintext(report.sealed.path, keyring)) == body


def test_audio_stops_at_damage_of_unknown_length(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    """Bytes cut out of the middle: later audio cannot be placed, so it is not misplaced."""
    body = os.urandom(SMALL_CHUNK * 6)
    part = _part_with_chunks(factory, body)
    spans = record_spans(part)
    data = part.read_bytes()
    offset = spans[2][0]
    part.write_bytes(data[: offset + 40] + data[offset + 40 + 20 :])  # 20 bytes of chunk 2 gone

    report = recover(part, keyring, zero_fill_holes=_zero_fill)

    assert report.chunks_recovered == 2
    assert report.stop_reason is not None
    assert "unknown length" in report.stop_reason
    assert report.sealed.path is not None
    assert b"".join(iter_plaintext(report.sealed.path, keyring)) == body[: 2 * SMALL_CHUNK]
    # Records place nothing by position: there every later chunk is kept.
    again = _part_with_chunks(factory, body, index=1)
    data = again.read_bytes()
    again.write_bytes(data[: offset + 40] + data[offset + 40 + 20 :])
    records = recover(again, keyring, zero_fill_holes=_no_fill)
    assert records.chunks_recovered == 5
    assert records.holes[0].length is None


@settings(max_examples=25, deadline=None)
@given(
    flips=st.lists(
        st.tuples(
            st.integers(0, CHUNKS - 1),
            st.integers(0, SMALL_CHUNK + fmt.RECORD_OVERHEAD - 1),
            st.integers(0, 7),
        ),
        min_size=1,
        max_size=4,
        unique=True,  # the same bit flipped twice is no damage
    )
)
def test_any_bit_flips_keep_every_untouched_chunk(flips: list[tuple[int, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        _check_flips(Path(root), flips)


def _check_flips(root: Path, flips: list[tuple[int, int, int]]) -> None:
    keyring = make_keyring(root / "keys")
    factory = SpoolSinkFactory(root / "spool", keyring, chunk_size=SMALL_CHUNK)
    body = os.urandom(SMALL_CHUNK * CHUNKS)
    part = _part_with_chunks(factory, body)
    spans = record_spans(part)
    damaged: set[int] = set()
    for chunk, where, bit in flips:
        offset, size = spans[chunk]
        assert size == SMALL_CHUNK + fmt.RECORD_OVERHEAD
        _flip(part, offset + where, bit)
        damaged.add(chunk)

    report = recover(part, keyring, zero_fill_holes=_zero_fill)

    last_good = max(set(range(CHUNKS)) - damaged, default=-1)
    kept = [c for c in range(CHUNKS) if c not in damaged and c <= last_good]
    assert report.chunks_recovered == len(kept)
    assert report.sealed.path is not None
    plaintext = b"".join(iter_plaintext(report.sealed.path, keyring))
    expected = b"".join(
        body[c * SMALL_CHUNK : (c + 1) * SMALL_CHUNK] if c not in damaged else bytes(SMALL_CHUNK)
        for c in range(last_good + 1)
    )
    assert plaintext == expected
    lost = {c for h in report.holes for c in range(h.first_chunk, h.end_chunk)}
    assert lost == {c for c in damaged if c < last_good}
    assert report.quarantined is not None
    assert report.quarantined.exists()


def test_a_recovery_interrupted_before_the_original_moved_is_finished_safely(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    """Killed between sealing the new file and moving the original: the next start keeps both."""
    body = os.urandom(SMALL_CHUNK * 3)
    part = _part_with_chunks(factory, body)
    original = part.read_bytes()
    report = recover(part, keyring)
    assert report.quarantined is not None
    part.write_bytes(original)  # as if the move into quarantine had not happened yet

    [outcome] = recover_directory(factory.directory, keyring)

    assert isinstance(outcome, RecoveryFailure)
    assert "exists already" in str(outcome.error)
    assert outcome.quarantined is not None
    assert outcome.quarantined.read_bytes() == original
    assert report.sealed.path is not None
    assert b"".join(iter_plaintext(report.sealed.path, keyring)) == body
    assert not part.exists()
