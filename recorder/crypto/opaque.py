"""What a host that cannot decrypt can still say about a segment file: its shape, not its content.

An encrypt-only recorder (public key, or KMS without Decrypt) and a host whose keys went to the
escrow key cannot run ``recover`` on a crashed writer's ``.part`` file: recovery needs the data
key. It must still not leave the file on local disk. ``scan_opaque`` walks the file's clear
framing (header CRC, record frames with their own CRC, file id, chunk counter, lengths) without
any key and reports how many body bytes the complete records hold, so the file can be uploaded
as an opaque blob, integrity-checked by its stored SHA-256 end to end, and recovered and
authenticated later by an officer who holds the key (``recorder.officer`` does that on read).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from recorder.crypto import _format as fmt
from recorder.crypto._format import RecordKind, SegmentHeader
from recorder.crypto.reader import read_exact, read_header_from
from recorder.errors import StorageError

#: ``plaintext_sha256`` of an evidence row whose plaintext digest this host could not compute:
#: not a hex digest, so it can never match one by accident. Officers recover and authenticate
#: such objects on read (their stored SHA-256 is checked as for every object).
OPAQUE_PLAINTEXT_DIGEST = "opaque:unverified-until-decrypted"


@dataclass(frozen=True, slots=True)
class OpaqueScan:
    header: SegmentHeader
    #: Plaintext bytes in the complete, CRC-clean body records (not yet authenticated).
    body_bytes: int
    chunks: int
    #: Offset just past the last complete record: the rest is a torn tail.
    clean_end: int
    #: The final chunk is present: the writer had sealed the body.
    sealed: bool


def scan_opaque(path: Path) -> OpaqueScan:
    """Walk ``path``'s framing without a key. Raises ``TruncatedFile`` for a torn header."""
    source = str(path)
    with open(path, "rb") as stream:
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StorageError(f"{path} is held by a live writer") from exc
        header = read_header_from(stream, source=source)
        stream.seek(header.body_offset)
        end = header.body_offset
        body_bytes = chunks = 0
        sealed = False
        size = os.fstat(stream.fileno()).st_size
        while not sealed:
            frame_bytes = read_exact(stream, fmt.FRAME_SIZE)
            if len(frame_bytes) < fmt.FRAME_SIZE:
                break
            frame = fmt.decode_frame(frame_bytes)
            if (
                frame is None
                or frame.file_id != header.file_id
                or frame.index != chunks
                or frame.kind not in RecordKind.BODY_KINDS
                or frame.length > header.chunk_size
                or end + fmt.FRAME_SIZE + frame.length + fmt.TAG_SIZE > size
            ):
                break
            stream.seek(frame.length + fmt.TAG_SIZE, os.SEEK_CUR)
            end += fmt.FRAME_SIZE + frame.length + fmt.TAG_SIZE
            body_bytes += frame.length
            chunks += 1
            sealed = frame.kind in RecordKind.LAST_KINDS
    # A file that ends inside the prologue slot has no clean body at all.
    return OpaqueScan(header, body_bytes, chunks, min(end, size), sealed)
