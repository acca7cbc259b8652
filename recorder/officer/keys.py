"""``recorder keys status|init|rotate|rewrap|export-public`` and ``recorder shred``.

Rule: these commands change what can be decrypted, so each one that changes anything is audited
(actor = the OS user) and refuses to overwrite key material. ``rewrap`` is resumable and
idempotent: each key is re-wrapped in its own transaction, only if it is still under the old
KEK, so a run killed halfway is simply run again.
"""

from __future__ import annotations

import argparse
import stat
from dataclasses import dataclass
from pathlib import Path

import trio
from cryptography.hazmat.primitives import serialization

from recorder.catalog.base import RecordingKeyRow
from recorder.config import Config, KeyProviderKind
from recorder.crypto.keyring import RecordingKeyEntry
from recorder.crypto.keys.fallback import FallbackKeyProvider
from recorder.crypto.keys.x25519 import X25519Unwrapper, generate_x25519_keypair
from recorder.crypto.setup import init_local_keys, rotate_local_key
from recorder.durable import write_new_file
from recorder.errors import ConfigError, KeyProviderError
from recorder.officer.actor import os_actor
from recorder.officer.shred import CryptoShredder
from recorder.service.components import KEK_DIR, RECORDING_KEYS_DIR, Components, now_ms

#: Keys re-wrapped per page (one progress line and one audit event per page).
REWRAP_PAGE = 100


def _mode(path: Path) -> str:
    try:
        return f"{stat.S_IMODE(path.stat().st_mode):04o}"
    except FileNotFoundError:
        return "missing"


async def status(c: Components, args: argparse.Namespace) -> int:
    keys = c.config.keys
    provider = c.keyring.provider
    print(f"provider: {keys.provider.value}")
    if provider is not None:
        current = await trio.to_thread.run_sync(lambda: provider.current_key_id)
        print(f"current KEK: {current}")
        if isinstance(provider, FallbackKeyProvider):
            print(f"escrow key: {provider.escrow.key_id}")
    for path in keys.private_key_paths:
        print(f"officer private key: {X25519Unwrapper.from_file(path).key_id} ({_mode(path)})")
    usage = await c.catalog.kek_usage()
    print("recording keys per KEK (live / destroyed):")
    for u in usage:
        print(f"  {u.kek_key_id}: {u.live} / {u.destroyed}")
    if not usage:
        print("  (none yet)")
    escrow_ids = (
        {provider.escrow.key_id} if isinstance(provider, FallbackKeyProvider) else set[str]()
    )
    escrowed = sum(u.live for u in usage if u.kek_key_id in escrow_ids)
    spill = keys.key_dir / RECORDING_KEYS_DIR
    spilled = len(list(spill.glob("*/rk-*.json"))) if spill.is_dir() else 0
    print(f"escrow use: {escrowed} key(s) wrapped to the escrow key; {spilled} not yet in catalog")
    records = await c.catalog.destruction_records()
    print(f"destruction records: {len(records)}")
    return 0


def init(config: Config, args: argparse.Namespace) -> int:
    """Local KEK (provider local) or, with ``--x25519``, an officer key pair. Never overwrites."""
    if args.x25519:
        if args.private is None or args.public is None:
            raise ConfigError("keys init --x25519 needs --private PATH and --public PATH")
        if Path(args.public).exists():
            raise ConfigError(f"refusing to overwrite public key {args.public}")
        key_id = generate_x25519_keypair(args.private, args.public)
        print(f"created X25519 key pair {key_id}: private {args.private} (0600, keep it on the")
        print(f"officer host only), public {args.public} (copy it to recording hosts)")
        return 0
    if config.keys.provider is not KeyProviderKind.LOCAL:
        raise ConfigError(
            f"keys init without --x25519 creates a local KEK, but [keys] provider is "
            f"{config.keys.provider.value!r}"
        )
    key_dir = config.keys.key_dir / KEK_DIR
    key_id = init_local_keys(key_dir)
    print(f"created local KEK {key_id} in {key_dir} (0600)")
    return 0


async def rotate(c: Components, args: argparse.Namespace) -> int:
    kind = c.config.keys.provider
    if kind is KeyProviderKind.KMS:
        raise ConfigError(
            "KMS keys rotate inside KMS (EnableKeyRotation; old key material stays usable for "
            "Decrypt). To move to another KMS key, set [keys] kms_key_id and run "
            "`recorder keys rewrap` on an officer host"
        )
    if kind is KeyProviderKind.PUBLIC:
        raise ConfigError(
            "encrypt-only hosts rotate by installing a new public key: run "
            "`recorder keys init --x25519` on the officer host, set [keys] public_key_path "
            "here, and `recorder keys rewrap` on the officer host (which holds both private keys)"
        )
    key_dir = c.config.keys.key_dir / KEK_DIR
    new_id = await trio.to_thread.run_sync(rotate_local_key, key_dir)
    await c.catalog.append_audit(
        actor=os_actor(),
        action="keys.rotate",
        target=new_id,
        reason=args.reason,
        now_ms=now_ms(),
        details={"provider": kind.value},
    )
    print(f"new KEK {new_id}: new recordings use it; run `recorder keys rewrap` for old ones")
    return 0


@dataclass(slots=True)
class RewrapProgress:
    rewrapped: int = 0
    skipped: int = 0
    failed: int = 0


async def rewrap(c: Components, args: argparse.Namespace) -> int:
    provider = c.keyring.provider
    if provider is None:
        raise KeyProviderError("this host has no key provider to re-wrap keys to")
    target = await trio.to_thread.run_sync(lambda: provider.current_key_id)
    actor = os_actor()
    progress = RewrapProgress()
    await c.catalog.append_audit(
        actor=actor,
        action="keys.rewrap.start",
        target=target,
        reason=args.reason,
        now_ms=now_ms(),
        details={"from": args.from_kek},
    )
    after = ""
    while True:
        page = await c.catalog.recording_keys_not_under(
            target, after_rk_id=after, limit=REWRAP_PAGE
        )
        if not page:
            break
        moved: list[str] = []
        for row in page:
            after = row.rk_id
            if args.from_kek and row.kek_key_id != args.from_kek:
                progress.skipped += 1
                continue
            try:
                if await _rewrap_one(c, row):
                    moved.append(row.rk_id)
                    progress.rewrapped += 1
            except KeyProviderError as exc:
                progress.failed += 1
                print(f"  {row.rk_id}: not re-wrapped: {exc}")
        if moved:
            await c.catalog.append_audit(
                actor=actor,
                action="keys.rewrap",
                target=target,
                reason=args.reason,
                now_ms=now_ms(),
                details={"rk_ids": moved},
            )
        print(
            f"rewrap: {progress.rewrapped} re-wrapped, {progress.skipped} skipped, "
            f"{progress.failed} failed (last {after})",
            flush=True,
        )
    await c.catalog.append_audit(
        actor=actor,
        action="keys.rewrap.done",
        target=target,
        reason=args.reason,
        now_ms=now_ms(),
        details={
            "rewrapped": progress.rewrapped,
            "skipped": progress.skipped,
            "failed": progress.failed,
        },
    )
    print(f"rewrap done: every live recording key not skipped is under {target}")
    return 1 if progress.failed else 0


async def _rewrap_one(c: Components, row: RecordingKeyRow) -> bool:
    assert row.wrapped is not None  # recording_keys_not_under returns live keys only
    entry = RecordingKeyEntry(
        rk_id=row.rk_id,
        recording_id=row.recording_id,
        kek_key_id=row.kek_key_id,
        wrapped=row.wrapped,
        created_ms=row.created_ms,
    )
    fresh = await trio.to_thread.run_sync(c.keyring.rewrap, entry)
    return await c.catalog.rewrap_recording_key(
        row.rk_id,
        old_kek_key_id=row.kek_key_id,
        new_kek_key_id=fresh.key_id,
        wrapped=fresh.wrapped,
        now_ms=now_ms(),
    )


def export_public(args: argparse.Namespace) -> int:
    """Write the public half of an officer's X25519 private key, for encrypt-only hosts."""
    unwrapper = X25519Unwrapper.from_file(args.private)
    out = Path(args.out)
    raw = unwrapper.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    write_new_file(out, raw, mode=0o644)
    print(f"public key {unwrapper.key_id} written to {out}: set [keys] public_key_path to it")
    return 0


async def shred(c: Components, args: argparse.Namespace) -> int:
    shredder = CryptoShredder(c.catalog, c.keyring, c.store, now_ms=now_ms)
    if args.verify:
        for checked in await shredder.verify(args.recording_id):
            print(
                f"destruction record sha256 {checked.sha256()} of {checked.recording_id}: "
                f"verified ({len(checked.key_ids)} key(s) still destroyed; decrypt still fails)"
            )
        return 0
    if not args.reason:
        raise ConfigError("shred needs --reason (the authority, written to the audit log)")
    record = await shredder.shred(args.recording_id, actor=os_actor(), rule=f"manual:{args.reason}")
    print(f"recording {record.recording_id}: {record.method.value}")
    print(f"  keys destroyed: {', '.join(record.key_ids) or '(none)'}")
    print(f"  objects now unreadable: {len(record.objects)}")
    print(f"  {record.hold_check}; {record.verification}")
    print(f"  destruction record sha256 {record.sha256()}")
    return 0
