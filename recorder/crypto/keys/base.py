"""The key-provider seam: what every key-encryption-key (KEK) backend offers the keyring.

A provider never sees audio. It hands out fresh *data keys* together with their wrapped form
(``new_data_key``) and opens wrapped keys again (``unwrap``). The *context* names the recording
and is bound into every wrap (KMS EncryptionContext, AES-GCM associated data), so a wrapped key
lifted from one recording does not open for another.

Key ids are namespaced by backend (``local:…``, ``kms:…``, ``x25519:…``) so a keyring holding
several unwrappers can route a key id to the one backend that owns it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

import trio


@dataclass(frozen=True, slots=True)
class KeyContext:
    """What a wrapped key is bound to. Public: it travels in KMS logs and file headers."""

    recording_id: str
    #: What the key is for, so a key wrapped for one purpose cannot be replayed for another.
    purpose: str = "recording-key"

    def encryption_context(self) -> dict[str, str]:
        """The KMS EncryptionContext (logged by CloudTrail: names only, never secrets)."""
        return {
            "rtms-recorder:recording-id": self.recording_id,
            "rtms-recorder:purpose": self.purpose,
        }

    def aad(self) -> bytes:
        """Canonical bytes of the context, for AES-GCM associated data."""
        return json.dumps(
            self.encryption_context(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")


@dataclass(frozen=True, slots=True)
class DataKey:
    """A fresh 256-bit key and its wrapped form. ``plaintext`` never leaves memory."""

    plaintext: bytes = field(repr=False)
    wrapped: bytes = field(repr=False)
    key_id: str


class KeyUnwrapper(Protocol):
    """Opens wrapped keys. An officers' workstation may hold only this half."""

    def handles(self, key_id: str) -> bool:
        """True when ``key_id`` belongs to this backend (it may still be missing or destroyed)."""
        ...

    def unwrap(self, wrapped: bytes, key_id: str, context: KeyContext) -> bytes:
        """The plaintext key.

        Raises:
            KeyNotFound: no key ``key_id`` here (the message names it).
            KeyMismatch: the wrapped bytes do not open under ``key_id`` for ``context``.
            KeyUnavailable: the key service cannot be reached right now (retry).
            DecryptNotPermitted: this host may wrap but never unwrap.
        """
        ...


class KeyProvider(KeyUnwrapper, Protocol):
    """Wraps (and, where allowed, unwraps) data keys under a key-encryption key."""

    def new_data_key(self, context: KeyContext) -> DataKey:
        """A fresh random 32-byte key, wrapped for ``context``. May block on a network call."""
        ...

    @property
    def current_key_id(self) -> str:
        """The KEK new keys are wrapped under (``keys status``, ``keys rewrap``' target)."""
        ...

    def wrap_key(self, plaintext: bytes, context: KeyContext) -> DataKey:
        """Wrap an existing key under the current KEK (re-wrapping, escrow copies)."""
        ...


async def new_data_key_async(
    provider: KeyProvider, context: KeyContext, *, limiter: trio.CapacityLimiter | None = None
) -> DataKey:
    """``new_data_key`` in a worker thread: providers may block on a key service."""
    return await trio.to_thread.run_sync(provider.new_data_key, context, limiter=limiter)


async def unwrap_async(
    unwrapper: KeyUnwrapper,
    wrapped: bytes,
    key_id: str,
    context: KeyContext,
    *,
    limiter: trio.CapacityLimiter | None = None,
) -> bytes:
    """``unwrap`` in a worker thread."""
    return await trio.to_thread.run_sync(
        unwrapper.unwrap, wrapped, key_id, context, limiter=limiter
    )
