"""What the recorder sealed, read back object by object: the oracle tests compare with what the
simulator sent, and with the bundle's whole-call files.

Independent of the bundle's track assembly on purpose (a bundle checked against itself proves
nothing): each object is read with the bundle's ``with_object`` (the catalog's version, its
stored digest checked, opaque uploads recovered) and the public crypto reader, and its plaintext
must equal the digest sealed at recording.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import resource
import signal
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from recorder.catalog.base import RecordFileRow, RecordingDetail, SegmentRow
from recorder.errors import DigestMismatch
from recorder.officer.bundle.export import with_object
from recorder.service.components import Components
from recorder.video.track import VIDEO_RECORD_KINDS


async def decrypted(c: Components, row: SegmentRow | RecordFileRow) -> bytes:
    """The object's whole plaintext, authenticated and equal to its sealed digest."""
    out = bytearray()

    def take(chunks: Iterator[bytes], expected: str | None) -> None:
        for chunk in chunks:
            out.extend(chunk)
        got = hashlib.sha256(out).hexdigest()
        if expected is not None and not hmac.compare_digest(got, expected):
            raise DigestMismatch(f"{row.object_key}: plaintext differs from the sealed digest")

    await with_object(c, row, take)
    return bytes(out)


async def sealed_track(
    c: Components, detail: RecordingDetail, track: str
) -> tuple[int, npt.NDArray[np.int16]]:
    """The track's segments decrypted in order and joined: (rate, samples shaped
    (frames, channels)). Every segment's WAV agrees on rate and channels with the catalog."""
    segments = sorted(
        (s for s in detail.segments if s.track == track), key=lambda s: s.segment_index
    )
    assert segments, f"no segments on track {track!r}"
    frames: list[bytes] = []
    shape: set[tuple[int, int]] = set()
    for seg in segments:
        with wave.open(io.BytesIO(await decrypted(c, seg))) as wav:
            assert wav.getsampwidth() == 2, seg.object_key
            assert wav.getframerate() == seg.sample_rate, seg.object_key
            assert wav.getnframes() == seg.sample_count, seg.object_key
            shape.add((wav.getframerate(), wav.getnchannels()))
            frames.append(wav.readframes(wav.getnframes()))
    [(rate, channels)] = shape
    return rate, np.frombuffer(b"".join(frames), "<i2").reshape(-1, channels)


async def sealed_records(c: Components, detail: RecordingDetail) -> list[dict[str, Any]]:
    """Every JSON-lines record of the recording (not video), decrypted, in record order."""
    rows = sorted(
        (r for r in detail.records if r.kind not in VIDEO_RECORD_KINDS),
        key=lambda r: (r.kind, r.record_index),
    )
    return [
        json.loads(line)
        for row in rows
        for line in (await decrypted(c, row)).decode().splitlines()
        if line.strip()
    ]


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes of a file fail with ``EFBIG``, as the kernel does for a full
    disk with ``ENOSPC``: a real refusal, for this process only (its main thread must call)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
