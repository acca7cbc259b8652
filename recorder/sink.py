"""The seam between what produces evidence (audio segments, record files) and what keeps it.

Rule: nothing that produces evidence ever opens a plaintext file. It asks a ``SinkFactory`` for
an ``EvidenceSink``, writes bytes into it, calls ``checkpoint()`` at least once a second so a crash
loses at most about a second, and ``close()``\\s it with the *prologue*: a fixed-size header that
is only known at the end (a WAV header carries the data length). The real factory
(``recorder.crypto``) encrypts every byte as it arrives; ``MemorySinkFactory`` in
``recorder.testing`` keeps bytes in memory for tests of the producers.

The logical plaintext of a sealed segment is ``prologue + body``; ``SealedSegment.sha256`` is the
SHA-256 of exactly those bytes, which is what ``recorder export`` hands an officer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

#: Metadata values bound to a segment (authenticated, never secret).
MetadataValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class SegmentIdentity:
    """Who a segment belongs to. Bound as associated data, so it cannot be swapped later."""

    #: One recording = one RTMS stream of one meeting / webinar / session / engagement.
    recording_id: str
    #: ``mixed``, ``user-<id>``, ``channel-<id>`` for audio; ``records`` for JSON lines.
    track: str
    #: 0-based, per track.
    segment_index: int
    #: Unix milliseconds when the segment was opened.
    created_ms: int
    #: Free-form, authenticated metadata (codec, rate, bext fields, ...). Kept small.
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SealedSegment:
    identity: SegmentIdentity
    #: Where the sealed (encrypted) file is, if the sink writes files.
    path: Path | None
    #: Length of ``prologue + body``.
    plaintext_size: int
    #: SHA-256 hex of ``prologue + body``.
    sha256: str
    #: Size of the stored object (the encrypted file).
    stored_size: int
    #: Which key wrapped the segment's data key.
    key_id: str
    #: True when this segment was sealed by crash recovery or an interrupted shutdown.
    recovered: bool = False
    #: SHA-256 hex of the stored (encrypted) file, when the sink computed it while sealing.
    stored_sha256: str | None = None


class EvidenceSink(Protocol):
    """An append-only, encrypted-as-written byte sink for one segment."""

    @property
    def identity(self) -> SegmentIdentity: ...

    @property
    def body_size(self) -> int:
        """Bytes written to the body so far."""
        ...

    def write(self, data: bytes) -> None:
        """Append to the body. May seal full chunks; never holds more than one chunk in memory."""
        ...

    def checkpoint(self) -> None:
        """Seal whatever is pending and make it durable (fsync). Blocking: call from a thread,
        which may run while the owner goes on calling ``write`` (the capture's checkpoint
        ticker does): the sink serialises the two, and what was written before the call began
        is durable once it returns. After ``close`` it does nothing; after a failure it raises."""
        ...

    def close(self, prologue: bytes = b"") -> SealedSegment:
        """Seal the last chunk and the prologue; the segment is complete and immutable after."""
        ...

    def discard(self) -> None:
        """Remove a segment nothing was ever written to (a pre-opened spare nobody needed).
        Refuses (``LocalProtocolError``) once it holds a byte: evidence is never discarded."""
        ...


class SinkFactory(Protocol):
    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> EvidenceSink:
        """Open a new segment. ``close()`` must be given a prologue of exactly this size."""
        ...


class SpareSink(EvidenceSink, Protocol):
    """A segment opened ahead of its rotation, kept where crash recovery does not look."""

    def adopt(self) -> None:
        """It is the live segment now (before its first byte): recovery must find it."""
        ...


@runtime_checkable
class SpareSinkFactory(SinkFactory, Protocol):
    """A ``SinkFactory`` that can open segments ahead of time (``SegmentWriter`` pre-opens)."""

    def open_spare(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> SpareSink:
        """``open``, but a crash before ``adopt`` leaves no segment behind."""
        ...
