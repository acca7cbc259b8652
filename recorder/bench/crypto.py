"""Throughput of the sealed-segment writer and reader: ``python -m recorder.bench.crypto``.

Prints MB/s (10**6 bytes per second of one core's wall time) for:

* the writer fed 64 KiB writes (bytes-bound) and 640 B writes (one 20 ms L16 message each,
  the shape the pipeline really produces), with a checkpoint (seal + fsync) every second of
  audio-equivalent bytes;
* ``close()``, most of which is the read-back that decrypts and hashes the file;
* the reader (decrypt + verify every chunk);
* crash recovery of a ``.part`` (re-sealed into a new file), intact and with one bit flipped in
  chunk 2 (skipped, resynchronised, zero-filled).

Files go to a temporary directory on the same file system as ``$TMPDIR``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from recorder.crypto.keyring import DirectoryRecordingKeyStore, RecordingKeyring
from recorder.crypto.keys.local import LocalKeyProvider
from recorder.crypto.reader import SegmentReader, read_header
from recorder.crypto.recovery import recover
from recorder.crypto.writer import SpoolSinkFactory
from recorder.sink import SegmentIdentity

_MB = 1_000_000
#: Bytes of 16 kHz mono PCM16 per second: checkpoint cadence in the "pipeline" shape.
_L16_BYTES_PER_SECOND = 32_000


def _write(
    factory: SpoolSinkFactory, identity: SegmentIdentity, total: int, piece: int
) -> tuple[float, float, Path]:
    """Writes only (no checkpoints): the cost the trio thread pays per ``write``."""
    payload = os.urandom(piece)
    sink = factory.open(identity, prologue_size=44)
    start = time.perf_counter()
    written = 0
    while written < total:
        sink.write(payload)
        written += piece
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    sealed = sink.close(bytes(44))
    close_s = time.perf_counter() - start
    assert sealed.path is not None
    return write_s, close_s, sealed.path


def _checkpoints(factory: SpoolSinkFactory, identity: SegmentIdentity, count: int) -> float:
    """Mean seconds per ``checkpoint()`` after one second of 16 kHz L16 in 20 ms writes."""
    payload = os.urandom(640)
    sink = factory.open(identity, prologue_size=44)
    spent = 0.0
    for _ in range(count):
        for _ in range(_L16_BYTES_PER_SECOND // 640):
            sink.write(payload)
        start = time.perf_counter()
        sink.checkpoint()
        spent += time.perf_counter() - start
    sink.close(bytes(44))
    return spent / count


def _read(path: Path, keyring: RecordingKeyring) -> tuple[float, int]:
    start = time.perf_counter()
    size = 0
    with SegmentReader(path, keyring) as reader:
        for piece in reader:
            size += len(piece)
    return time.perf_counter() - start, size


def _recover(
    factory: SpoolSinkFactory, keyring: RecordingKeyring, index: int, total: int, *, flip: bool
) -> tuple[float, int]:
    """Seconds to recover an abandoned ``.part`` of ``total`` body bytes; chunks recovered."""
    sink = factory.open(SegmentIdentity("bench", "mixed", index, int(time.time() * 1000)))
    sink.write(os.urandom(total))
    sink.checkpoint()
    part = sink.part_path
    os.close(sink._fd)  # the writer "died"
    if flip:
        header = read_header(part)
        offset = header.body_offset + 2 * (64 * 1024 + 48) + 100
        with open(part, "r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes((byte[0] ^ 1,)))
    start = time.perf_counter()
    report = recover(part, keyring, zero_fill_holes=lambda header: True)
    spent = time.perf_counter() - start
    assert report.sealed.path is not None
    report.sealed.path.unlink()
    return spent, report.chunks_recovered


def run(*, megabytes: int = 256, directory: Path | None = None) -> None:
    """Write, close and read one segment of ``megabytes`` MB per write shape; print MB/s.

    ``directory`` picks the file system (default ``$TMPDIR``); on a tmpfs such as ``/dev/shm``
    the numbers show the crypto cost without the disk's.
    """
    total = megabytes * _MB
    with tempfile.TemporaryDirectory(prefix="rtms-bench-crypto-", dir=directory) as tmp:
        root = Path(tmp)
        keyring = RecordingKeyring(
            DirectoryRecordingKeyStore(root / "rk"), provider=LocalKeyProvider(root / "kek")
        )
        factory = SpoolSinkFactory(root / "spool", keyring)
        print(f"sealed-segment crypto bench: {megabytes} MB per run, 64 KiB chunks, in {root}")
        for index, piece in enumerate((64 * 1024, 640)):
            run_total = total if piece >= 64 * 1024 else max(_MB, total // 8)
            identity = SegmentIdentity("bench", "mixed", index, int(time.time() * 1000))
            write_s, close_s, path = _write(factory, identity, run_total, piece)
            read_s, size = _read(path, keyring)
            stored = path.stat().st_size
            print(
                f"  writes of {piece:>6} B: encrypt {run_total / write_s / _MB:8.0f} MB/s "
                f"({write_s / (run_total / piece) * 1e6:.2f} us/write); "
                f"close (seal + read-back verify) {close_s * 1000:7.1f} ms = "
                f"{size / close_s / _MB:6.0f} MB/s; "
                f"read+verify {size / read_s / _MB:6.0f} MB/s; "
                f"overhead {100 * (stored - size) / size:.3f}%"
            )
            path.unlink()
        identity = SegmentIdentity("bench", "mixed", 2, int(time.time() * 1000))
        mean_s = _checkpoints(factory, identity, 50)
        print(
            f"  checkpoint (seal ~1 s of L16 + fsync, from a worker thread): "
            f"{mean_s * 1000:.2f} ms each"
        )
        part_total = max(_MB, total // 8)
        for index, flip in ((3, False), (4, True)):
            spent, chunks = _recover(factory, keyring, index, part_total, flip=flip)
            print(
                f"  recover a {part_total / _MB:.0f} MB .part into a new sealed file"
                f"{' (bit flip in chunk 2)' if flip else ''}: {spent * 1000:.1f} ms = "
                f"{part_total / spent / _MB:.0f} MB/s, {chunks} chunks kept"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--dir", type=Path, default=None, help="file system to write on")
    args = parser.parse_args(argv)
    run(megabytes=args.megabytes, directory=args.dir)
    return 0


if __name__ == "__main__":
    main()
