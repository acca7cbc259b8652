"""Never drop audio because the key service is down: wrap to an escrow public key instead.

When the primary provider (usually KMS) raises ``KeyUnavailable``, ``FallbackKeyProvider``
wraps the new key to a pre-provisioned escrow X25519 public key, counts it, logs one line
(no key material) and calls ``on_fallback`` so the service can raise an alert metric. Segments
wrapped this way are readable only with the escrow private key, held offline by the custodian;
``recorder keys rewrap`` on a host holding the escrow private key moves them back under the
primary KEK (audited, resumable).

Any other primary error (wrong configuration, missing key) is *not* papered over: it raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from recorder.crypto.keys.base import DataKey, KeyContext, KeyProvider
from recorder.crypto.keys.x25519 import X25519PublicKeyProvider
from recorder.errors import KeyNotFound, KeyUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FallbackAlert:
    recording_id: str
    escrow_key_id: str
    #: The primary's error message (ours; it names key ids, never key material).
    reason: str
    #: Fallbacks so far in this process.
    count: int


class FallbackKeyProvider:
    """Primary provider first; on ``KeyUnavailable`` the escrow public key."""

    def __init__(
        self,
        primary: KeyProvider,
        escrow: X25519PublicKeyProvider,
        *,
        on_fallback: Callable[[FallbackAlert], None] | None = None,
    ) -> None:
        self._primary = primary
        self._escrow = escrow
        self._on_fallback = on_fallback
        self._lock = threading.Lock()
        self._count = 0

    @property
    def fallback_count(self) -> int:
        return self._count

    @property
    def escrow(self) -> X25519PublicKeyProvider:
        return self._escrow

    @property
    def current_key_id(self) -> str:
        return self._primary.current_key_id

    def wrap_key(self, plaintext: bytes, context: KeyContext) -> DataKey:
        """Re-wrapping goes to the primary only: moving keys *to* escrow is never intended."""
        return self._primary.wrap_key(plaintext, context)

    def handles(self, key_id: str) -> bool:
        return self._escrow.handles(key_id) or self._primary.handles(key_id)

    def new_data_key(self, context: KeyContext) -> DataKey:
        try:
            return self._primary.new_data_key(context)
        except KeyUnavailable as exc:
            with self._lock:
                self._count += 1
                count = self._count
            alert = FallbackAlert(
                recording_id=context.recording_id,
                escrow_key_id=self._escrow.key_id,
                reason=str(exc),
                count=count,
            )
            logger.error(
                "key service unavailable; wrapping with escrow key recording_id=%s "
                "escrow_key_id=%s fallbacks=%d reason=%s",
                alert.recording_id,
                alert.escrow_key_id,
                count,
                alert.reason,
            )
            if self._on_fallback is not None:
                try:
                    self._on_fallback(alert)
                except Exception:
                    # An alerting bug must not cost the recording its key.
                    logger.exception("fallback alert callback failed")
            return self._escrow.new_data_key(context)

    def unwrap(self, wrapped: bytes, key_id: str, context: KeyContext) -> bytes:
        if self._escrow.handles(key_id):
            return self._escrow.unwrap(wrapped, key_id, context)
        if self._primary.handles(key_id):
            return self._primary.unwrap(wrapped, key_id, context)
        raise KeyNotFound(f"key id {key_id} is neither the primary's nor the escrow key")
