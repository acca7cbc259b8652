"""Destruction records: what was destroyed, why, by whom, and proof that it is gone.

Kept beyond the recording they describe (never deleted by retention).
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Protocol


class DestructionMethod(enum.StrEnum):
    #: NIST SP 800-88 Rev. 1 cryptographic erase: every copy of the recording key destroyed.
    CRYPTO_ERASE = "crypto_erase"
    #: Every object version deleted from the store.
    OBJECT_DELETE = "object_delete"


@dataclass(frozen=True, slots=True)
class DestroyedObject:
    key: str
    version_id: str | None
    sha256: str  # ciphertext SHA-256 as stored


@dataclass(frozen=True, slots=True)
class DestructionRecord:
    recording_id: str
    method: DestructionMethod
    objects: tuple[DestroyedObject, ...]
    key_ids: tuple[str, ...]  # recording-key ids destroyed (empty for OBJECT_DELETE)
    rule: str  # the authority: "policy:<name>@<sha256-prefix>" or "manual:<reason>"
    hold_check: str  # e.g. "no holds at <iso time>"
    actor: str  # OS user or job id ("retention-run:<id>")
    destroyed_ms: int
    verification: str  # e.g. "decrypt fails: key destroyed" / "no object versions remain"

    def canonical_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class RecordingShredder(Protocol):
    """Crypto-shred one recording: refuse under hold, destroy its key everywhere, verify."""

    async def shred(self, recording_id: str, *, actor: str, rule: str) -> DestructionRecord: ...
