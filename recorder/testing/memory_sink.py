"""An in-memory ``SinkFactory`` for testing evidence producers without the crypto layer."""

from __future__ import annotations

import hashlib

from recorder.errors import LocalProtocolError
from recorder.sink import SealedSegment, SegmentIdentity


class MemorySink:
    def __init__(self, identity: SegmentIdentity, prologue_size: int) -> None:
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
        sink = MemorySink(identity, prologue_size)
        self.sinks.append(sink)
        return sink
