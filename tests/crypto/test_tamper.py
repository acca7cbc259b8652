"""Every way a sealed file can be wrong is detected, each with its own error and message."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from recorder.crypto import _format as fmt
from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.reader import iter_plaintext, read_header
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import (
    ChunkOrderError,
    DecryptionFailed,
    HeaderMismatch,
    IntegrityError,
    KeyNotFound,
    TruncatedFile,
)
from recorder.sink import SealedSegment

from .conftest import SMALL_CHUNK, make_identity, make_keyring, record_spans, write_segment

BODY_SIZE = SMALL_CHUNK * 6 + 10  # six full chunks and a final one with 10 bytes


@pytest.fixture
def sealed(factory: SpoolSinkFactory) -> SealedSegment:
    return write_segment(factory, make_identity(), os.urandom(BODY_SIZE), prologue=b"RIFF1234")


def _path(segment: SealedSegment) -> Path:
    assert segment.path is not None
    return segment.path


def _read_all(path: Path, keyring: RecordingKeyring) -> bytes:
    return b"".join(iter_plaintext(path, keyring))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _rewrite_header(path: Path, edit: bytes, at: int) -> None:
    """Overwrite header bytes *and* fix the checksum: a deliberate edit, not a random flip."""
    header = read_header(path)
    data = bytearray(path.read_bytes())
    data[at : at + len(edit)] = edit
    end = header.length - fmt.CRC_SIZE
    data[end : header.length] = struct.pack(">I", zlib.crc32(bytes(data[:end])))
    path.write_bytes(bytes(data))


def test_bit_flip_in_a_chunk(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    offset, _ = record_spans(path)[2]
    _flip(path, offset + fmt.FRAME_SIZE + 5)
    with pytest.raises(DecryptionFailed, match=r"chunk 2 .* failed authentication"):
        _read_all(path, keyring)


def test_bit_flip_in_a_chunk_tag(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    offset, size = record_spans(path)[-1]
    _flip(path, offset + size - 1)
    with pytest.raises(DecryptionFailed, match="failed authentication"):
        _read_all(path, keyring)


def test_bit_flip_in_a_chunk_frame(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    offset, _ = record_spans(path)[1]
    _flip(path, offset + 17)  # inside the index field
    with pytest.raises(DecryptionFailed, match=r"framing of chunk 1 .* corrupt"):
        _read_all(path, keyring)


@pytest.mark.parametrize("field_offset", [30, 50, 75, 90, -40], ids=str)
def test_bit_flip_in_the_header(
    sealed: SealedSegment, keyring: RecordingKeyring, field_offset: int
) -> None:
    path = _path(sealed)
    header = read_header(path)
    _flip(path, field_offset % header.length)
    with pytest.raises(DecryptionFailed, match="header checksum mismatch"):
        _read_all(path, keyring)


def test_altered_header_metadata_fails_authentication(
    sealed: SealedSegment, keyring: RecordingKeyring
) -> None:
    path = _path(sealed)
    header = read_header(path)
    at = header.raw.index(b'"L16"')
    _rewrite_header(path, b'"L17"', at)
    assert read_header(path).identity.metadata["codec"] == "L17"  # checksum fixed up
    with pytest.raises(HeaderMismatch, match="fields altered"):
        _read_all(path, keyring)


def test_altered_header_segment_index_does_not_open_the_key(
    sealed: SealedSegment, keyring: RecordingKeyring
) -> None:
    path = _path(sealed)
    _rewrite_header(path, struct.pack(">I", 9), 80)  # segment_index
    with pytest.raises(HeaderMismatch, match="segment 9"):
        _read_all(path, keyring)


def test_bit_flip_in_the_prologue(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    header = read_header(path)
    _flip(path, header.length + fmt.FRAME_SIZE + 2)
    with pytest.raises(DecryptionFailed, match="prologue failed authentication"):
        _read_all(path, keyring)


def test_truncation_points(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    original = path.read_bytes()
    header = read_header(path)
    spans = record_spans(path)
    last_offset, _ = spans[-1]
    cuts = {
        "empty file": 0,
        "inside the fixed header": 40,
        "inside the variable header": header.length - 10,
        "inside the prologue slot": header.length + 20,
        "right after the prologue": header.body_offset,
        "inside a chunk frame": spans[3][0] + 7,
        "inside a chunk": spans[3][0] + fmt.FRAME_SIZE + 20,
        "at a chunk boundary": spans[4][0],
        "without the final chunk": last_offset,
        "one byte short": len(original) - 1,
    }
    for what, cut in cuts.items():
        path.write_bytes(original[:cut])
        with pytest.raises(TruncatedFile):
            _read_all(path, keyring)
        assert what  # the loop's label shows up in a failing traceback


def test_truncated_at_a_boundary_says_no_final_chunk(
    sealed: SealedSegment, keyring: RecordingKeyring
) -> None:
    path = _path(sealed)
    offset, _ = record_spans(path)[-1]
    path.write_bytes(path.read_bytes()[:offset])
    with pytest.raises(TruncatedFile, match="ends after 6 chunks without a final chunk"):
        _read_all(path, keyring)


def _splice(path: Path, spans: list[tuple[int, int]], records: list[bytes]) -> None:
    data = path.read_bytes()
    start = spans[0][0]
    path.write_bytes(data[:start] + b"".join(records))


def _records(path: Path) -> tuple[list[tuple[int, int]], list[bytes]]:
    data = path.read_bytes()
    spans = record_spans(path)
    return spans, [data[o : o + s] for o, s in spans]


def test_two_chunks_swapped(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    spans, records = _records(path)
    records[1], records[2] = records[2], records[1]
    _splice(path, spans, records)
    with pytest.raises(ChunkOrderError, match=r"chunk 1 .* claims index 2: chunks reordered"):
        _read_all(path, keyring)


def test_chunk_duplicated(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    spans, records = _records(path)
    records.insert(3, records[2])
    _splice(path, spans, records)
    with pytest.raises(ChunkOrderError, match=r"chunk 3 .* claims index 2.*duplicated"):
        _read_all(path, keyring)


def test_chunk_dropped_from_the_middle(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    spans, records = _records(path)
    del records[2]
    _splice(path, spans, records)
    with pytest.raises(ChunkOrderError, match="claims index 3: chunks reordered or missing"):
        _read_all(path, keyring)


def test_chunk_appended_after_the_end(sealed: SealedSegment, keyring: RecordingKeyring) -> None:
    path = _path(sealed)
    spans, records = _records(path)
    records.append(records[1])
    _splice(path, spans, records)
    with pytest.raises(ChunkOrderError, match="after the final chunk"):
        _read_all(path, keyring)


@pytest.mark.parametrize("donor", ["same-recording-other-segment", "other-recording-other-key"])
def test_chunk_spliced_from_another_file(
    tmp_path: Path,
    factory: SpoolSinkFactory,
    sealed: SealedSegment,
    keyring: RecordingKeyring,
    donor: str,
) -> None:
    if donor == "same-recording-other-segment":
        other = write_segment(factory, make_identity(segment_index=1), os.urandom(BODY_SIZE))
    else:
        other_factory = SpoolSinkFactory(
            tmp_path / "other-spool", make_keyring(tmp_path / "other"), chunk_size=SMALL_CHUNK
        )
        other = write_segment(
            other_factory, make_identity(recording_id="other"), os.urandom(BODY_SIZE)
        )
    if donor == "same-recording-other-segment":
        assert other.key_id == sealed.key_id  # same recording key, another data key
    else:
        assert other.key_id != sealed.key_id
    path = _path(sealed)
    spans, records = _records(path)
    _, foreign = _records(_path(other))
    records[3] = foreign[3]  # same position, same index: only the file differs
    _splice(path, spans, records)
    other_id = read_header(_path(other)).file_id_hex
    with pytest.raises(ChunkOrderError, match=f"chunk 3 .* belongs to file {other_id}.*spliced"):
        _read_all(path, keyring)


def test_spliced_chunk_with_forged_file_id_still_fails_authentication(
    factory: SpoolSinkFactory, sealed: SealedSegment, keyring: RecordingKeyring
) -> None:
    other = write_segment(factory, make_identity(segment_index=1), os.urandom(BODY_SIZE))
    path = _path(sealed)
    spans, records = _records(path)
    _, foreign = _records(_path(other))
    forged = bytearray(foreign[3])
    forged[: fmt.FILE_ID_SIZE] = read_header(path).file_id
    forged[fmt.FRAME_BODY_SIZE : fmt.FRAME_SIZE] = struct.pack(
        ">I", zlib.crc32(bytes(forged[: fmt.FRAME_BODY_SIZE]))
    )
    records[3] = bytes(forged)
    _splice(path, spans, records)
    with pytest.raises(DecryptionFailed, match=r"chunk 3 .* failed authentication"):
        _read_all(path, keyring)


@pytest.mark.parametrize("donor_recording", ["meeting/uuid+AbC==", "another-recording"])
def test_header_swapped_from_another_file(
    factory: SpoolSinkFactory,
    sealed: SealedSegment,
    keyring: RecordingKeyring,
    donor_recording: str,
) -> None:
    donor = write_segment(
        factory,
        make_identity(recording_id=donor_recording, segment_index=5),
        os.urandom(BODY_SIZE),
        prologue=b"RIFF5678",
    )
    path = _path(sealed)
    own = read_header(path)
    foreign = read_header(_path(donor))
    path.write_bytes(foreign.raw + path.read_bytes()[own.length :])
    with pytest.raises(HeaderMismatch, match="header was swapped in from another file"):
        _read_all(path, keyring)


def test_wrong_keyring_names_the_missing_key(tmp_path: Path, sealed: SealedSegment) -> None:
    stranger = make_keyring(tmp_path / "stranger")
    with pytest.raises(KeyNotFound, match=sealed.key_id):
        _read_all(_path(sealed), stranger)


def test_not_a_segment_at_all(tmp_path: Path, keyring: RecordingKeyring) -> None:
    path = tmp_path / "x.wav"
    for content in (b"RIFF" + bytes(200), b"RIFF....WAVE"):
        path.write_bytes(content)
        with pytest.raises(DecryptionFailed, match="bad magic"):
            _read_all(path, keyring)


def test_errors_are_distinct_classes() -> None:
    classes = {DecryptionFailed, TruncatedFile, ChunkOrderError, HeaderMismatch}
    assert all(issubclass(c, IntegrityError) for c in classes)
    assert len({c.exit_code for c in classes}) == 4
    for a in classes:
        for b in classes - {a}:
            assert not issubclass(a, b)
