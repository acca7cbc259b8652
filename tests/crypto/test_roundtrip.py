"""Writer -> reader round trips: byte-exact for every shape of segment."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import stat
import time
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.crypto import _format as fmt
from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.reader import SegmentReader, digest_segment, iter_plaintext, read_header
from recorder.crypto.writer import (
    SPARE_DIR,
    EncryptedSegmentWriter,
    SpoolSinkFactory,
    WriterState,
    segment_file_name,
)
from recorder.errors import HeaderMismatch, LocalProtocolError, StorageError
from recorder.sink import EvidenceSink, SegmentIdentity, SinkFactory

from .conftest import SMALL_CHUNK, make_identity, record_spans, write_segment

WAV_LIKE_PROLOGUE = b"RIFF" + bytes(range(40))
#: Hypothesis examples share one spool directory: every example gets its own segment name.
_SEGMENT_NUMBERS = itertools.count()


@pytest.mark.parametrize(
    ("body_size", "prologue"),
    [
        (0, b""),
        (0, WAV_LIKE_PROLOGUE),
        (SMALL_CHUNK, b""),
        (SMALL_CHUNK - 1, WAV_LIKE_PROLOGUE),
        (SMALL_CHUNK + 1, WAV_LIKE_PROLOGUE),
        (SMALL_CHUNK * 37 + 5, WAV_LIKE_PROLOGUE),
    ],
    ids=["empty", "empty-with-prologue", "one-chunk", "short", "chunk-plus-one", "many"],
)
def test_round_trip_is_byte_exact(
    factory: SpoolSinkFactory, keyring: RecordingKeyring, body_size: int, prologue: bytes
) -> None:
    body = os.urandom(body_size)
    identity = make_identity()
    sealed = write_segment(factory, identity, body, prologue=prologue)

    assert sealed.path is not None
    plaintext = b"".join(iter_plaintext(sealed.path, keyring, expect=identity))
    assert plaintext == prologue + body
    assert sealed.plaintext_size == len(prologue) + len(body)
    assert sealed.sha256 == hashlib.sha256(prologue + body).hexdigest()
    assert sealed.stored_size == sealed.path.stat().st_size
    assert sealed.key_id == read_header(sealed.path).key_id
    assert not sealed.recovered
    # The reader yields the prologue first, as its own piece.
    if prologue:
        assert next(iter(iter_plaintext(sealed.path, keyring))) == prologue


def test_no_plaintext_in_the_sealed_file(factory: SpoolSinkFactory) -> None:
    marker = b"THIS-IS-PLAINTEXT-AUDIO-" * 20
    sealed = write_segment(factory, make_identity(), marker, prologue=b"RIFFWAVEfmt ")
    assert sealed.path is not None
    stored = sealed.path.read_bytes()
    assert b"PLAINTEXT" not in stored
    assert b"RIFFWAVE" not in stored


def test_sealing_reports_the_digest_and_size_of_the_stored_file(
    factory: SpoolSinkFactory,
) -> None:
    sealed = write_segment(factory, make_identity(), b"audio" * 5_000, prologue=b"RIFF")
    assert sealed.path is not None
    stored = sealed.path.read_bytes()
    assert sealed.stored_sha256 == hashlib.sha256(stored).hexdigest()
    assert sealed.stored_size == len(stored)


def test_sealed_file_and_part_are_private(factory: SpoolSinkFactory) -> None:
    sink = factory.open(make_identity(), prologue_size=0)
    assert isinstance(sink.part_path, Path)
    assert stat.S_IMODE(sink.part_path.stat().st_mode) == 0o600
    sealed = sink.close()
    assert sealed.path is not None
    assert not sink.part_path.exists()
    assert stat.S_IMODE(sealed.path.stat().st_mode) == 0o600


def test_checkpoint_seals_short_chunks_that_still_round_trip(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    sink = factory.open(make_identity(), prologue_size=0)
    pieces = [os.urandom(n) for n in (10, 1, 63, 64, 65, 200, 3)]
    for piece in pieces:
        sink.write(piece)
        sink.checkpoint()
    sink.checkpoint()  # nothing pending: must not add an empty chunk
    sealed = sink.close()
    assert sealed.path is not None
    assert b"".join(iter_plaintext(sealed.path, keyring)) == b"".join(pieces)
    lengths = [size - fmt.RECORD_OVERHEAD for _, size in record_spans(sealed.path)]
    assert max(lengths) <= SMALL_CHUNK
    assert lengths[-1] == 0  # the final chunk, sealed by close() after a checkpoint
    assert 0 not in lengths[:-1]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    writes=st.lists(st.integers(min_value=0, max_value=300), max_size=40),
    checkpoint_every=st.integers(min_value=0, max_value=7),
    chunk_size=st.integers(min_value=fmt.MIN_CHUNK_SIZE, max_value=200),
    prologue_size=st.integers(min_value=0, max_value=64),
)
def test_random_write_sequences_round_trip(
    tmp_path: Path,
    keyring: RecordingKeyring,
    writes: list[int],
    checkpoint_every: int,
    chunk_size: int,
    prologue_size: int,
) -> None:
    factory = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=chunk_size)
    identity = make_identity(segment_index=next(_SEGMENT_NUMBERS))
    sink = factory.open(identity, prologue_size=prologue_size)
    expected = bytearray()
    for number, size in enumerate(writes, start=1):
        piece = os.urandom(size)
        sink.write(piece)
        expected += piece
        assert sink.pending_bytes < chunk_size  # never more than one chunk of plaintext
        if checkpoint_every and number % checkpoint_every == 0:
            sink.checkpoint()
    assert sink.body_size == len(expected)
    prologue = os.urandom(prologue_size)
    sealed = sink.close(prologue)
    assert sealed.path is not None
    assert b"".join(iter_plaintext(sealed.path, keyring, expect=identity)) == prologue + expected
    assert sealed.sha256 == hashlib.sha256(prologue + expected).hexdigest()


def test_reader_accepts_a_file_object_and_reports_digest(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    body = os.urandom(1000)
    sealed = write_segment(factory, make_identity(), body, prologue=b"HEAD")
    assert sealed.path is not None
    stream = io.BytesIO(sealed.path.read_bytes())
    assert b"".join(iter_plaintext(stream, keyring)) == b"HEAD" + body
    digest = digest_segment(sealed.path, keyring)
    assert digest.sha256 == sealed.sha256
    assert digest.plaintext_size == 1004
    assert digest.body_chunks == len(record_spans(sealed.path))
    assert not digest.recovered


def test_read_header_needs_no_key(factory: SpoolSinkFactory) -> None:
    identity = make_identity(track="user-42", segment_index=7)
    sealed = write_segment(factory, identity, b"x" * 10, prologue=b"PRO")
    assert sealed.path is not None
    header = read_header(sealed.path)
    assert header.identity == identity
    assert header.prologue_size == 3
    assert header.chunk_size == SMALL_CHUNK
    assert header.key_id == sealed.key_id


def test_expect_mismatch_is_a_header_mismatch(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    sealed = write_segment(factory, make_identity(segment_index=1), b"abc")
    assert sealed.path is not None
    with pytest.raises(HeaderMismatch, match="expected recording"):
        list(iter_plaintext(sealed.path, keyring, expect=make_identity(segment_index=2)))


def test_sink_protocol_conformance_and_misuse(factory: SpoolSinkFactory) -> None:
    sink_factory: SinkFactory = factory
    sink: EvidenceSink = sink_factory.open(make_identity(), prologue_size=4)
    sink.write(b"data")
    with pytest.raises(LocalProtocolError, match="prologue is 3 bytes"):
        sink.close(b"abc")
    sink.close(b"abcd")
    with pytest.raises(LocalProtocolError, match="closed"):
        sink.write(b"more")
    with pytest.raises(LocalProtocolError, match="closed"):
        sink.close(b"abcd")


def test_an_unwritten_segment_can_be_discarded_a_written_one_never(
    factory: SpoolSinkFactory,
) -> None:
    spare = factory.open_spare(make_identity(segment_index=1), prologue_size=4)
    # A spare waits where crash recovery does not look.
    assert spare.part_path.parent == factory.directory / SPARE_DIR
    spare.discard()
    assert spare.state is WriterState.DISCARDED
    assert not spare.part_path.exists()
    assert list(factory.directory.glob("*.part")) == []
    written = factory.open(make_identity(segment_index=2), prologue_size=4)
    written.write(b"evidence")
    with pytest.raises(LocalProtocolError, match="refusing to discard"):
        written.discard()
    assert written.part_path.exists()
    written.close(b"abcd")


def test_an_adopted_spare_is_where_recovery_finds_it_and_seals_like_any_segment(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    spare = factory.open_spare(make_identity(segment_index=3), prologue_size=4)
    spare.adopt()
    assert spare.part_path.parent == factory.directory
    spare.write(b"after adoption")
    spare.checkpoint()
    sealed = spare.close(b"abcd")
    assert sealed.path is not None
    assert b"".join(iter_plaintext(sealed.path, keyring)) == b"abcdafter adoption"
    with pytest.raises(LocalProtocolError, match="refusing to discard"):
        spare.discard()


def test_stale_spares_of_a_crashed_process_leave_no_empty_segment(
    tmp_path: Path, keyring: RecordingKeyring
) -> None:
    first = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=SMALL_CHUNK)
    header_only = first.open_spare(make_identity(segment_index=4), prologue_size=4)
    adopted_then_crashed = first.open_spare(make_identity(segment_index=5), prologue_size=4)
    # A crash undid the adoption's rename after data was written and fsynced.
    adopted_then_crashed.write(b"x" * 200)
    adopted_then_crashed.checkpoint()
    live = first.open_spare(make_identity(segment_index=6), prologue_size=4)
    for crashed in (header_only, adopted_then_crashed):
        os.close(crashed._fd)  # the process died: its locks are gone
    # ... a while ago (a header-only spare younger than the grace may be a live writer's).
    old = time.time() - 60
    os.utime(header_only.part_path, (old, old))
    second = SpoolSinkFactory(tmp_path / "spool", keyring, chunk_size=SMALL_CHUNK)
    spares = sorted(p.name for p in (second.directory / SPARE_DIR).iterdir())
    # The live process's spare is left alone; the header-only one is gone.
    assert spares == [live.part_path.name]
    moved = second.directory / adopted_then_crashed.part_path.name
    assert moved.exists(), "the spare holding data is back where recovery finds it"
    live.discard()


def test_segment_names_are_safe_deterministic_and_never_reused(
    factory: SpoolSinkFactory,
) -> None:
    identity = make_identity(recording_id="../../etc/pass wd+/=.", track="user-1/2")
    name = segment_file_name(identity)
    assert name == segment_file_name(identity)
    assert "/" not in name
    assert not name.startswith(".")
    long_name = segment_file_name(make_identity(recording_id="x" * 1000))
    assert len(long_name) < 200
    sealed = write_segment(factory, identity, b"abc")
    assert sealed.path is not None
    assert sealed.path.parent == factory.directory
    with pytest.raises(StorageError, match="refusing to overwrite"):
        factory.open(identity)


def test_needs_checkpoint_follows_the_interval(tmp_path: Path, keyring: RecordingKeyring) -> None:
    factory = SpoolSinkFactory(tmp_path / "spool", keyring, checkpoint_interval_s=1.0)
    sink = factory.open(make_identity())
    assert not sink.needs_checkpoint(100.0)  # anchors the interval
    sink.write(b"a")
    assert not sink.needs_checkpoint(100.5)
    assert sink.needs_checkpoint(101.0)
    sink.checkpoint()
    assert not sink.needs_checkpoint(101.5)
    assert not sink.needs_checkpoint(103.0)  # nothing new: nothing to seal
    sink.write(b"b")
    assert sink.needs_checkpoint(103.1)  # old interval long over: at once
    sink.checkpoint()
    sealed = sink.close()
    assert sealed.plaintext_size == 2
    assert sink.state is WriterState.CLOSED


def _failed_by_fsync(
    factory: SpoolSinkFactory, monkeypatch: pytest.MonkeyPatch, step: str, error: str
) -> EncryptedSegmentWriter:
    """A segment with some evidence whose ``step`` (close or checkpoint) hit a failing fsync."""
    sink = factory.open(make_identity())
    sink.write(b"evidence")

    def refuse(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(StorageError, match=error):
        getattr(sink, step)()
    monkeypatch.undo()
    assert sink.state is WriterState.FAILED
    return sink


def test_a_checkpoint_after_a_failed_seal_raises_naming_the_file(
    factory: SpoolSinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint may run beside the seal of its segment (the shared checkpoint ticker):
    when that seal's fsync failed, the checkpoint must not return as if the bytes were
    durable."""
    sink = _failed_by_fsync(factory, monkeypatch, "close", "cannot seal")
    with pytest.raises(StorageError, match="cannot checkpoint failed segment") as caught:
        sink.checkpoint()
    assert sink.part_path.name in str(caught.value)


def test_a_write_after_a_failed_checkpoint_raises_its_storage_error(
    factory: SpoolSinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint ticker fsyncs in a worker thread while the owner goes on writing: the
    owner's next write must raise why the segment failed, naming it, not a protocol error."""
    sink = _failed_by_fsync(factory, monkeypatch, "checkpoint", "cannot fsync")
    with pytest.raises(StorageError, match="cannot fsync") as caught:
        sink.write(b"more")
    assert sink.part_path.name in str(caught.value)


def test_reader_iterates_once(factory: SpoolSinkFactory, keyring: RecordingKeyring) -> None:
    sealed = write_segment(factory, make_identity(), b"abc")
    assert sealed.path is not None
    with SegmentReader(sealed.path, keyring) as reader:
        assert b"".join(reader) == b"abc"
        with pytest.raises(LocalProtocolError):
            list(reader)


def test_identity_metadata_is_validated(factory: SpoolSinkFactory) -> None:
    bad = SegmentIdentity("r", "mixed", 0, 0, metadata={"x": float("nan")})
    with pytest.raises(LocalProtocolError, match="finite"):
        factory.open(bad)


async def test_writes_on_the_trio_thread_with_checkpoints_in_a_worker_thread(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    """The pipeline's real shape: ``write`` inline, ``checkpoint`` via ``trio.to_thread``."""
    with trio.fail_after(30):
        sink = await factory.open_async(make_identity(), prologue_size=4)
    pieces = [os.urandom(n % 97 + 1) for n in range(2000)]
    done = trio.Event()

    async def checkpoints() -> None:
        while not done.is_set():
            await trio.to_thread.run_sync(sink.checkpoint)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(checkpoints)
            for number, piece in enumerate(pieces):
                sink.write(piece)
                if number % 10 == 0:
                    await trio.lowlevel.checkpoint()
            done.set()
        sealed = await trio.to_thread.run_sync(sink.close, b"WAVE")
    assert sealed.path is not None
    assert b"".join(iter_plaintext(sealed.path, keyring)) == b"WAVE" + b"".join(pieces)


def test_bench_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from recorder.bench.crypto import run

    run(megabytes=1, directory=tmp_path)
    out = capsys.readouterr().out
    assert out.count("MB/s") >= 6
    assert "checkpoint" in out


def test_unwritable_spool_is_a_storage_error(factory: SpoolSinkFactory) -> None:
    (factory.directory / SPARE_DIR).rmdir()
    factory.directory.rmdir()
    factory.directory.write_bytes(b"not a directory")  # ENOTDIR, even for root
    with pytest.raises(StorageError, match="cannot create"):
        factory.open(make_identity())
