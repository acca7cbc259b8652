"""Segment I/O as actions: what the synchronous capture core asks the trio shell to do.

Opening a segment (create, header, fsync, directory fsync, maybe a key from the key service)
and sealing one (last chunk, fsync, rename, directory fsync, full read-back) cost 19-32 ms, and
up to 0.28 s for a long segment; done inline they stalled every engagement of the process. The
core therefore never opens or seals a file itself:

* ``DeferringSinkFactory.open`` returns a ``DeferredSink`` at once and queues an
  ``OpenSegment``. Until the shell has run it (in a worker thread) the segment's bytes wait in
  memory (plaintext in RAM only, invariant 1); the first ``write`` or ``checkpoint`` after the
  open completes moves them into the real, encrypting sink. The buffer holds what arrives
  during one open: about 30 ms of audio.
* A pre-opened spare that turns out unneeded (the track retired first) is discarded by a
  ``DiscardSegment``, after its open, in a worker thread too.
* A rotation, a retirement or the end of a track detaches the full segment from its writer and
  returns a ``SealSegment``: the prologue and the manifest entry are computed on the core's
  thread, the blocking ``close`` runs in a worker thread on a sink nobody else writes to any
  more. Audio arriving meanwhile goes into the next segment, so nothing waits or reorders.

The shell runs the actions of one engagement in order (an open always precedes its segment's
seal), in threads under one process-wide ``trio.CapacityLimiter``. ``run_inline`` runs them on
the calling thread, for tests, benchmarks and tools that have no event loop to protect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from recorder.audio.manifest import ManifestEntry
from recorder.errors import LocalProtocolError
from recorder.sink import (
    EvidenceSink,
    SealedSegment,
    SegmentIdentity,
    SinkFactory,
    SpareSink,
    SpareSinkFactory,
)

#: Worker threads doing segment I/O (open, checkpoint, seal) across the whole process.
_SEGMENT_IO_THREADS = 4
_SEGMENT_IO_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "segment_io_limiter"
)


def segment_io_limiter() -> trio.CapacityLimiter:
    """The one limiter every engagement's segment I/O shares (trio's rule: one per resource)."""
    try:
        return _SEGMENT_IO_LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(_SEGMENT_IO_THREADS)
        _SEGMENT_IO_LIMITER.set(limiter)
        return limiter


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed segment and its manifest entry, ready for the spool."""

    segment: SealedSegment
    entry: ManifestEntry


class DeferredSink:
    """An ``EvidenceSink`` whose real sink is opened later, by the shell, in a worker thread.

    Threads: ``write`` and ``checkpoint`` are called by the core's owner (one at a time);
    ``open_now`` by a worker thread, which only publishes the opened sink; ``close`` by a worker
    thread once the writer has let go of this segment (nobody writes to it any more).
    """

    __slots__ = (
        "_adopt_pending",
        "_body_size",
        "_buffer",
        "_factory",
        "_identity",
        "_owner",
        "_prologue_size",
        "_ready",
        "_real",
        "_spare",
        "_spare_sink",
        "write",
    )

    #: Appends to the body. Until the real sink is attached, into memory; then it *is* the
    #: real sink's ``write``, so the per-packet path pays no extra call.
    write: Callable[[bytes], None]

    def __init__(
        self,
        factory: SinkFactory,
        identity: SegmentIdentity,
        prologue_size: int,
        owner: DeferringSinkFactory | None = None,
        *,
        spare: bool = False,
    ) -> None:
        self._factory = factory
        self._owner = owner
        self._spare = spare
        self._spare_sink: SpareSink | None = None
        self._adopt_pending = False
        self._identity = identity
        self._prologue_size = prologue_size
        self._real: EvidenceSink | None = None
        self._ready: EvidenceSink | None = None
        self._buffer = bytearray()
        self._body_size = 0
        self.write = self._write_buffered

    @property
    def identity(self) -> SegmentIdentity:
        return self._identity

    @property
    def body_size(self) -> int:
        real = self._real
        return real.body_size if real is not None else self._body_size

    @property
    def opened(self) -> bool:
        return self._ready is not None

    @property
    def buffered_bytes(self) -> int:
        """Plaintext waiting in memory for the real sink (0 once it is attached)."""
        return len(self._buffer)

    def open_now(self) -> None:
        """Open the real sink (blocking: a worker thread). Publishes it; the owner attaches it."""
        if self._ready is not None:
            raise LocalProtocolError(f"segment {self._identity.segment_index} opened twice")
        if self._spare:
            assert isinstance(self._factory, SpareSinkFactory)
            spare = self._factory.open_spare(self._identity, prologue_size=self._prologue_size)
            # Published before ``_ready``: whoever sees the sink can adopt it.
            self._spare_sink = spare
            self._ready = spare
        else:
            self._ready = self._factory.open(self._identity, prologue_size=self._prologue_size)

    def _write_buffered(self, data: bytes) -> None:
        real = self._attach()
        if real is None:
            self._buffer += data
            self._body_size += len(data)
        else:
            real.write(data)

    def checkpoint(self) -> None:
        """Durable up to here if the real sink is open; bytes still waiting for it are not."""
        real = self._real if self._real is not None else self._attach()
        if real is not None:
            real.checkpoint()

    def attached(self) -> EvidenceSink | None:
        """The real sink, attached now if its open completed (on the owner's thread); None
        while the open is pending. A checkpoint then runs the real sink's own ``checkpoint``
        in a worker thread, beside the owner's writes (the sink serialises the two)."""
        return self._real if self._real is not None else self._attach()

    def close(self, prologue: bytes = b"") -> SealedSegment:
        real = self._real if self._real is not None else self._attach()
        if real is None:
            raise LocalProtocolError(
                f"segment {self._identity.track}#{self._identity.segment_index} sealed before "
                "it was opened"
            )
        return real.close(prologue)

    def adopt(self) -> None:
        """The spare is the live segment now; adopted by whoever attaches the opened sink."""
        self._adopt_pending = True
        real = self._real if self._real is not None else self._attach()
        if real is not None and self._adopt_pending:
            self._adopt()

    def discard(self) -> None:
        """Queue the removal of this unwritten segment (after its open, in a worker thread)."""
        if self.body_size:
            raise LocalProtocolError(f"refusing to discard segment {self._identity.segment_index}")
        if self._owner is None:
            self.discard_now()
        else:
            self._owner.queued.append(DiscardSegment(self))

    def discard_now(self) -> None:
        """Blocking: a worker thread, once ``open_now`` ran."""
        real = self._real if self._real is not None else self._ready
        if real is not None:
            real.discard()

    def _adopt(self) -> None:
        self._adopt_pending = False
        if self._spare_sink is None:
            raise LocalProtocolError(f"segment {self._identity.segment_index} is not a spare")
        self._spare_sink.adopt()

    def _attach(self) -> EvidenceSink | None:
        ready = self._ready
        if ready is None:
            return None
        if self._adopt_pending:
            # Before the first byte: a spare's bytes only ever go where recovery finds them.
            self._adopt()
        if self._buffer:
            ready.write(bytes(self._buffer))
            self._buffer = bytearray()
        self._real = ready
        self.write = ready.write
        return ready


class DeferringSinkFactory:
    """Hands out ``DeferredSink``s and queues an ``OpenSegment`` for each (see module doc)."""

    def __init__(self, factory: SinkFactory) -> None:
        self._factory = factory
        self.queued: list[Action] = []

    @property
    def supports_spares(self) -> bool:
        return isinstance(self._factory, SpareSinkFactory)

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> DeferredSink:
        sink = DeferredSink(self._factory, identity, prologue_size, owner=self)
        self.queued.append(OpenSegment(sink))
        return sink

    def open_spare(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> DeferredSink:
        """Only when ``supports_spares``."""
        sink = DeferredSink(self._factory, identity, prologue_size, owner=self, spare=True)
        self.queued.append(OpenSegment(sink))
        return sink


@dataclass(frozen=True, slots=True)
class OpenSegment:
    sink: DeferredSink

    def run(self) -> None:
        """Blocking: run in a worker thread."""
        self.sink.open_now()


@dataclass(frozen=True, slots=True)
class DiscardSegment:
    sink: DeferredSink

    def run(self) -> None:
        """Blocking: run in a worker thread, after the segment's ``OpenSegment``."""
        self.sink.discard_now()


@dataclass(frozen=True, slots=True)
class SealSegment:
    #: Seals one detached segment and returns it with its manifest entry (blocking).
    seal: Callable[[], Sealed]
    track: str
    segment_index: int

    def run(self) -> Sealed:
        """Blocking: run in a worker thread. Touches only its own segment's sink."""
        return self.seal()


Action = OpenSegment | DiscardSegment | SealSegment


def run_inline(actions: Sequence[Action]) -> list[Sealed]:
    """Run actions in order on the calling thread; returns what was sealed, in seal order."""
    sealed: list[Sealed] = []
    for action in actions:
        if isinstance(action, SealSegment):
            sealed.append(action.run())
        else:
            action.run()
    return sealed
