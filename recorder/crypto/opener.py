"""Sans-IO opening of a sealed segment fed in pieces of any size, each chunk decrypted straight
into the caller's buffer.

Rule: the same checks as ``SegmentReader`` (header checksum, key commitment, header MAC, the
expected identity, every frame's file id, kind, counter and length, every chunk's AEAD tag, the
final-chunk flag, nothing after it), the same error classes and messages, but no reads and no
per-chunk allocation: the owner of the bytes (an object store's stream) calls ``feed`` with
whatever it received and ``finish`` at its end, and the ``PlaintextSink`` hands out the memory a
chunk is decrypted into. A chunk reaches ``commit`` only after its tag has been checked, so the
sink never passes on unauthenticated bytes (a failed chunk's reserved space is simply reused).

Memory is one chunk of carry-over at most (a record split across two fed pieces).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto import _format as fmt
from recorder.crypto._format import RecordKind, SegmentHeader
from recorder.crypto.keyring import SegmentKeyOpener
from recorder.crypto.reader import (
    authenticate_header,
    check_body_frame,
    check_expected,
    open_prologue,
)
from recorder.errors import ChunkOrderError, DecryptionFailed, LocalProtocolError, TruncatedFile
from recorder.sink import SegmentIdentity

Bytes = bytes | bytearray | memoryview


class PlaintextSink(Protocol):
    """Where an opener puts authenticated plaintext."""

    def prologue(self, plaintext: bytes) -> None:
        """The authenticated prologue (comes before any body byte)."""

    def reserve(self, size: int) -> memoryview:
        """Writable memory of exactly ``size`` bytes for the next chunk's plaintext."""

    def commit(self, size: int) -> None:
        """The ``size`` bytes last reserved hold authenticated plaintext now."""


class _State(enum.Enum):
    PREFIX = enum.auto()
    HEADER = enum.auto()
    PROLOGUE = enum.auto()
    FRAME = enum.auto()
    BODY = enum.auto()
    DONE = enum.auto()


class SegmentOpener:
    """Feed the stored bytes of one sealed segment; authenticated plaintext goes to ``sink``.

    Raises the reader's ``IntegrityError`` family where a check fails (``feed``) or where the
    bytes end early (``finish``). The key is unwrapped through ``keyring`` once the header has
    arrived (a blocking call for a remote key service: feed from a worker thread).
    ``check_header`` sees the header once it is authenticated, before any plaintext, and may
    refuse it by raising (the catalog's identity of the object, say).
    """

    def __init__(
        self,
        sink: PlaintextSink,
        keyring: SegmentKeyOpener,
        *,
        source: str,
        expect: SegmentIdentity | None = None,
        check_header: Callable[[SegmentHeader], None] | None = None,
    ) -> None:
        self._sink = sink
        self._keyring = keyring
        self._source = source
        self._expect = expect
        self._check_header = check_header
        self._state = _State.PREFIX
        self._need = fmt.FIXED_HEADER_SIZE
        self._pending = bytearray()
        self._prefix = b""
        self._header: SegmentHeader | None = None
        self._aead: AESGCM | None = None
        self._digest = b""
        self._frame: fmt.Frame | None = None
        self._offset = 0
        self._index = 0
        self.recovered = False
        self.body_chunks = 0
        self.plaintext_size = 0

    @property
    def header(self) -> SegmentHeader:
        if self._header is None:
            raise LocalProtocolError("the header has not been fed yet")
        return self._header

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def feed(self, data: Bytes) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            if self._state is _State.DONE:
                raise ChunkOrderError(
                    f"{self._source}: {len(view)}+ bytes after the final chunk "
                    f"{self._index - 1} at offset {self._offset} (a chunk appended after the end)"
                )
            need = self._need
            if self._pending or len(view) < need:
                take = min(need - len(self._pending), len(view))
                self._pending += view[:take]
                view = view[take:]
                if len(self._pending) < need:
                    return
                unit = memoryview(self._pending)
                try:
                    self._step(unit)
                finally:
                    unit.release()
                self._pending = bytearray()
            else:
                self._step(view[:need])
                view = view[need:]

    def finish(self) -> None:
        """The stored bytes ended: raise ``TruncatedFile`` unless the final chunk was read."""
        source, index, offset = self._source, self._index, self._offset
        if self._state is _State.DONE:
            return
        if self._state in (_State.PREFIX, _State.HEADER):
            raise TruncatedFile(f"{source}: file ends inside the header")
        if self._state is _State.PROLOGUE:
            raise TruncatedFile(f"{source}: file ends inside the prologue slot")
        if self._state is _State.FRAME and not self._pending:
            raise TruncatedFile(
                f"{source}: ends after {index} chunks without a final chunk "
                "(truncated, or the writer died: run recover on the .part file)"
            )
        if self._state is _State.FRAME:
            raise TruncatedFile(f"{source}: torn chunk frame at offset {offset}")
        raise TruncatedFile(
            f"{source}: chunk {index} at offset {offset} is cut short "
            f"({len(self._pending)} of {self._need} bytes)"
        )

    def _step(self, unit: memoryview) -> None:
        state = self._state
        if state is _State.BODY:
            self._body(unit)
        elif state is _State.FRAME:
            frame = fmt.decode_frame(bytes(unit))
            if frame is None:
                raise DecryptionFailed(
                    f"{self._source}: framing of chunk {self._index} at offset {self._offset} "
                    "is corrupt"
                )
            check_body_frame(self.header, frame, self._index, self._offset, source=self._source)
            self._frame = frame
            self._state, self._need = _State.BODY, frame.length + fmt.TAG_SIZE
        elif state is _State.PREFIX:
            self._prefix = bytes(unit)
            length = fmt.header_length_from_prefix(self._prefix, source=self._source)
            self._state, self._need = _State.HEADER, length - len(self._prefix)
        elif state is _State.HEADER:
            self._open_header(self._prefix + bytes(unit))
        else:
            self._prologue(bytes(unit))

    def _open_header(self, raw: bytes) -> None:
        header = fmt.parse_header(raw, source=self._source)
        if self._expect is not None:
            check_expected(header, self._expect, source=self._source)
        keys = authenticate_header(
            header, keyring=self._keyring, data_key=None, source=self._source
        )
        if self._check_header is not None:
            self._check_header(header)  # authentic fields only
        self._header = header
        self._aead = AESGCM(keys.payload)
        self._digest = header.digest
        self._state, self._need = _State.PROLOGUE, header.prologue_slot_size

    def _prologue(self, slot: bytes) -> None:
        header = self.header
        if not any(slot):
            raise TruncatedFile(
                f"{self._source}: the prologue slot is empty: this segment was never closed "
                "(run recover on it)"
            )
        assert self._aead is not None
        plaintext, self.recovered = open_prologue(header, self._aead, slot, source=self._source)
        self.plaintext_size += len(plaintext)
        self._sink.prologue(plaintext)
        self._offset = header.body_offset
        self._state, self._need = _State.FRAME, fmt.FRAME_SIZE

    def _body(self, body: memoryview) -> None:
        frame, aead = self._frame, self._aead
        assert frame is not None
        assert aead is not None
        target = self._sink.reserve(frame.length)
        try:
            aead.decrypt_into(
                fmt.nonce(self.header.nonce_prefix, self._index, frame.kind),
                body,
                fmt.record_aad(self._digest, frame.body),
                target,
            )
        except InvalidTag as exc:
            raise DecryptionFailed(
                f"{self._source}: chunk {self._index} at offset {self._offset} failed "
                "authentication (altered bytes)"
            ) from exc
        self._sink.commit(frame.length)
        self.body_chunks += 1
        self.plaintext_size += frame.length
        self._offset += fmt.FRAME_SIZE + len(body)
        self._index += 1
        if frame.kind in RecordKind.LAST_KINDS:
            self.recovered = self.recovered or frame.kind in RecordKind.RECOVERED_KINDS
            self._state, self._need = _State.DONE, 1
        else:
            self._state, self._need = _State.FRAME, fmt.FRAME_SIZE
