"""Per-recording keys: the crypto-shredding unit.

Three layers (docs/encrypted-format.md, "Key hierarchy")::

    KEK (local file, KMS key, or an X25519 public key)      held by a KeyProvider
     └─ recording key: random 256-bit, one per recording    wrapped by the KEK, kept in a
        │                                                   RecordingKeyStore (the catalog:
        │                                                   ``keystore.py``), NOT beside the audio
        └─ segment data key: random 256-bit, one per file   wrapped by the recording key, kept in
                                                            the segment header (WORM storage)

Sealed segments sit in retention-locked storage and cannot be altered, so the only way to make
one recording unreadable without touching any other is to destroy the one thing that is
recording-specific and lives outside WORM storage: its recording keys. ``shred()`` deletes them
and leaves a tombstone, so later reads fail with ``KeyDestroyed`` instead of a vague error.
A recording key lives for one recorder process at most (it is never unwrapped to be reused), so
the encrypt-only mode works: the host wraps with a public key and never needs to unwrap.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, TypeVar

import trio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recorder.crypto._format import SegmentHeader
from recorder.crypto.keys.base import DataKey, KeyContext, KeyProvider, KeyUnwrapper
from recorder.durable import fsync_directory, make_durable_dir, write_durably
from recorder.errors import (
    CatalogError,
    KeyDestroyed,
    KeyMismatch,
    KeyNotFound,
    KeyProviderError,
    LegalHoldViolation,
    StorageError,
)
from recorder.sink import SegmentIdentity

logger = logging.getLogger(__name__)

_WRAP_VERSION: Final = 1
_NONCE_SIZE: Final = 12
_TOMBSTONE: Final = "DESTROYED.json"
#: Recording ids become directory names through this hash: any id Zoom sends is safe.
_RECORDING_HASH_HEX: Final = 24


_T = TypeVar("_T")


def recording_key_dirname(recording_id: str) -> str:
    return hashlib.sha256(recording_id.encode("utf-8")).hexdigest()[:_RECORDING_HASH_HEX]


def new_recording_key_id(recording_id: str) -> str:
    """``rk-<recording hash>-<random>``: a store can find a key from its id alone."""
    return f"rk-{recording_key_dirname(recording_id)}-{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class RecordingKeyEntry:
    """One wrapped recording key as stored. Contains no plaintext key material."""

    rk_id: str
    recording_id: str
    kek_key_id: str
    wrapped: bytes = field(repr=False)
    created_ms: int


class RecordingKeyStore(Protocol):
    """Where wrapped recording keys live: separate from the audio, and deletable."""

    def put(self, entry: RecordingKeyEntry) -> None: ...

    def get(self, rk_id: str) -> RecordingKeyEntry:
        """Raises KeyNotFound (KeyDestroyed when shredded); the message names ``rk_id``."""
        ...

    def destroy(self, recording_id: str, *, reason: str) -> list[str]:
        """Delete every key of the recording, leave a tombstone, return the destroyed ids."""
        ...

    def is_destroyed(self, recording_id: str) -> bool: ...


class DirectoryRecordingKeyStore:
    """``<dir>/<sha256(recording_id)[:24]>/<rk_id>.json`` (0600, dirs 0700), plus a tombstone."""

    def __init__(self, directory: Path | str) -> None:
        self._dir = Path(directory)
        make_durable_dir(self._dir)

    def _recording_dir(self, recording_id: str) -> Path:
        return self._dir / recording_key_dirname(recording_id)

    def put(self, entry: RecordingKeyEntry) -> None:
        """Raises ``StorageError`` (``DiskFull``) naming the key and the directory: the keyring
        then keeps the key in its escrow spill, or refuses to record with it."""
        directory = self._recording_dir(entry.recording_id)
        document = {
            "rk_id": entry.rk_id,
            "recording_id": entry.recording_id,
            "kek_key_id": entry.kek_key_id,
            "wrapped": base64.b64encode(entry.wrapped).decode("ascii"),
            "created_ms": entry.created_ms,
        }
        try:
            make_durable_dir(directory)
            write_durably(directory / f"{entry.rk_id}.json", json.dumps(document).encode())
        except OSError as exc:
            what = f"cannot store recording key {entry.rk_id} in"
            raise StorageError.from_os_error(exc, what, directory) from exc

    def get(self, rk_id: str) -> RecordingKeyEntry:
        parts = rk_id.split("-")
        if len(parts) != 3 or parts[0] != "rk" or not parts[1].isalnum() or not parts[2].isalnum():
            raise KeyNotFound(f"malformed recording key id {rk_id!r}")
        directory = self._dir / parts[1]
        try:
            document = json.loads((directory / f"{rk_id}.json").read_bytes())
        except FileNotFoundError as exc:
            tombstone = directory / _TOMBSTONE
            if tombstone.exists():
                info = json.loads(tombstone.read_bytes())
                raise KeyDestroyed(
                    f"key destroyed: recording key {rk_id} of recording "
                    f"{info.get('recording_id')!r} was crypto-shredded at "
                    f"{info.get('destroyed_utc')} ({info.get('reason')}); this segment can no "
                    "longer be decrypted"
                ) from exc
            raise KeyNotFound(
                f"recording key {rk_id} not found in key store {self._dir} "
                "(another installation's key store, or never written here)"
            ) from exc
        return RecordingKeyEntry(
            rk_id=document["rk_id"],
            recording_id=document["recording_id"],
            kek_key_id=document["kek_key_id"],
            wrapped=base64.b64decode(document["wrapped"]),
            created_ms=int(document["created_ms"]),
        )

    def is_destroyed(self, recording_id: str) -> bool:
        return (self._recording_dir(recording_id) / _TOMBSTONE).exists()

    def entries(self) -> list[RecordingKeyEntry]:
        """Every live entry (the escrow spill syncs these into the catalog)."""
        found = []
        for path in sorted(self._dir.glob("*/rk-*.json")):
            try:
                found.append(self.get(path.stem))
            except KeyNotFound:
                continue
        return found

    def discard(self, entry: RecordingKeyEntry) -> None:
        """Remove one entry once it is safely stored elsewhere (no tombstone: not a shred)."""
        path = self._recording_dir(entry.recording_id) / f"{entry.rk_id}.json"
        path.unlink(missing_ok=True)
        fsync_directory(path.parent)

    def destroy(self, recording_id: str, *, reason: str) -> list[str]:
        directory = self._recording_dir(recording_id)
        make_durable_dir(directory)
        destroyed_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tombstone = {"recording_id": recording_id, "destroyed_utc": destroyed_utc, "reason": reason}
        # Tombstone first: a crash halfway still leaves the recording marked as being shredded.
        write_durably(directory / _TOMBSTONE, json.dumps(tombstone).encode())
        destroyed: list[str] = []
        for path in sorted(directory.glob("rk-*.json")):
            # Overwriting is best effort (SSDs and CoW file systems may keep old blocks); the
            # entry is wrapped under the KEK anyway, so deleting it is what counts.
            size = path.stat().st_size
            with path.open("r+b") as handle:
                handle.write(b"\x00" * size)
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()
            destroyed.append(path.stem)
        fsync_directory(directory)
        return destroyed


def _segment_aad(recording_id: str, track: str, segment_index: int) -> bytes:
    binding = {"recording_id": recording_id, "track": track, "segment_index": segment_index}
    return b"rtms-recorder/segment-key/v1\x00" + json.dumps(
        binding, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


class SegmentKeySource(Protocol):
    """What a writer needs: a fresh data key per segment, wrapped."""

    def new_segment_key(self, identity: SegmentIdentity) -> DataKey: ...


class SegmentKeyOpener(Protocol):
    """What a reader needs: the data key of a header."""

    def unwrap_segment_key(self, header: SegmentHeader) -> bytes: ...


@dataclass(frozen=True, slots=True)
class EscrowEvent:
    """A recording key that could not go to the key store and went to the local escrow spill."""

    recording_id: str
    rk_id: str
    #: The KEK the spilled copy is wrapped under (the escrow public key when one is configured).
    kek_key_id: str
    #: Why the key store refused (ours: names ids, never key material).
    reason: str


class RecordingKeyring:
    """Segment keys under per-recording keys under a KEK.

    Args:
        store: where wrapped recording keys live (the catalog, so they outlive the host).
        provider: wraps new recording keys (None on a read-only workstation).
        unwrappers: extra backends for reading (e.g. the escrow private key, old KMS keys).
        cache_size: recording keys kept in memory (32 bytes each), least recently used dropped.
        spill: a durable local store for keys the ``store`` could not take (never memory only);
            ``sync_spilled`` moves them into ``store`` later.
        escrow: when given, a spilled key is wrapped to this (offline escrow) public key.
        on_escrow: told about every spilled key (metrics, alerts); must not raise.
    """

    def __init__(
        self,
        store: RecordingKeyStore,
        *,
        provider: KeyProvider | None = None,
        unwrappers: Sequence[KeyUnwrapper] = (),
        cache_size: int = 1024,
        spill: DirectoryRecordingKeyStore | None = None,
        escrow: KeyProvider | None = None,
        on_escrow: Callable[[EscrowEvent], None] | None = None,
    ) -> None:
        self._store = store
        self._provider = provider
        self._spill = spill
        self._escrow = escrow
        self._on_escrow = on_escrow
        # Explicit unwrappers first: a private key must answer before an encrypt-only
        # provider for the same key id can refuse.
        self._unwrappers: tuple[KeyUnwrapper, ...] = (
            (*unwrappers, provider) if provider is not None else tuple(unwrappers)
        )
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # recording id -> (rk id, AESGCM) for writing; rk id -> AESGCM for reading.
        self._current: OrderedDict[str, tuple[str, AESGCM]] = OrderedDict()
        self._opened: OrderedDict[str, AESGCM] = OrderedDict()
        #: Recording keys being made, one lock each: ``prepare`` and the first segment's
        #: ``new_segment_key`` may ask at once (the engagement prepares the key beside the
        #: connection), and must get the same key rather than make two.
        self._making: dict[str, threading.Lock] = {}

    def _remember(self, cache: OrderedDict[str, _T], key: str, value: _T) -> None:
        with self._lock:
            cache[key] = value
            cache.move_to_end(key)
            while len(cache) > self._cache_size:
                cache.popitem(last=False)

    def prepare(self, recording_id: str) -> str:
        """Make sure a recording key exists for ``recording_id``; may call the key service.

        Returns the recording key id. Call it (``prepare_async``) when an engagement starts, so
        opening the first segment does not wait on the key service.
        """
        return self._recording_key(recording_id)[0]

    def _cached(self, recording_id: str) -> tuple[str, AESGCM] | None:
        with self._lock:
            hit = self._current.get(recording_id)
            if hit is not None:
                self._current.move_to_end(recording_id)
            return hit

    def _recording_key(self, recording_id: str) -> tuple[str, AESGCM]:
        hit = self._cached(recording_id)
        if hit is not None:
            return hit
        with self._lock:
            making = self._making.setdefault(recording_id, threading.Lock())
        with making:
            # Whoever held the lock before us may have made it (or failed: then we try).
            hit = self._cached(recording_id)
            if hit is not None:
                return hit
            try:
                return self._make_recording_key(recording_id)
            finally:
                with self._lock:
                    if self._making.get(recording_id) is making:
                        del self._making[recording_id]

    def _make_recording_key(self, recording_id: str) -> tuple[str, AESGCM]:
        if self._provider is None:
            raise KeyProviderError("this keyring has no key provider: it can read but not write")
        try:
            destroyed = self._store.is_destroyed(recording_id)
        except (StorageError, CatalogError):
            # Unreachable key store: recording goes on (escrow path below); a key made here
            # for a shredded recording is refused and destroyed when the spill syncs.
            destroyed = False
        if destroyed:
            raise KeyDestroyed(
                f"recording {recording_id!r} was crypto-shredded; refusing to create new keys"
            )
        data_key = self._provider.new_data_key(KeyContext(recording_id))
        rk_id = new_recording_key_id(recording_id)
        entry = RecordingKeyEntry(
            rk_id=rk_id,
            recording_id=recording_id,
            kek_key_id=data_key.key_id,
            wrapped=data_key.wrapped,
            created_ms=int(time.time() * 1000),
        )
        try:
            self._store.put(entry)
        except (StorageError, CatalogError) as exc:
            self._escrow_spill(entry, data_key.plaintext, exc)
        aead = AESGCM(data_key.plaintext)
        self._remember(self._current, recording_id, (rk_id, aead))
        self._remember(self._opened, rk_id, aead)
        logger.info(
            "recording key created recording_id=%s rk_id=%s kek=%s",
            recording_id,
            rk_id,
            data_key.key_id,
        )
        return rk_id, aead

    def _escrow_spill(self, entry: RecordingKeyEntry, plaintext: bytes, cause: Exception) -> None:
        """The key store refused: keep the key durably on local disk, never only in memory."""
        if self._spill is None:
            raise KeyProviderError(
                f"recording key {entry.rk_id} of recording {entry.recording_id!r} could not be "
                f"stored ({cause}) and no local escrow spill is configured; not recording "
                "with a key that exists only in memory"
            ) from cause
        spilled = entry
        if self._escrow is not None:
            escrowed = self._escrow.wrap_key(plaintext, KeyContext(entry.recording_id))
            spilled = RecordingKeyEntry(
                rk_id=entry.rk_id,
                recording_id=entry.recording_id,
                kek_key_id=escrowed.key_id,
                wrapped=escrowed.wrapped,
                created_ms=entry.created_ms,
            )
        try:
            self._spill.put(spilled)
        except StorageError as exc:
            raise KeyProviderError(
                f"recording key {entry.rk_id}: key store and local escrow spill both failed "
                f"({cause}; {exc})"
            ) from exc
        event = EscrowEvent(entry.recording_id, entry.rk_id, spilled.kek_key_id, str(cause))
        logger.error(
            "recording key not stored in the key store; kept in the local escrow spill "
            "recording_id=%s rk_id=%s kek=%s reason=%s",
            event.recording_id,
            event.rk_id,
            event.kek_key_id,
            event.reason,
        )
        if self._on_escrow is not None:
            try:
                self._on_escrow(event)
            except Exception:
                logger.exception("escrow alert callback failed")

    def sync_spilled(self) -> int:
        """Move keys from the local escrow spill into the key store; returns how many moved.

        A key whose recording was shredded meanwhile is destroyed here too (the store refuses
        it with ``KeyDestroyed``).
        """
        if self._spill is None:
            return 0
        moved = 0
        for entry in self._spill.entries():
            try:
                self._store.put(entry)
            except KeyDestroyed:
                self._spill.destroy(entry.recording_id, reason="recording shredded before sync")
                continue
            except (StorageError, CatalogError) as exc:
                logger.warning("escrow spill not synced yet rk_id=%s error=%s", entry.rk_id, exc)
                return moved
            self._spill.discard(entry)
            moved += 1
        return moved

    def clear_cache(self) -> None:
        """Forget every recording key held in memory."""
        with self._lock:
            self._current.clear()
            self._opened.clear()

    async def prepare_async(
        self, recording_id: str, *, limiter: trio.CapacityLimiter | None = None
    ) -> str:
        """``prepare`` in a worker thread; call it when an engagement starts."""
        return await trio.to_thread.run_sync(self.prepare, recording_id, limiter=limiter)

    def forget(self, recording_id: str) -> None:
        """Drop the cached recording key once a recording has ended."""
        with self._lock:
            entry = self._current.pop(recording_id, None)
            if entry is not None:
                self._opened.pop(entry[0], None)

    def new_segment_key(self, identity: SegmentIdentity) -> DataKey:
        rk_id, aead = self._recording_key(identity.recording_id)
        plaintext = secrets.token_bytes(32)
        nonce = secrets.token_bytes(_NONCE_SIZE)
        aad = _segment_aad(identity.recording_id, identity.track, identity.segment_index)
        wrapped = bytes((_WRAP_VERSION,)) + nonce + aead.encrypt(nonce, plaintext, aad)
        return DataKey(plaintext=plaintext, wrapped=wrapped, key_id=rk_id)

    def open_recording_key(self, rk_id: str, recording_id: str) -> None:
        """Unwrap one recording key (checks only; the key stays inside the keyring).

        Raises ``KeyDestroyed`` for a shredded key, like every read of it would.
        """
        self._open_recording_key(rk_id, recording_id)

    def _open_recording_key(self, rk_id: str, recording_id: str) -> AESGCM:
        with self._lock:
            cached = self._opened.get(rk_id)
        if cached is not None:
            return cached
        try:
            entry = self._store.get(rk_id)
        except KeyDestroyed:
            raise
        except KeyNotFound:
            if self._spill is None:
                raise
            # Written while the key store was unreachable and not synced yet.
            entry = self._spill.get(rk_id)
        if entry.recording_id != recording_id:
            raise KeyMismatch(
                f"recording key {rk_id} belongs to recording {entry.recording_id!r}, "
                f"not {recording_id!r}"
            )
        aead = AESGCM(self._unwrap_entry(entry))
        self._remember(self._opened, rk_id, aead)
        return aead

    def _unwrap_entry(self, entry: RecordingKeyEntry) -> bytes:
        for unwrapper in self._unwrappers:
            if unwrapper.handles(entry.kek_key_id):
                return unwrapper.unwrap(
                    entry.wrapped, entry.kek_key_id, KeyContext(entry.recording_id)
                )
        raise KeyNotFound(
            f"no key backend here holds KEK {entry.kek_key_id} "
            f"(needed for recording key {entry.rk_id})"
        )

    @property
    def provider(self) -> KeyProvider | None:
        return self._provider

    def rewrap(self, entry: RecordingKeyEntry) -> DataKey:
        """The same recording key, wrapped under the provider's current KEK (``keys rewrap``).

        The returned ``DataKey.plaintext`` is the recording key: callers store ``wrapped`` and
        ``key_id`` only.
        """
        if self._provider is None:
            raise KeyProviderError("this keyring has no key provider to re-wrap keys to")
        material = self._unwrap_entry(entry)
        return self._provider.wrap_key(material, KeyContext(entry.recording_id))

    def unwrap_segment_key(self, header: SegmentHeader) -> bytes:
        identity = header.identity
        aead = self._open_recording_key(header.key_id, identity.recording_id)
        wrapped = header.wrapped_key
        if len(wrapped) != 1 + _NONCE_SIZE + 32 + 16 or wrapped[0] != _WRAP_VERSION:
            raise KeyMismatch(f"wrapped segment key under {header.key_id} is malformed")
        aad = _segment_aad(identity.recording_id, identity.track, identity.segment_index)
        try:
            return aead.decrypt(wrapped[1 : 1 + _NONCE_SIZE], wrapped[1 + _NONCE_SIZE :], aad)
        except InvalidTag as exc:
            raise KeyMismatch(
                f"segment key does not open under recording key {header.key_id} for recording "
                f"{identity.recording_id!r} track {identity.track!r} segment "
                f"{identity.segment_index} (wrong key, or header fields altered)"
            ) from exc

    def shred(
        self, recording_id: str, *, on_legal_hold: Callable[[str], bool], reason: str
    ) -> list[str]:
        """Destroy every key of one recording (crypto-shredding); other recordings are untouched.

        A legal hold always wins (invariant 8): ``on_legal_hold(recording_id)`` is asked first
        and a True answer raises ``LegalHoldViolation``. The caller audits the returned ids.
        """
        if on_legal_hold(recording_id):
            raise LegalHoldViolation(
                f"recording {recording_id!r} is under legal hold; its keys may not be destroyed"
            )
        with self._lock:
            entry = self._current.pop(recording_id, None)
            self._opened.clear()
        del entry
        destroyed = self._store.destroy(recording_id, reason=reason)
        if self._spill is not None:
            # The escrow copy, if the key was ever spilled: every place the key lives.
            destroyed += [
                k for k in self._spill.destroy(recording_id, reason=reason) if k not in destroyed
            ]
        logger.warning(
            "recording keys destroyed recording_id=%s count=%d reason=%s",
            recording_id,
            len(destroyed),
            reason,
        )
        return destroyed
