"""Verify recordings end to end: fetch each stored object, decrypt it, compare its digests.

Rule: verification reads what the *store* holds, not the local spool, and checks three things
per object: the stored bytes' SHA-256 equals the catalog's (what was uploaded is what is there),
every chunk authenticates under the recording's key (nothing altered, truncated, reordered or
spliced), and the plaintext SHA-256 equals the catalog's (the WAV an officer gets is the one the
recorder sealed). Each verification run is audited (invariant 9).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, BinaryIO, Final, cast

import trio

from recorder.catalog.base import RecordFileRow, SegmentRow, UploadState
from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.reader import digest_segment
from recorder.errors import IntegrityError, ObjectNotFound, RecorderError
from recorder.officer.opaque import is_opaque, recovered_copy
from recorder.service.components import Components, now_ms
from recorder.store.base import ObjectStore, close_after_error, staging

#: Objects up to this size are verified in memory; larger ones through a temporary file.
IN_MEMORY_BYTES: Final = 32 * 1024 * 1024


class Verdict(enum.StrEnum):
    VERIFIED = "verified"
    #: Not uploaded yet: still in the local spool (checked there by the uploader later).
    PENDING = "pending"
    MISSING = "missing"
    CORRUPT = "corrupt"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ObjectVerdict:
    object_key: str
    kind: str  #: ``segment`` or ``record``
    name: str  #: track or record kind
    index: int
    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RecordingVerdict:
    recording_id: str
    objects: tuple[ObjectVerdict, ...]

    @property
    def ok(self) -> bool:
        return all(o.verdict is Verdict.VERIFIED for o in self.objects)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for o in self.objects if o.verdict is verdict)


@contextmanager
def staged_copy(key: str, size: int) -> Iterator[BinaryIO]:
    """A private copy of object ``key`` (``size`` bytes) being checked: in memory up to
    ``IN_MEMORY_BYTES``, in a temporary file past that. Closing a spilled copy flushes it: a
    refusal then is ``not_staged`` when nothing else went wrong, and never replaces the error
    already on its way out (which may be the evidence's own)."""
    # SpooledTemporaryFile is a binary file object; typeshed only calls it IO[bytes].
    spooled = tempfile.SpooledTemporaryFile(max_size=min(size, IN_MEMORY_BYTES))  # noqa: SIM115
    copy = cast(BinaryIO, spooled)
    try:
        yield copy
    except BaseException:
        close_after_error(copy)
        raise
    with staging(key):
        copy.close()


async def fetch_to(
    store: ObjectStore, key: str, sink: IO[bytes], *, version_id: str | None = None
) -> str:
    """Copy an object (the cataloged ``version_id`` of it) into ``sink``; returns its SHA-256.

    Reading by version matters: a later version of the key (a racing or hostile writer) must not
    stand in for, or be mistaken as a corruption of, the evidence the catalog recorded.
    """
    hasher = hashlib.sha256()
    async with store.open(key, version_id=version_id) as chunks:
        async for chunk in chunks:
            hasher.update(chunk)
            with staging(key):
                await trio.to_thread.run_sync(sink.write, chunk)
    with staging(key):
        sink.seek(0)  # flushes what a spilled temporary file still buffered
    return hasher.hexdigest()


def _digest_opaque(stored: BinaryIO, keyring: RecordingKeyring) -> None:
    with recovered_copy(stored, keyring) as sealed:
        digest_segment(sealed, keyring)


async def verify_object(
    store: ObjectStore,
    keyring: RecordingKeyring,
    row: SegmentRow | RecordFileRow,
) -> ObjectVerdict:
    kind, name, index = (
        ("segment", row.track, row.segment_index)
        if isinstance(row, SegmentRow)
        else ("record", row.kind, row.record_index)
    )

    def verdict(v: Verdict, detail: str = "") -> ObjectVerdict:
        return ObjectVerdict(row.object_key, kind, name, index, v, detail)

    if row.upload_state is UploadState.PENDING:
        return verdict(Verdict.PENDING, "not uploaded yet")
    try:
        with staged_copy(row.object_key, row.stored_size) as buf:
            stored_sha = await fetch_to(store, row.object_key, buf, version_id=row.version_id)
            if row.stored_sha256 and not hmac.compare_digest(stored_sha, row.stored_sha256):
                return verdict(Verdict.CORRUPT, "stored bytes differ from what was uploaded")
            if is_opaque(row.plaintext_sha256):
                await trio.to_thread.run_sync(_digest_opaque, buf, keyring)
                return verdict(Verdict.VERIFIED, "opaque upload: authenticated after recovery")
            digest = await trio.to_thread.run_sync(lambda: digest_segment(buf, keyring))
    except ObjectNotFound:
        return verdict(Verdict.MISSING, "object not in the store")
    except IntegrityError as exc:
        return verdict(Verdict.CORRUPT, str(exc))
    except RecorderError as exc:
        return verdict(Verdict.ERROR, f"{type(exc).__name__}: {exc}")
    if not hmac.compare_digest(digest.sha256, row.plaintext_sha256):
        return verdict(Verdict.CORRUPT, "decrypted content differs from the sealed digest")
    return verdict(Verdict.VERIFIED)


async def verify_recording(
    c: Components, recording_id: str, *, actor: str, reason: str
) -> RecordingVerdict:
    detail = await c.catalog.show(recording_id)
    if detail is None:
        raise RecorderError(f"no recording {recording_id!r} in the catalog")
    rows: list[SegmentRow | RecordFileRow] = [*detail.segments, *detail.records]
    verdicts = tuple([await verify_object(c.store, c.keyring, row) for row in rows])
    result = RecordingVerdict(recording_id, verdicts)
    await c.catalog.append_audit(
        actor=actor,
        action="verify",
        target=recording_id,
        reason=reason,
        now_ms=now_ms(),
        details={v.value: result.count(v) for v in Verdict},
    )
    return result
