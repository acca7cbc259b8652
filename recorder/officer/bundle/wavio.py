"""Streaming pieces of a bundle's WAV files: a WAV file written front to back with its size
known in advance and its SHA-256 taken as written, and the sink that puts a decrypted segment's
samples straight into it.

One pass per byte: a segment's chunk is decrypted into the writer's buffer (``reserve``), hashed
there while it is hot in the cache once authenticated (``commit``), and leaves in one large
``write`` per buffer. (Starting the disk write-back early with ``posix_fadvise`` was measured:
each write then waited for the disk; one ``fsync`` at the end is faster.) Memory is one buffer
per file, whatever the call length (invariant 5).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from recorder.audio.wav import HEADER_SIZE, MAX_DATA_LENGTH
from recorder.durable import start_writeback
from recorder.errors import BundleWriteFailed, DigestMismatch, IntegrityError, StorageError

PLAIN_HEADER_SIZE: Final = 44
#: Bytes gathered before one ``write``: large writes, and the kernel's copy in big steps.
BUFFER_BYTES: Final = 4 << 20
_ZEROS: Final = bytes(1 << 20)


def wav_header(*, sample_rate: int, channels: int, frames: int) -> bytes:
    data_length = frames * 2 * channels
    if data_length > MAX_DATA_LENGTH:
        raise StorageError(
            f"{frames} frames of {channels} channel(s) exceed what one WAV file can describe"
        )
    block = 2 * channels
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_length,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        sample_rate * block,
        block,
        16,
        b"data",
        data_length,
    )


class TrackAbandoned(StorageError):
    """A track being read for the listening file failed (its own error says why)."""


class TrackProgress:
    """How far a track's WAV is written, for a reader in another thread (the listening file is
    mixed from the tracks while they are being written). Thread-safe; a failure wakes waiters."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._channels = 0
        self._audio_bytes = 0
        self._failed = False

    def opened(self, channels: int) -> None:
        with self._cond:
            self._channels = channels
            self._cond.notify_all()

    def flushed(self, audio_bytes: int) -> None:
        with self._cond:
            self._audio_bytes = audio_bytes
            self._cond.notify_all()

    def failed(self) -> None:
        with self._cond:
            self._failed = True
            self._cond.notify_all()

    def _check(self) -> None:
        if self._failed:
            raise TrackAbandoned(f"{self.name}: the track failed, so no listening file is made")

    def channels(self) -> int:
        """The track's channel count, once its first segment's header has been read."""
        with self._cond:
            while not self._channels:
                self._check()
                self._cond.wait()
            return self._channels

    def wait_for(self, audio_bytes: int) -> None:
        """Until the first ``audio_bytes`` of audio are in the file (readable by another fd)."""
        with self._cond:
            while self._audio_bytes < audio_bytes:
                self._check()
                self._cond.wait()


class WavWriter:
    """One 16-bit PCM WAV of ``frames`` frames, created 0600 (never over an existing file).

    Bytes arrive either copied (``write``, ``write_silence``) or in place: ``reserve`` hands out
    buffer memory, ``commit`` takes the first bytes of it into the file. Only committed bytes
    are hashed and written.
    """

    def __init__(
        self,
        path: Path,
        *,
        sample_rate: int,
        channels: int,
        frames: int,
        progress: TrackProgress | None = None,
    ) -> None:
        self.path = path
        self.channels = channels
        self._progress = progress
        self.frame_bytes = 2 * channels
        self._expected = frames * self.frame_bytes
        self._written = 0
        self._hasher = hashlib.sha256()
        header = wav_header(sample_rate=sample_rate, channels=channels, frames=frames)
        self._size = len(header)
        self._buffer = bytearray(BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._fill = 0
        self._flushed = -len(header)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if progress is not None:
            progress.opened(channels)
        self._hasher.update(header)
        self._view[: len(header)] = header
        self._fill = len(header)

    @property
    def written(self) -> int:
        """Audio bytes committed so far (the header not counted)."""
        return self._written

    def reserve(self, size: int) -> memoryview:
        if self._fill + size > len(self._buffer):
            self._flush()
            if size > len(self._buffer):
                self._buffer = bytearray(size)
                self._view = memoryview(self._buffer)
        return self._view[self._fill : self._fill + size]

    def commit(self, size: int) -> None:
        """Take the first ``size`` bytes of the memory last reserved."""
        self._written += size
        if self._written > self._expected:
            raise IntegrityError(f"{self.path.name}: more audio than the catalog describes")
        self._hasher.update(self._view[self._fill : self._fill + size])
        self._fill += size

    def write(self, pcm: bytes | bytearray | memoryview) -> None:
        data = memoryview(pcm).cast("B")
        while len(data):
            take = min(len(data), len(self._buffer) - self._fill) or min(
                len(data), len(self._buffer)
            )
            self.reserve(take)[:] = data[:take]
            self.commit(take)
            data = data[take:]

    def write_silence(self, frames: int) -> None:
        remaining = frames * self.frame_bytes
        while remaining:
            take = min(remaining, len(_ZEROS))
            self.write(memoryview(_ZEROS)[:take])
            remaining -= take

    def _flush(self) -> None:
        view = self._view[: self._fill]
        offset = self._size + self._flushed
        while len(view):
            try:
                done = os.write(self._fd, view)
            except OSError as exc:
                raise BundleWriteFailed.of(self.path, exc) from exc
            view = view[done:]
        start_writeback(self._fd, offset, self._fill)
        self._flushed += self._fill
        self._fill = 0
        if self._progress is not None:
            self._progress.flushed(self._flushed)

    def close(self) -> tuple[str, int]:
        """Flush and fsync; returns (sha256, size). Raises if fewer frames were written."""
        try:
            self._flush()
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise BundleWriteFailed.of(self.path, exc) from exc
        except BaseException:
            self.abort()
            raise
        self._release()
        if self._written != self._expected:
            if self._progress is not None:
                self._progress.failed()
            raise IntegrityError(
                f"{self.path.name}: {self._written} bytes of audio written, "
                f"{self._expected} expected from the catalog"
            )
        return self._hasher.hexdigest(), self._size + self._written

    def abort(self) -> None:
        if self._progress is not None:
            self._progress.failed()
        self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def parse_segment_header(header: bytes, *, name: str) -> tuple[int, int, int]:
    """(channels, sample_rate, data_length) of a segment's WAV header, or ``IntegrityError``."""
    if len(header) != HEADER_SIZE:
        raise IntegrityError(f"{name}: not a segment WAV header of this recorder")
    riff, _, wave = struct.unpack_from("<4sI4s", header, 0)
    fmt_id, _, audio_format, channels, rate = struct.unpack_from("<4sIHHI", header, 12)
    data_id, data_length = struct.unpack_from("<4sI", header, HEADER_SIZE - 8)
    if (riff, wave, fmt_id, data_id, audio_format) != (b"RIFF", b"WAVE", b"fmt ", b"data", 1):
        raise IntegrityError(f"{name}: not a segment WAV header of this recorder")
    if channels < 1 or data_length % (2 * channels):
        raise IntegrityError(f"{name}: WAV header describes a partial frame")
    return channels, rate, data_length


class SegmentSink:
    """A ``PlaintextSink`` that puts one decrypted segment's samples into a track's WAV.

    The prologue is the segment's WAV header (parsed here, never copied out); body chunks are
    decrypted straight into the writer's buffer and only the ``data`` chunk's bytes are taken.
    ``expected_sha256`` (the digest sealed at recording) is compared by ``finish`` when given;
    the export passes ``None`` when the stored object's digest already pins the ciphertext (an
    authenticated decryption of a ciphertext that is byte for byte the catalog's can only be the
    sealed plaintext, so hashing it again would prove nothing more).
    """

    def __init__(
        self,
        name: str,
        open_writer: Callable[[int], WavWriter],
        *,
        expected_frames: int,
        expected_sha256: str | None,
    ) -> None:
        self.name = name
        self._open_writer = open_writer
        self._expected_frames = expected_frames
        self._expected_sha256 = expected_sha256
        self._plain = hashlib.sha256() if expected_sha256 is not None else None
        self._writer: WavWriter | None = None
        self._reserved: memoryview | None = None
        self._remaining = -1
        self.channels = 0
        self.data_length = 0

    def prologue(self, plaintext: bytes) -> None:
        if self._plain is not None:
            self._plain.update(plaintext)
        channels, _rate, data_length = parse_segment_header(plaintext, name=self.name)
        if data_length != self._expected_frames * 2 * channels:
            raise StorageError(
                f"{self.name}: {data_length} bytes of audio, the catalog says "
                f"{self._expected_frames} samples"
            )
        self.channels, self.data_length, self._remaining = channels, data_length, data_length
        self._writer = self._open_writer(channels)

    def reserve(self, size: int) -> memoryview:
        if self._writer is None:
            raise IntegrityError(f"{self.name}: audio before the WAV header")
        self._reserved = self._writer.reserve(size)
        return self._reserved

    def commit(self, size: int) -> None:
        assert self._writer is not None
        assert self._reserved is not None
        if self._plain is not None:
            self._plain.update(self._reserved[:size])
        take = min(size, self._remaining)
        self._remaining -= take
        self._reserved.release()
        self._reserved = None
        if take:
            self._writer.commit(take)

    def finish(self) -> None:
        """The segment ended: its data chunk must be complete and its digest the sealed one."""
        if self._remaining != 0:
            raise IntegrityError(f"{self.name}: the WAV data ends before its header says")
        if self._plain is not None and not hmac.compare_digest(
            self._plain.hexdigest(), str(self._expected_sha256)
        ):
            raise DigestMismatch(
                f"{self.name}: decrypted content differs from the digest sealed at recording"
            )
