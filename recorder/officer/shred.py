"""Crypto-shredding of one recording (NIST SP 800-88 Rev. 1 cryptographic erase).

Rule: the evidence itself sits under an Object Lock that nobody can shorten, so the only way
to make one recording unreadable is to destroy the one thing that is recording-specific and
lives outside WORM storage: its recording keys. ``CryptoShredder.shred``

1. refuses while any legal hold covers the recording or one of its keys (``HoldActive``),
   asked first here and once more inside the destroying transaction;
2. destroys every copy of the keys: the catalog row becomes a tombstone (the database refuses
   to undo it or to accept the key again), the local escrow spill copy is overwritten and
   deleted, and every in-memory cache is cleared;
3. proves it: decrypting a stored object (or opening the key, when nothing was uploaded) must
   now fail with ``KeyDestroyed``; anything else raises ``IntegrityError`` and writes no record;
4. writes the destruction record (``destruction_records``, append-only, kept beyond the
   recording) and an audit event carrying the record's SHA-256.

Running it again for a shredded recording is safe: nothing is left to destroy, the check and
the record are repeated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from recorder.catalog.aio import AsyncCatalog
from recorder.catalog.base import RecordFileRow, RecordingStatus, SegmentRow, UploadState
from recorder.crypto.keyring import RecordingKeyring
from recorder.crypto.reader import iter_plaintext
from recorder.errors import CatalogError, HoldActive, IntegrityError, KeyDestroyed, RecorderError
from recorder.evidence_destruction import (
    DestroyedObject,
    DestructionMethod,
    DestructionRecord,
)
from recorder.officer.verify import fetch_to, staged_copy
from recorder.store.base import ObjectStore

logger = logging.getLogger(__name__)

#: What a successful check says (the contract's wording).
VERIFIED_DESTROYED = "decrypt fails: key destroyed"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000)) + f" ({ms} ms)"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CryptoShredder:
    """``recorder.evidence_destruction.RecordingShredder`` on the catalog's key store."""

    def __init__(
        self,
        catalog: AsyncCatalog,
        keyring: RecordingKeyring,
        store: ObjectStore | None,
        *,
        now_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._catalog = catalog
        self._keyring = keyring
        self._store = store
        # The caller's clock: a retention run's record and audit times come from one clock.
        self._now_ms = now_ms

    async def shred(self, recording_id: str, *, actor: str, rule: str) -> DestructionRecord:
        catalog = self._catalog
        detail = await catalog.show(recording_id)
        if detail is None:
            raise CatalogError(f"shred: no recording {recording_id!r}")
        if detail.recording.status is RecordingStatus.ACTIVE:
            # A live recorder holds this recording's key in memory and would keep sealing with
            # it; destroy keys only of recordings that have ended.
            raise CatalogError(f"shred: recording {recording_id!r} is still being recorded")
        rows: list[SegmentRow | RecordFileRow] = [*detail.segments, *detail.records]
        stored_keys = await catalog.recording_keys_of(recording_id)
        key_ids = tuple(sorted({r.key_id for r in rows} | {k.rk_id for k in stored_keys}))
        checked_ms = self._now_ms()
        if await catalog.is_on_hold(recording_id):
            raise HoldActive(
                f"recording {recording_id!r} is under legal hold; its keys may not be destroyed"
            )
        for key_id in key_ids:
            if await catalog.is_key_on_hold(key_id):
                raise HoldActive(
                    f"recording key {key_id} of {recording_id!r} also seals evidence under legal "
                    "hold; it may not be destroyed"
                )
        hold_check = f"no holds at {_iso(checked_ms)}"
        destroyed = await trio.to_thread.run_sync(
            lambda: self._keyring.shred(
                recording_id, on_legal_hold=lambda _: False, reason=f"{rule} by {actor}"
            )
        )
        verification = await self._verify_destroyed(recording_id, rows, key_ids)
        destroyed_ms = self._now_ms()
        record = DestructionRecord(
            recording_id=recording_id,
            method=DestructionMethod.CRYPTO_ERASE,
            objects=tuple(
                # Not uploaded yet: no stored digest; the object is listed all the same.
                DestroyedObject(
                    key=r.object_key, version_id=r.version_id, sha256=r.stored_sha256 or ""
                )
                for r in rows
            ),
            key_ids=tuple(sorted(set(key_ids) | set(destroyed))),
            rule=rule,
            hold_check=hold_check,
            actor=actor,
            destroyed_ms=destroyed_ms,
            verification=verification,
        )
        await catalog.add_destruction_record(record)
        await catalog.append_audit(
            actor=actor,
            action="recording.shred",
            target=recording_id,
            reason=rule,
            now_ms=destroyed_ms,
            details={
                "method": record.method.value,
                "key_ids": list(record.key_ids),
                "objects": len(record.objects),
                "record_sha256": record.sha256(),
            },
        )
        logger.warning(
            "recording crypto-shredded recording_id=%s keys=%d objects=%d record_sha256=%s",
            recording_id,
            len(record.key_ids),
            len(record.objects),
            record.sha256(),
        )
        return record

    async def verify(self, recording_id: str) -> list[DestructionRecord]:
        """Check the recording's destruction records again, now: each record's stored SHA-256
        (checked as it is read), every key it names still a tombstone, decryption still failing.

        Raises ``IntegrityError`` naming what no longer holds; returns the records checked.
        """
        records = await self._catalog.destruction_records(recording_id)
        if not records:
            raise IntegrityError(f"no destruction record for recording {recording_id!r}")
        detail = await self._catalog.show(recording_id)
        rows: list[SegmentRow | RecordFileRow] = (
            [] if detail is None else [*detail.segments, *detail.records]
        )
        for record in records:
            for key_id in record.key_ids:
                row = await self._catalog.get_recording_key(key_id)
                if row is None or not row.destroyed or row.wrapped is not None:
                    raise IntegrityError(
                        f"destruction record of {recording_id!r} names key {key_id}, which is "
                        "no longer a tombstone in the key store (restored from a backup?)"
                    )
            await self._verify_destroyed(recording_id, rows, record.key_ids)
        return records

    async def _verify_destroyed(
        self,
        recording_id: str,
        rows: list[SegmentRow | RecordFileRow],
        key_ids: tuple[str, ...],
    ) -> str:
        """Decrypt a stored object (a fresh read: caches were cleared); it must fail."""
        uploaded = [r for r in rows if r.upload_state is not UploadState.PENDING]
        if self._store is not None and uploaded:
            row = uploaded[0]
            try:
                await self._try_decrypt(row)
            except KeyDestroyed:
                return f"{VERIFIED_DESTROYED} ({row.object_key})"
            except RecorderError as exc:
                raise IntegrityError(
                    f"shred of {recording_id!r}: decrypting {row.object_key} failed, but not "
                    f"because the key is destroyed ({type(exc).__name__}: {exc})"
                ) from exc
            raise IntegrityError(
                f"shred of {recording_id!r}: {row.object_key} still decrypts; the key survived"
            )
        for key_id in key_ids:
            try:
                await trio.to_thread.run_sync(
                    self._keyring.open_recording_key, key_id, recording_id
                )
            except KeyDestroyed:
                continue
            raise IntegrityError(f"shred of {recording_id!r}: key {key_id} still opens")
        return f"{VERIFIED_DESTROYED} (no stored object yet; every key reports destroyed)"

    async def _try_decrypt(self, row: SegmentRow | RecordFileRow) -> None:
        assert self._store is not None
        with staged_copy(row.object_key, row.stored_size) as buf:
            await fetch_to(self._store, row.object_key, buf)

            def first_chunk() -> None:
                for _ in iter_plaintext(buf, self._keyring):
                    return

            await trio.to_thread.run_sync(first_chunk)
