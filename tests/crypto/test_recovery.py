"""Crash recovery: torn tails, empty prologue slots, and a writer killed with SIGKILL."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from recorder.crypto import _format as fmt
from recorder.crypto._format import SegmentHeader
from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.reader import SegmentReader, iter_plaintext, read_header
from recorder.crypto.recovery import (
    QUARANTINE_DIR,
    REASON_SUFFIX,
    PrologueStatus,
    RecoveryFailure,
    RecoveryReport,
    WriterStillAlive,
    recover,
    recover_directory,
)
from recorder.crypto.writer import SpoolSinkFactory
from recorder.errors import LocalProtocolError, StorageError, TruncatedFile

from . import writer_child
from .conftest import SMALL_CHUNK, make_identity, make_keyring, record_spans, write_segment

CHILD = Path(__file__).with_name("writer_child.py")


def wav_header(header: SegmentHeader, body_size: int) -> bytes:
    """The kind of builder the audio code passes: reads the rate from the header metadata."""
    rate = int(str(header.identity.metadata["sample_rate"]))
    return (
        b"RIFF"
        + struct.pack("<I", 36 + body_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", body_size)
    )


def _unfinished(factory: SpoolSinkFactory, body: bytes, *, checkpoint: bool = True) -> Path:
    """A .part file as a dead writer leaves it (the writer object is simply abandoned)."""
    sink = factory.open(make_identity(), prologue_size=44)
    sink.write(body)
    if checkpoint:
        sink.checkpoint()
    part: Path = sink.part_path
    os.close(sink._fd)  # the process died: its descriptor is gone; nothing else is done
    return part


def test_recover_after_a_checkpoint_keeps_every_byte(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    body = os.urandom(SMALL_CHUNK * 5 + 17)
    part = _unfinished(factory, body)
    with pytest.raises(TruncatedFile, match="prologue slot is empty"):
        list(iter_plaintext(part, keyring))

    report = recover(part, keyring, wav_header)

    assert not part.exists()
    path = report.sealed.path
    assert path is not None
    assert path.name == part.name.removesuffix(".part")
    plaintext = b"".join(iter_plaintext(path, keyring, expect=make_identity()))
    assert plaintext[44:] == body
    assert plaintext[:44] == wav_header(read_header(path), len(body))
    assert report.body_bytes_recovered == len(body)
    assert report.chunks_recovered == 6
    assert report.torn_bytes_discarded == 0
    assert report.stop_reason is None
    assert report.prologue is PrologueStatus.REBUILT
    assert report.final_chunk_added
    assert not report.was_complete
    assert report.sealed.recovered
    assert report.sealed.plaintext_size == len(plaintext)
    with SegmentReader(path, keyring) as reader:
        b"".join(reader)
        assert reader.recovered  # the file itself says so, authenticated


@pytest.mark.parametrize("cut_into_last_record", [1, fmt.FRAME_SIZE - 1, fmt.FRAME_SIZE + 3, -1])
def test_torn_tail_is_discarded_and_counted(
    factory: SpoolSinkFactory, keyring: RecordingKeyring, cut_into_last_record: int
) -> None:
    body = os.urandom(SMALL_CHUNK * 4)
    part = _unfinished(factory, body)
    spans = record_spans(part)
    last_offset, last_size = spans[-1]
    cut = last_offset + cut_into_last_record % last_size
    with open(part, "r+b") as handle:
        handle.truncate(cut)

    report = recover(part, keyring, wav_header)

    kept = SMALL_CHUNK * (len(spans) - 1)
    assert report.body_bytes_recovered == kept
    assert report.chunks_recovered == len(spans) - 1
    assert report.torn_bytes_discarded == cut - last_offset
    assert report.stop_reason is not None
    assert str(last_offset) in report.stop_reason
    assert report.sealed.path is not None
    assert b"".join(iter_plaintext(report.sealed.path, keyring))[44:] == body[:kept]


def test_garbage_tail_is_discarded(factory: SpoolSinkFactory, keyring: RecordingKeyring) -> None:
    body = os.urandom(100)
    part = _unfinished(factory, body)
    with open(part, "ab") as handle:
        handle.write(os.urandom(333))
    report = recover(part, keyring, wav_header)
    assert report.torn_bytes_discarded == 333
    assert report.body_bytes_recovered == 100
    assert "fails authentication" in (report.stop_reason or "") or "frame" in (
        report.stop_reason or ""
    )


def test_without_a_builder_the_prologue_is_zero_filled_and_reported(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    part = _unfinished(factory, b"abc")
    report = recover(part, keyring)
    assert report.prologue is PrologueStatus.ZERO_FILLED
    assert report.sealed.path is not None
    assert b"".join(iter_plaintext(report.sealed.path, keyring)) == bytes(44) + b"abc"


def test_a_writer_that_died_after_sealing_is_reported_complete(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    sealed = write_segment(factory, make_identity(), b"x" * 300, prologue=b"P" * 44)
    assert sealed.path is not None
    part = sealed.path.with_name(sealed.path.name + ".part")
    sealed.path.rename(part)  # died between the last fsync and the rename
    report = recover(part, keyring, wav_header)
    assert report.was_complete
    assert report.prologue is PrologueStatus.INTACT
    assert report.sealed.sha256 == sealed.sha256


def test_a_torn_prologue_write_is_replaced_under_a_fresh_nonce(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    part = _unfinished(factory, b"y" * 200)
    header = read_header(part)
    with open(part, "r+b") as handle:  # half a prologue record, as a crash inside close()
        handle.seek(header.length)
        handle.write(os.urandom(30))
    report = recover(part, keyring, wav_header)
    assert report.prologue_slot_was_torn
    assert report.prologue is PrologueStatus.REBUILT
    assert report.sealed.path is not None
    assert b"".join(iter_plaintext(report.sealed.path, keyring))[44:] == b"y" * 200


def test_recovery_refuses_to_overwrite_and_needs_a_part_file(
    factory: SpoolSinkFactory, keyring: RecordingKeyring, tmp_path: Path
) -> None:
    part = _unfinished(factory, b"abc")
    final = part.with_name(part.name.removesuffix(".part"))
    final.write_bytes(b"someone else's")
    with pytest.raises(StorageError, match="exists already"):
        recover(part, keyring)
    with pytest.raises(LocalProtocolError):
        recover(final, keyring)


def test_recover_directory_reports_each_file(
    tmp_path: Path, factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    good = _unfinished(factory, b"abc")
    torn_header = factory.directory / "torn.rtmsenc.part"
    torn_bytes = good.read_bytes()[:50]
    torn_header.write_bytes(torn_bytes)
    results = recover_directory(factory.directory, keyring, wav_header)
    by_path = {r.part_path: r for r in results}
    assert isinstance(by_path[good], RecoveryReport)
    failure = by_path[torn_header]
    assert isinstance(failure, RecoveryFailure)
    assert isinstance(failure.error, TruncatedFile)
    assert "nothing to recover" in str(failure.error)
    # Never deleted: moved unchanged into quarantine, with the reason beside it.
    assert not torn_header.exists()
    assert failure.quarantined == factory.directory / QUARANTINE_DIR / torn_header.name
    assert failure.quarantined.read_bytes() == torn_bytes
    note = json.loads(failure.quarantined.with_name(torn_header.name + REASON_SUFFIX).read_text())
    assert "nothing to recover" in note["reason"]
    assert note["error"] == "TruncatedFile"
    # A second start finds nothing left to do.
    assert recover_directory(factory.directory, keyring, wav_header) == []


async def _read_lines(stream: trio.abc.ReceiveStream, lines: list[str], enough: trio.Event) -> None:
    buffer = b""
    while True:
        data = await stream.receive_some(4096)
        if not data:
            return
        buffer += data
        *complete, buffer = buffer.split(b"\n")
        lines.extend(line.decode() for line in complete)
        if sum(line.startswith("checkpointed") for line in lines) >= 4:
            enough.set()


async def test_sigkilled_writer_loses_at_most_the_last_checkpoint_interval(
    tmp_path: Path,
) -> None:
    keys_root = tmp_path / "keys"
    spool = tmp_path / "spool"
    lines: list[str] = []
    enough = trio.Event()
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, str(CHILD), str(keys_root), str(spool), "0.2"],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        assert process.stdout is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_lines, process.stdout, lines, enough)
            await enough.wait()
            process.kill()  # SIGKILL: no cleanup of any kind runs in the child
            await process.wait()
        assert process.returncode == -9
    assert "finished" not in lines
    part = Path(lines[0].removeprefix("ready "))
    checkpointed = max(int(line.split()[1]) for line in lines if line.startswith("checkpointed"))

    keyring = make_keyring(keys_root)
    report = recover(part, keyring, wav_header)

    assert report.sealed.path is not None
    plaintext = b"".join(iter_plaintext(report.sealed.path, keyring))
    body = plaintext[writer_child.PROLOGUE_SIZE :]
    expected = random.Random(writer_child.SEED).randbytes(writer_child.TOTAL)
    assert len(body) >= checkpointed  # everything checkpointed before the kill is there
    assert body == expected[: len(body)]  # and nothing else: byte-exact prefix
    assert report.body_bytes_recovered == len(body)
    assert report.sealed.plaintext_size == len(plaintext)
    assert plaintext[: writer_child.PROLOGUE_SIZE] == wav_header(
        read_header(report.sealed.path), len(body)
    )
    assert report.prologue is PrologueStatus.REBUILT


def test_a_live_writers_file_is_never_recovered(
    factory: SpoolSinkFactory, keyring: RecordingKeyring
) -> None:
    live = factory.open(make_identity(segment_index=8), prologue_size=0)
    live.write(b"still recording")
    live.checkpoint()
    with pytest.raises(WriterStillAlive, match="live writer"):
        recover(live.part_path, keyring)
    assert recover_directory(factory.directory, keyring) == []
    sealed = live.close()  # the writer carries on, unharmed
    assert sealed.path is not None
    assert b"".join(iter_plaintext(sealed.path, keyring)) == b"still recording"
