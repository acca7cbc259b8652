"""Shared helpers for the crypto tests: real key directories, real files on tmp_path."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from recorder.crypto import _format as fmt
from recorder.crypto.keyring import DirectoryRecordingKeyStore, RecordingKeyring
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.reader import read_header
from recorder.crypto.writer import SpoolSinkFactory
from recorder.sink import SealedSegment, SegmentIdentity

#: Small chunks so a few kilobytes make many chunks.
SMALL_CHUNK = 64


def make_identity(
    recording_id: str = "meeting/uuid+AbC==", track: str = "mixed", segment_index: int = 0
) -> SegmentIdentity:
    return SegmentIdentity(
        recording_id=recording_id,
        track=track,
        segment_index=segment_index,
        created_ms=1_763_700_000_000 + segment_index,
        metadata={"codec": "L16", "sample_rate": 16000, "channels": 1, "note": None},
    )


def make_keyring(root: Path) -> RecordingKeyring:
    return RecordingKeyring(
        DirectoryRecordingKeyStore(root / "recording-keys"),
        provider=LocalKeyProvider(root / "kek"),
    )


@pytest.fixture
def keyring(tmp_path: Path) -> RecordingKeyring:
    return make_keyring(tmp_path / "keys")


@pytest.fixture
def factory(tmp_path: Path, keyring: RecordingKeyring) -> SpoolSinkFactory:
    return SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=SMALL_CHUNK)


def write_segment(
    factory: SpoolSinkFactory,
    identity: SegmentIdentity,
    body: bytes,
    *,
    prologue: bytes = b"",
    piece: int = 50,
) -> SealedSegment:
    sink = factory.open(identity, prologue_size=len(prologue))
    for start in range(0, len(body), piece):
        sink.write(body[start : start + piece])
    return sink.close(prologue)


def record_spans(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every body record in a sealed file, in file order."""
    header = read_header(path)
    data = path.read_bytes()
    spans = []
    offset = header.body_offset
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset + 20)
        size = fmt.FRAME_SIZE + length + fmt.TAG_SIZE
        spans.append((offset, size))
        offset += size
    return spans
