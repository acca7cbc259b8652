"""Streaming pieces of a bundle's WAV files: segment PCM out of decrypted plaintext, and a WAV
file written front to back with its size known in advance and its SHA-256 taken as written.

Memory is one plaintext chunk at a time, whatever the call length (invariant 5).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from recorder.audio.wav import HEADER_SIZE, MAX_DATA_LENGTH
from recorder.errors import DigestMismatch, IntegrityError, StorageError

PLAIN_HEADER_SIZE: Final = 44
_SILENCE: Final = bytes(1 << 16)


class SegmentPcm:
    """The PCM of one decrypted segment, checked against the digest sealed at recording.

    Iterating yields the samples of the ``data`` chunk; the plaintext digest is compared when the
    last chunk has been read, before the iteration ends (so a caller never finishes a file from
    a segment that does not match). ``expected_sha256`` ``None`` skips that comparison (an opaque
    upload, authenticated by its AEAD alone).
    """

    def __init__(self, name: str, plaintext: Iterable[bytes], expected_sha256: str | None) -> None:
        self.name = name
        self._plaintext = plaintext
        self._expected = expected_sha256
        self.channels = 0
        self.sample_rate = 0
        self.data_length = 0

    def __iter__(self) -> Iterator[memoryview]:
        hasher = hashlib.sha256()
        head = bytearray()
        remaining = -1
        for chunk in self._plaintext:
            hasher.update(chunk)
            view = memoryview(chunk)
            if remaining < 0:
                head += chunk
                if len(head) < HEADER_SIZE:
                    continue
                self._parse(bytes(head[:HEADER_SIZE]))
                remaining = self.data_length
                view = memoryview(bytes(head[HEADER_SIZE:]))
            if remaining > 0 and len(view):
                piece = view[:remaining] if len(view) > remaining else view
                remaining -= len(piece)
                yield piece
        if remaining != 0:
            raise IntegrityError(f"{self.name}: the WAV data ends before its header says")
        if self._expected is not None and not hmac.compare_digest(
            hasher.hexdigest(), self._expected
        ):
            raise DigestMismatch(
                f"{self.name}: decrypted content differs from the digest sealed at recording"
            )

    def _parse(self, header: bytes) -> None:
        riff, _, wave = struct.unpack_from("<4sI4s", header, 0)
        fmt_id, _, audio_format, channels, rate = struct.unpack_from("<4sIHHI", header, 12)
        data_id, data_length = struct.unpack_from("<4sI", header, HEADER_SIZE - 8)
        if (riff, wave, fmt_id, data_id, audio_format) != (b"RIFF", b"WAVE", b"fmt ", b"data", 1):
            raise IntegrityError(f"{self.name}: not a segment WAV header of this recorder")
        if channels < 1 or data_length % (2 * channels):
            raise IntegrityError(f"{self.name}: WAV header describes a partial frame")
        self.channels, self.sample_rate, self.data_length = channels, rate, data_length


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


class WavWriter:
    """One 16-bit PCM WAV of ``frames`` frames, created 0600 (never over an existing file)."""

    def __init__(self, path: Path, *, sample_rate: int, channels: int, frames: int) -> None:
        self.path = path
        self.frame_bytes = 2 * channels
        self._expected = frames * self.frame_bytes
        self._written = 0
        self._hasher = hashlib.sha256()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._out = os.fdopen(fd, "wb", buffering=1 << 20)
        header = wav_header(sample_rate=sample_rate, channels=channels, frames=frames)
        self._size = len(header)
        self._hasher.update(header)
        self._out.write(header)

    def write(self, pcm: bytes | memoryview) -> None:
        self._written += len(pcm)
        if self._written > self._expected:
            raise IntegrityError(f"{self.path.name}: more audio than the catalog describes")
        self._hasher.update(pcm)
        self._out.write(pcm)

    def write_silence(self, frames: int) -> None:
        remaining = frames * self.frame_bytes
        while remaining:
            take = min(remaining, len(_SILENCE))
            self.write(_SILENCE[:take] if take < len(_SILENCE) else _SILENCE)
            remaining -= take

    def close(self) -> tuple[str, int]:
        """Flush and fsync; returns (sha256, size). Raises if fewer frames were written."""
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        if self._written != self._expected:
            raise IntegrityError(
                f"{self.path.name}: {self._written} bytes of audio written, "
                f"{self._expected} expected from the catalog"
            )
        return self._hasher.hexdigest(), self._size + self._written

    def abort(self) -> None:
        self._out.close()
