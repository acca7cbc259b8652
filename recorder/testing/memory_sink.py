"""An in-memory ``SinkFactory`` for testing evidence producers without the crypto layer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from recorder.errors import LocalProtocolError
from recorder.sink import SealedSegment, SegmentIdentity


class MemorySink:
    def __init__(
        self,
        identity: SegmentIdentity,
        prologue_size: int,
        on_discard: Callable[[MemorySink], None] | None = None,
        *,
        spare: bool = False,
    ) -> None:
        self._on_discard = on_discard
        #: Opened ahead and not adopted yet (``recorder.sink.SpareSink``).
        self.spare = spare
        self._identity = identity
        self._prologue_size = prologue_size
        self._body = bytearray()
        self.checkpoints = 0
        self.sealed: SealedSegment | None = None
        self.plaintext = b""

    @property
    def identity(self) -> SegmentIdentity:
        return self._identity

    @property
    def body_size(self) -> int:
        return len(self._body)

    def write(self, data: bytes) -> None:
        if self.sealed is not None:
            raise LocalProtocolError("write after close")
        self._body += data

    def checkpoint(self) -> None:
        self.checkpoints += 1

    def adopt(self) -> None:
        if self._body:
            raise LocalProtocolError("adopt after a write")
        self.spare = False

    def discard(self) -> None:
        if self.sealed is not None or self._body:
            raise LocalProtocolError("refusing to discard a sealed or written segment")
        if self._on_discard is not None:
            self._on_discard(self)

    def close(self, prologue: bytes = b"") -> SealedSegment:
        if self.sealed is not None:
            raise LocalProtocolError("segment closed twice")
        if len(prologue) != self._prologue_size:
            raise LocalProtocolError(
                f"prologue is {len(prologue)} bytes, segment declared {self._prologue_size}"
            )
        self.plaintext = bytes(prologue) + bytes(self._body)
        self.sealed = SealedSegment(
            identity=self._identity,
            path=None,
            plaintext_size=len(self.plaintext),
            sha256=hashlib.sha256(self.plaintext).hexdigest(),
            stored_size=len(self.plaintext),
            key_id="memory",
        )
        return self.sealed


class MemorySinkFactory:
    """Keeps every segment it opened, in order, for assertions."""

    def __init__(self) -> None:
        self.sinks: list[MemorySink] = []

    def open(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> MemorySink:
        sink = MemorySink(identity, prologue_size, self.sinks.remove)
        self.sinks.append(sink)
        return sink

    def open_spare(self, identity: SegmentIdentity, *, prologue_size: int = 0) -> MemorySink:
        sink = MemorySink(identity, prologue_size, self.sinks.remove, spare=True)
        self.sinks.append(sink)
        return sink
