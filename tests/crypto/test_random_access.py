"""Random access into sealed segments: any range equals the streaming reader's plaintext, and
every damage the streaming reader names is refused here too (before or at the read)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.random_access import SealedIndex
from recorder.crypto.reader import iter_plaintext
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import (
    ChunkOrderError,
    DecryptionFailed,
    KeyNotFound,
    LocalProtocolError,
    TruncatedFile,
)

from .conftest import SMALL_CHUNK, make_identity, make_keyring, record_spans

PROLOGUE = b"RIFF-prologue-44-bytes-of-a-wav-header......"


def _sealed(factory: SpoolSinkFactory, body: bytes, *, checkpoints: bool = False) -> Path:
    identity = make_identity()
    sink = factory.open(identity, prologue_size=len(PROLOGUE))
    for start in range(0, len(body), 37):
        sink.write(body[start : start + 37])
        if checkpoints and start % 3 == 0:
            sink.checkpoint()  # seals a short chunk: chunk lengths vary
    sealed = sink.close(PROLOGUE)
    assert sealed.path is not None
    return sealed.path


def _index(path: Path, keyring: RecordingKeyring) -> SealedIndex:
    return SealedIndex(io.BytesIO(path.read_bytes()), keyring, source=path.name)


BODY = os.urandom(SMALL_CHUNK * 9 + 17)


@pytest.fixture(scope="module")
def sealed_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("ra")
    keyring = make_keyring(root / "keys")
    factory = SpoolSinkFactory(root / "spool", keyring, chunk_size=SMALL_CHUNK)
    regular = _sealed(factory, BODY)
    factory2 = SpoolSinkFactory(root / "spool2", keyring, chunk_size=SMALL_CHUNK)
    varied = _sealed(factory2, BODY, checkpoints=True)
    return root, regular, varied


@settings(max_examples=150, deadline=None)
@given(a=st.integers(0, len(PROLOGUE) + len(BODY)), b=st.integers(0, len(PROLOGUE) + len(BODY)))
def test_any_range_equals_the_streamed_plaintext(
    sealed_files: tuple[Path, Path, Path], a: int, b: int
) -> None:
    root, regular, varied = sealed_files
    keyring = make_keyring(root / "keys")
    start, stop = min(a, b), max(a, b)
    for path in (regular, varied):
        whole = b"".join(iter_plaintext(path, keyring))
        index = _index(path, keyring)
        assert index.size == len(whole) == len(PROLOGUE) + len(BODY)
        assert index.read(start, stop) == whole[start:stop]


def test_checkpointed_chunks_are_indexed_by_their_own_lengths(
    sealed_files: tuple[Path, Path, Path],
) -> None:
    root, regular, varied = sealed_files
    keyring = make_keyring(root / "keys")
    assert _index(varied, keyring).chunk_count > _index(regular, keyring).chunk_count
    assert _index(regular, keyring).prologue == PROLOGUE


def test_a_read_outside_the_plaintext_is_refused(sealed_files: tuple[Path, Path, Path]) -> None:
    root, regular, _ = sealed_files
    index = _index(regular, make_keyring(root / "keys"))
    with pytest.raises(LocalProtocolError, match="outside"):
        index.read(0, index.size + 1)
    with pytest.raises(LocalProtocolError, match="outside"):
        index.read(5, 4)


def test_an_altered_chunk_fails_only_the_reads_that_touch_it(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    path = _sealed(factory, BODY)
    spans = record_spans(path)
    data = bytearray(path.read_bytes())
    offset, size = spans[4]
    data[offset + size - 20] ^= 0x01  # inside chunk 4's ciphertext
    index = SealedIndex(io.BytesIO(bytes(data)), keyring, source="x")
    whole = b"".join(iter_plaintext(path, keyring))
    chunk4 = len(PROLOGUE) + 4 * SMALL_CHUNK
    assert index.read(0, chunk4) == whole[:chunk4]  # before it: fine
    assert index.read(chunk4 + SMALL_CHUNK, index.size) == whole[chunk4 + SMALL_CHUNK :]
    with pytest.raises(DecryptionFailed, match=r"chunk 4 .* failed authentication"):
        index.read(chunk4 + 3, chunk4 + 4)


def test_swapped_chunks_fail_authentication_at_their_position(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    path = _sealed(factory, BODY)
    spans = record_spans(path)
    data = path.read_bytes()
    (o1, s1), (o2, s2) = spans[1], spans[2]
    # Swap the two chunks' ciphertexts but keep each frame where it was (frames still count
    # 0, 1, 2...): only the AEAD under the position's nonce can tell.
    c1, c2 = data[o1 + 32 : o1 + s1], data[o2 + 32 : o2 + s2]
    swapped = data[: o1 + 32] + c2 + data[o1 + s1 : o2 + 32] + c1 + data[o2 + s2 :]
    index = SealedIndex(io.BytesIO(swapped), keyring, source="x")
    with pytest.raises(DecryptionFailed):
        index.read(len(PROLOGUE) + SMALL_CHUNK, len(PROLOGUE) + SMALL_CHUNK + 1)


def test_truncated_extended_and_reordered_files_are_refused_before_any_read(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    path = _sealed(factory, BODY)
    data = path.read_bytes()
    spans = record_spans(path)
    last_offset, _ = spans[-1]
    with pytest.raises(TruncatedFile, match="without a final chunk"):
        SealedIndex(io.BytesIO(data[:last_offset]), keyring, source="x")
    with pytest.raises(TruncatedFile, match="cut short"):
        SealedIndex(io.BytesIO(data[:-3]), keyring, source="x")
    with pytest.raises(ChunkOrderError, match="after the final chunk"):
        SealedIndex(io.BytesIO(data + b"\0" * 40), keyring, source="x")
    (o1, s1), (o2, s2) = spans[1], spans[2]
    reordered = data[:o1] + data[o2 : o2 + s2] + data[o1 : o1 + s1] + data[o2 + s2 :]
    with pytest.raises(ChunkOrderError, match="claims index 2"):
        SealedIndex(io.BytesIO(reordered), keyring, source="x")


def test_a_foreign_key_or_an_altered_header_is_refused(
    tmp_path: Path, factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    path = _sealed(factory, BODY)
    other = make_keyring(tmp_path / "other-keys")
    with pytest.raises(KeyNotFound, match="not found in key store"):
        SealedIndex(io.BytesIO(path.read_bytes()), other, source="x")
    data = bytearray(path.read_bytes())
    data[30] ^= 0x01  # inside the header's salt
    with pytest.raises(DecryptionFailed, match="header checksum"):
        SealedIndex(io.BytesIO(bytes(data)), keyring, source="x")
