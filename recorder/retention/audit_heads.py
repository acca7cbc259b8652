"""Signed audit heads in the WORM store: the audit log checked without trusting the database.

The hash chain in ``audit_log`` shows edits made behind the triggers' back, but whoever owns the
database can re-chain it, or delete its tail. So, periodically (``recorder audit seal``, every
retention run and hold command), the events appended since the last head are written to the
object store under Object Lock as a *signed head*:

    audit/heads/<last audit_id, 20 digits>.json
    {"body": {"format": "rtms-recorder audit head v1", "first_id": .., "last_id": ..,
              "row_hashes": [[audit_id, row_hash], ...], "prev_head_sha256": "..",
              "signed_ms": .., "key_id": ".."},
     "signature": "<Ed25519 over the body's canonical JSON, hex>"}

``verify_audit`` needs only the store and the public key: every signed event must still be in
the log with the same ``row_hash``, no unsigned event may sit between signed ones, and the chain
must recompute. The first event that fails is named. Events newer than the last head are only as
safe as the chain until the next head is written (the heads' period bounds that window).

The signing key is an Ed25519 private key in a 0600 file outside the catalog (created on first
use); ``<key>.pub`` beside it holds the public key a verifier uses.
"""

from __future__ import annotations

import hashlib
import json
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from recorder.catalog.aio import AsyncCatalog
from recorder.durable import write_durably
from recorder.errors import AuditLogTampered, ConfigError, ObjectNotFound
from recorder.officer.verify import fetch_to
from recorder.store.base import LockMode, ObjectStore, put_document

HEAD_PREFIX: Final = "audit/heads/"
HEAD_FORMAT: Final = "rtms-recorder audit head v1"
#: Heads outlive every recording: ten years unless the caller keeps them longer.
DEFAULT_HEAD_RETAIN_DAYS: Final = 3653
_PAGE: Final = 5_000


# --- the key --------------------------------------------------------------------------------


def load_signing_key(path: Path, *, create: bool = True) -> Ed25519PrivateKey:
    """The Ed25519 key at ``path`` (raw 32 bytes, mode 0600); made on first use if ``create``."""
    if not path.exists():
        if not create:
            raise ConfigError(f"audit signing key {path} does not exist")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        try:
            write_durably(path, raw, replace=False)
        except FileExistsError:
            pass  # another process (a concurrent run) made it first: use that one
        else:
            public_path(path).write_text(public_hex(key.public_key()) + "\n")
            return key
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"audit signing key {path} is mode {mode:o}; it must be 0600")
    raw = path.read_bytes()
    if len(raw) != 32:
        raise ConfigError(f"audit signing key {path} is not a raw 32-byte Ed25519 key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(path.read_text().strip()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"audit public key {path} is unreadable: {exc}") from exc


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(bytes.fromhex(public_hex(key))).hexdigest()[:16]


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# --- writing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedHead:
    object_key: str
    first_id: int
    last_id: int
    events: int


async def _read_json(store: ObjectStore, key: str) -> dict[str, object]:
    with tempfile.TemporaryFile() as buf:
        await fetch_to(store, key, buf)
        doc = json.loads(buf.read())
    if not isinstance(doc, dict):
        raise AuditLogTampered(f"{key}: not a head document")
    return doc


async def _head_keys(store: ObjectStore) -> list[str]:
    return sorted(await store.list(HEAD_PREFIX))


async def write_head(
    catalog: AsyncCatalog,
    store: ObjectStore,
    key: Ed25519PrivateKey,
    *,
    now_ms: int,
    retain_days: int = DEFAULT_HEAD_RETAIN_DAYS,
) -> SignedHead | None:
    """Sign every event appended since the last head; ``None`` when there is none."""
    keys = await _head_keys(store)
    last_id, prev_sha = 0, "0" * 64
    if keys:
        last = await _read_json(store, keys[-1])
        body = last["body"]
        if not isinstance(body, dict):
            raise AuditLogTampered(f"{keys[-1]}: the head's body is not an object")
        last_id = int(body["last_id"])
        prev_sha = hashlib.sha256(_canonical(last)).hexdigest()
    hashes: list[list[object]] = []
    after = last_id
    while True:
        page = await catalog.audit_events(after_id=after, limit=_PAGE)
        hashes.extend([e.audit_id, e.row_hash] for e in page)
        if len(page) < _PAGE:
            break
        after = page[-1].audit_id
    if not hashes:
        return None
    first, final = int(hashes[0][0]), int(hashes[-1][0])  # type: ignore[call-overload]
    body = {
        "format": HEAD_FORMAT,
        "first_id": first,
        "last_id": final,
        "after_id": last_id,
        "row_hashes": hashes,
        "prev_head_sha256": prev_sha,
        "signed_ms": now_ms,
        "key_id": key_id(key.public_key()),
    }
    document = {"body": body, "signature": key.sign(_canonical(body)).hex()}
    data = _canonical(document)
    object_key = f"{HEAD_PREFIX}{final:020d}.json"
    await put_document(
        store,
        object_key,
        data,
        retain_until=datetime.fromtimestamp(now_ms / 1000, UTC) + timedelta(days=retain_days),
        lock_mode=LockMode.COMPLIANCE,
    )
    return SignedHead(object_key, first, final, len(hashes))


# --- verifying ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    events_checked: int
    heads_checked: int
    first_bad_id: int | None
    problem: str

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None and not self.problem


async def verify_audit(
    catalog: AsyncCatalog,
    store: ObjectStore,
    public_key: Ed25519PublicKey,
    *,
    on_head: Callable[[str], None] | None = None,
) -> AuditVerdict:
    """Check the log against its chain and every signed head; name the first bad event."""
    signed: dict[int, str] = {}
    prev_sha = "0" * 64
    prev_last = 0
    keys = await _head_keys(store)
    for object_key in keys:
        try:
            document = await _read_json(store, object_key)
            body = document["body"]
            signature = bytes.fromhex(str(document["signature"]))
            if not isinstance(body, dict):
                raise TypeError("the head's body is not an object")
            public_key.verify(signature, _canonical(body))
        except (
            InvalidSignature,
            KeyError,
            TypeError,
            ValueError,
            ObjectNotFound,
            AuditLogTampered,
        ) as exc:
            return AuditVerdict(0, len(signed), None, f"{object_key}: bad head ({exc!r})")
        if body.get("prev_head_sha256") != prev_sha or int(body["after_id"]) != prev_last:
            return AuditVerdict(
                0, len(signed), None, f"{object_key}: does not follow the head before it"
            )
        for audit_id, row_hash in body["row_hashes"]:
            signed[int(audit_id)] = str(row_hash)
        prev_sha = hashlib.sha256(_canonical(document)).hexdigest()
        prev_last = int(body["last_id"])
        if on_head:
            on_head(object_key)

    chain = await catalog.verify_audit_chain()
    first_bad: int | None = chain.first_broken_id
    problem = f"event #{first_bad}: hash chain broken" if first_bad is not None else ""

    def note(audit_id: int, what: str) -> None:
        nonlocal first_bad, problem
        if first_bad is None or audit_id < first_bad:
            first_bad, problem = audit_id, f"event #{audit_id}: {what}"

    checked = 0
    seen: set[int] = set()
    after = 0
    while True:
        page = await catalog.audit_events(after_id=after, limit=_PAGE)
        for event in page:
            checked += 1
            seen.add(event.audit_id)
            expected = signed.get(event.audit_id)
            if expected is None:
                if event.audit_id <= prev_last:
                    note(event.audit_id, "not in any signed head (inserted)")
            elif expected != event.row_hash:
                note(event.audit_id, "differs from its signed head (rewritten)")
        if len(page) < _PAGE:
            break
        after = page[-1].audit_id
    missing = sorted(set(signed) - seen)
    if missing:
        note(missing[0], "signed but no longer in the log (deleted or truncated)")
    return AuditVerdict(checked, len(keys), first_bad, problem)
