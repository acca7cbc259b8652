"""The recording-key store that outlives hosts: wrapped recording keys in the catalog.

Rule: a recording key is committed to the catalog (SQLite on one box, PostgreSQL in a fleet)
before the first segment sealed under it is opened, so any host sharing the catalog and holding
the unwrapping key (an officer: X25519 private key or KMS Decrypt) can read what any recording
host wrote, also after that host's disk is gone. Only wrapped keys are stored; destroying one
turns its row into a tombstone that the database refuses to undo.
"""

from __future__ import annotations

import time
from typing import Protocol

from recorder.catalog.base import RecordingKeyRow
from recorder.crypto.keyring import RecordingKeyEntry
from recorder.errors import CatalogError, KeyDestroyed, KeyNotFound, KeyUnavailable


class KeyCatalog(Protocol):
    """The part of ``recorder.catalog.base.Catalog`` the key store uses (blocking)."""

    def put_recording_key(self, row: RecordingKeyRow) -> None: ...

    def get_recording_key(self, rk_id: str) -> RecordingKeyRow | None: ...

    def recording_key_tombstone(self, recording_id: str) -> tuple[int, str] | None: ...

    def destroy_recording_keys(
        self, recording_id: str, *, reason: str, now_ms: int
    ) -> list[str]: ...


def key_destroyed_message(rk_id: str, recording_id: str, destroyed_ms: int, reason: str) -> str:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(destroyed_ms / 1000))
    return (
        f"key destroyed: recording key {rk_id} of recording {recording_id!r} was "
        f"crypto-shredded at {when} ({reason}); this evidence can no longer be decrypted"
    )


class CatalogRecordingKeyStore:
    """``RecordingKeyStore`` on the catalog. Blocking: called from worker threads."""

    def __init__(self, catalog: KeyCatalog) -> None:
        self._catalog = catalog

    def put(self, entry: RecordingKeyEntry) -> None:
        """Committed on return. ``CatalogError`` when it could not be (the keyring then escrows)."""
        self._catalog.put_recording_key(
            RecordingKeyRow(
                rk_id=entry.rk_id,
                recording_id=entry.recording_id,
                kek_key_id=entry.kek_key_id,
                wrapped=entry.wrapped,
                created_ms=entry.created_ms,
            )
        )

    def get(self, rk_id: str) -> RecordingKeyEntry:
        try:
            row = self._catalog.get_recording_key(rk_id)
        except CatalogError as exc:
            raise KeyUnavailable(f"recording key {rk_id}: key store unreachable ({exc})") from exc
        if row is None:
            raise KeyNotFound(f"recording key {rk_id} not found in the catalog's key store")
        if row.wrapped is None or row.destroyed_ms is not None:
            raise KeyDestroyed(
                key_destroyed_message(
                    rk_id, row.recording_id, row.destroyed_ms or 0, row.destroy_reason or ""
                )
            )
        return RecordingKeyEntry(
            rk_id=row.rk_id,
            recording_id=row.recording_id,
            kek_key_id=row.kek_key_id,
            wrapped=row.wrapped,
            created_ms=row.created_ms,
        )

    def destroy(self, recording_id: str, *, reason: str) -> list[str]:
        return self._catalog.destroy_recording_keys(
            recording_id, reason=reason, now_ms=time.time_ns() // 1_000_000
        )

    def is_destroyed(self, recording_id: str) -> bool:
        return self._catalog.recording_key_tombstone(recording_id) is not None
