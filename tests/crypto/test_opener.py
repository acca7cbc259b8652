"""The sans-IO opener against the reader: fed the same stored bytes in any pieces, it gives the
same plaintext, or fails with the same error class, and never commits an unauthenticated byte."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.crypto._format import SegmentHeader
from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.opener import SegmentOpener
from recorder.crypto.reader import iter_plaintext
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import HeaderMismatch, IntegrityError, TruncatedFile

from .conftest import SMALL_CHUNK, make_identity, make_keyring, write_segment

PROLOGUE = b"RIFF" + bytes(range(40))
BODY = os.urandom(SMALL_CHUNK * 9 + 17)


class Collect:
    """A ``PlaintextSink`` keeping what was committed; reserved bytes are poisoned first, so a
    committed byte that was not decrypted into place would show."""

    def __init__(self) -> None:
        self.prologue_bytes = b""
        self.body = bytearray()
        self._slot = bytearray()

    def prologue(self, plaintext: bytes) -> None:
        assert not self.body
        self.prologue_bytes = plaintext

    def reserve(self, size: int) -> memoryview:
        self._slot = bytearray(b"\xee" * size)
        return memoryview(self._slot)

    def commit(self, size: int) -> None:
        self.body += self._slot[:size]


def open_in_pieces(
    data: bytes, keyring: RecordingKeyring, cuts: list[int], sink: Collect
) -> SegmentOpener:
    opener = SegmentOpener(sink, keyring, source="object-7")
    edges = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(edges):
        opener.feed(data[start:end])
    opener.finish()
    return opener


@pytest.fixture(scope="module")
def sealed_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("opener")
    keyring = make_keyring(root / "keys")
    factory = SpoolSinkFactory(root / "spool", keyring, chunk_size=SMALL_CHUNK)
    sealed = write_segment(factory, make_identity(), BODY, prologue=PROLOGUE)
    assert sealed.path is not None
    return sealed.path, root / "keys"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_of_the_stored_bytes_gives_the_sealed_plaintext(
    sealed_file: tuple[Path, Path], cuts: list[int]
) -> None:
    path, keys = sealed_file
    sink = Collect()
    opener = open_in_pieces(path.read_bytes(), make_keyring(keys), cuts, sink)
    assert (sink.prologue_bytes, bytes(sink.body)) == (PROLOGUE, BODY)
    assert opener.done
    assert opener.body_chunks == len(BODY) // SMALL_CHUNK + 1
    assert opener.plaintext_size == len(PROLOGUE) + len(BODY)


def reader_error(data: bytes, keyring: RecordingKeyring, tmp: Path) -> type[Exception] | None:
    damaged = tmp / "damaged.rec"
    damaged.write_bytes(data)
    try:
        b"".join(iter_plaintext(damaged, keyring))
    except IntegrityError as exc:
        return type(exc)
    return None


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.integers(min_value=0, max_value=100_000),
    damage=st.sampled_from(["flip", "truncate", "append", "duplicate-chunk"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
)
def test_damaged_bytes_fail_as_the_reader_fails_and_nothing_unauthentic_is_committed(
    sealed_file: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    where: int,
    damage: str,
    cuts: list[int],
) -> None:
    path, keys = sealed_file
    keyring = make_keyring(keys)
    data = bytearray(path.read_bytes())
    at = where % len(data)
    if damage == "flip":
        data[at] ^= 0x01 << (where % 8)
    elif damage == "truncate":
        del data[at:]
    elif damage == "append":
        data += b"\x00" * (1 + where % 70)
    else:
        chunk = SMALL_CHUNK + 48
        data[-chunk:-chunk] = data[-2 * chunk : -chunk]
    expected = reader_error(bytes(data), keyring, tmp_path_factory.mktemp("damaged"))
    sink = Collect()
    if expected is None:  # a flip in bytes nothing reads (the prologue slot's padding)
        open_in_pieces(bytes(data), keyring, cuts, sink)
        assert bytes(sink.body) == BODY
        return
    with pytest.raises(IntegrityError) as caught:
        open_in_pieces(bytes(data), keyring, cuts, sink)
    assert type(caught.value) is expected
    assert "object-7" in str(caught.value)
    # What was committed before the failure is a true prefix of the sealed body.
    assert BODY.startswith(bytes(sink.body))


def test_the_header_check_refuses_before_any_plaintext(sealed_file: tuple[Path, Path]) -> None:
    path, keys = sealed_file
    sink = Collect()

    def refuse(header: SegmentHeader) -> None:
        raise HeaderMismatch(f"segment {header.identity.segment_index} is not the catalog's")

    opener = SegmentOpener(sink, make_keyring(keys), source="object-7", check_header=refuse)
    with pytest.raises(HeaderMismatch, match="not the catalog's"):
        opener.feed(path.read_bytes())
    assert (sink.prologue_bytes, bytes(sink.body)) == (b"", b"")


def test_an_empty_object_is_a_truncated_file(sealed_file: tuple[Path, Path]) -> None:
    _, keys = sealed_file
    opener = SegmentOpener(Collect(), make_keyring(keys), source="object-7")
    opener.feed(b"")
    with pytest.raises(TruncatedFile, match="object-7: file ends inside the header"):
        opener.finish()
